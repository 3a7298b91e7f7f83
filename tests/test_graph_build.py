"""The graph's scalar type: what a graph stores is what `at_graph_precision` says it stores.

Graphs are built in bfloat16 where usearch has SIMD kernels for it (float16 before), and
snapshots written in float16 by an older huedb are still loaded. The catch-up (skip an
entry whose vector the graph already holds) and `verify` (report indexed vectors that differ
from the stored ones) compare stored float32 vectors at the graph's own precision, so that
rounding must be exactly usearch's, ties included, for either type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from usearch.index import Index

from huedb.engine import vector_index
from huedb.engine.vector_index import (
    GRAPH_DTYPE,
    HnswParams,
    Thresholds,
    VectorIndex,
    at_graph_precision,
    build_graph,
    graph_input,
    graph_vectors,
)

THRESHOLDS = Thresholds(0, 0)
DTYPES = ("f16", "bf16")


def _graph_of(dtype: str, keys: np.ndarray, vectors: np.ndarray, space: str) -> Any:
    """A graph built in `dtype`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vector_index, "GRAPH_DTYPE", dtype)
        return build_graph(vectors.shape[1], HnswParams(space=space), keys, vectors)


def _served(graph: Any, dim: int, space: str) -> VectorIndex:
    """A graph-mode index served by `graph`, without float32 vectors."""
    return VectorIndex.from_graph(dim, HnswParams(space=space), THRESHOLDS, graph)


