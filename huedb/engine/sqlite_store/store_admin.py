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
from huedb.engine.sqlite_store.connection import write_transaction
from huedb.engine.sqlite_store.schema import DIGEST_TABLES

logger = logging.getLogger(__name__)

# Every table that holds data, in an order that deletes dependents first.
DATA_TABLES = (
    "aliases",
    "records",
    "embeddings",
    "record_meta",
    "documents_fts",
    *DIGEST_TABLES,
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
    """Merge the document index (`merge_document_index`), return free pages to the file
    system and, with `checkpoint`, truncate the WAL (outside a transaction); bytes the
    database shrank by."""
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    before = conn.execute("PRAGMA page_count").fetchone()[0]
    merge_document_index(conn)
    # Through execute() the pragma frees one page per call (Python's sqlite3 steps it
    # once); sqlite3_exec (executescript) runs it to the end.
    conn.executescript("PRAGMA incremental_vacuum;")
    after = conn.execute("PRAGMA page_count").fetchone()[0]
    if checkpoint and (kept_by := truncate_wal(conn)) is not None:
        logger.warning(
            "the WAL was not truncated: %s for %.0f s; its space returns at a later checkpoint",
            kept_by,
            TRUNCATE_WAL_TRIES_S,
        )
    return max(0, before - after) * page


# Pages of the document index (FTS5 pages, ~4 KB) one merge step writes, in a write
# transaction of its own: 500 took up to 0.12 s at 40k documents of 160 characters.
MERGE_STEP_PAGES = 500


def merge_document_index(conn: sqlite3.Connection) -> None:
    """Merge the segments of the document index into one, dropping the entries of deleted
    rows: an FTS5 delete only adds markers (`prune_leftovers` made the index larger), a
    merge into one segment writes what is left. Done in steps of `MERGE_STEP_PAGES`, each
    in a write transaction of its own, so writers wait at most one step (FTS5 'optimize'
    would merge everything in one transaction). At 40k documents with 40 % deleted the
    file shrank by 10.8 MiB where the prune alone grew it by 2.3 (8 steps, 1.1 s)."""
    # Merging everything writes about the index's pages once; the bound ends the steps
    # should writes meanwhile keep adding segments.
    pages = conn.execute("SELECT count(*) FROM documents_fts_data").fetchone()[0]
    steps = 0
    while steps <= pages // MERGE_STEP_PAGES + 2:
        with write_transaction(conn):
            changes = conn.total_changes
            # A negative step merges segments of every level, down to a single one.
            conn.execute(
                "INSERT INTO documents_fts (documents_fts, rank) VALUES ('merge', ?)",
                (-MERGE_STEP_PAGES,),
            )
            merged = conn.total_changes - changes >= 2  # FTS5: fewer means nothing to merge
        steps += 1
        if not merged:
            break
    logger.debug("merged the document index in %d steps", steps)


# How long `truncate_wal` tries while other connections keep the WAL in use; how long one
# try may wait for them (SQLite's busy handler: a TRUNCATE checkpoint waits for readers
# while it holds the writer lock, so writers wait as long); and the pause between tries,
# longer than the busy handler's longest sleep (100 ms), so a waiting writer gets its turn.
TRUNCATE_WAL_TRIES_S = 10.0
TRUNCATE_WAL_TRY_MS = 50
TRUNCATE_WAL_PAUSE_S = 0.25


def truncate_wal(conn: sqlite3.Connection) -> str | None:
    """Checkpoint the whole WAL into the database file and truncate it; None when done,
    else what kept it from being truncated.

    Each try waits at most `TRUNCATE_WAL_TRY_MS` for readers and writers (the connection's
    busy timeout is restored afterwards): writers are held up for no longer than that,
    however long a reader keeps its transaction open (an export, a backup: the 120 s busy
    timeout held every writer for 119 s). SQLite answers busy at once while a checkpoint is
    under way in another connection (the store's checkpointer thread, another process).
    Either way the truncate is tried again for `TRUNCATE_WAL_TRIES_S`.
    """
    busy_timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    deadline = time.monotonic() + TRUNCATE_WAL_TRIES_S
    conn.execute(f"PRAGMA busy_timeout = {TRUNCATE_WAL_TRY_MS}")
    try:
        while True:
            busy, log_frames, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return None
            if time.monotonic() >= deadline:
                # -1: the checkpoint could not start (another connection's was running).
                if log_frames == -1:
                    return "another connection kept checkpointing"
                return "readers kept the WAL in use"
            time.sleep(TRUNCATE_WAL_PAUSE_S)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout}")


class AdminSQL:
    """The store-wide calls of a SQLite session."""

    _conn: sqlite3.Connection

    def delete_everything(self) -> None:
        for table in DATA_TABLES:
            self._conn.execute(f"DELETE FROM {table}")

    def collection_sizes(self, cid: int) -> tuple[int, int, int, int]:
        count, doc_bytes, meta_bytes = self._conn.execute(
            "SELECT count(*), coalesce(sum(length(CAST(document AS BLOB))), 0), "
            "coalesce(sum(length(CAST(metadata AS BLOB))), 0) FROM records WHERE cid = ?",
            (cid,),
        ).fetchone()
        oplog_rows = self._conn.execute(
            "SELECT count(*) FROM oplog WHERE cid = ?", (cid,)
        ).fetchone()[0]
        return count, doc_bytes, meta_bytes, oplog_rows
