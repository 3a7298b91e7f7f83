"""Exact filtered search on a mapped graph without float32 vectors (`engine/mapped_rows.py`).

- The certified shortlist: for random clustered data (duplicates, zero rows, three scales),
  every space, both 16-bit types, dense and sparse keys, any subset and k, the rows
  `MappedRows.shortlist` keeps include the exact k nearest by huedb's own float32
  distances, equal distances by key (a brute-force reference).
- End to end: a store reopened by a fresh client answers filtered queries exactly (ids and
  distances equal to brute force) without reading the collection's float32 vectors into
  memory, also while another process's large change waits in the graph's backlog.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from usearch.index import Index

from huedb.engine import graph_build, vector_index
from huedb.engine.mapped_rows import MappedRows
from huedb.engine.vector_index import (
    BF16_ROUNDING_BOUND,
    GRAPH_METRICS,
    exact_distances,
    graph_input,
)
from tests import stores
from tests.graph_wait import wait_for_graph
from tests.stores import StoreTarget

store = stores.store

SPACES = ("cosine", "ip", "l2")


def _vectors(
    rng: np.random.Generator, n: int, dim: int, scale: float, spread: float = 0.05
) -> np.ndarray:
    """Clustered rows with exact duplicates and a zero row among them; with a small
    `spread` most of a cluster's rows are nearly tied for a query near it, so 16-bit
    rounding reorders them."""
    centres = rng.standard_normal((max(1, n // 20), dim)).astype(np.float32)
    labels = rng.integers(0, len(centres), n)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * np.float32(spread)
    vectors = ((centres[labels] + noise) * np.float32(scale)).astype(np.float32)
    if n > 3:
        vectors[1] = vectors[0]  # a duplicate: equal distances, ranked by key
        vectors[2] = 0.0
    return vectors


def _reference(space: str, vectors: np.ndarray, keys: np.ndarray, query: np.ndarray, k: int):
    """Positions of the exact k nearest, by huedb's float32 distances, then by key."""
    dists = exact_distances(space, vectors, query)
    return np.lexsort((keys, dists))[:k]


