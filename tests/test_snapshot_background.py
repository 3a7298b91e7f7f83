"""A graph's snapshot is written by a thread (engine/index_cache.py, `_start_snapshot`).

At 1M x 384 a snapshot is a 1 GB file: written in the call that found it due, it held that
query or write (and every other call on the engine) for 4-6 s. A thread writes it now, and
the graph is not changed meanwhile: changes are searched exactly beside it and applied once
the thread is done. The file's save is held open here (`VectorIndex.save_graph` waits for
an event) to check, on both stores, that queries and writes go on meanwhile and answer
exactly, that the snapshot then covers the oplog up to the watermark it was taken at (and
a fresh process loads it), that close waits for it and writes the last one, and that a
collection deleted meanwhile leaves no snapshot behind. A graph served as a view of its
snapshot is saved by copying its mapped bytes (usearch's save holds the GIL throughout).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from huedb.engine import snapshot, vector_index
from huedb.engine.engine import Engine
from huedb.engine.filters import compile_filter
from huedb.engine.vector_index import Thresholds, VectorIndex, graph_keys, load_graph
from huedb.record_batch import RecordBatch
from tests import stores
from tests.graph_wait import wait_for_engine_graph
from tests.stores import StoreTarget
from tests.test_graph_backlog import DATABASE, DIM, TENANT, N, _engine, _names
from tests.test_vector_index import graph_index, make_reference, ref_vectors

store = stores.store


class HeldSave:
    """`VectorIndex.save_graph`, held until `release` is set (the thread's file write)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.saves = 0
        real = VectorIndex.save_graph

        def held(index: VectorIndex, path: Path) -> None:
            self.saves += 1
            self.started.set()
            assert self.release.wait(60), "the held save was never released"
            real(index, path)

        monkeypatch.setattr(VectorIndex, "save_graph", held)


@pytest.fixture
def held_save(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldSave]:
    held = HeldSave(monkeypatch)
    try:
        yield held
    finally:
        held.release.set()  # never leave a thread waiting


def _graph_built(engine: Engine, uuid: str, saves: HeldSave) -> int:
    """Build the graph of `uuid` (a query asks for it) until its snapshot thread is in
    the held save; the watermark that snapshot is taken at."""
    deadline = time.monotonic() + 120
    while not saves.started.is_set():
        assert time.monotonic() < deadline, "no snapshot was started after the build"
        engine.indexing_status(uuid)
        time.sleep(0.02)
    state = engine._indexes._states[_cid(engine, uuid)]
    assert state.saving is not None and state.saving.thread.is_alive()
    return state.saving.watermark


def _cid(engine: Engine, uuid: str) -> int:
    with engine._store.read() as db:
        return db.collection_by_uuid(uuid).cid


def _collection(engine: Engine, rng: np.random.Generator) -> tuple[str, list[str], np.ndarray]:
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(N)]
    col = engine.create_collection("saved", None, {}, False, TENANT, DATABASE)
    engine.add(col.uuid, RecordBatch(ids=ids, embeddings=vectors))
    return col.uuid, ids, vectors


