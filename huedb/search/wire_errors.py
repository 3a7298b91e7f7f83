"""The errors of a search body, with Chroma's messages (shared/chroma-search-api.md, 2.5).

A body that does not have the request's shape is a 422 whose message names the JSON path
(`searches[0].rank.$knn.limit`) and says what serde would (`invalid type: string "x",
expected f32`); a well-shaped payload that breaks a rule is a 400 `Validation error: ...`.
"""

from __future__ import annotations

from typing import Any

from huedb.errors import InvalidArgumentError, InvalidBodyError, serde_unexpected

U32_MAX = 2**32 - 1


def body_error(path: str, message: str) -> InvalidBodyError:
    """422: the body does not fit the request's shape at `path`."""
    where = f"{path}: " if path else ""
    return InvalidBodyError(
        f"Failed to deserialize the JSON body into the target type: {where}{message}"
    )


def validation_error(path: str, message: str) -> InvalidArgumentError:
    """400: a payload breaks a rule of the Search API."""
    return InvalidArgumentError(f"Validation error: {path}: {message}")


def wrong_type(path: str, value: Any, expected: str) -> InvalidBodyError:
    """422 `invalid type: <value>, expected <expected>`."""
    return body_error(path, f"invalid type: {serde_unexpected(value)}, expected {expected}")


def u32(value: Any, path: str) -> int:
    """An unsigned 32-bit integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(path, value, "u32")
    if not 0 <= value <= U32_MAX:
        raise body_error(path, f"invalid value: integer `{value}`, expected u32")
    return value


def f32(value: Any, path: str) -> float:
    """A number (int or float; kept as a Python float, to be evaluated as float32)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(path, value, "f32")
    try:
        return float(value)
    except OverflowError:
        raise body_error(path, f"invalid value: integer `{value}`, expected f32") from None


def string(value: Any, path: str) -> str:
    """A string."""
    if not isinstance(value, str):
        raise wrong_type(path, value, "a string")
    return value


def sequence(value: Any, path: str) -> list[Any]:
    """A JSON array."""
    if not isinstance(value, list):
        raise wrong_type(path, value, "a sequence")
    return value


def struct(value: Any, path: str, name: str) -> dict[str, Any]:
    """A JSON object read as the struct `name`."""
    if not isinstance(value, dict):
        raise wrong_type(path, value, f"struct {name}")
    return value