@settings(max_examples=400, deadline=None)
@given(
    space=st.sampled_from(SPACES),
    dtype=st.sampled_from(("bf16", "f16")),
    dim=st.integers(2, 48),
    n=st.integers(1, 300),
    scale=st.sampled_from((1e-3, 1.0, 300.0)),
    spread=st.sampled_from((0.05, 2e-3)),
    sparse_keys=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_shortlist_keeps_every_exact_answer(
    space: str,
    dtype: str,
    dim: int,
    n: int,
    scale: float,
    spread: float,
    sparse_keys: bool,
    seed: int,
    data: st.DataObject,
) -> None:
    rng = np.random.default_rng(seed)
    vectors = _vectors(rng, n, dim, scale, spread)
    if sparse_keys:
        keys = np.sort(rng.choice(2**40, n, replace=False)).astype(np.uint64)
    else:
        keys = np.arange(1, n + 1, dtype=np.uint64)
    graph = Index(ndim=dim, metric=GRAPH_METRICS[space], dtype=dtype, connectivity=8)
    graph.add(keys, graph_input(space, vectors), threads=1)
    rows = MappedRows.of(graph.save(), dim, BF16_ROUNDING_BOUND)
    assert rows is not None and rows.kind == dtype

    subset = np.flatnonzero(rng.random(n) < data.draw(st.sampled_from((0.1, 0.5, 1.0))))
    if len(subset) == 0:
        subset = np.array([0])
    slots = rows.slots_of(keys[subset])
    assert np.all(slots >= 0)
    k = data.draw(st.integers(1, 20))
    kind = data.draw(st.sampled_from(("random", "stored", "near", "zero")))
    stored = vectors[rng.integers(0, n)]
    query = {
        "random": rng.standard_normal(dim).astype(np.float32) * np.float32(scale),
        "stored": stored,
        "near": stored + np.float32(spread * scale) * rng.standard_normal(dim, dtype=np.float32),
        "zero": np.zeros(dim, dtype=np.float32),
    }[kind]
    picked = rows.shortlist(space, query, k, slots)
    want = _reference(space, vectors[subset], keys[subset], query, k)
    assert set(want.tolist()) <= set(picked.tolist())


def test_keys_the_graph_does_not_hold_have_no_slot() -> None:
    graph = Index(ndim=4, metric="ip", dtype="bf16")
    graph.add(np.array([3, 5, 9], dtype=np.uint64), np.eye(4, dtype=np.float32)[:3])
    rows = MappedRows.of(graph.save(), 4, BF16_ROUNDING_BOUND)
    assert rows is not None
    asked = np.array([5, 4, 9, 2**62, 3], dtype=np.uint64)
    assert rows.slots_of(asked).tolist()[1::2] == [-1, -1]
    assert sorted(rows.slots_of(asked)[[0, 2, 4]].tolist()) == [0, 1, 2]


def test_graphs_of_other_vector_types_are_not_read() -> None:
    graph = Index(ndim=4, metric="ip", dtype="f32")
    graph.add(np.arange(3, dtype=np.uint64), np.eye(4, dtype=np.float32)[:3])
    assert MappedRows.of(graph.save(), 4, BF16_ROUNDING_BOUND) is None
    assert MappedRows.of(bytearray(b"not a graph at all"), 4, BF16_ROUNDING_BOUND) is None


def _flat_and_mapped(tmp_path, space: str, keys: np.ndarray, vectors: np.ndarray):
    """The same records as an exact index holding float32 vectors and as a view of a saved
    graph holding none, both searching exactly (filtered or not) at any size."""
    dim = vectors.shape[1]
    params = vector_index.HnswParams(space=space)
    every = vector_index.Thresholds(10**12, 10**12)
    flat = vector_index.VectorIndex(dim, params, every)
    flat.upsert(keys, vectors)
    vector_index.build_graph(dim, params, keys, vectors).save(str(tmp_path / "g.usearch"))
    view = vector_index.map_graph_file(tmp_path / "g.usearch")
    mapped = vector_index.VectorIndex.from_graph(dim, params, every, view, flat=None)
    assert mapped.ranks_subsets_in_place
    return flat, mapped


@pytest.mark.parametrize("scale", [1e20, 1e-24])
def test_cosine_rows_of_extreme_norm_rank_by_their_direction(tmp_path, scale: float) -> None:
    """Rows whose squares leave float32's range (found by review): the float32 pass gave
    them a norm of infinity or 0, so a cosine distance of 1.0 whatever their direction,
    while a cosine graph holds them as unit vectors, so a reader ranking the mapped rows
    dropped a row the writer kept. Both now give them their true cosine."""
    rng = np.random.default_rng(1)
    dim, n, k = 16, 200, 150
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    query = rng.standard_normal(dim).astype(np.float32)
    unit = query / np.linalg.norm(query)
    with np.errstate(over="ignore", under="ignore"):
        vectors[7] = (-unit * np.float32(scale)).astype(np.float32)  # opposite: distance 2
        vectors[9] = (unit * np.float32(scale)).astype(np.float32)  # along it: distance 0
    keys = np.arange(1, n + 1, dtype=np.uint64)
    wide = vectors.astype(np.float64)
    true = 1 - wide @ query / (np.linalg.norm(wide, axis=1) * np.linalg.norm(query))
    want = keys[np.lexsort((keys, true))[:k]]
    assert 10 in want[:1] and 8 not in want  # the test's premise: true cosines decide

    flat, mapped = _flat_and_mapped(tmp_path, "cosine", keys, vectors)

    def fetch(wanted: np.ndarray) -> np.ndarray:
        return vectors[wanted.astype(np.int64) - 1]

    for index in (flat, mapped):
        got, dists = index.search(query, k, keys, fetch)
        assert got.tolist() == want.tolist()
        assert dists[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("space", ["ip", "cosine"])
@pytest.mark.parametrize("k", [1, 5])
def test_distances_that_round_equal_are_ranked_by_key(tmp_path, space: str, k: int) -> None:
    """Rows nearly orthogonal to the query (|dot| under ~3e-8: found by review) all have
    the float32 distance 1.0; ties go by key, so the lowest keys win, though their dots put
    them last in the rough shortlist of 2k + 16 (the flat search, filtered and not, and the
    mapped rows' exact pass all cut them)."""
    dim, n = 4, 100
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors[:, 0] = np.linspace(-5e-8, 2.5e-8, n).astype(np.float32)  # key 1's dot lowest
    vectors[:, 1:] /= np.linalg.norm(vectors[:, 1:], axis=1, keepdims=True)
    query = np.array([1, 0, 0, 0], dtype=np.float32)
    keys = np.arange(1, n + 1, dtype=np.uint64)
    assert np.unique(exact_distances(space, vectors, query)).tolist() == [1.0]
    flat, mapped = _flat_and_mapped(tmp_path, space, keys, vectors)

    def fetch(wanted: np.ndarray) -> np.ndarray:
        return vectors[wanted.astype(np.int64) - 1]

    want = list(range(1, k + 1))
    assert flat.search(query, k, None, fetch)[0].tolist() == want
    assert flat.search(query, k, keys, fetch)[0].tolist() == want
    assert mapped.search(query, k, keys, fetch)[0].tolist() == want


# -- end to end ------------------------------------------------------------------------

DIM = 8
GRAPH_ABOVE = 100  # vectors: collections larger than this get a graph
BUCKETS = 10
FILTERS = (  # (where, the buckets it allows)
    ({"b": {"$lt": 3}}, lambda b: b < 3),
    ({"b": 5}, lambda b: b == 5),
    ({"b": {"$in": [1, 7]}}, lambda b: np.isin(b, [1, 7])),
    ({"b": {"$ne": 4}}, lambda b: b != 4),
)


def _client(store: StoreTarget, path: Any) -> Any:
    return store.client(path, {"huedb_exact_max_floats": DIM * GRAPH_ABOVE})


def _wait_indexed(col: Any) -> None:
    col.query(query_embeddings=np.zeros((1, DIM), dtype=np.float32), n_results=1)
    wait_for_graph(col)


def _filled(
    store: StoreTarget, path: Any, space: str, n: int, rng: np.random.Generator
) -> np.ndarray:
    """A store with collection "mapped" of `n` vectors, its graph snapshotted in `path`."""
    vectors = _vectors(rng, n, DIM, 1.0)
    client = _client(store, path)
    col = client.create_collection("mapped", configuration={"hnsw": {"space": space}})
    for start in range(0, n, 1_000):
        stop = min(n, start + 1_000)
        col.add(
            ids=[f"r{i}" for i in range(start, stop)],
            embeddings=vectors[start:stop],
            metadatas=[{"b": i % BUCKETS} for i in range(start, stop)],
        )
    _wait_indexed(col)
    client.close()
    return vectors


def _check_exact(col: Any, space: str, vectors: np.ndarray, queries: np.ndarray) -> None:
    """Every filter's answers equal brute force over `vectors` (ids, and distances)."""
    for where, allows in FILTERS:
        allowed = np.flatnonzero(allows(np.arange(len(vectors)) % BUCKETS))
        for query in queries:
            for k in (1, 10, 40):
                got = col.query(
                    query_embeddings=query[None, :],
                    n_results=k,
                    where=where,
                    include=["distances"],
                )
                order = _reference(space, vectors[allowed], allowed, query, k)
                assert got["ids"][0] == [f"r{i}" for i in allowed[order]]
                want = exact_distances(space, vectors[allowed][order], query)
                assert np.array_equal(np.asarray(got["distances"][0], dtype=np.float32), want)


def _index_of(client: Any) -> Any:
    """The index the client's engine holds for its one collection."""
    (state,) = client._server.engine._indexes._states.values()
    return state.index


def _queries(rng: np.random.Generator, vectors: np.ndarray) -> np.ndarray:
    picked = vectors[rng.integers(0, len(vectors), 3)]
    return np.vstack([picked, picked[:1] + np.float32(1e-3), rng.standard_normal((2, DIM))])


@pytest.mark.parametrize("space", SPACES)
def test_a_reopened_store_filters_exactly_without_its_float32_vectors(
    store: StoreTarget, tmp_path, space
) -> None:
    rng = np.random.default_rng(7)
    vectors = _filled(store, tmp_path, space, 1_500, rng)
    client = _client(store, tmp_path)
    col = client.get_collection("mapped")
    _check_exact(col, space, vectors, _queries(rng, vectors).astype(np.float32))
    index = _index_of(client)
    assert index.uses_graph and index.ranks_subsets_in_place and not index.has_vectors
    # A write of this process copies the graph out of its snapshot: still exact.
    extra = rng.standard_normal((5, DIM)).astype(np.float32)
    col.add(
        ids=[f"r{i}" for i in range(1_500, 1_505)],
        embeddings=extra,
        metadatas=[{"b": i % BUCKETS} for i in range(1_500, 1_505)],
    )
    both = np.vstack([vectors, extra])
    _check_exact(col, space, both, _queries(rng, both).astype(np.float32))
    client.close()


def test_changes_waiting_in_the_backlog_are_ranked_exactly(store: StoreTarget, tmp_path) -> None:
    """Another process changes more vectors than a catch-up applies at once: the reader's
    graph stays its snapshot's view with a backlog, whose keys are read and ranked exactly."""
    rng = np.random.default_rng(11)
    n = 3_000
    vectors = _filled(store, tmp_path, "l2", n, rng)
    reader = _client(store, tmp_path)
    col = reader.get_collection("mapped")
    _check_exact(col, "l2", vectors, _queries(rng, vectors).astype(np.float32)[:2])
    # Another node's data directory on PostgreSQL; the same store directory on SQLite.
    writer = _client(store, tmp_path / "writer" if store.is_postgres else tmp_path)
    changed = np.arange(0, 2_400)
    vectors[changed] = rng.standard_normal((len(changed), DIM)).astype(np.float32) * 3
    writer.get_collection("mapped").update(
        ids=[f"r{i}" for i in changed], embeddings=vectors[changed]
    )
    writer.close()
    # The first query notes the changes as the graph's backlog (a pass applies them in the
    # background; only a later query adopts its graph): this one ranks with the backlog.
    _check_exact(col, "l2", vectors, vectors[changed[:1]])
    index = _index_of(reader)
    assert index.backlog > 0 and index.ranks_subsets_in_place and not index.has_vectors
    queries = np.vstack([vectors[changed[1:3]], _queries(rng, vectors)]).astype(np.float32)
    _check_exact(col, "l2", vectors, queries)
    assert not _index_of(reader).has_vectors
    reader.close()


def test_over_its_memory_budget_a_writer_first_releases_its_rows(
    store: StoreTarget, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that wrote a collection and built its graph (in a child, served as a view
    of the snapshot, kept as it is: every view here, VIEW_KEPT_MIN_BYTES is 0) keeps its
    vectors as the graph's 16-bit rows until its index memory budget is exceeded; it
    then lets them go rather than evicting the index, and its filtered and unfiltered
    answers stay exact, through its own updates in the backlog and the pass that applies
    them."""
    monkeypatch.setattr(vector_index, "VIEW_KEPT_MIN_BYTES", 0)
    monkeypatch.setattr(graph_build, "CHILD_MIN_FLOATS", 0)
    rng = np.random.default_rng(5)
    n = 1_200
    vectors = _vectors(rng, n, DIM, 1.0)
    client = _client(store, tmp_path)
    col = client.create_collection("mapped", configuration={"hnsw": {"space": "cosine"}})
    for start in range(0, n, 100):  # the graph starts during the ingest, as a writer's does
        col.add(
            ids=[f"r{i}" for i in range(start, start + 100)],
            embeddings=vectors[start : start + 100],
            metadatas=[{"b": i % BUCKETS} for i in range(start, start + 100)],
        )
    _wait_indexed(col)
    index = _index_of(client)
    assert index.keeps_view and index.ranks_subsets_in_place and not index.has_vectors
    assert index.flat is not None and index.flat.kind == vector_index.GRAPH_DTYPE
    _check_exact(col, "cosine", vectors, _queries(rng, vectors).astype(np.float32))
    assert _index_of(client).flat is not None  # no budget: kept

    # A budget one byte below what the index holds now.
    client._server.engine._indexes._budget = index.nbytes - 1
    changed = rng.choice(n, 30, replace=False)
    vectors[changed] = rng.standard_normal((len(changed), DIM)).astype(np.float32)
    col.update(ids=[f"r{i}" for i in changed], embeddings=vectors[changed])
    index = _index_of(client)
    assert index.backlog > 0 and index.keeps_view and index.flat is None
    queries = np.vstack([vectors[changed[:2]], _queries(rng, vectors)]).astype(np.float32)
    _check_exact(col, "cosine", vectors, queries)
    deadline = time.monotonic() + 60
    while col.get_indexing_status().num_unindexed_ops:
        assert time.monotonic() < deadline, "the pass never applied the changes"
        time.sleep(0.05)
    col.count()  # a call that adopts the pass's graph
    index = _index_of(client)
    assert index.backlog == 0 and index.keeps_view and index.flat is None
    _check_exact(col, "cosine", vectors, queries)
    got = col.query(query_embeddings=vectors[changed], n_results=1, include=[])
    assert [row[0] for row in got["ids"]] == [f"r{i}" for i in changed]
    client.close()
