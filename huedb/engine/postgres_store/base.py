"""What every part of a PostgreSQL session shares: its connection, mode and deadline."""

from __future__ import annotations

from typing import Any

import psycopg

from huedb.engine.budget import Deadline
from huedb.engine.postgres_store.row_cache import WrittenRows


class SessionBase:
    """One transaction's connection; `run` executes a statement under the session's
    deadline (checked before each statement; `time_budget` bounds each statement)."""

    def __init__(self, conn: psycopg.Connection, writable: bool, read_timeout: float = 0) -> None:
        self._conn = conn
        self._writable = writable
        self.read_timeout = read_timeout  # statement_timeout (s) a read session began with
        self._deadline: Deadline | None = None
        # Oplog heads read with collection rows in this (read-only, REPEATABLE READ) snapshot.
        self._heads: dict[int, int] = {}
        self.inserted = 0  # records this session inserted (statistics.py)
        # A write session's heads read with locked collection rows, and what it did to each
        # collection's record rows: the store's row cache learns it after the commit.
        self._locked_heads: dict[int, int] = {}
        self.written: dict[int, WrittenRows] = {}

    def run(self, sql: str, params: Any = None, binary: bool = False) -> psycopg.Cursor:
        """Execute one statement (after checking the deadline) and return its cursor;
        `binary` results for vectors (raw bytes, not hex text twice their size to decode)."""
        if self._deadline is not None:
            self._deadline.check()
        return self._conn.execute(sql, params, binary=binary)

    def _written(self, cid: int) -> WrittenRows:
        """This transaction's changes to collection `cid`'s rows, for the row cache."""
        write = self.written.get(cid)
        if write is None:
            write = self.written[cid] = WrittenRows(self._locked_heads.get(cid))
        return write

    def settle_written(self) -> None:
        """Before the commit: the heads of collections whose record rows were updated
        (the trigger moved them past what the oplog entries counted), read under the row
        lock the transaction holds, so the row cache knows them exactly."""
        settling = [cid for cid, write in self.written.items() if write.updated]
        if not settling:
            return
        rows = self.run(
            "SELECT cid, log_seq FROM collections WHERE cid = ANY(%s::bigint[])", (settling,)
        ).fetchall()
        for cid, head in rows:
            self.written[cid].head_after = head

    def check_deadline(self) -> None:
        """For Python loops over rows: QueryTimeoutError once the budget is spent."""
        if self._deadline is not None:
            self._deadline.check()
