"""huedb's errors as chromadb's own exception classes, so chromadb callers catch them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import chromadb.errors as chroma_errors

from huedb.errors import ChromaError


def chroma_error_class(exc: ChromaError) -> type[chroma_errors.ChromaError] | None:
    """chromadb's class for a huedb error: the nearest class in its MRO chromadb also has.

    huedb's classes carry chromadb's names, and where chromadb's local mode raises a
    parent class (a duplicate collection is an `InternalError`) huedb subclasses it.
    """
    for cls in type(exc).__mro__:
        if cls is ChromaError or not issubclass(cls, ChromaError):
            break
        candidate = getattr(chroma_errors, cls.__name__, None)
        if isinstance(candidate, type) and issubclass(candidate, chroma_errors.ChromaError):
            return candidate
    return None


@contextmanager
def as_chroma_errors() -> Iterator[None]:
    """Re-raise huedb errors raised inside as the matching chromadb error (same message)."""
    try:
        yield
    except ChromaError as exc:
        cls = chroma_error_class(exc)
        if cls is None:
            raise
        raise cls(str(exc)) from exc
