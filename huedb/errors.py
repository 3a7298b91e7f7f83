"""Exception classes with chromadb's names, so `except chromadb.errors.X` code ports unchanged."""

from __future__ import annotations


class ChromaError(Exception):
    """Base class of every huedb error that maps to an HTTP status."""

    trace_id: str | None = None

    def code(self) -> int:
        """HTTP status code for this error."""
        return 500

    def message(self) -> str:
        """Human-readable message."""
        return ", ".join(str(a) for a in self.args)

    @classmethod
    def name(cls) -> str:
        """The wire name used in HTTP error bodies."""
        return "ChromaError"


class InvalidDimensionException(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "InvalidDimension"

    def code(self) -> int:
        return 400


class IDAlreadyExistsError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "IDAlreadyExists"

    def code(self) -> int:
        return 409


class DuplicateIDError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "DuplicateID"

    def code(self) -> int:
        return 400


class InvalidArgumentError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "InvalidArgumentError"

    def code(self) -> int:
        return 400


class InvalidUUIDError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "InvalidUUID"

    def code(self) -> int:
        return 400


class InvalidHTTPVersion(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "InvalidHTTPVersion"

    def code(self) -> int:
        return 400


class AuthorizationError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "AuthorizationError"

    def code(self) -> int:
        return 401


class ChromaAuthError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "AuthError"

    def code(self) -> int:
        return 403


class NotFoundError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "NotFoundError"

    def code(self) -> int:
        return 404


class UniqueConstraintError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "UniqueConstraintError"

    def code(self) -> int:
        return 409


class BatchSizeExceededError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "BatchSizeExceededError"

    def code(self) -> int:
        return 413


class RateLimitError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "RateLimitError"

    def code(self) -> int:
        return 429


class QuotaError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "QuotaError"

    def code(self) -> int:
        return 400


class VersionMismatchError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "VersionMismatchError"


class InternalError(ChromaError):
    @classmethod
    def name(cls) -> str:
        return "InternalError"


class StorageFullError(ChromaError):
    """The disk is full: reads still work, writes are refused until space returns."""

    @classmethod
    def name(cls) -> str:
        return "ChromaError"

    def code(self) -> int:
        return 507


class StorageIOError(ChromaError):
    """The disk failed a write: nothing was applied; the caller may retry."""

    @classmethod
    def name(cls) -> str:
        return "ChromaError"

    def code(self) -> int:
        return 503


class FormatVersionError(ChromaError):
    """The data directory was written by a newer huedb format than this one can read."""

    @classmethod
    def name(cls) -> str:
        return "ChromaError"


error_types: dict[str, type[ChromaError]] = {
    cls.name(): cls
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
