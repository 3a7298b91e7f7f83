"""Every huedb error class, with chromadb's names so `except chromadb.errors.X` code ports.

A `ChromaError` subclass decides its own HTTP status (`status`) and the error name written
on the wire (`wire_name`, one of the names chromadb's client maps back to a class).
`http_error` is the one rule turning any exception raised while serving into
(status, wire name, message).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from typing import Any, ClassVar


class ChromaError(Exception):
    """Base class of every huedb error that maps to an HTTP status."""

    status: ClassVar[int] = 500
    wire_name: ClassVar[str] = "ChromaError"
    trace_id: str | None = None

    def code(self) -> int:
        """HTTP status code for this error (chromadb's method name)."""
        return self.status

    def message(self) -> str:
        """Human-readable message."""
        return ", ".join(str(a) for a in self.args)

    @classmethod
    def name(cls) -> str:
        """The wire name used in HTTP error bodies (chromadb's method name)."""
        return cls.wire_name


class InvalidDimensionException(ChromaError):
    status, wire_name = 400, "InvalidDimension"


class IDAlreadyExistsError(ChromaError):
    status, wire_name = 409, "IDAlreadyExists"


class DuplicateIDError(ChromaError):
    status, wire_name = 400, "DuplicateID"


class InvalidArgumentError(ChromaError):
    status, wire_name = 400, "InvalidArgumentError"
    shape_path: tuple[str, ...] | None = None  # set by `shape_error`


def serde_unexpected(value: Any) -> str:
    """How serde names a JSON value it did not expect, in `invalid type: <it>, expected ...`
    (`string "a\\"b"`, `integer `1``, `sequence`, `map`, `null`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    return "sequence" if isinstance(value, list) else "map"


def shape_error(message: str, path: tuple[str, ...] = ()) -> InvalidArgumentError:
    """A request value that does not fit Chroma's type for it (serde's refusal, e.g. an
    unknown configuration field), held at `path` (the fields that hold it). In-process an
    InvalidArgumentError with serde's message, as Chroma's embedded client raises; over HTTP
    Chroma's 422 "Failed to deserialize the JSON body into the target type: <path>:
    <message>" (`http_error`)."""
    error = InvalidArgumentError(message)
    error.shape_path = path
    return error


def shape_error_within(error: InvalidArgumentError, *outer: str) -> InvalidArgumentError:
    """`error` again, if it is a `shape_error`, its path starting with the fields `outer`."""
    if error.shape_path is None:
        return error
    return shape_error(str(error), (*outer, *error.shape_path))


class InvalidUUIDError(ChromaError):
    status, wire_name = 400, "InvalidUUID"


class InvalidHTTPVersion(ChromaError):
    status, wire_name = 400, "InvalidHTTPVersion"


class AuthorizationError(ChromaError):
    status, wire_name = 401, "AuthorizationError"


class ResetDisabledError(AuthorizationError):
    """`reset()` without `allow_reset`: AuthorizationError in-process, 403 on the wire."""

    status, wire_name = 403, "ChromaError"


class ChromaAuthError(ChromaError):
    status, wire_name = 403, "AuthError"


class NotFoundError(ChromaError):
    status, wire_name = 404, "NotFoundError"


class UniqueConstraintError(ChromaError):
    status, wire_name = 409, "UniqueConstraintError"


class BatchSizeExceededError(ChromaError):
    status, wire_name = 413, "BatchSizeExceededError"


class RateLimitError(ChromaError):
    status, wire_name = 429, "RateLimitError"


class QuotaError(ChromaError):
    status, wire_name = 400, "QuotaError"


class RequestLimitError(QuotaError):
    """A request asks for more than a per-request limit allows (docs/deploy.md, "Limits").

    422, as Chroma's own server answers an exceeded quota; the wire name makes chromadb's
    client raise `QuotaError`.
    """

    status = 422


class QueryTimeoutError(QuotaError):
    """An engine read held the engine longer than its time budget (`query_timeout`) and was
    stopped: its transaction rolled back, the engine lock released, nothing changed."""

    status = 422


class VersionMismatchError(ChromaError):
    wire_name = "VersionMismatchError"


class InternalError(ChromaError):
    wire_name = "InternalError"


class CollectionExistsError(InternalError):
    """A collection with that name exists (InternalError locally, 409 ChromaError on the wire)."""

    status, wire_name = 409, "ChromaError"


class CollectionRenameError(InternalError):
    """A rename onto a taken collection name. Chroma's server answers 500 `InternalError`;
    huedb keeps the name (so chromadb's client raises `InternalError` as against Chroma) with
    409, since the client, not the server, is at fault."""

    status = 409


class AlreadyExistsError(InternalError):
    """A tenant or database with that name exists (409 on the wire)."""

    status, wire_name = 409, "ChromaError"


class UnimplementedError(ChromaError):
    """An operation Chroma offers only in its distributed or hosted form."""

    status, wire_name = 501, "ChromaError"


class InvalidBodyError(ChromaError):
    """A request body that does not have the route's shape: 422 `ChromaError`, with
    Chroma's message `Failed to deserialize the JSON body into the target type: <path>: ...`."""

    status, wire_name = 422, "ChromaError"


class RequestTimeoutError(ChromaError):
    """The client did not send its request in time."""

    status, wire_name = 408, "ChromaError"


class PayloadTooLargeError(ChromaError):
    """A request body over the server's limit."""

    status, wire_name = 413, "ChromaError"


class StorageFullError(ChromaError):
    """The disk is full: reads still work, writes are refused until space returns."""

    status = 507


class StorageIOError(ChromaError):
    """The disk failed a write: nothing was applied; the caller may retry."""

    status = 503


