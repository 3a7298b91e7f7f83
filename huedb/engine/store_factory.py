"""Opening the store an engine runs on."""

from __future__ import annotations

from pathlib import Path

from huedb.engine.sqlite_store.store import SQLiteStore
from huedb.engine.store import Store
from huedb.options import EngineOptions


def open_store(path: Path | None, options: EngineOptions) -> Store:
    """The SQLite store of the data directory `path` (None: a private one in memory)."""
    return SQLiteStore(path, options)
