"""`PostgresStore`: a huedb store in a PostgreSQL database (`engine.store.Store`).

Selected by a `postgresql://` URL. Each session takes a connection from the pool for its
transaction (`connection.py`: read = REPEATABLE READ READ ONLY, write = READ COMMITTED
with collection row locks); a snapshot session and a copy run on connections of their own,
so the engine keeps serving meanwhile; unfiltered queries on a warm index are confirmed by
one statement on a second pool (`rows_at_head.WarmReads`). Many processes (huedb nodes)
may open one database: writers of a collection are serialised by its row lock, and the
oplog lets each process's indexes catch up without skipping a change (`oplog.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from huedb.engine.allowed_keys_cache import AllowedKeysCache
from huedb.engine.catalog import CollectionRow
from huedb.engine.filters import RecordFilter
from huedb.engine.postgres_store import admin, rows_at_head, sqlite_copy
from huedb.engine.postgres_store.connection import (
    PoolSettings,
    open_pool,
    storage_errors,
    transaction,
)
from huedb.engine.postgres_store.row_cache import RowCache
from huedb.engine.postgres_store.schema import ensure_schema
from huedb.engine.postgres_store.session import PgSession
from huedb.engine.postgres_store.statistics import StatisticsRefresher
from huedb.engine.store import RowsAtHead
from huedb.options import EngineOptions


class PostgresStore:
    """The huedb store in the PostgreSQL database at `url`, created there if missing."""

    kind = "postgresql"

    def __init__(self, url: str, options: EngineOptions, pool: PoolSettings | None = None) -> None:
        self.url = url
        self.options = options
        settings = pool or PoolSettings()
        self._write_idle_timeout = settings.write_idle_timeout
        self._pool = open_pool(url, settings)
        self._statistics = StatisticsRefresher(self._pool)
        try:
            with storage_errors(), self._pool.connection() as conn:
                self.store_id = ensure_schema(conn)
            self._row_cache = RowCache(options.pg_row_cache)
            self._warm = rows_at_head.WarmReads(
                url, settings, options.query_timeout, self._row_cache
            )
            self._allowed_keys = AllowedKeysCache()
        except BaseException:
            self._pool.close()
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[PgSession]:
        """A REPEATABLE READ READ ONLY transaction: one snapshot for all its reads. With a
        `query_timeout`, its `SET LOCAL statement_timeout` goes with the BEGIN (one round
        trip), so `time_budget(query_timeout)` inside costs no statement."""
        timeout = self.options.query_timeout
        with transaction(self._pool, "REPEATABLE READ", True, timeout) as conn:
            yield PgSession(conn, writable=False, read_timeout=timeout)

    @contextlib.contextmanager
    def write(self) -> Iterator[PgSession]:
        """A READ COMMITTED transaction whose reads of a collection lock its row (given back
        by PostgreSQL if the node stops inside it: `PoolSettings.write_idle_timeout`); after
        it committed, the record tables' statistics are refreshed if due, in the background
        (statistics.py)."""
        idle = self._write_idle_timeout
        with transaction(self._pool, "READ COMMITTED", False, idle_timeout=idle) as conn:
            session = PgSession(conn, writable=True)
            yield session
            session.settle_written()
        for cid, written in session.written.items():  # committed: what this node keeps
            self._row_cache.written(cid, written)
        self._statistics.inserted(session.inserted)  # committed: outside its locks

    def rows_at_head(
        self,
        col: CollectionRow,
        keys: Sequence[int],
        probes: np.ndarray | None,
        with_vectors: bool,
        timeout: float,
    ) -> RowsAtHead:
        """The collection's row, oplog head and rows in one statement (rows_at_head.py)."""
        return self._warm.rows_at_head(col, keys, probes, with_vectors, timeout)

    def confirm_at_head(
        self,
        col: CollectionRow,
        head: int,
        probes: np.ndarray | None,
        with_vectors: bool,
        timeout: float,
    ) -> contextlib.AbstractContextManager[rows_at_head.Confirmation]:
        """`rows_at_head` in two halves around the search: the confirming statement is
        sent before it when this node keeps the rows (rows_at_head.py, row_cache.py)."""
        return self._warm.confirm_at_head(col, head, probes, with_vectors, timeout)

    def read_filtered(
        self, col: CollectionRow, flt: RecordFilter, head: int, timeout: float
    ) -> contextlib.AbstractContextManager[
        rows_at_head.PgFilteredRead | rows_at_head.KeptKeysRead | None
    ]:
        """Row, head and allowed keys, then rows: two round trips; one when the filter's
        keys at `head` are kept (rows_at_head.py)."""
        return rows_at_head.read_filtered(
            self._pool, self._warm, self._allowed_keys, col, flt, head, timeout
        )

    def snapshot_session(self) -> contextlib.AbstractContextManager[PgSession]:
        """A read session on a pooled connection of its own (the engine lock is not needed)."""
        return self.read()

    def copy_to(self, target: Path) -> None:
        """Write one REPEATABLE READ snapshot of the whole store to `target` as a SQLite
        database in the SQLite store's format (the backup format)."""
        with transaction(self._pool, "REPEATABLE READ", read_only=True) as conn:
            sqlite_copy.copy_to_sqlite(conn, target)

    def load_from_sqlite(self, source: Path) -> None:
        """Load a SQLite store file (a backup's copy) into this store, which must be empty
        (`huedb restore` into PostgreSQL); one transaction: all of it or nothing."""
        with transaction(self._pool, "READ COMMITTED", read_only=False) as conn:
            sqlite_copy.load_sqlite(conn, source)

    def integrity_problems(self) -> list[str]:
        with transaction(self._pool, "REPEATABLE READ", read_only=True) as conn:
            return admin.integrity_problems(conn)

    def storage_figures(self) -> dict[str, Any]:
        with transaction(self._pool, "READ COMMITTED", read_only=True) as conn:
            return admin.storage_figures(conn)

    def free_pages(self) -> int:
        """VACUUM the tables (outside a transaction); bytes the database shrank by."""
        with storage_errors(), self._pool.connection() as conn:
            return admin.vacuum(conn)

    def settings_in_force(self) -> dict[str, Any]:
        """PostgreSQL settings that decide durability and isolation, as the server reports."""
        with transaction(self._pool, "READ COMMITTED", read_only=True) as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('synchronous_commit', 'fsync', 'server_version', 'statement_timeout')"
            ).fetchall()
        return {f"postgresql_{name}": value for name, value in rows}

    def close(self) -> None:
        try:
            self._statistics.close()
            self._warm.close()
        finally:
            self._pool.close()
