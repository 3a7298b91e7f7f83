"""A graph's backlog (engine/graph_backlog.py): large catch-ups applied in the background.

Against a reference dict of key -> vector, a graph index takes random changes deferred
(`VectorIndex.defer`), changes made while a background pass is under way, passes in a
child process (`take_backlog`, `graph_build.apply_backlog`, `adopt_backlog_graph`) and
in the caller's thread (`apply_backlog_here`), in any order: after every step its keys,
length and vectors are the reference's, no removed or outdated entry is returned,
distances are exact, and a changed record queried with its new vector is found first.
`FlatVectors.holding` (the backlog's vectors, not copied) answers as `upsert` would and
never writes into the matrix it holds. End to end (on both stores), a query that finds a
catch-up larger than INLINE_MAX_CHANGES answers at once from the old graph plus an exact
pass over the changes, while a child process applies them to a copy of the graph; once
it is swapped in, the recall is measured on the new snapshot, and close writes one that
needs no catch-up.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from usearch.index import Index

from huedb.engine import int8_backlog, snapshot
from huedb.engine.engine import Engine
from huedb.engine.filters import compile_filter
from huedb.engine.graph_backlog import INLINE_MAX_CHANGES
from huedb.engine.graph_build import apply_backlog
from huedb.engine.vector_index import (
    GRAPH_DTYPE,
    FlatVectors,
    HnswParams,
    Thresholds,
    VectorIndex,
    at_graph_precision,
    graph_config,
)
from huedb.record_batch import RecordBatch
from tests import stores
from tests.graph_wait import wait_for_engine_graph
from tests.stores import StoreTarget
from tests.test_vector_index import (
    SPACES,
    Fetch,
    Ref,
    check_hits,
    check_index_state,
    forbidden_fetch,
    graph_index,
    make_queries,
    make_reference,
    ref_distances,
    ref_vectors,
    scaled,
)

steps = st.lists(
    st.tuples(
        st.sampled_from(["update", "insert", "remove", "defer", "take", "apply", "pass"]),
        st.integers(1, 30),
        st.integers(0, 2**32 - 1),
    ),
    min_size=1,
    max_size=10,
)


def _change(
    index: VectorIndex, ref: Ref, op: str, count: int, seed: int, dim: int, deferred: bool
) -> list[int]:
    """One random change (update, insert or remove `count` keys, or set keys to the vectors
    they hold: a change of metadata only), to the index (through `defer` when `deferred`,
    else `upsert` / `remove`) and the reference; the keys whose vectors were set."""
    rng = np.random.default_rng(seed)
    present = sorted(ref)
    if op == "remove":
        gone = rng.choice(present, size=min(count, len(present) - 1), replace=False)
        gone = np.asarray([*gone.tolist(), max(present) + 1000], dtype=np.uint64)  # + absent
        if deferred:
            index.defer(gone, np.empty(0, np.uint64), np.empty((0, dim), np.float32))
        else:
            index.remove(gone)
        for key in gone.tolist():
            ref.pop(key, None)
        return []
    if op in ("update", "same"):
        keys = [int(k) for k in rng.choice(present, size=min(count, len(present)), replace=False)]
    else:
        keys = list(range(max(present) + 1, max(present) + 1 + count))
    vectors = rng.standard_normal((len(keys), dim)).astype(np.float32)
    if op == "same":
        vectors = ref_vectors(ref, keys)
    if deferred:  # read-only, as a catch-up reads them from the store (np.frombuffer)
        vectors = np.frombuffer(vectors.astype(np.float32).tobytes(), np.float32)
        vectors = vectors.reshape(len(keys), dim)
        index.defer(np.empty(0, np.uint64), np.asarray(keys, np.uint64), vectors)
    else:
        index.upsert(np.asarray(keys, dtype=np.uint64), vectors)
    ref.update(zip(keys, vectors, strict=True))
    return keys


# The cases both reference tests draw: a graph index, and the steps applied to it.
reference_cases = given(
    space=st.sampled_from(SPACES),
    dim=st.integers(4, 12),
    n=st.integers(60, 200),
    with_flat=st.booleans(),
    ops=steps,
    seed=st.integers(0, 2**32 - 1),
)


@scaled(0.25)
@reference_cases
def test_backlog_follows_reference(
    tmp_path_factory, space: str, dim: int, n: int, with_flat: bool, ops, seed: int
) -> None:
    """Deferred changes, changes during a pass and passes keep the index equal to the
    reference, and its searches exact-ranked over current vectors only."""
    _follow_reference(tmp_path_factory, space, dim, n, with_flat, ops, seed)


@scaled(0.25)
@reference_cases
def test_backlog_on_int8_rows_follows_reference(
    tmp_path_factory, space: str, dim: int, n: int, with_flat: bool, ops, seed: int
) -> None:
    """The same, every pass that adds vectors (and can: not inner product) made on int8
    rows (`int8_backlog`; otherwise only passes adding a share of the graph): the graph
    served after it holds every record's current vector at 16 bits, as a pass on 16-bit
    rows leaves it."""
    with patch.object(int8_backlog, "MIN_ADD_SHARE", 0.0):
        _follow_reference(tmp_path_factory, space, dim, n, with_flat, ops, seed)


def _follow_reference(
    tmp_path_factory, space: str, dim: int, n: int, with_flat: bool, ops, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ref = make_reference(rng, n, dim, clustered=False)
    index = graph_index(ref, dim, space, Thresholds(0, 10 * dim), with_flat)
    fetch = forbidden_fetch if with_flat else Fetch(ref, dim)
    removed: set[int] = set()
    work = None
    workdir = tmp_path_factory.mktemp("passes")
    for step, (op, count, op_seed) in enumerate(ops):
        what = f"step {step} ({op} {count}, {space}, flat={with_flat})"
        before = set(ref)
        changed: list[int] = []
        if op in ("update", "insert", "remove"):
            changed = _change(index, ref, op, count, op_seed, dim, deferred=False)
        elif op == "defer":
            kind = ("update", "insert", "remove", "same")[op_seed % 4]
            changed = _change(index, ref, kind, count, op_seed, dim, deferred=True)
        elif op == "take" and index.backlog and work is None:
            work = index.take_backlog()
        elif op == "apply" and work is not None:
            index.adopt_backlog_graph(apply_backlog(index, work, threading.Event(), workdir), work)
            work = None
        elif op == "pass" and work is None:
            index.apply_backlog_here()
            assert index.backlog == 0, f"{what}: a pass left {index.backlog} keys"
        removed = (removed | before) - set(ref)
        check_index_state(index, ref)
        keys = np.asarray(sorted(ref), dtype=np.uint64)
        assert index.mismatched(keys, ref_vectors(ref, keys)) == [], f"{what}: stale vectors"
        queries = make_queries(rng, ref, dim)
        for query in queries:
            k = int(rng.integers(1, 20))
            hits = index.search(query, k, None, fetch)
            assert not removed & set(hits[0].tolist()), f"{what}: removed key returned"
            check_hits(hits, space, ref, query, k, exact=False, what=what)
            allowed = rng.choice(keys, size=max(1, len(ref) // 2), replace=False)
            hits = index.search(query, k, allowed, fetch)
            assert set(hits[0].tolist()) <= set(allowed.tolist()), f"{what}: outside filter"
            check_hits(hits, space, ref, query, k, allowed, False, f"{what} filtered")
        if space != "ip":  # a changed record holds the nearest vector to its own
            for key in changed[:3]:
                found, dists = index.search(ref[key], 1, None, fetch)
                same = {k for k, v in ref.items() if np.array_equal(v, ref[key])}
                if index.backlog:  # taken exactly from the backlog, never missed
                    assert int(found[0]) in same and abs(float(dists[0])) <= 1e-5, what
                    allowed = np.union1d(rng.choice(keys, size=len(keys) // 2), [key])
                    found, dists = index.search(ref[key], 3, allowed.astype(np.uint64), fetch)
                    assert int(found[0]) in same and abs(float(dists[0])) <= 1e-5, what
    # A pass taken and never applied (`work`) is simply replaced: the next takes it all.
    if index.backlog:
        work = index.take_backlog()
        index.adopt_backlog_graph(apply_backlog(index, work, threading.Event(), workdir), work)
    assert index.backlog == 0
    assert list(workdir.iterdir()) == [], "a pass left files behind"
    check_index_state(index, ref)
    keys = np.asarray(sorted(ref), dtype=np.uint64)
    assert index.mismatched(keys, ref_vectors(ref, keys)) == []


@scaled(0.3)
@given(
    space=st.sampled_from(SPACES),
    n=st.integers(1, 80),
    dim=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_flat_vectors_holding_a_matrix(space: str, n: int, dim: int, seed: int) -> None:
    """`FlatVectors.holding` (the backlog's vectors, not copied) answers as FlatVectors
    filled by `upsert` does, and its later changes never write into the caller's matrix."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(10 * n, size=n, replace=False).astype(np.uint64)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    original = vectors.copy()
    vectors.setflags(write=False)  # as the store's rows arrive (np.frombuffer)
    held = FlatVectors.holding(keys, vectors)
    filled = FlatVectors(dim)
    filled.upsert(keys, vectors)
    query = rng.standard_normal(dim).astype(np.float32)
    assert sorted(held.keys().tolist()) == sorted(filled.keys().tolist()) and len(held) == n
    assert np.array_equal(held.gather(keys), filled.gather(keys))
    (held_keys, held_dists), (keys_b, dists_b) = (
        held.search(space, query, 5),
        filled.search(space, query, 5),
    )
    assert np.allclose(held_dists, dists_b, rtol=1e-6, atol=1e-6)
    by_key = dict(zip(keys_b.tolist(), dists_b.tolist(), strict=True))
    for key, dist in zip(held_keys.tolist(), held_dists.tolist(), strict=True):
        tied = abs(dist - float(dists_b[-1])) <= 1e-6  # a tie at the k-th may differ
        assert tied or abs(by_key[key] - dist) <= 1e-6
    held.upsert(np.asarray([10 * n + 1], dtype=np.uint64), np.ones((1, dim), np.float32))
    changed = keys[: max(1, n // 2)]
    held.upsert(changed, rng.standard_normal((len(changed), dim)).astype(np.float32))
    held.remove(keys[-1:])
    assert np.array_equal(vectors, original), "a change wrote into the caller's matrix"


# --------------------------------------------------------------------------- end to end

store = stores.store
DIM = 16
TENANT, DATABASE = "default_tenant", "default_database"
N = 3_000


def _engine(target: StoreTarget, path: Path) -> Engine:
    return stores.engine(target, path, exact_max_floats=200 * DIM)


def _names(engine: Engine, uuid: str, queries: np.ndarray, k: int) -> list[list[str]]:
    everything = compile_filter(None, None, None)
    hits = engine.query(uuid, queries.astype(np.float32), k, everything, False)
    return [[hits.rows[key][1] for key in keys] for keys in hits.keys]


def _first_recall_measurement(caplog, engine: Engine, uuid: str) -> str:
    """The first recall measurement logged (waiting up to 60 s for one; the engine is
    polled, as a user would, since a finished snapshot thread is taken up by a call)."""
    deadline = time.monotonic() + 60
    while True:
        found = [
            r.getMessage() for r in caplog.records if "recall@10 of the graph" in r.getMessage()
        ]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "the graph's recall was not measured in 60 s"
        engine.indexing_status(uuid)
        time.sleep(0.05)


def test_large_catch_up_is_applied_in_the_background(
    store: StoreTarget, tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process changes more than INLINE_MAX_CHANGES records of a graph; the next
    process to query answers at once from its snapshot plus the changes, searched exactly,
    while a thread applies them; the graph the pass made is its snapshot, copied from the
    child's file (the served graph is saved once: the child's start)."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(N)]
    first = _engine(store, tmp_path)
    col = first.create_collection("backlog", None, {}, False, TENANT, DATABASE)
    first.add(col.uuid, RecordBatch(ids=ids, embeddings=vectors))
    wait_for_engine_graph(first, col.uuid, seconds=120)
    first.close()
    assert first._index_dir is not None
    path = snapshot.snapshot_path(first._index_dir, col.uuid)
    assert snapshot.read_header(path) is not None, "no snapshot of the graph was written"

    writer = _engine(store, tmp_path)  # holds no index: its writes are left to the oplog
    updated = rng.choice(N, INLINE_MAX_CHANGES + 200, replace=False)
    new_vectors = rng.standard_normal((len(updated), DIM)).astype(np.float32)
    writer.update(col.uuid, RecordBatch(ids=[ids[i] for i in updated], embeddings=new_vectors))
    kept = np.setdiff1d(np.arange(N), updated)
    deleted = rng.choice(kept, 300, replace=False)
    writer.delete(col.uuid, compile_filter([ids[i] for i in deleted], None, None), None)
    writer.close()
    current = vectors.copy()
    current[updated] = new_vectors
    alive = np.setdiff1d(np.arange(N), deleted)

    saves: list[Path] = []
    real_save = VectorIndex.save_graph

    def counted_save(index: VectorIndex, target: Path) -> None:
        saves.append(target)
        real_save(index, target)

    monkeypatch.setattr(VectorIndex, "save_graph", counted_save)
    reader = _engine(store, tmp_path)
    try:
        with caplog.at_level(logging.INFO, logger="huedb.engine.index_cache"):
            probes = np.concatenate([new_vectors[:20], vectors[deleted[:20]]])
            found = _names(reader, col.uuid, probes, 5)
        assert any("applied in the background" in r.getMessage() for r in caplog.records)
        deleted_ids = {ids[i] for i in deleted}
        for i, names in enumerate(found[:20]):
            assert names[0] == ids[updated[i]], "an updated record is not found by its vector"
        for names in found:
            assert not deleted_ids & set(names), "a deleted record was returned"
        check = reader.check_index(col.uuid)  # a fresh load: its backlog noted, not applied
        assert (check.missing, check.extra, check.wrong_vectors) == ([], [], [])
        assert check.records == check.indexed == len(alive)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="huedb.engine.index_calibration"):
            wait_for_engine_graph(reader, col.uuid, seconds=120)
            measured = _first_recall_measurement(caplog, reader, col.uuid)
        # Measured on the snapshot written after the pass, not the older one on disk.
        assert f"{len(alive)} vectors" in measured, measured
        # Once, for the pass's child to start from (check_index starts no pass of its own).
        assert [p.name.startswith(".graph-build-") for p in saves] == [True], saves
        with reader._store.read() as db:
            head = db.oplog_head(db.collection_by_uuid(col.uuid).cid)
        assert snapshot.read_header(path)["watermark"] == head
        status = reader.indexing_status(col.uuid)
        assert status["num_unindexed_ops"] == 0 and status["total_ops"] == len(alive)
        queries = current[alive[:50]]
        assert [names[0] for names in _names(reader, col.uuid, queries, 1)] == [
            ids[i] for i in alive[:50]
        ]
    finally:
        reader.close()
    last = _engine(store, tmp_path)
    try:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="huedb.engine.index_cache"):
            _names(last, col.uuid, current[alive[:3]], 3)
        assert not any("applied in the background" in r.getMessage() for r in caplog.records)
        assert last._indexes.loaded(col.cid).backlog == 0
    finally:
        last.close()


@pytest.mark.parametrize("space", SPACES)
def test_graph_holds_across_blocks(space: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`graph_holds`, read block by block (blocks of 64 here), says of each key whether the
    graph holds exactly that vector: keys absent, vectors changed, a NaN, a block with no
    key of the graph and blocks of the graph's own vectors, against a row-by-row check."""
    monkeypatch.setattr("huedb.engine.vector_index.GRAPH_GET_BLOCK", 64)
    rng = np.random.default_rng(17)
    ref = make_reference(rng, 300, 8, clustered=False)
    index = graph_index(ref, 8, space, Thresholds(0, 0), with_flat=False)
    present = np.asarray(sorted(ref), dtype=np.uint64)
    absent = np.arange(10_000, 10_070, dtype=np.uint64)  # more than a block
    keys = np.concatenate([present[:100], absent, present[100:]])
    stored = np.concatenate([ref_vectors(ref, present[:100]), np.ones((70, 8), np.float32)])
    stored = np.concatenate([stored, ref_vectors(ref, present[100:])])
    changed = rng.choice(len(keys), 40, replace=False)
    stored[changed] += 1.0
    stored[5, 3] = np.nan
    expected = np.array(
        [
            bool(index.graph_holds_any(keys[i : i + 1]))
            and np.array_equal(
                index._graph.get(keys[i], dtype=np.float32),  # type: ignore[union-attr]
                at_graph_precision(GRAPH_DTYPE, index.graph_rows(stored[i : i + 1]))[0],
            )
            for i in range(len(keys))
        ]
    )
    got = index.graph_holds(keys, stored)
    assert got.tolist() == expected.tolist()
    assert 0 < got.sum() < len(keys) - 70 and not got[100:170].any()


@contextlib.contextmanager
def _int8_rewrites() -> Iterator[list[object]]:
    """The graphs passes rewrite with int8 rows meanwhile (`int8_links.to_int8` calls)."""
    rewrites: list[object] = []
    to_int8 = int8_backlog.int8_links.to_int8

    def counted(saved: object, *args: object) -> None:
        rewrites.append(saved)
        to_int8(saved, *args)

    with patch.object(int8_backlog.int8_links, "to_int8", counted):
        yield rewrites


def _large_pass(tmp_path: Path, space: str, min_share: float) -> tuple[float, int]:
    """A pass over a graph of 4,000 clustered vectors: 1,500 updated, 1,000 added, 300
    removed, all deferred; the recall@10 of the graph after it, and how many times the
    graph was rewritten with int8 rows. Checks the index against the reference."""
    tmp_path.mkdir()
    rng = np.random.default_rng(21)
    dim = 32
    ref = make_reference(rng, 4_000, dim, clustered=True)
    index = graph_index(ref, dim, space, Thresholds(0, 10 * dim), with_flat=True)
    present = np.asarray(sorted(ref), dtype=np.uint64)
    updated = rng.choice(present, size=1_500, replace=False)
    removed = np.setdiff1d(rng.choice(present, size=300, replace=False), updated)
    added = np.arange(4 * 4_000 + 1, 4 * 4_000 + 1_001, dtype=np.uint64)
    keys = np.concatenate([updated, added])
    # near stored vectors, as re-embedded records are
    vectors = ref_vectors(ref, rng.choice(present, size=len(keys)))
    vectors = (vectors + 0.1 * rng.standard_normal(vectors.shape)).astype(np.float32)
    index.defer(removed, keys, vectors)
    for key in removed.tolist():
        ref.pop(key)
    ref.update(zip(keys.tolist(), vectors, strict=True))
    with patch.object(int8_backlog, "MIN_ADD_SHARE", min_share), _int8_rewrites() as rewrites:
        work = index.take_backlog()
        index.adopt_backlog_graph(apply_backlog(index, work, threading.Event(), tmp_path), work)
    assert index.backlog == 0 and list(tmp_path.iterdir()) == []
    check_index_state(index, ref)
    current = np.asarray(sorted(ref), dtype=np.uint64)
    assert index.mismatched(current, ref_vectors(ref, current)) == []  # rows at 16 bits
    matrix = ref_vectors(ref, current)
    found = 0
    for query in matrix[rng.choice(len(matrix), size=200, replace=False)] + 0.05:
        exact = current[np.argsort(ref_distances(space, matrix, query), kind="stable")[:10]]
        found += len(np.intersect1d(index.search(query, 10, None, forbidden_fetch)[0], exact))
    return found / 2_000, len(rewrites)


@pytest.mark.parametrize("space", ["cosine", "l2"])
def test_a_large_pass_links_on_int8_rows_and_serves_16_bit_rows(tmp_path: Path, space: str) -> None:
    """A pass adding a share of the graph (1,000 vectors to 4,000: at least
    `int8_backlog.MIN_ADD_SHARE`) runs on int8 rows: every
    record's row in the graph served after it is its current vector at 16 bits, the pass
    leaves no file, and the graph finds what one from a pass on 16-bit rows finds (recall@10
    within 0.02 of it)."""
    on_int8, rewritten = _large_pass(tmp_path / "int8", space, int8_backlog.MIN_ADD_SHARE)
    on_16_bits, not_rewritten = _large_pass(tmp_path / "sixteen", space, 1.0)
    assert (rewritten, not_rewritten) == (1, 0)
    assert on_int8 >= on_16_bits - 0.02 and on_int8 >= 0.9


def test_passes_a_rewrite_to_int8_would_not_pay_for_keep_the_graphs_rows(tmp_path: Path) -> None:
    """No int8 rewrite for a pass that adds nothing (deletes only) or adds to an empty
    graph (whose share of adds is infinite), and each pass still gives the right graph."""
    rng = np.random.default_rng(4)
    ref = make_reference(rng, 500, 8, clustered=False)
    keys = np.asarray(sorted(ref), dtype=np.uint64)
    params = HnswParams(space="cosine")
    empty = VectorIndex.from_graph(8, params, Thresholds(0, 80), Index(**graph_config(8, params)))
    with _int8_rewrites() as rewrites:
        for index, removed, added in [
            (graph_index(ref, 8, "cosine", Thresholds(0, 80), True), keys, {}),
            (empty, np.empty(0, np.uint64), ref),
        ]:
            new = np.asarray(sorted(added), dtype=np.uint64)
            vectors = ref_vectors(added, new) if len(new) else np.empty((0, 8), np.float32)
            index.defer(removed, new, vectors)
            work = index.take_backlog()
            index.adopt_backlog_graph(apply_backlog(index, work, threading.Event(), tmp_path), work)
            assert index.backlog == 0 and len(index) == len(added)
            assert sorted(index.keys().tolist()) == sorted(added)
    assert rewrites == [] and list(tmp_path.iterdir()) == []
