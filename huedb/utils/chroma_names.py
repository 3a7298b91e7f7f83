"""Names of chromadb's ``utils`` modules that huedb does not implement (chromadb's other
embedding functions, its image loader), taken from chromadb when it is installed: they are
client-side classes, and huedb's clients take them as they are. huedb imports chromadb only
when such a name is asked for."""

from __future__ import annotations

import importlib
from typing import Any


def chromadb_name(module: str, name: str, asked_from: str, ships: str) -> Any:
    """`name` from chromadb's `module`; AttributeError (saying what huedb ships, and that
    chromadb has the rest) when chromadb is not installed or has no such name."""
    if name.startswith("__"):  # dunder probes (copy, pickle, doctest) are not names
        raise AttributeError(f"module {asked_from!r} has no attribute {name!r}")
    try:
        found = importlib.import_module(module)
    except ImportError:
        raise AttributeError(
            f"module {asked_from!r} has no attribute {name!r}: huedb ships {ships}; "
            f"chromadb's other names come from chromadb (pip install chromadb), and huedb "
            "takes them as they are"
        ) from None
    try:
        return getattr(found, name)
    except AttributeError:
        raise AttributeError(f"module {asked_from!r} has no attribute {name!r}") from None
