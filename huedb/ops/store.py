"""Opening a data directory for one operation, and `huedb compact`.

Operations open a store the way every other entry point does: through the engine registry.
They join the engine this process already has open on the directory, whatever its options;
otherwise it is opened with the one settings chain's options (defaults < HUEDB_* environment).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from huedb.engine.engine import Engine
from huedb.engine.registry import acquire_engine, release_engine
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.errors import NotFoundError, UsageError


def require_store(data: Path) -> None:
    """Refuse a directory that holds no huedb store (a mistyped path must not create one)."""
    if not (Path(data) / DB_FILENAME).is_file():
        raise UsageError(f"{data} holds no huedb store ({DB_FILENAME} is missing); check --path")


@contextmanager
def open_store(data: Path) -> Iterator[Engine]:
    """The engine of the existing store in `data`, given back to the registry afterwards."""
    require_store(data)
    engine = acquire_engine(data)
    try:
        yield engine
    finally:
        release_engine(engine)


@dataclass
class CompactReport:
    """What compact did."""

    reclaimed_bytes: int
    rebuilt: list[str] = field(default_factory=list)


def compact(data: Path) -> CompactReport:
    """Rebuild graph indexes without their tombstones, then return free pages to the disk.

    A collection deleted while compact runs is skipped; the others are still compacted.
    """
    with open_store(data) as engine:
        rebuilt = []
        for col in engine.collections():
            try:
                if engine.compact_index(col.uuid):
                    rebuilt.append(col.name)
            except NotFoundError:
                continue  # deleted meanwhile: nothing left to compact
        return CompactReport(reclaimed_bytes=engine.reclaim_space(), rebuilt=rebuilt)
