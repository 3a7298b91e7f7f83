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


@contextmanager
def open_store(data: Path) -> Iterator[Engine]:
    """The engine of the store in `data`, given back to the registry afterwards."""
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
    """Rebuild graph indexes without their tombstones, then return free pages to the disk."""
    with open_store(data) as engine:
        rebuilt = [c.name for c in engine.collections() if engine.compact_index(c.uuid)]
        return CompactReport(reclaimed_bytes=engine.reclaim_space(), rebuilt=rebuilt)
