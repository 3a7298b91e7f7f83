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

from huedb.engine import vector_index
from huedb.engine.vector_index import (
    GRAPH_DTYPE,
    HnswParams,
    Thresholds,
    VectorIndex,
    at_graph_precision,
    build_graph,
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
    assert np.array_equal(held, at_graph_precision(dtype, vectors))
    # A change of one component by two of the graph's ulps (never rounded away) is reported.
    row, column = int(rng.integers(n)), int(rng.integers(dim))
    changed = vectors.copy()
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
