"""How exceptions become Chroma's error responses (status, error name, message)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from huedb.errors import ChromaError


def error_fields(exc: Exception) -> tuple[int, str, str]:
    """Status, Chroma error name and message for an exception raised while serving."""
    if isinstance(exc, ChromaError):
        return exc.code(), exc.name(), str(exc)
    if isinstance(exc, TypeError):
        return 422, "ChromaError", str(exc)
    if isinstance(exc, ValueError | OverflowError | IndexError):
        return 400, "InvalidArgumentError", str(exc)
    return 500, "InternalError", f"{type(exc).__name__}: {exc}"


def body_error(errors: Iterable[dict[str, Any]]) -> tuple[int, str, str]:
    """The 422 for a request body that does not fit its model (pydantic's error list)."""
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors
    )
    return 422, "ChromaError", f"Failed to deserialize the JSON body into the target type: {detail}"