class StorageUnavailableError(ChromaError):
    """The store's server (PostgreSQL) cannot be reached or is restarting: nothing of the
    call was applied; the caller may retry once it is back. chromadb's client raises
    `InternalError` for it (a server-side fault, not the request's)."""

    status, wire_name = 503, "InternalError"


class ClientClosedError(ChromaError):
    """A call on a client whose store was closed (`close()`, or the last client of the
    process sharing it closed): create a new client. Chroma has no error of its own for it
    (a stopped system fails with whatever its released parts raise); 503 on the wire, as a
    server worker's store closes only while it shuts down."""

    status, wire_name = 503, "ChromaError"


class FormatVersionError(ChromaError):
    """The store's format cannot be used now: written by a newer huedb, or older and held
    open by another process, so it cannot be migrated."""


class ConfigError(ValueError):
    """A configuration (settings, config file, flags, environment) is invalid."""


class BackupError(RuntimeError):
    """A backup or restore could not be made or verified."""


class UsageError(ValueError):
    """A command line is inconsistent (e.g. both --path and --url)."""


QUOTA_PREFIX = "Quota exceeded: "
DESERIALIZE_PREFIX = "Failed to deserialize the JSON body into the target type: "


def http_error(exc: BaseException) -> tuple[int, str, str]:
    """Status, Chroma error name and message for an exception raised while serving."""
    if isinstance(exc, QuotaError):
        # Chroma's quota messages start so, and its JS client maps a 422 to
        # ChromaQuotaExceededError only by that start.
        message = str(exc)
        if not message.startswith(QUOTA_PREFIX):
            message = QUOTA_PREFIX + message
        return exc.status, exc.wire_name, message
    if isinstance(exc, InvalidArgumentError) and exc.shape_path is not None:
        where = ".".join(exc.shape_path) + ": " if exc.shape_path else ""
        return 422, "ChromaError", f"{DESERIALIZE_PREFIX}{where}{exc}"
    if isinstance(exc, ChromaError):
        return exc.status, exc.wire_name, str(exc)
    if isinstance(exc, TypeError):
        return 422, "ChromaError", str(exc)
    if isinstance(exc, ValueError | OverflowError | IndexError):
        return 400, "InvalidArgumentError", str(exc)
    return 500, "InternalError", f"{type(exc).__name__}: {exc}"


EMPTY_BODY_REASON = "EOF while parsing a value at line 1 column 0"


def body_error(errors: Iterable[dict[str, Any]]) -> tuple[int, str, str]:
    """Status, Chroma error name and message for a request body pydantic refused (its error
    list): a 400 when the body is not JSON at all, as Chroma answers; else the 422 for a body
    that does not fit its model."""
    errors = list(errors)
    for error in errors:
        if error.get("type") == "missing" and tuple(error.get("loc", ())) == ("body",):
            # FastAPI's error for an empty body; serde's words, as the fast path gives them
            message = "Failed to parse the request body as JSON: " + EMPTY_BODY_REASON
            return 400, "InvalidArgumentError", message
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error") or error.get("msg")
            at = [p for p in error.get("loc", ()) if isinstance(p, int)]
            where = f" at position {at[0]}" if at else ""
            message = f"Failed to parse the request body as JSON: {reason}{where}"
            return 400, "InvalidArgumentError", message
    query = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("query",)]
    if query:  # Chroma's server (axum) refuses a query string with 400, serde's words
        name = ".".join(str(p) for p in query[0]["loc"][1:])
        return (
            400,
            "InvalidArgumentError",
            f"Failed to deserialize query string: {name}: " + (_query_reason(query[0])),
        )
    detail = "; ".join(f"{_body_path(e.get('loc', ()))}: {e.get('msg')}" for e in errors)
    return 422, "ChromaError", f"{DESERIALIZE_PREFIX}{detail}"


def _body_path(loc: Iterable[Any]) -> str:
    """A field's path as serde names it: from the body's root (`limit`, not `body.limit`)."""
    parts = list(loc)
    return ".".join(str(p) for p in (parts[1:] if parts[:1] == ["body"] else parts))


def _query_reason(error: dict[str, Any]) -> str:
    """Why a query-string parameter was refused, as Rust's integer parser and serde say it."""
    if error.get("type") == "missing":
        return f"missing field `{error['loc'][-1]}`"
    if error.get("type") == "int_parsing":
        text = str(error.get("input", ""))
        if not text:
            return "cannot parse integer from empty string"
        if text.isdigit():
            return "number too large to fit in target type"
        return "invalid digit found in string"
    if error.get("type") == "enum":  # serde's words for an unknown variant
        expected = re.findall(r"'([^']*)'", (error.get("ctx") or {}).get("expected", ""))
        variants = ", ".join(f"`{v}`" for v in expected)
        return f"unknown variant `{error.get('input')}`, expected one of {variants}"
    return str(error.get("msg"))


error_types: dict[str, type[ChromaError]] = {
    cls.wire_name: cls
    for cls in (
        InvalidDimensionException,
        InvalidArgumentError,
        IDAlreadyExistsError,
        DuplicateIDError,
        InvalidUUIDError,
        InvalidHTTPVersion,
        AuthorizationError,
        NotFoundError,
        BatchSizeExceededError,
        VersionMismatchError,
        RateLimitError,
        ChromaAuthError,
        UniqueConstraintError,
        QuotaError,
        InternalError,
        ChromaError,
    )
}


def errors_if_loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes `names` of `module` once this process has imported it, else
    none: nothing can raise them before, and a process need not import psycopg or httpx
    (~70 ms each) only to name their errors in an `except`."""
    loaded = sys.modules.get(module)
    return tuple(getattr(loaded, name) for name in names) if loaded is not None else ()
