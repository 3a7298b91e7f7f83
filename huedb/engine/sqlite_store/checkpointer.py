"""`WalCheckpointer`: folds a store's WAL into its database file on a thread of its own.

SQLite's own checkpoint runs inside the `COMMIT` that takes the WAL past
`wal_autocheckpoint` pages: that writer copies every frame into the database file and
syncs it before its call returns. Here a thread does it instead (`PASSIVE`: it never waits
for a lock and never blocks a reader or writer), once the
commits since the last changed `CHECKPOINT_ROWS` rows or `CHECKPOINT_AFTER_S` after the
first of them, at most once per `CHECKPOINT_GAP_S`, so commits arriving meanwhile share one
checkpoint and a page a run of batches rewrites (the tail pages of an index) is copied
once, not once per batch.
The engine's own connection keeps SQLite's checkpoint as a backstop at
`WAL_BACKSTOP_PAGES`, for when the thread falls behind; it is skipped when it meets the
thread's (neither waits), so under a stream of batches the WAL can pass it by a few.

Measured (500k x 384 rows added in batches of 1,000 with metadata and documents,
`synchronous=FULL`, two runs each): the whole ingest 16.2-16.4 -> 15.0-15.1 s; a batch near
100k rows 30.2-31.4 -> 28.1-29.1 ms, near 450k 43.1-45.0 -> 36.1-38.9 ms; commit p90 there
15.4-17.5 -> 7.5-8.4 ms and 28.5-30.8 -> 13.3-14.8 ms, p99 20-21 -> 17-18.5 ms and 36-43 ->
31-38 ms. Single-record adds: unchanged (p50 0.6 ms). Durability is unchanged: a commit is
durable once its WAL frames are synced, whoever copies them later.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKPOINT_GAP_S = 0.05  # at most one checkpoint per this long: later commits wait for the next
# A checkpoint is due once the commits since the last changed this many rows (a batch of
# 1,000 records changes ~6,000: records, vectors, digests, text, metadata, oplog), else
# CHECKPOINT_AFTER_S after the first of them: a trickle of small writes costs at most one
# checkpoint (two syncs) a second, not one per commit.
CHECKPOINT_ROWS = 1_000
CHECKPOINT_AFTER_S = 1.0
# The engine connection's `wal_autocheckpoint` (SQLite's default is 1,000 pages): reached
# only when the thread falls behind, e.g. both cores busy; 32 MiB of WAL at 8 KiB pages.
WAL_BACKSTOP_PAGES = 4_096
OPEN_TIMEOUT_S = 5.0


class WalCheckpointer:
    """Checkpoints one database file's WAL after commits, on a daemon thread started at the
    first commit noted."""

    def __init__(self, db_file: Path, sync: str) -> None:
        self._db_file = db_file
        self._sync = sync
        self._cond = threading.Condition()
        self._pending_rows = 0
        self._pending_since: float | None = None  # when the first unchecked commit was noted
        self._stopping = False
        self._thread: threading.Thread | None = None

    def committed(self, rows: int) -> None:
        """A transaction that changed `rows` rows was committed: checkpoint when due."""
        with self._cond:
            if self._stopping:
                return
            if self._thread is None and not self._start():
                return
            self._pending_rows += rows
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            self._cond.notify()

    def close(self) -> None:
        """Stop the thread (a checkpoint under way ends first); later commits start none."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _start(self) -> bool:
        """Start the thread (the caller holds the condition); False, leaving checkpoints to
        the writers' backstop, when the process cannot start one."""
        thread = threading.Thread(target=self._run, name="huedb-wal-checkpoint", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # e.g. the process's thread limit
            logger.warning("WAL checkpoints of %s stay in the writers: %s", self._db_file, exc)
            self._stopping = True
            return False
        self._thread = thread
        return True

    def _wait_until_due(self) -> bool:
        """Wait until a checkpoint is due (the caller holds the condition); False when
        stopping."""
        while not self._stopping:
            if self._pending_since is None:
                self._cond.wait()
                continue
            if self._pending_rows >= CHECKPOINT_ROWS:
                return True
            left = self._pending_since + CHECKPOINT_AFTER_S - time.monotonic()
            if left <= 0:
                return True
            self._cond.wait(left)
        return False

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(  # mode=rw: never creates a database the store lacks
                f"{Path(self._db_file).resolve().as_uri()}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=OPEN_TIMEOUT_S,
            )
        except sqlite3.Error as exc:
            logger.warning("WAL checkpoints of %s stay in the writers: %s", self._db_file, exc)
            return
        try:
            try:
                # The checkpoint syncs the database file unless the store runs unsynced.
                conn.execute(f"PRAGMA synchronous = {self._sync.upper()}")
            except sqlite3.Error as exc:  # the file went away or is not a database
                logger.warning("WAL checkpoints of %s stay in the writers: %s", self._db_file, exc)
                return
            while True:
                with self._cond:
                    if not self._wait_until_due():
                        return
                    self._pending_rows, self._pending_since = 0, None
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # e.g. the disk is full: the backstop remains
                    logger.warning("WAL checkpoint of %s failed: %s", self._db_file, exc)
                with self._cond:
                    if self._cond.wait_for(lambda: self._stopping, CHECKPOINT_GAP_S):
                        return
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
