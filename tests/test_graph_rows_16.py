"""A collection's vectors held as a graph's 16-bit rows (`FlatVectors.kind`), from the start
of its graph's build on.

- The shortlist is the same scored in blocks of any size as in one pass.
- The rows: for random clustered data (duplicates, a zero row, three scales), every space,
  both 16-bit types, after updates and removals, `FlatVectors.shortlist` keeps the exact
  k nearest (by huedb's float32 distances, equal distances by key) of every row or of a
  subset, and each row is the value a usearch graph of that type holds for the vector: the
  build is fed these rows and the graph holds the same bits.
- The index: a `VectorIndex` holding 16-bit rows answers every search (unfiltered and
  filtered, exact mode and graph mode) with the keys and distances of one holding float32
  vectors, reading float32 vectors only through its fetch.
- End to end: a writer whose graph is being built answers exactly (ids and distances equal
  to brute force) through the real client on both stores, holding half the bytes.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from usearch.index import Index

from huedb.engine import index_cache
from huedb.engine.mapped_rows import certified_shortlist, rows_as_float32, stored_norms
from huedb.engine.vector_index import (
    GRAPH_DTYPE,
    GRAPH_METRICS,
    FlatVectors,
    HnswParams,
    Thresholds,
    VectorIndex,
    exact_distances,
    graph_input,
    graph_rows_16,
    rounding_bound,
)
from tests import stores
from tests.graph_wait import wait_for_graph
from tests.knobs import knob
from tests.stores import StoreTarget
from tests.test_mapped_rows import _reference, _vectors

store = stores.store

SPACES = ("cosine", "ip", "l2")
EXAMPLES = 2 * int(knob("HUEDB_HYPOTHESIS_EXAMPLES", "150"))
# The strategies both properties draw from.
A_SPACE = st.sampled_from(SPACES)
A_KIND = st.sampled_from(("bf16", "f16"))
A_SEED = st.integers(0, 2**32 - 1)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    space=A_SPACE,
    kind=A_KIND,
    seed=A_SEED,
    dim=st.integers(2, 40),
    n=st.integers(1, 250),
    scale=st.sampled_from((1e-3, 1.0, 300.0)),
    spread=st.sampled_from((0.05, 2e-3)),
    data=st.data(),
)
def test_rows_shortlist_every_exact_answer(
    space: str,
    kind: str,
    dim: int,
    n: int,
    scale: float,
    spread: float,
    seed: int,
    data: st.DataObject,
) -> None:
    rng = np.random.default_rng(seed)
    vectors = _vectors(rng, n, dim, scale, spread)
    keys = np.arange(10, 10 + n, dtype=np.uint64)
    rows = FlatVectors(dim, kind, space)
    rows.upsert(keys, vectors)
    # Some rows change and some go: the matrix is rewritten in place and compacted.
    changed = np.flatnonzero(rng.random(n) < 0.2)
    if len(changed):
        vectors[changed] = _vectors(rng, len(changed), dim, scale, spread)
        rows.upsert(keys[changed], vectors[changed])
    gone = np.flatnonzero(rng.random(n) < 0.1)
    rows.remove(keys[gone])
    alive = np.setdiff1d(np.arange(n), gone)
    if len(alive) == 0:
        return
    assert len(rows) == len(alive)
    assert np.all(rows.same_rows(keys[alive], vectors[alive]))

    k = data.draw(st.integers(1, 20))
    which = data.draw(st.sampled_from(("stored", "near", "random", "zero")))
    stored = vectors[alive[rng.integers(0, len(alive))]]
    query = {
        "stored": stored,
        "near": stored + np.float32(spread * scale) * rng.standard_normal(dim, dtype=np.float32),
        "random": rng.standard_normal(dim).astype(np.float32) * np.float32(scale),
        "zero": np.zeros(dim, dtype=np.float32),
    }[which]
    want = _reference(space, vectors[alive], keys[alive], query, k)
    assert set(keys[alive][want].tolist()) <= set(rows.shortlist(query, k).tolist())

    subset = alive[rng.random(len(alive)) < 0.5]
    if len(subset):
        want = _reference(space, vectors[subset], keys[subset], query, k)
        picked = rows.shortlist(query, k, keys[subset])
        assert set(keys[subset][want].tolist()) <= set(picked.tolist())

    # The graph a build feeds these rows to holds exactly them.
    graph = Index(ndim=dim, metric=GRAPH_METRICS[space], dtype=kind, connectivity=8)
    held_keys, held = rows.borrow().keys, rows.borrow().matrix
    graph.add(held_keys, rows_as_float32(held), threads=1)
    got = np.vstack(graph.get(held_keys, dtype=np.float32)).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), rows_as_float32(held).view(np.uint32))


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    space=A_SPACE,
    kind=A_KIND,
    seed=A_SEED,
    n=st.integers(1, 200),
    k=st.integers(1, 30),
    block=st.integers(1, 64),
    scale=st.sampled_from((1e-3, 1.0, 1e13)),
)
def test_a_shortlist_scored_in_blocks_is_the_same(
    space: str, kind: str, n: int, k: int, block: int, scale: float, seed: int
) -> None:
    """Blocks keep each row's lower bound and the k lowest upper bounds: the same rows as
    one pass over all of them (rows of extreme norm included)."""
    rng = np.random.default_rng(seed)
    vectors = _vectors(rng, n, 12, 1.0, 2e-3)
    vectors[rng.random(n) < 0.1] *= np.float32(scale)
    rows = graph_rows_16(kind, space, vectors)
    norms = stored_norms(kind, rows)
    query = rng.standard_normal(12).astype(np.float32)
    rel = rounding_bound(kind)
    whole = certified_shortlist(kind, rel, rows, norms, space, query, k, block=n)
    parts = certified_shortlist(kind, rel, rows, norms, space, query, k, block=block)
    assert parts.tolist() == whole.tolist()


def test_rows_are_the_graphs_values() -> None:
    """`graph_rows_16` rounds as usearch does (cosine rows scaled to unit length first)."""
    rng = np.random.default_rng(1)
    vectors = (rng.standard_normal((64, 24)) * 3).astype(np.float32)
    for space in SPACES:
        for kind in ("bf16", "f16"):
            graph = Index(ndim=24, metric=GRAPH_METRICS[space], dtype=kind)
            keys = np.arange(64, dtype=np.uint64)
            graph.add(keys, graph_input(space, vectors), threads=1)
            held = np.vstack(graph.get(keys, dtype=np.float32)).astype(np.float32)
            mine = rows_as_float32(graph_rows_16(kind, space, vectors))
            assert np.array_equal(held, mine), (space, kind)


def _pair(space: str, vectors: np.ndarray, graph: bool) -> tuple[VectorIndex, VectorIndex]:
    """Two indexes of the same vectors: one holding them as float32, one as 16-bit rows."""
    thresholds = Thresholds(exact_max_floats=10**9, filtered_exact_max_floats=10**9)
    params = HnswParams(space=space)
    keys = np.arange(len(vectors), dtype=np.uint64)
    pair = []
    for rows_16 in (False, True):
        index = VectorIndex(vectors.shape[1], params, thresholds)
        index.upsert(keys, vectors)
        if rows_16:
            index.to_graph_rows()
        if graph:
            built = Index(ndim=vectors.shape[1], metric=GRAPH_METRICS[space], dtype=GRAPH_DTYPE)
            built.add(keys, graph_input(space, vectors), threads=1)
            index = VectorIndex.from_graph(vectors.shape[1], params, thresholds, built, index.flat)
        pair.append(index)
    return pair[0], pair[1]


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("graph", [False, True])
def test_an_index_of_16_bit_rows_answers_as_one_of_float32(space: str, graph: bool) -> None:
    rng = np.random.default_rng(3)
    vectors = _vectors(rng, 600, 16, 1.0, 2e-3)
    full, half = _pair(space, vectors, graph)
    assert half.flat is not None and half.flat.kind == GRAPH_DTYPE and not half.has_vectors
    assert half.ranks_subsets_in_place and full.has_vectors
    assert half.flat.nbytes < 0.75 * full.flat.nbytes  # type: ignore[union-attr]
    fetched: list[int] = []

    def fetch(keys: np.ndarray) -> np.ndarray:
        fetched.append(len(keys))
        return vectors[keys.astype(np.int64)]

    def refuse(keys: np.ndarray) -> np.ndarray:
        raise AssertionError("an index holding float32 vectors fetched some")

    # vectors[2] is the zero row: a zero query shortlists nothing (every vector is read).
    queries = np.vstack([vectors[:3], vectors[:2] + 1e-3, rng.standard_normal((2, 16))])
    for number, query in enumerate(queries.astype(np.float32)):
        for allowed in (None, np.flatnonzero(np.arange(600) % 3 == 0).astype(np.uint64)):
            for k in (1, 10, 50):
                want = full.search(query, k, allowed, refuse)
                got = half.search(query, k, allowed, fetch)
                assert got[0].tolist() == want[0].tolist()
                assert np.array_equal(got[1], want[1])
        if number != 2:
            assert fetched and max(fetched) < 200, fetched  # the rows shortlist
        fetched.clear()
    assert half.mismatched(np.arange(5, dtype=np.uint64), vectors[:5]) == []
    moved = vectors[:5] + np.float32(0.5)
    assert half.mismatched(np.arange(5, dtype=np.uint64), moved) == list(range(5))


DIM = 8
GRAPH_ABOVE = 100
BUCKETS = 10


def _exact_answers(
    col: Any, space: str, vectors: np.ndarray, queries: np.ndarray, graph: bool
) -> None:
    """Answers equal brute force over `vectors` (ids, distances); of a graph's unfiltered
    search (approximate), that each distance returned is the id's exact one, in order."""
    buckets = np.arange(len(vectors)) % BUCKETS
    for where in (None, {"b": {"$lt": 3}}):
        allowed = np.arange(len(vectors)) if where is None else np.flatnonzero(buckets < 3)
        for query in queries:
            for k in (1, 10, 40):
                got = col.query(
                    query_embeddings=query[None, :], n_results=k, where=where, include=["distances"]
                )
                dists = np.asarray(got["distances"][0], dtype=np.float32)
                if graph and where is None:
                    rows = [int(i[1:]) for i in got["ids"][0]]
                    assert len(rows) == k and list(dists) == sorted(dists)
                    assert np.array_equal(dists, exact_distances(space, vectors[rows], query))
                    continue
                order = _reference(space, vectors[allowed], allowed, query, k)
                assert got["ids"][0] == [f"r{i}" for i in allowed[order]]
                want = exact_distances(space, vectors[allowed][order], query)
                assert np.array_equal(dists, want)