def test_queries_and_writes_go_on_while_the_snapshot_is_written(
    store: StoreTarget, tmp_path: Path, held_save: HeldSave
) -> None:
    rng = np.random.default_rng(11)
    engine = _engine(store, tmp_path)
    try:
        uuid, ids, vectors = _collection(engine, rng)
        taken_at = _graph_built(engine, uuid, held_save)
        cid = _cid(engine, uuid)
        index = engine._indexes.loaded(cid)
        graph_size = len(index._graph)

        # Changes while the save is held: an update, a delete and new records.
        updated = rng.choice(N, 40, replace=False)
        new_vectors = rng.standard_normal((len(updated), DIM)).astype(np.float32)
        engine.update(uuid, RecordBatch(ids=[ids[i] for i in updated], embeddings=new_vectors))
        deleted = rng.choice(np.setdiff1d(np.arange(N), updated), 25, replace=False)
        engine.delete(uuid, compile_filter([ids[i] for i in deleted], None, None), None)
        added = rng.standard_normal((30, DIM)).astype(np.float32)
        engine.add(uuid, RecordBatch(ids=[f"new{i}" for i in range(30)], embeddings=added))
        found = _names(engine, uuid, np.concatenate([new_vectors, added, vectors[deleted]]), 3)

        assert engine._indexes._states[cid].saving.thread.is_alive(), "the save was not held"
        assert len(index._graph) == graph_size, "the graph changed while it was being saved"
        assert index.backlog == len(updated) + len(deleted) + len(added)
        for i, names in enumerate(found[: len(updated)]):
            assert names[0] == ids[updated[i]], "an updated record is not found by its vector"
        for i, names in enumerate(found[len(updated) : len(updated) + len(added)]):
            assert names[0] == f"new{i}", "a record added during the save is not found"
        gone = {ids[i] for i in deleted}
        assert not any(gone & set(names) for names in found), "a deleted record was returned"

        held_save.release.set()
        deadline = time.monotonic() + 60
        while engine.indexing_status(uuid)["num_unindexed_ops"]:
            assert time.monotonic() < deadline, "the changes made during the save were not applied"
            time.sleep(0.02)
        assert engine._indexes.loaded(cid).backlog == 0
        check = engine.check_index(uuid)
        assert (check.missing, check.extra, check.wrong_vectors) == ([], [], [])
        header = snapshot.read_header(snapshot.snapshot_path(engine._index_dir, uuid))
        assert header is not None and header["watermark"] == taken_at
        engine.query(uuid, added[:1], 1, compile_filter(None, None, None), False)
        with engine._store.read() as db:
            assert db.collection_by_uuid(uuid).snapshot_seq == taken_at, "oplog not pruned to it"
    finally:
        engine.close()

    current = vectors.copy()
    current[updated] = new_vectors
    alive = np.setdiff1d(np.arange(N), deleted)
    fresh = _engine(store, tmp_path)  # loads the snapshot written at close
    try:
        queries = np.concatenate([current[alive[:40]], added])
        expected = [ids[i] for i in alive[:40]] + [f"new{i}" for i in range(30)]
        assert [names[0] for names in _names(fresh, uuid, queries, 1)] == expected
        assert fresh._indexes.loaded(_cid(fresh, uuid)).backlog == 0
        header = snapshot.read_header(snapshot.snapshot_path(fresh._index_dir, uuid))
        with fresh._store.read() as db:
            assert header["watermark"] == db.oplog_head(db.collection_by_uuid(uuid).cid)
    finally:
        fresh.close()


def test_close_waits_for_the_snapshot_and_writes_the_last(
    store: StoreTarget, tmp_path: Path, held_save: HeldSave
) -> None:
    rng = np.random.default_rng(12)
    engine = _engine(store, tmp_path)
    uuid, ids, _ = _collection(engine, rng)
    taken_at = _graph_built(engine, uuid, held_save)
    engine.add(uuid, RecordBatch(ids=["late"], embeddings=rng.standard_normal((1, DIM))))
    closing = threading.Thread(target=engine.close)
    closing.start()
    closing.join(0.3)
    assert closing.is_alive(), "close did not wait for the snapshot being written"
    held_save.release.set()
    closing.join(60)
    assert not closing.is_alive()
    header = snapshot.read_header(snapshot.snapshot_path(engine._index_dir, uuid))
    assert header is not None and header["watermark"] > taken_at  # the last write is in it
    assert held_save.saves == 2


def test_a_collection_deleted_during_its_snapshot_leaves_none(
    store: StoreTarget, tmp_path: Path, held_save: HeldSave
) -> None:
    rng = np.random.default_rng(13)
    engine = _engine(store, tmp_path)
    try:
        uuid, _, _ = _collection(engine, rng)
        _graph_built(engine, uuid, held_save)
        deleting = threading.Thread(
            target=engine.delete_collection, args=("saved", TENANT, DATABASE)
        )
        deleting.start()
        deleting.join(0.3)
        held_save.release.set()
        deleting.join(60)
        assert not deleting.is_alive()
        assert engine._index_dir is not None
        left = sorted(p.name for p in engine._index_dir.glob(f"{uuid}*"))
        assert left == [], f"files of the deleted collection remain: {left}"
    finally:
        engine.close()


def test_a_viewed_graph_is_saved_as_its_bytes(tmp_path: Path) -> None:
    """A graph served as a view of its snapshot is saved (for a snapshot, or a pass's
    child) by copying the mapped bytes, not by usearch: the copy restores to the same
    graph, and a view's first change (a private copy) goes back to usearch's save."""
    rng = np.random.default_rng(14)
    ref = make_reference(rng, 500, DIM, clustered=True)
    built = graph_index(ref, DIM, "cosine", Thresholds(0, 0), with_flat=False)
    path = tmp_path / "graph.hnsw"
    snapshot.write_snapshot_streamed(path, "o", 1, DIM, "cosine", built.save_graph)
    snap = snapshot.read_snapshot(path, "o")
    assert snap is not None
    view = VectorIndex.from_serialized(
        DIM, built.params, built.thresholds, snap.payload, snap.mapping
    )
    copied = tmp_path / "copied"
    view.save_graph(copied)
    assert copied.read_bytes() == bytes(snap.payload)
    restored = load_graph(copied)
    keys = np.asarray(sorted(ref), dtype=np.uint64)
    assert sorted(np.asarray(restored.keys).tolist()) == keys.tolist()
    view.upsert(keys[:1], ref_vectors(ref, keys[1:2]))  # the view becomes a private copy
    changed = tmp_path / "changed"
    view.save_graph(changed)
    assert changed.read_bytes() != bytes(snap.payload)
    # (the updated record's old node is a tombstone: graph_keys leaves it out)
    assert sorted(graph_keys(load_graph(changed)).tolist()) == keys.tolist()


