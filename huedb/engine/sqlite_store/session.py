"""`SQLiteSession`: the calls of one SQLite transaction (`engine.store.StoreSession`)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from huedb.engine.budget import Deadline
from huedb.engine.sqlite_store.catalog import CatalogSQL
from huedb.engine.sqlite_store.records import RecordsSQL
from huedb.engine.sqlite_store.store_admin import AdminSQL

# SQLite virtual-machine steps between two looks at the clock (~0.1 ms of work).
PROGRESS_STEPS = 10_000


class SQLiteSession(CatalogSQL, RecordsSQL, AdminSQL):
    """Store calls on one connection, inside the transaction its store opened."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @contextlib.contextmanager
    def time_budget(self, seconds: float) -> Iterator[Deadline]:
        """Run a block under a deadline of `seconds` (0: none).

        A progress handler interrupts an SQLite statement running past the deadline; the
        block's exception becomes QueryTimeoutError. Used inside the transaction's block,
        so the handler is gone before the transaction ends.
        """
        deadline = Deadline(seconds)
        if seconds <= 0:
            yield deadline
            return
        conn = self._conn
        conn.set_progress_handler(lambda: 1 if deadline.expired() else 0, PROGRESS_STEPS)
        try:
            with deadline.running():  # per-row functions (regex) look at it between rows
                yield deadline
        except sqlite3.OperationalError as exc:
            stopped = "interrupted" in str(exc) or "user-defined function raised" in str(exc)
            if stopped and deadline.expired():
                raise deadline.error() from exc
            raise
        finally:
            conn.set_progress_handler(None, 0)
