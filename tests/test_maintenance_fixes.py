"""Maintenance on a live store (`huedb compact`, indexes of deleted collections).

- compact's WAL truncate waits for readers a short moment per try, never with the
  connection's 120 s busy timeout: a TRUNCATE checkpoint holds SQLite's writer lock while it
  waits for readers, so a long read (an export) held every writer for up to 120 s.
- A process forgets the indexes of collections another process deleted once it notices
  (at most every few seconds, and when its index memory is asked for), not only when a call
  on that very collection finds it gone: they stayed in memory for good.
- compact keeps a collection's snapshot until the rebuilt graph's replaces it: removed
  first, every process loading the index meanwhile rebuilt it from the store.
- compact reports the bytes the store actually shrank by, and merges the document index so
  that cleaning it up shrinks the file instead of growing it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import huedb
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from huedb.engine import engine as engine_module
from huedb.engine import snapshot
from huedb.engine.engine import Engine
from huedb.engine.filters import compile_filter
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.ops.stats import gather_stats
from huedb.ops.store import compact
from huedb.record_batch import RecordBatch
from tests import stores
from tests.cli import REPO_ROOT, child_env
from tests.graph_wait import wait_for_engine_graph
from tests.stores import StoreTarget

store = stores.store

DIM = 16
ROWS = 2_000
EXACT_MAX_FLOATS = 100 * DIM  # a graph from 100 rows on

# compact in a process of its own, giving up on the WAL truncate after 2 s (10 by default).
_COMPACT = """
import sys
from pathlib import Path
from huedb.engine.sqlite_store import store_admin
store_admin.TRUNCATE_WAL_TRIES_S = 2.0
from huedb.ops.store import compact
print(compact(Path(sys.argv[1])).reclaimed_bytes, flush=True)
"""


def _vectors(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _engine(target: StoreTarget, path: Path) -> Engine:
    return stores.engine(target, path, exact_max_floats=EXACT_MAX_FLOATS)


def _held_collection(engine: Engine, name: str, seed: int) -> str:
    """A collection this engine holds the index of (queried once); its uuid."""
    col = engine.create_collection(name, None, {}, False, DEFAULT_TENANT, DEFAULT_DATABASE)
    vectors = _vectors(seed, ROWS)
    engine.add(col.uuid, RecordBatch(ids=[f"r{i}" for i in range(ROWS)], embeddings=vectors))
    engine.query(col.uuid, vectors[:1], 1, compile_filter(None, None, None), False)
    return col.uuid


def _other_data(store: StoreTarget, tmp_path: Path) -> Path:
    """The data directory of a second process: the same on SQLite, another node's on
    PostgreSQL."""
    return tmp_path / "a" if not store.is_postgres else tmp_path / "b"


def test_compact_with_a_reader_held_open_never_holds_up_writers(tmp_path: Path) -> None:
    client = huedb.PersistentClient(path=tmp_path)
    try:
        col = client.create_collection("docs")
        col.add(ids=[f"r{i}" for i in range(ROWS)], embeddings=_vectors(1, ROWS))
        col.delete(ids=[f"r{i}" for i in range(ROWS // 2)])
        reader = sqlite3.connect(tmp_path / DB_FILENAME, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM records").fetchone()  # holds its snapshot
        col.add(ids=["after-reader"], embeddings=_vectors(2, 1))  # WAL frames past it
        compacting = subprocess.Popen(
            [sys.executable, "-c", _COMPACT, str(tmp_path)],
            cwd=REPO_ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waits = []
        started = time.monotonic()
        try:
            while compacting.poll() is None and time.monotonic() - started < 60:
                began = time.monotonic()
                col.add(ids=[f"w{len(waits)}"], embeddings=_vectors(3 + len(waits), 1))
                waits.append(time.monotonic() - began)
                time.sleep(0.02)
        finally:
            reader.execute("COMMIT")
            reader.close()
            out, err = compacting.communicate(timeout=120)
        assert compacting.returncode == 0, err
        assert max(waits) < 5, f"a write waited {max(waits):.1f} s for compact"
        assert "readers kept the WAL in use" in err
        assert int(out.strip()) >= 0
        assert col.count() == ROWS // 2 + 1 + len(waits)
    finally:
        client.close()


def test_stats_forget_the_index_of_a_collection_another_process_deleted(
    store: StoreTarget, tmp_path: Path
) -> None:
    holder = _engine(store, tmp_path / "a")
    deleter = _engine(store, _other_data(store, tmp_path))
    try:
        gone = _held_collection(holder, "gone", 1)
        cache = holder.index_memory()
        assert [col.uuid for col, _ in cache["resident"]] == [gone]
        assert cache["resident_bytes"] > 0
        deleter.delete_collection("gone", DEFAULT_TENANT, DEFAULT_DATABASE)
        cache = holder.index_memory()
        assert cache["resident"] == [] and cache["evicted"] == []
        assert cache["resident_bytes"] == 0
        stats = gather_stats(holder, tmp_path / "a")
        assert stats["collections"] == []
        assert stats["index_cache"]["resident_collections"] == []
    finally:
        holder.close()
        deleter.close()
    assert not [f for f in (tmp_path / "a" / "index").glob(f"{gone}.*")]


def test_calls_on_other_collections_forget_a_deleted_collections_index_now_and_then(
    store: StoreTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "DELETED_CHECK_INTERVAL_S", 3600.0)
    holder = _engine(store, tmp_path / "a")
    deleter = _engine(store, _other_data(store, tmp_path))
    try:
        gone = _held_collection(holder, "gone", 1)
        kept = _held_collection(holder, "kept", 2)
        deleter.delete_collection("gone", DEFAULT_TENANT, DEFAULT_DATABASE)
        holder.count(kept)
        assert _indexes_of(holder) == {gone, kept}, "the store was read on every call"
        monkeypatch.setattr(holder, "_next_deleted_check", 0.0)  # the interval is over
        assert holder.count(kept) == ROWS
        assert _indexes_of(holder) == {kept}
        figures = holder._indexes.memory_figures()
        assert figures["resident_bytes"] == sum(nbytes for _, nbytes in figures["resident"])
    finally:
        holder.close()
        deleter.close()


def _indexes_of(engine: Engine) -> set[str]:
    """The collections whose index the engine holds or evicted, read without the check
    `Engine.index_memory` makes first."""
    figures = engine._indexes.memory_figures()
    evicted = {col.uuid for col in figures["evicted"]}
    return {col.uuid for col, _ in figures["resident"]} | evicted


def test_compact_keeps_the_snapshot_until_the_rebuilt_one_replaces_it(
    store: StoreTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "a"
    engine = _engine(store, data)
    try:
        uuid = _held_collection(engine, "saved", 1)
        engine.delete(uuid, compile_filter([f"r{i}" for i in range(500)], None, None), None)
        wait_for_engine_graph(engine, uuid)
    finally:
        engine.close()  # writes the graph's snapshot
    path = snapshot.snapshot_path(data / "index", uuid)
    old = snapshot.read_header(path)
    assert old is not None
    old_inode = path.stat().st_ino
    present_while_written: list[bool] = []

    def spied(real: Callable[..., int]) -> Callable[..., int]:
        """`real`, one of the snapshot writers, noting whether the old snapshot is there."""

        def write(target: Path, *args: Any, **kwargs: Any) -> int:
            if target == path:
                present_while_written.append(snapshot.read_header(path) is not None)
            return real(target, *args, **kwargs)

        return write

    for name in ("write_snapshot_streamed", "write_snapshot_from_file"):
        monkeypatch.setattr(snapshot, name, spied(getattr(snapshot, name)))
    monkeypatch.setenv("HUEDB_EXACT_MAX_FLOATS", str(EXACT_MAX_FLOATS))  # as the engine's
    report = compact(data, store.url or None)
    assert report.rebuilt == ["saved"]
    assert present_while_written, "the rebuilt graph's snapshot was never written"
    assert all(present_while_written), "the snapshot was removed before its replacement"
    new = snapshot.read_header(path)
    assert new is not None and new["watermark"] >= old["watermark"]
    assert path.stat().st_ino != old_inode, "the rebuilt graph did not replace the snapshot"


def test_compact_after_another_process_deleted_writes_the_rebuilt_snapshot(
    store: StoreTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deletes made by a process that held no graph reach the graph as a backlog; the load
    compact made started a pass over it, whose build lease then kept the rebuild from
    building: compact reported "rebuilt", removed the old snapshot and wrote none, so every
    process rebuilt the graph from the store (found by review)."""
    data = tmp_path / "a"
    rows = 6_000  # deletes past INLINE_MAX_CHANGES (2,048) get a background pass
    engine = _engine(store, data)
    try:
        col = engine.create_collection("saved", None, {}, False, DEFAULT_TENANT, DEFAULT_DATABASE)
        ids = [f"r{i}" for i in range(rows)]
        engine.add(col.uuid, RecordBatch(ids=ids, embeddings=_vectors(3, rows)))
        engine.query(col.uuid, _vectors(3, 1), 1, compile_filter(None, None, None), False)
        wait_for_engine_graph(engine, col.uuid)
    finally:
        engine.close()
    path = snapshot.snapshot_path(data / "index", col.uuid)
    old_inode = path.stat().st_ino
    deleter = _engine(store, data)
    try:
        deleter.delete(col.uuid, compile_filter(ids[:2_500], None, None), None)
    finally:
        deleter.close()
    monkeypatch.setenv("HUEDB_EXACT_MAX_FLOATS", str(EXACT_MAX_FLOATS))
    report = compact(data, store.url or None)
    assert report.rebuilt == ["saved"]
    assert snapshot.read_header(path) is not None, "compact left no snapshot"
    assert path.stat().st_ino != old_inode, "the rebuilt graph did not replace the snapshot"


