"""SQLite store: the pages freed by deletes and pruned oplog rows go back to the file
system at the next oplog prune (`SQLiteRecords._release_free_pages`), at most
`RELEASE_PAGES` per prune; and `heap.release` (glibc's malloc_trim) is available."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb.engine import heap
from huedb.engine.sqlite_store import records
from huedb.engine.sqlite_store.connection import DB_FILENAME


def _free_pages_left(data: Path) -> int:
    """3,000 records, a query (this process then holds their index), 1,000 of them
    deleted (the oplog these changes left is pruned), close: the file's free pages."""
    client = huedb.PersistentClient(path=data)
    col = client.create_collection("freed")
    rng = np.random.default_rng(3)
    col.add(
        ids=[f"r{i}" for i in range(3000)],
        embeddings=rng.standard_normal((3000, 32)).astype(np.float32),
        metadatas=[{"text": "y" * 300} for _ in range(3000)],
    )
    col.query(query_embeddings=rng.standard_normal((1, 32)), n_results=3)
    col.delete(ids=[f"r{i}" for i in range(1000)])
    client.close()
    conn = sqlite3.connect(data / DB_FILENAME)
    try:
        assert conn.execute("SELECT count(*) FROM oplog").fetchone()[0] == 0  # pruned
        return conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()


def test_prune_returns_the_pages_deletes_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _free_pages_left(tmp_path / "default") == 0
    monkeypatch.setattr(records, "RELEASE_PAGES", 0)
    assert _free_pages_left(tmp_path / "kept") > 50


def test_one_prune_returns_at_most_release_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "RELEASE_PAGES", 0)
    kept = _free_pages_left(tmp_path / "kept")
    monkeypatch.setattr(records, "RELEASE_PAGES", 5)
    left = _free_pages_left(tmp_path / "capped")
    assert kept - 3 * 5 <= left < kept  # a prune or a few, each returning 5 pages


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_heap_release_runs_on_glibc() -> None:
    assert heap.release()
