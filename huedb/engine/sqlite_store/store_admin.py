"""Store-wide SQL for maintenance: reset, integrity, sizes and free pages.

`AdminSQL` holds the calls of a session (inside its transaction); the functions take a
connection: the store's (the engine holds its lock around them) or a database file's at
rest (a backup being restored). Page-level pragmas run outside any transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from huedb.engine.invariants import RECORD_INVARIANTS

logger = logging.getLogger(__name__)

# Every table that holds data, in an order that deletes dependents first.
DATA_TABLES = (
    "aliases",
    "records",
    "embeddings",
    "record_meta",
    "documents_fts",
    "digests",
    "digests_recent",
    "oplog",
    "collections",
    "databases",
    "tenants",
)


def synchronous_level(conn: sqlite3.Connection) -> str:
    """SQLite's synchronous level as the connection reports it (off, normal, full, extra)."""
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    return ("off", "normal", "full", "extra")[level]


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """SQLite's integrity check plus huedb's own invariants, as readable lines."""
    result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    problems = [f"sqlite: {r}" for r in result] if result != ["ok"] else []
    for label, sql in RECORD_INVARIANTS.items():
        n = conn.execute(sql).fetchone()[0]
        if n:
            problems.append(f"{n} {label}")
    return problems


def storage_figures(conn: sqlite3.Connection) -> dict[str, Any]:
    """Database-level sizes: page size, bytes, and bytes in free pages."""
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return {"page_size": page, "bytes": page * pages, "reclaimable_bytes": page * free}


def free_pages(conn: sqlite3.Connection, checkpoint: bool) -> int:
    """Return free pages to the file system (outside a transaction); bytes reclaimed."""
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    before = conn.execute("PRAGMA freelist_count").fetchone()[0]
    # Through execute() the pragma frees one page per call (Python's sqlite3 steps it
    # once); sqlite3_exec (executescript) runs it to the end.
    conn.executescript("PRAGMA incremental_vacuum;")
    after = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if checkpoint and not truncate_wal(conn):
        logger.warning(
            "the WAL was not truncated: another connection kept checkpointing for %.0f s",
            TRUNCATE_WAL_TRIES_S,
        )
    return (before - after) * page


# How long `truncate_wal` tries while another connection is checkpointing.
TRUNCATE_WAL_TRIES_S = 10.0
TRUNCATE_WAL_PAUSE_S = 0.05


def truncate_wal(conn: sqlite3.Connection) -> bool:
    """Checkpoint the whole WAL into the database file and truncate it; True when done.

    SQLite waits (busy handler) for writers and readers but not for a checkpoint under way
    in another connection (a checkpointer thread, another process): the pragma then
    answers busy at once and leaves the WAL as it was, so it is tried again for a while.
    """
    deadline = time.monotonic() + TRUNCATE_WAL_TRIES_S
    while True:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(TRUNCATE_WAL_PAUSE_S)


class AdminSQL:
    """The store-wide calls of a SQLite session."""

    _conn: sqlite3.Connection

    def delete_everything(self) -> None:
        for table in DATA_TABLES:
            self._conn.execute(f"DELETE FROM {table}")

    def collection_sizes(self, cid: int) -> tuple[int, int, int, int]:
        count, doc_bytes, meta_bytes = self._conn.execute(
            "SELECT count(*), coalesce(sum(length(document)), 0), "
            "coalesce(sum(length(metadata)), 0) FROM records WHERE cid = ?",
            (cid,),
        ).fetchone()
        oplog_rows = self._conn.execute(
            "SELECT count(*) FROM oplog WHERE cid = ?", (cid,)
        ).fetchone()[0]
        return count, doc_bytes, meta_bytes, oplog_rows
