"""A whole Chroma directory, read as one snapshot and checked before anything is written.

`ChromaDirectory` holds one `ChromaSqlite` (one read transaction, on a recovered copy when the
file needs recovery) for the whole run. `check` reads the catalog (tenants, databases,
collections), runs SQLite's `quick_check` and opens every collection's HNSW files, noting
their state; `reader` then reads a collection from the same snapshot and refuses HNSW files
that changed since (SourceChangedError: a Chroma process is writing to the directory).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from huedb.ops.chroma_dir.hnswlib_file import FileState, HnswSegment
from huedb.ops.chroma_dir.records import CollectionReader, vector_folder
from huedb.ops.chroma_dir.sqlite_reader import (
    MIB,
    SQLITE_FILE,
    ChromaCollection,
    ChromaSqlite,
    SourceChangedError,
)

logger = logging.getLogger(__name__)


class ChromaDirectory:
    """A Chroma directory opened for one migration (a context manager)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = ChromaSqlite(self.path)
        self.collections: list[ChromaCollection] = []
        self.tenants: list[str] = []
        self.databases: list[tuple[str, str]] = []
        self._states: dict[str, FileState] = {}

    def close(self) -> None:
        """End the read transaction (and remove a recovered copy)."""
        self.db.close()

    def __enter__(self) -> ChromaDirectory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def check(self) -> None:
        """Read the catalog and check what can be checked without reading every record:
        SQLite's `quick_check` and every collection's HNSW files (ValueError naming the
        source collection)."""
        size = (self.path / SQLITE_FILE).stat().st_size
        logger.info("checking %s (%s: %.1f MiB)", self.path, SQLITE_FILE, size / MIB)
        self.db.check_integrity()
        self.tenants = self.db.tenants()
        self.databases = self.db.databases()
        self.collections = self.db.collections()
        for collection in self.collections:
            try:
                segment = HnswSegment(
                    vector_folder(self.path, collection), collection.space == "cosine"
                )
            except SourceChangedError:
                raise
            except ValueError as exc:
                raise ValueError(f"{describe(collection)}: {exc}") from exc
            self._states[collection.id] = segment.state

    def reader(self, collection: ChromaCollection) -> CollectionReader:
        """A reader of one checked collection, in the snapshot `check` read."""
        return CollectionReader(self.db, self.path, collection, self._states.get(collection.id))


def describe(collection: ChromaCollection) -> str:
    """How messages name a source collection."""
    return (
        f"source collection {collection.name!r} of tenant {collection.tenant!r}, "
        f"database {collection.database!r}"
    )
