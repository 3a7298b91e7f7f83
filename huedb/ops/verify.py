"""`huedb verify`: check the store's integrity and that every index agrees with it; repair."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from huedb.engine.engine import Engine, IndexCheck
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.errors import NotFoundError
from huedb.ops.progress import progress
from huedb.ops.store import open_store

logger = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    """What verify found and what repair did."""

    integrity_problems: list[str] = field(default_factory=list)
    indexes: list[IndexCheck] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)  # snapshots whose graphs were linked
    orphan_files: list[str] = field(default_factory=list)
    repaired_orphans: bool = False
    foreign_files: list[str] = field(default_factory=list)  # another store's: never removed

    @property
    def ok(self) -> bool:
        # Orphan index files (left by a delete killed after its commit) waste disk space but
        # cannot affect any answer: they are listed, and removed by --repair, not failures.
        return not self.integrity_problems and all(c.ok for c in self.indexes)

    def lines(self) -> list[str]:
        """A human-readable summary."""
        out = [f"store integrity: {'ok' if not self.integrity_problems else 'PROBLEMS'}"]
        out += [f"  {p}" for p in self.integrity_problems]
        for c in self.indexes:
            state = "ok" if c.ok else "MISMATCH" if not c.agrees else "SNAPSHOT UNUSABLE"
            out.append(
                f"collection {c.name} ({c.collection}): {c.records} records, {c.indexed} indexed, "
                f"snapshot {c.snapshot}: {state}"
            )
            if not c.agrees:
                out.append(
                    f"  missing {len(c.missing)}, extra {len(c.extra)}, "
                    f"wrong vectors {len(c.wrong_vectors)} (of a sample)"
                )
            if c.unreachable:
                out.append(
                    f"  {c.unreachable} records no graph search reaches (filtered and exact "
                    "searches still return them; --repair links them in)"
                )
        verb = "removed" if self.repaired_orphans else "found (harmless; --repair removes)"
        out += [f"{verb} orphan index file {name}" for name in self.orphan_files]
        out += [
            f"kept index file {name}: another store's snapshot (its header names another "
            "store; remove it by hand if no store shares this directory)"
            for name in self.foreign_files
        ]
        out += [f"repaired: rebuilt index of {name}" for name in self.repaired]
        out += [f"repaired: linked the graph of {name}'s snapshot" for name in self.linked]
        return out


def _check_orphans(engine: Engine, report: VerifyReport, repair: bool) -> None:
    """Index files of collections that no longer exist (left by a killed delete). Repaired
    by the engine, which removes only this store's files, under each collection's snapshot
    lock (never a running writer's, another store's sharing the directory, nor those of a
    collection created meanwhile)."""
    if repair:
        report.orphan_files = engine.remove_orphan_snapshots()
        report.repaired_orphans = bool(report.orphan_files)
        report.foreign_files = engine.orphan_files()[1]
        return
    report.orphan_files, report.foreign_files = engine.orphan_files()


def verify(
    data: Path | None,
    repair: bool = False,
    show_progress: bool | None = None,
    store: str | None = None,
) -> VerifyReport:
    """Check the store in `data` (or the PostgreSQL store of `store`, with this node's
    derived files in `data`, if given); with `repair`, rebuild every index that disagrees,
    and link in the records a snapshot's graph leaves unreachable.

    A SQLite database file too damaged to be read (truncated, overwritten, not a database)
    is a problem of the report, not an error: the check did its job and failed.
    """
    report = VerifyReport()
    try:
        _verify(data, repair, show_progress, store, report)
    except sqlite3.DatabaseError as exc:
        if not _damaged(exc):
            raise
        where = "the SQLite database" if data is None else str(data / DB_FILENAME)
        report.integrity_problems.append(f"{where} is damaged ({exc}); restore it from a backup")
    return report


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite refused a read because the file is corrupt or not a database."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _verify(
    data: Path | None,
    repair: bool,
    show_progress: bool | None,
    store: str | None,
    report: VerifyReport,
) -> None:
    """Fill `report`: integrity, each collection's index (rebuilt with `repair`), orphans."""
    with open_store(data, store) as engine:
        report.integrity_problems = engine.integrity_problems()
        cols = engine.collections()
        bar = progress(len(cols), "verify", unit="col", enabled=show_progress)
        for col in cols:
            try:
                check = engine.check_index(col.uuid)
                if not check.ok and repair:
                    why = f"its snapshot is {check.snapshot}"
                    if not check.agrees:
                        why = "it disagrees with the store"
                    logger.warning("rebuilding the index of %s: %s", col.name, why)
                    engine.rebuild_index(col.uuid)
                    report.repaired.append(col.name)
                    check = engine.check_index(col.uuid)
                elif check.unreachable and repair:
                    linked = engine.link_snapshot(col.uuid)  # None: another process writes it
                    if linked is not None and linked[0]:
                        report.linked.append(col.name)
                    check = engine.check_index(col.uuid)
            except NotFoundError:
                continue  # deleted meanwhile (by another process): nothing left to check
            finally:
                bar.update(1)
            report.indexes.append(check)
        bar.close()
        if data is not None:
            _check_orphans(engine, report, repair)
