"""Planner statistics and visibility of the record tables, refreshed after bulk inserts.

Autovacuum analyses and vacuums a table a minute or more after it grew; until then:
- the planner has no statistics of a fresh bulk load and chose nested loops over whole
  collections (a 1 % filtered query: 42 ms instead of 1.4 ms at 30k records). So once the
  tables changed by half since their last analysis (and by at least ANALYZE_AFTER_ROWS
  rows), huedb runs ANALYZE itself;
- the new rows' pages are not marked all-visible, so a metadata filter cannot use its
  covering index alone (a bitmap scan visits a heap page per matching record: the keys of
  a 1 % filter at 100k took 0.45 ms instead of 0.18 ms), and new documents wait in the
  trigram index's pending list, which every `$contains` reads through. So once
  VACUUM_AFTER_ROWS records were inserted since the last vacuum, huedb runs VACUUM on
  `records` and `record_meta` (not `embeddings`, which is only read by key). A vacuum
  visits only pages not yet all-visible: ~35 ms per 100k records here.
Both run after a write committed, on a thread of their own (the write's call returns at
once, and on a machine with a spare core the refresh runs beside the next writes), on a
connection outside any transaction: ANALYZE and VACUUM take SHARE UPDATE EXCLUSIVE on the
tables, which inside a write would be held until its commit and serialise writers of every
collection (and VACUUM cannot run in a transaction at all). Each process looks at
`pg_stat_user_tables` at most once per CHECK_EVERY_ROWS rows it inserted, and a session
advisory lock lets only one process refresh at a time. Those counters lag: a backend
publishes its own at most once a second, and one that goes idle within that second only
after PostgreSQL's idle interval (10 s). So a check that inserts prompted and that found
ANALYZE or VACUUM not due runs once more RECHECK_AFTER_S later (unless inserts prompted
another first): a bulk load followed by silence was otherwise never analysed when its last
check saw the counters of only a few batches.
The refresh never holds anything up: it waits on its own thread when a table lock another
session holds delays it (a DBA's VACUUM or CREATE INDEX CONCURRENTLY), `close` cancels a
statement under way (it waited as long as the other session's lock), and a process that
cannot start the thread leaves the refresh to autovacuum.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from huedb.engine.postgres_store.connection import ADVISORY_CLASS, STATISTICS_LOCK

logger = logging.getLogger(__name__)

ANALYZE_AFTER_ROWS = 10_000
ANALYZE_GROWTH = 0.5
VACUUM_AFTER_ROWS = 5_000
CHECK_EVERY_ROWS = 5_000
RECHECK_AFTER_S = 11.0  # past PostgreSQL's idle flush of table counters (10 s)

_COUNTERS = (
    "SELECT s.n_mod_since_analyze, s.n_ins_since_vacuum, greatest(c.reltuples, 0) "
    "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.relid = 'records'::regclass"
)


class StatisticsRefresher:
    """Counts the rows a store inserted and refreshes statistics and visibility when due,
    on a thread of its own (started by the first check, ended by `close`)."""

    def __init__(self, pool: ConnectionPool, check_every: int = CHECK_EVERY_ROWS) -> None:
        self._pool = pool
        self._check_every = check_every
        self._pending = 0
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._busy: psycopg.Connection | None = None  # the connection of a refresh under way

    def inserted(self, rows: int) -> None:
        """Note `rows` committed inserts; a check (and ANALYZE / VACUUM if due) follows on
        the refresher's thread."""
        if rows <= 0:
            return
        with self._lock:
            self._pending += rows
            if self._pending < self._check_every or self._closing:
                return
            self._pending = 0
            if self._thread is None and not self._start():
                return
        self._wanted.set()

    def _start(self) -> bool:
        """Start the thread (the caller holds the lock); False, leaving the refresh to
        autovacuum, when the process cannot start one (its thread limit)."""
        thread = threading.Thread(target=self._run, name="huedb-pg-statistics", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:
            logger.warning("record table statistics are left to autovacuum: %s", exc)
            self._closing = True
            return False
        self._thread = thread
        return True

    def close(self) -> None:
        """Stop the thread, cancelling the refresh statement it may be running."""
        with self._lock:
            self._closing = True
            thread, busy = self._thread, self._busy
        self._wanted.set()
        if busy is not None:
            try:
                busy.cancel_safe()
            except psycopg.Error as exc:  # the statement ends by itself then
                logger.info("could not cancel the statistics refresh: %s", exc)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        recheck = False
        while True:
            prompted = self._wanted.wait(RECHECK_AFTER_S if recheck else None)
            self._wanted.clear()
            if self._closing:
                return
            try:
                settled = self._refresh_if_due()
                recheck = prompted and not settled  # one second look, not a loop
            except errors.QueryCanceled:
                if self._closing:
                    return
                recheck = False
                logger.warning("the statistics refresh was cancelled", exc_info=True)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                recheck = False  # PostgreSQL went away: the connection layer reports it
                logger.warning("could not refresh the record tables' statistics: %s", exc)
            except Exception:
                recheck = False
                logger.warning("could not refresh the record tables' statistics", exc_info=True)

    def _refresh_if_due(self) -> bool:
        """ANALYZE and VACUUM what the counters say is due. False when either was not due
        (the counters may lag behind the inserts), True when both ran, another process is
        refreshing or the table is gone."""
        lock = (ADVISORY_CLASS, STATISTICS_LOCK)
        with self._pool.connection() as conn:  # autocommit: no transaction around VACUUM
            locked = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", lock).fetchone()
            if not (locked and locked[0]):  # another process is refreshing
                return True
            with self._lock:
                if self._closing:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
                    return True
                self._busy = conn
            try:
                row = conn.execute(_COUNTERS).fetchone()
                if row is None:
                    return True
                changed, inserted, rows = row
                analyse = changed >= max(ANALYZE_AFTER_ROWS, ANALYZE_GROWTH * rows)
                vacuum = inserted >= VACUUM_AFTER_ROWS
                if analyse:
                    conn.execute("ANALYZE records, embeddings, record_meta")
                if vacuum:
                    conn.execute("VACUUM records, record_meta")
                return analyse and vacuum
            finally:
                with self._lock:
                    self._busy = None
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
