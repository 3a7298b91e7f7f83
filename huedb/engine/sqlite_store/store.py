"""`SQLiteStore`: a huedb store in one SQLite file (or in memory), `engine.store.Store`.

One connection serves the engine (its lock serialises the calls), and a thread of the
store checkpoints the WAL after commits (`checkpointer`); a long read
(`snapshot_session`) and a copy (`copy_to`) open connections of their own, so the engine
keeps serving meanwhile (WAL). The data directory's shared lock is held while the store is
open (`connection.hold_directory`, which also migrates an older format first).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from huedb.engine.allowed_keys_cache import AllowedKeysCache
from huedb.engine.catalog import CollectionRow
from huedb.engine.filters import RecordFilter
from huedb.engine.sqlite_store import store_admin
from huedb.engine.sqlite_store.at_head import SessionRead
from huedb.engine.sqlite_store.checkpointer import WAL_BACKSTOP_PAGES, WalCheckpointer
from huedb.engine.sqlite_store.connection import (
    DB_FILENAME,
    hold_directory,
    open_connection,
    read_transaction,
    store_id,
    write_transaction,
)
from huedb.engine.sqlite_store.records import allowed_keys_query
from huedb.engine.sqlite_store.session import SQLiteSession
from huedb.engine.sqlite_store.warm_read import WarmRead
from huedb.engine.store import ReadAfterSearch, RowsAtHead
from huedb.errors import InvalidArgumentError
from huedb.options import EngineOptions


class SQLiteStore:
    """The SQLite store of a data directory, or a private one in memory (`path` None)."""

    kind = "sqlite"

    def __init__(self, path: Path | None, options: EngineOptions) -> None:
        self.path = path
        self._sync = options.sync
        self._dir_lock = None if path is None else hold_directory(path)
        try:
            self._conn = open_connection(path, self._sync)
        except BaseException:
            self._release_directory()
            raise
        self._checkpointer: WalCheckpointer | None = None
        if path is not None:
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES}")
            self._checkpointer = WalCheckpointer(path / DB_FILENAME, self._sync)
        self.store_id = store_id(self._conn)
        self._session = SQLiteSession(self._conn)
        self._warm = WarmRead()
        self._allowed_keys = AllowedKeysCache()
        self._writes = 0  # write transactions of this store, committed or not

    @contextlib.contextmanager
    def read(self) -> Iterator[SQLiteSession]:
        """A deferred transaction: one WAL snapshot for all its reads."""
        with read_transaction(self._conn):
            yield self._session

    @contextlib.contextmanager
    def write(self) -> Iterator[SQLiteSession]:
        """A `BEGIN IMMEDIATE` transaction (writers never deadlock on a lock upgrade); its WAL
        frames are copied into the database file later, on another thread (`checkpointer`)."""
        changes = self._conn.total_changes
        try:
            with write_transaction(self._conn):
                yield self._session
        finally:
            self._writes += 1  # (kept allowed keys: a change total_changes might not count)
        if self._checkpointer is not None:
            self._checkpointer.committed(self._conn.total_changes - changes)

    def rows_at_head(
        self,
        col: CollectionRow,
        keys: Sequence[int],
        probes: np.ndarray | None,
        with_vectors: bool,
        timeout: float,
    ) -> RowsAtHead:
        """The collection's row, oplog head and rows in one statement (warm_read.py)."""
        with self._session.time_budget(timeout):
            return self._warm.rows_at_head(self._conn, col, keys, probes, with_vectors)

    def confirm_at_head(
        self,
        col: CollectionRow,
        head: int,
        probes: np.ndarray | None,
        with_vectors: bool,
        timeout: float,
    ) -> contextlib.AbstractContextManager[ReadAfterSearch]:
        """`rows_at_head` after the search: in-process, there is no round trip to overlap."""
        return contextlib.nullcontext(ReadAfterSearch(self, col, probes, with_vectors, timeout))

    @contextlib.contextmanager
    def read_filtered(
        self, col: CollectionRow, flt: RecordFilter, head: int, timeout: float
    ) -> Iterator[SessionRead]:
        """Row, head, allowed keys and then rows in one read transaction (see Store); the
        keys of a filter read while nothing has written to the database since are kept
        (`_kept_allowed_keys`; in-process, so `head` is not needed)."""
        with self.read() as db, db.time_budget(timeout):
            yield SessionRead(db, col, flt, self._kept_allowed_keys)

    def _kept_allowed_keys(
        self, db: SQLiteSession, col: CollectionRow, flt: RecordFilter
    ) -> np.ndarray:
        """The keys `flt` allows in the open read, from `_allowed_keys` when that filter's
        were read at the database's present version (`allowed_keys_cache`: any commit of
        another connection moves `PRAGMA data_version`, read inside the transaction so as
        of its snapshot; any write of this one moves `total_changes` (a 32-bit count) and
        this store's count of write transactions)."""
        sql, params = allowed_keys_query(col.cid, flt)
        key = self._allowed_keys.key(col, sql, params)
        version = (
            self._conn.execute("PRAGMA data_version").fetchone()[0],
            self._conn.total_changes,
            self._writes,
        )
        kept = None if key is None else self._allowed_keys.get(key, col, version)
        if kept is not None:
            return kept
        keys = db.keys_selected(sql, params)
        if key is not None:
            self._allowed_keys.put(key, col, version, keys)
        return keys

    def snapshot_session(self) -> contextlib.AbstractContextManager[SQLiteSession] | None:
        """A read transaction on a connection of its own (None in memory).

        While it is open SQLite cannot checkpoint the WAL past it, so the WAL grows by what
        is written meanwhile.
        """
        return None if self.path is None else self._own_snapshot(self.path)

    @contextlib.contextmanager
    def _own_snapshot(self, path: Path) -> Iterator[SQLiteSession]:
        conn = open_connection(path, self._sync)
        try:
            with read_transaction(conn):
                yield SQLiteSession(conn)
        finally:
            conn.close()

    def copy_to(self, target: Path) -> None:
        """SQLite's VACUUM INTO, on a connection of its own."""
        if self.path is None:
            raise InvalidArgumentError("an in-memory store cannot be copied to a file")
        conn = open_connection(self.path, self._sync)
        try:
            conn.execute("VACUUM INTO ?", (str(target),))
        finally:
            conn.close()

    def integrity_problems(self) -> list[str]:
        with read_transaction(self._conn):
            return store_admin.integrity_problems(self._conn)

    def storage_figures(self) -> dict[str, Any]:
        return store_admin.storage_figures(self._conn)

    def free_pages(self) -> int:
        return store_admin.free_pages(self._conn, checkpoint=self.path is not None)

    def settings_in_force(self) -> dict[str, Any]:
        return {"sqlite_synchronous": store_admin.synchronous_level(self._conn)}

    def close(self) -> None:
        try:
            if self._checkpointer is not None:
                self._checkpointer.close()
        finally:
            try:
                self._conn.close()
            finally:
                self._release_directory()

    def _release_directory(self) -> None:
        if self._dir_lock is not None:
            os.close(self._dir_lock)
            self._dir_lock = None