@pytest.mark.parametrize("space", SPACES)
def test_a_writer_answers_exactly_while_its_graph_is_built(
    store: StoreTarget, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, space: str
) -> None:
    """The build is held back until the answers are checked: the writer searches its 16-bit
    rows (exact mode), reading the float32 vectors of the rows they shortlist; then the
    graph comes, and filtered answers (exact at this size) stay exact."""
    started, go = threading.Event(), threading.Event()
    grow = index_cache.grow_graph

    def held_back(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert go.wait(60)
        return grow(*args, **kwargs)

    monkeypatch.setattr(index_cache, "grow_graph", held_back)
    rng = np.random.default_rng(11)
    vectors = _vectors(rng, 1_000, DIM, 1.0)
    client = store.client(tmp_path, {"huedb_exact_max_floats": DIM * GRAPH_ABOVE})
    try:
        col = client.create_collection("rows", configuration={"hnsw": {"space": space}})
        for start in range(0, len(vectors), 100):
            col.add(
                ids=[f"r{i}" for i in range(start, start + 100)],
                embeddings=vectors[start : start + 100],
                metadatas=[{"b": i % BUCKETS} for i in range(start, start + 100)],
            )
        assert started.wait(60)
        (state,) = client._server.engine._indexes._states.values()
        index = state.index
        assert not index.uses_graph and index.flat.kind == GRAPH_DTYPE
        assert index.nbytes < 0.75 * len(vectors) * (DIM * 4 + 12) + index.flat._row_by_key.nbytes
        picked = vectors[rng.integers(0, len(vectors), 3)]
        queries = np.vstack([picked, picked[:1] + np.float32(1e-3), rng.standard_normal((2, DIM))])
        queries = queries.astype(np.float32)
        _exact_answers(col, space, vectors, queries, graph=False)
        go.set()
        wait_for_graph(col)
        col.count()  # adopts the graph
        (state,) = client._server.engine._indexes._states.values()
        assert state.index.uses_graph and state.index.flat.kind == GRAPH_DTYPE
        # The graph, fed the 16-bit rows, holds what a graph fed the vectors would: the
        # catch-up and `verify` find every record as it is stored.
        keys = np.asarray(sorted(state.index.keys()), dtype=np.uint64)
        assert len(keys) == len(vectors)
        assert state.index.mismatched(keys, vectors) == []
        _exact_answers(col, space, vectors, queries, graph=True)
    finally:
        go.set()
        client.close()