def test_a_large_view_is_never_copied_its_changes_wait_for_a_pass(
    store: StoreTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph served as a view of its snapshot, when large (every view here:
    VIEW_KEPT_MIN_BYTES is 0), is never copied into this process: its changes are searched
    exactly beside it until a pass applies them in a child, whose graph is then served as
    a view of the snapshot the pass wrote."""
    rng = np.random.default_rng(15)
    first = _engine(store, tmp_path)
    uuid, ids, vectors = _collection(first, rng)
    wait_for_engine_graph(first, uuid, seconds=120)
    first.close()

    monkeypatch.setattr(vector_index, "VIEW_KEPT_MIN_BYTES", 0)

    def no_copy(index: VectorIndex) -> None:
        raise AssertionError("a kept view was copied into private memory")

    monkeypatch.setattr(VectorIndex, "_mutable_graph", no_copy)
    engine = _engine(store, tmp_path)
    try:
        _names(engine, uuid, vectors[:1], 1)  # loads the snapshot: a view
        index = engine._indexes.loaded(_cid(engine, uuid))
        assert index._mapping is not None
        current = vectors.copy()
        alive = set(range(N))
        for round_ in range(2):  # a pass, then changes on the graph it made
            updated = rng.choice(sorted(alive), 5, replace=False)
            current[updated] = rng.standard_normal((5, DIM)).astype(np.float32)
            batch = RecordBatch(ids=[ids[i] for i in updated], embeddings=current[updated])
            engine.update(uuid, batch)
            deleted = rng.choice(sorted(alive - set(updated.tolist())), 3, replace=False)
            engine.delete(uuid, compile_filter([ids[i] for i in deleted], None, None), None)
            alive -= set(deleted.tolist())
            found = _names(engine, uuid, np.concatenate([current[updated], vectors[deleted]]), 3)
            assert [names[0] for names in found[:5]] == [ids[i] for i in updated], round_
            gone = {ids[i] for i in deleted}
            assert not any(gone & set(names) for names in found), "a deleted record returned"
            deadline = time.monotonic() + 120
            while engine.indexing_status(uuid)["num_unindexed_ops"]:
                assert time.monotonic() < deadline, "the pass never applied the changes"
                time.sleep(0.02)
            index = engine._indexes.loaded(_cid(engine, uuid))
            assert index.backlog == 0 and index._mapping is not None, "not served as a view"
            header = snapshot.read_header(snapshot.snapshot_path(engine._index_dir, uuid))
            with engine._store.read() as db:
                assert header["watermark"] == db.oplog_head(db.collection_by_uuid(uuid).cid)
            check = engine.check_index(uuid)
            assert (check.missing, check.extra, check.wrong_vectors) == ([], [], [])
            assert check.records == check.indexed == len(alive)
            kept = sorted(alive)[:30]
            assert [n[0] for n in _names(engine, uuid, current[kept], 1)] == [ids[i] for i in kept]
    finally:
        engine.close()


def test_queries_alone_take_up_a_finished_snapshot(
    store: StoreTarget, tmp_path: Path, held_save: HeldSave
) -> None:
    """A snapshot thread that ended is taken up by the next query (the oplog up to it is
    pruned), not only by a write or a status call."""
    rng = np.random.default_rng(16)
    engine = _engine(store, tmp_path)
    try:
        uuid, _, vectors = _collection(engine, rng)
        taken_at = _graph_built(engine, uuid, held_save)
        held_save.release.set()
        deadline = time.monotonic() + 30
        while True:
            _names(engine, uuid, vectors[:1], 1)
            with engine._store.read() as db:
                if db.collection_by_uuid(uuid).snapshot_seq == taken_at:
                    break
            assert time.monotonic() < deadline, "queries never took up the finished snapshot"
            time.sleep(0.02)
    finally:
        engine.close()
