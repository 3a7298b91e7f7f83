"""The store's WAL is folded into the database file by a thread of its own, once the commits
since its last checkpoint changed 1,000 rows or a second after the first of them
(`huedb/engine/sqlite_store/checkpointer.py`), not inside a writer's COMMIT.

The database file is read with SQLite's `immutable=1`, which ignores the WAL: what it shows
is what a checkpoint has copied there."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb.engine.sqlite_store.checkpointer import WAL_BACKSTOP_PAGES, WalCheckpointer
from huedb.engine.sqlite_store.connection import DB_FILENAME

THREAD_NAME = "huedb-wal-checkpoint"
PAGE_BYTES = 8_192
FRAME_BYTES = 24 + PAGE_BYTES


def _records_in_database_file(path: Path) -> int | None:
    """The records the database file holds, without its WAL; None when the read met a
    checkpoint writing the file (`immutable` reads take no lock)."""
    conn = sqlite3.connect(f"file:{path / DB_FILENAME}?immutable=1", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM records").fetchone()[0]
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()


def _checkpoint_thread(client: huedb.Client) -> threading.Thread | None:
    """The thread of this client's store (other tests' stores may be open in this process)."""
    store = client._server.engine._store  # type: ignore[attr-defined]
    thread = store._checkpointer._thread
    assert thread is None or thread.name == THREAD_NAME
    return thread


def test_a_small_write_reaches_the_database_file_while_the_store_is_open(tmp_path: Path) -> None:
    """Two records are a few WAL pages, far from any autocheckpoint: the thread copies them."""
    client = huedb.PersistentClient(path=tmp_path)
    try:
        col = client.create_collection("docs")
        col.add(ids=["a", "b"], embeddings=[[1.0, 2.0], [3.0, 4.0]], documents=["x", "y"])
        deadline = time.monotonic() + 10
        while _records_in_database_file(tmp_path) != 2:
            assert time.monotonic() < deadline, "the WAL was not checkpointed in 10 s"
            time.sleep(0.02)
        assert col.count() == 2
        thread = _checkpoint_thread(client)
        assert thread is not None and thread.is_alive()
    finally:
        client.close()
    assert not thread.is_alive()  # close stops the thread
    reopened = huedb.PersistentClient(path=tmp_path)
    try:
        assert reopened.get_collection("docs").get(ids=["a", "b"])["documents"] == ["x", "y"]
    finally:
        reopened.close()


def test_the_wal_stays_bounded_under_a_bulk_load(tmp_path: Path) -> None:
    """A steady stream of batches never lets the WAL restart from its start by the thread
    alone; the engine's own backstop checkpoint bounds it."""
    rng = np.random.default_rng(0)
    client = huedb.PersistentClient(path=tmp_path)
    wal = tmp_path / f"{DB_FILENAME}-wal"
    largest = 0
    try:
        col = client.create_collection("bulk")
        for start in range(0, 40_000, 1_000):
            vectors = rng.standard_normal((1_000, 384), dtype=np.float32)
            ids = [f"r{i}" for i in range(start, start + 1_000)]
            col.add(ids=ids, embeddings=vectors, metadatas=[{"n": i} for i in range(1_000)])
            largest = max(largest, wal.stat().st_size)
        assert col.count() == 40_000
    finally:
        client.close()
    # The 40 batches write ~18,000 frames (~440 each); the backstop restarts the WAL once
    # a checkpoint has copied all of it, a batch or two past WAL_BACKSTOP_PAGES (measured:
    # 4,404 and 4,485 frames at most). Three times the backstop leaves room for several
    # backstop checkpoints that met the thread's and were skipped (a slow disk).
    assert largest <= 3 * WAL_BACKSTOP_PAGES * FRAME_BYTES
    assert _records_in_database_file(tmp_path) == 40_000  # the last close folds in the rest


def test_a_file_the_thread_cannot_use_ends_it_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database file that went away or is not a database by the time the thread opens it
    (a test's directory removed under a store still starting) ends the thread with a
    warning, not an exception nobody handles (seen in the suite: `disk I/O error`)."""
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    path = tmp_path / DB_FILENAME
    path.write_bytes(b"not a database" * 512)
    checkpointer = WalCheckpointer(path, "full")
    with caplog.at_level("WARNING"):
        checkpointer.committed(5_000)
        deadline = time.monotonic() + 10
        while not any("stay in the writers" in r.message for r in caplog.records):
            assert time.monotonic() < deadline, "the thread said nothing"
            time.sleep(0.01)
    checkpointer.close()
    assert raised == []