def test_compact_removes_the_snapshot_a_rebuild_leaves_stale(
    store: StoreTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph whose collection shrank below the exact-search threshold is rebuilt exact:
    the old graph's snapshot is removed once the rebuild is done. (Its deleted records are
    tombstones outnumbering the rest, so the load compact makes rebuilds it already, and
    compact itself has no graph left to rebuild.)"""
    data = tmp_path / "a"
    engine = _engine(store, data)
    try:
        uuid = _held_collection(engine, "shrunk", 1)
        wait_for_engine_graph(engine, uuid)
        engine.close()
        assert snapshot.read_header(snapshot.snapshot_path(data / "index", uuid)) is not None
        engine = _engine(store, data)
        engine.delete(uuid, compile_filter([f"r{i}" for i in range(ROWS - 50)], None, None), None)
    finally:
        engine.close()
    monkeypatch.setenv("HUEDB_EXACT_MAX_FLOATS", str(EXACT_MAX_FLOATS))
    report = compact(data, store.url or None)
    assert report.rebuilt == []
    assert not snapshot.snapshot_path(data / "index", uuid).exists()


def _database_bytes(path: Path) -> int:
    conn = sqlite3.connect(path / DB_FILENAME, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return pages * conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()


def _document_index_bytes(path: Path) -> tuple[int, int]:
    """The bytes of the store's document index, and of one built afresh from its live
    documents and optimized (a single segment holding nothing deleted)."""
    conn = sqlite3.connect(path / DB_FILENAME)
    fresh = sqlite3.connect(":memory:")
    try:
        held = conn.execute("SELECT sum(length(block)) FROM documents_fts_data").fetchone()[0]
        documents = conn.execute("SELECT document FROM records WHERE document IS NOT NULL")
        fresh.execute(
            "CREATE VIRTUAL TABLE f USING fts5 (document, tokenize = 'trigram case_sensitive 1')"
        )
        fresh.executemany("INSERT INTO f (document) VALUES (?)", documents)
        fresh.execute("INSERT INTO f (f) VALUES ('optimize')")
        return held, fresh.execute("SELECT sum(length(block)) FROM f_data").fetchone()[0]
    finally:
        conn.close()
        fresh.close()


def test_compact_reports_what_the_database_shrank_by(tmp_path: Path) -> None:
    """Deleted documents leave their document-index rows; deleting them adds FTS5 delete
    markers, which grew the file (5.16 -> 5.29 MB at 15k records) while compact reported
    the free pages counted after them. The index is merged now, so they are gone."""
    rows = 6_000
    client = huedb.PersistentClient(path=tmp_path)
    col = client.create_collection("docs")
    for start in range(0, rows, 2_000):
        numbers = range(start, start + 2_000)
        col.add(
            ids=[f"r{i}" for i in numbers],
            embeddings=_vectors(start, 2_000),
            documents=[f"document {i} about topic {i % 97} and more words" for i in numbers],
        )
    col.delete(ids=[f"r{i}" for i in range(rows) if i % 5 < 2])
    client.close()
    before = _database_bytes(tmp_path)
    report = compact(tmp_path)
    after = _database_bytes(tmp_path)
    assert after < before, "compact grew the database"
    assert report.reclaimed_bytes == before - after
    held, fresh = _document_index_bytes(tmp_path)  # 451 kB against 448; 656 unmerged
    assert held < fresh * 1.1, "the document index keeps the entries of deleted rows"
    client = huedb.PersistentClient(path=tmp_path)
    try:
        found = client.get_collection("docs").get(where_document={"$contains": "topic 5 "})
        assert sorted(found["ids"]) == sorted(
            f"r{i}" for i in range(rows) if i % 97 == 5 and i % 5 >= 2
        )
    finally:
        client.close()


def test_a_sparse_index_of_a_collection_another_process_deleted_is_forgotten(
    tmp_path: Path,
) -> None:
    """A process holding only the sparse index of a collection (searched by sparse Knn,
    never by its dense vectors) forgets it once another process deletes the collection."""
    holder = huedb.PersistentClient(path=str(tmp_path / "data"))
    try:
        schema = huedb.Schema().create_index(config=huedb.SparseVectorIndexConfig(), key="sp")
        col = holder.create_collection("sparse", schema=schema, embedding_function=None)
        col.add(
            ids=["a", "b"],
            embeddings=[[1.0, 0.0], [0.0, 1.0]],
            metadatas=[{"sp": huedb.SparseVector([1, 2], [1.0, 0.5])}, {"other": 1}],
        )
        knn = huedb.Knn(query=huedb.SparseVector([1], [1.0]), key="sp", limit=2)
        assert [r["id"] for r in col.search(huedb.Search().rank(knn)).rows()[0]] == ["a"]
        engine = holder._server.engine
        assert engine._sparse.collection_uuids() == {str(col.id)}
        assert engine._indexes.collection_uuids() == set()  # no dense index held
        delete = (
            "import huedb, sys; huedb.PersistentClient(sys.argv[1]).delete_collection('sparse')"
        )
        subprocess.run(
            [sys.executable, "-c", delete, str(tmp_path / "data")],
            cwd=REPO_ROOT,
            env=child_env(),
            check=True,
            timeout=60,
        )
        figures = engine.index_memory()  # checks for deleted collections now
        assert figures["sparse_resident_bytes"] == 0
        assert engine._sparse.collection_uuids() == set()
    finally:
        holder.close()