def _with_ties(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """float32 vectors over many magnitudes, a third of their components exactly halfway
    between two bfloat16 values and a third halfway between two float16 values."""
    scale = rng.choice([1e-3, 1.0, 300.0], size=(n, 1))
    vectors = (rng.standard_normal((n, dim)) * scale).astype(np.float32)
    bits = vectors.view(np.uint32)
    third = rng.integers(0, 3, size=vectors.shape)
    bits[third == 0] = (bits[third == 0] & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
    halves = (bits & np.uint32(0xFFFFE000)) | np.uint32(0x1000)
    bits[third == 1] = halves[third == 1]
    return vectors


def test_the_build_uses_bfloat16_where_usearch_accelerates_it() -> None:
    assert GRAPH_DTYPE in DTYPES


@settings(max_examples=12, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    space=st.sampled_from(["l2", "ip", "cosine"]),
    n=st.integers(1, 60),
    dim=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_graph_holds_its_vectors_at_graph_precision(
    dtype: str, space: str, n: int, dim: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.choice(10 * n, size=n, replace=False).astype(np.uint64)
    vectors = _with_ties(rng, n, dim)
    graph = _graph_of(dtype, keys, vectors, space)
    index = _served(graph, dim, space)
    assert index.mismatched(keys, vectors) == []
    held = graph_vectors(graph, keys)
    assert np.array_equal(held, at_graph_precision(dtype, graph_input(space, vectors)))
    row = int(rng.integers(n))
    changed = vectors.copy()
    if space == "cosine":
        # A cosine graph holds directions: a component's sign flipped is reported (a scale
        # changes no cosine distance, so none is compared).
        column = int(np.argmax(np.abs(held[row])))
        changed[row, column] = -changed[row, column]
    else:
        # A change of one component by two of the graph's ulps (never rounded away).
        column = int(rng.integers(dim))
        value = held[row, column]
        ulp = np.spacing(np.float16(value)) if dtype == "f16" else np.spacing(value) * 2**16
        changed[row, column] = value + np.float32(2 * abs(float(ulp)))
    assert index.mismatched(keys, changed) == [int(keys[row])]


def test_a_float16_snapshot_loads_and_compares_at_float16(tmp_path) -> None:
    """A graph written in float16 (as older snapshots are) serves and compares at float16
    when the build's type is another."""
    rng = np.random.default_rng(7)
    keys = np.arange(1, 301, dtype=np.uint64)
    vectors = _with_ties(rng, 300, 16)
    built = _served(_graph_of("f16", keys, vectors, "l2"), 16, "l2")
    path = tmp_path / "graph.usearch"
    built.save_graph(path)
    payload = memoryview(path.read_bytes())
    loaded = VectorIndex.from_serialized(16, HnswParams(space="l2"), THRESHOLDS, payload, payload)
    assert loaded.mismatched(keys, vectors) == []
    hits, _ = loaded.search(vectors[5], 3, None, lambda k: vectors[k.astype(np.int64) - 1])
    assert int(hits[0]) == 6
    bigger = vectors.copy()
    bigger[9] += np.float32(1.0)
    assert loaded.mismatched(keys, bigger) == [10]


def test_a_cosine_graph_holds_unit_vectors_under_the_inner_product() -> None:
    """New cosine graphs hold each vector scaled to unit length (a zero vector stays zero)
    and rank by the inner product: the same neighbours as cosine, reported at float32."""
    rng = np.random.default_rng(3)
    keys = np.arange(1, 201, dtype=np.uint64)
    vectors = (rng.standard_normal((200, 24)) * rng.choice([1e-3, 1.0, 300.0], (200, 1))).astype(
        np.float32
    )
    vectors[17] = 0.0
    vectors[18] *= np.float32(1e-25)  # float32 squares of these underflow
    vectors[19] *= np.float32(1e25)  # and of these overflow
    graph = build_graph(24, HnswParams(space="cosine"), keys, vectors)
    assert str(graph.metric.name).lower() == "ip"
    held = graph_vectors(graph, keys)
    norms = np.linalg.norm(held, axis=1)
    assert np.allclose(np.delete(norms, 17), 1.0, atol=1e-2) and norms[17] == 0.0
    index = _served(graph, 24, "cosine")
    fetch = lambda k: vectors[k.astype(np.int64) - 1]  # noqa: E731
    query = vectors[40] * np.float32(7.0)
    hits, dists = index.search(query, 5, None, fetch)
    wide = vectors.astype(np.float64)
    unit = wide / np.maximum(np.linalg.norm(wide, axis=1, keepdims=True), 1e-300)
    cosine = 1.0 - unit @ (query / np.linalg.norm(query.astype(np.float64)))
    assert int(hits[0]) == 41
    assert np.allclose(dists, np.sort(cosine)[:5], atol=1e-5)
    index.upsert(np.array([500], dtype=np.uint64), vectors[:1] * np.float32(-3.0))
    assert np.allclose(graph_vectors(index._graph, np.array([500], dtype=np.uint64)), -held[:1])


def test_a_cosine_graph_of_an_older_snapshot_is_searched_as_it_was_built(tmp_path) -> None:
    """A snapshot whose cosine graph uses usearch's cosine metric (before unit vectors)
    still serves: its vectors are kept and added as they are, and compared as such."""
    rng = np.random.default_rng(5)
    keys = np.arange(1, 301, dtype=np.uint64)
    vectors = (rng.standard_normal((300, 16)) * 5).astype(np.float32)
    old = Index(ndim=16, metric="cos", dtype=GRAPH_DTYPE, connectivity=16, expansion_add=100)
    old.add(keys, vectors)
    path = tmp_path / "graph.usearch"
    old.save(str(path))
    payload = memoryview(path.read_bytes())
    params = HnswParams(space="cosine")
    loaded = VectorIndex.from_serialized(16, params, THRESHOLDS, payload, payload)
    assert loaded.mismatched(keys, vectors) == []
    fetch = lambda k: vectors[k.astype(np.int64) - 1]  # noqa: E731
    hits, _ = loaded.search(vectors[8], 3, None, fetch)
    assert int(hits[0]) == 9
    extra = (rng.standard_normal((1, 16)) * 5).astype(np.float32)
    loaded.upsert(np.array([900], dtype=np.uint64), extra)
    stored = graph_vectors(loaded._graph, np.array([900], dtype=np.uint64))
    assert np.array_equal(stored, at_graph_precision(GRAPH_DTYPE, extra))
    assert loaded.mismatched(np.array([900], dtype=np.uint64), extra) == []
