"""Store-wide SQL for maintenance on PostgreSQL: reset, sizes, integrity, VACUUM."""

from __future__ import annotations

from typing import Any

import psycopg

from huedb.engine.invariants import RECORD_INVARIANTS
from huedb.engine.postgres_store.base import SessionBase

# Every table that holds data.
DATA_TABLES = (
    "catalog_names",
    "records",
    "embeddings",
    "record_meta",
    "oplog",
    "index_holders",
    "collections",
    "databases",
    "tenants",
)

# huedb's own cross-table invariants, plus the per-collection oplog counter's.
INVARIANTS = {
    **RECORD_INVARIANTS,
    "oplog entries above their collection's counter": "SELECT count(*) FROM oplog o "
    "JOIN collections c ON c.cid = o.cid WHERE o.seq > c.log_seq",
}


def integrity_problems(conn: psycopg.Connection) -> list[str]:
    """huedb's invariants, as readable lines (PostgreSQL checks its own pages itself)."""
    problems = []
    for label, sql in INVARIANTS.items():
        n = conn.execute(sql).fetchone()[0]
        if n:
            problems.append(f"{n} {label}")
    return problems


def storage_figures(conn: psycopg.Connection) -> dict[str, Any]:
    """The database's size and the dead tuples VACUUM would make reusable (estimated)."""
    size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    dead = conn.execute(
        "SELECT coalesce(sum(n_dead_tup * pg_relation_size(relid) / "
        "greatest(n_live_tup + n_dead_tup, 1)), 0)::bigint FROM pg_stat_user_tables"
    ).fetchone()[0]
    return {"bytes": size, "reclaimable_bytes": dead}


def vacuum(conn: psycopg.Connection) -> int:
    """VACUUM (not FULL: no exclusive lock) the data tables; bytes of the database freed."""
    before = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    for table in DATA_TABLES:
        conn.execute(f"VACUUM {table}")
    after = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return max(0, before - after)


class AdminSQL(SessionBase):
    """The store-wide calls of a PostgreSQL session."""

    def delete_everything(self) -> None:
        # DELETE, not TRUNCATE: other processes' snapshots keep seeing the rows they read.
        for table in DATA_TABLES:
            self.run(f"DELETE FROM {table}")

    def collection_sizes(self, cid: int) -> tuple[int, int, int, int]:
        count, doc_bytes, meta_bytes = self.run(
            "SELECT count(*), coalesce(sum(octet_length(document)), 0), "
            "coalesce(sum(octet_length(metadata)), 0) FROM records WHERE cid = %s",
            (cid,),
        ).fetchone()
        oplog_rows = self.run("SELECT count(*) FROM oplog WHERE cid = %s", (cid,)).fetchone()[0]
        return count, int(doc_bytes), int(meta_bytes), oplog_rows
