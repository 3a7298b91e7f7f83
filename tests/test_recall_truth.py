"""The recall measurement's brute-force pass (`recall_calibration._exact_rows`) against a
reference: every query's true k nearest rows, less the excluded ones, are in the shortlist
it returns, whatever the block size (so the pass's merges of one block's entries that beat
a query's cut are exercised many times), the number of rows (fewer than the shortlist's
width too), duplicates and ties, zero rows, rows the rough scores cannot rank (huge
components: infinite dot products, NaN scores), and l2 data far from the origin next to
its spread; the measurement of a graph smaller than a shortlist; and a stop seen between
blocks."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huedb.engine import recall_calibration as rc
from huedb.engine.vector_index import RERANK_MARGIN, BuildStopped, squared_l2
from tests.knobs import knob
from tests.test_vector_index import ref_distances

EXAMPLES = 2 * int(knob("HUEDB_HYPOTHESIS_EXAMPLES", "150"))  # cheap: 300 take ~1 s


@st.composite
def cases(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(1, 300))
    dim = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    space = draw(st.sampled_from(["l2", "cosine", "ip"]))
    # l2 far from the origin next to its spread (1,000 x 0.01): |x|^2 - 2 q.x cancels there.
    # (Cosine and inner product distances of such rows differ below float32's resolution.)
    offset, spread = (0.0, 1.0)
    if space == "l2" and draw(st.booleans()):
        offset, spread = (1e3, 1e-2)
    matrix = (offset + spread * rng.standard_normal((n, dim))).astype(np.float32)
    count = draw(st.integers(1, 12))
    if draw(st.booleans()):  # near stored rows, as the measurement's held-out queries are
        noise = 0.1 * spread * rng.standard_normal((count, dim))
        queries = (matrix[rng.integers(0, n, count)] + noise).astype(np.float32)
    else:
        queries = (offset + spread * rng.standard_normal((count, dim))).astype(np.float32)
    if draw(st.booleans()):  # duplicates: exact ties between rows
        matrix[rng.integers(0, n, n // 3)] = matrix[rng.integers(0, n, n // 3)]
    if draw(st.booleans()):
        matrix[rng.integers(0, n, 1 + n // 20)] = 0.0
    if draw(st.booleans()):  # rows the float32 rough scores cannot rank
        with np.errstate(over="ignore"):
            matrix[rng.integers(0, n, 1 + n // 50)] *= np.float32(3e38)
    excluded = np.unique(rng.integers(0, n, draw(st.integers(0, n))))
    k = draw(st.integers(1, 10))
    block = draw(st.integers(1, 80))
    return space, matrix, queries, excluded, k, block


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_the_shortlist_holds_each_querys_true_nearest(case: tuple) -> None:
    space, matrix, queries, excluded, k, block = case
    n = len(matrix)
    keys = np.arange(10, 10 + n, dtype=np.uint64)
    vectors = rc.ArrayVectors(keys, matrix, block)
    with np.errstate(all="ignore"):
        got = rc._exact_rows(space, vectors, queries, k, excluded)
    keep = 2 * k + RERANK_MARGIN
    assert got.shape == (len(queries), min(keep, n))
    # Rows of huge components overflow the float32 scores (rows nobody stores as
    # embeddings): they may rank anywhere, so nothing is expected of them.
    rankable = np.setdiff1d(np.flatnonzero(np.abs(matrix).max(axis=1) < 1e18), excluded)
    for query, rows in zip(queries, got, strict=True):
        assert len(np.unique(rows)) == len(rows)  # no row twice
        if len(rankable) >= keep:
            assert not np.isin(rows, excluded).any()
        else:
            assert np.isin(rankable, rows).all()  # room for every one of them
        if len(rankable) >= k:
            # The rough scores are float32: rows within rounding of the k-th may be ranked
            # either way (the shortlist's margin, 2k + 16 for k, absorbs that), so every row
            # clearly nearer than the k-th must be there, and k rankable rows at least.
            truth = ref_distances(space, matrix[rankable], query)
            kth = np.sort(truth)[k - 1]
            scale = float(np.abs(truth).max())
            assert np.isin(rankable[truth < kth - 1e-4 * scale], rows).all()
            assert np.isin(rows, rankable).sum() >= k


def test_a_cut_is_never_nan() -> None:
    """A query whose first block scores NaN (an infinite dot product) still takes the finite
    rows of later blocks."""
    matrix = np.ones((40, 2), dtype=np.float32)
    matrix[:20] = np.float32(3e38)  # first block: inf - inf = NaN scores for l2
    matrix[20:, 0] = np.arange(20, dtype=np.float32)
    vectors = rc.ArrayVectors(np.arange(40, dtype=np.uint64), matrix, 20)
    query = np.zeros((1, 2), dtype=np.float32)
    with np.errstate(all="ignore"):
        rows = rc._exact_rows("l2", vectors, query, 1, np.empty(0, dtype=np.int64))
    assert 20 in rows[0]  # the nearest row: (0, 1)


@pytest.mark.parametrize("n", [12, 20, 30, 39, 60])
def test_a_perfect_search_of_a_small_graph_measures_recall_one(n: int) -> None:
    """With fewer rows outside the sample than a shortlist holds, the shortlist holds
    sample rows too (each query's own, at distance 0): they are no answer, so a search
    that finds the true nearest measures 1.0 (it measured 0.8 at 20 rows, and the ef went
    to the top of the ladder)."""
    rng = np.random.default_rng(n)
    matrix = rng.standard_normal((n, 8)).astype(np.float32)
    keys = np.arange(100, 100 + n, dtype=np.uint64)
    sample = rc.holdout_rows(n)
    in_graph = np.setdiff1d(np.arange(n), sample)

    def perfect(queries: np.ndarray, count: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        found = np.zeros((len(queries), count), dtype=np.uint64)
        for i, query in enumerate(queries):
            order = np.argsort(squared_l2(matrix[in_graph], query), kind="stable")[:count]
            found[i, : len(order)] = keys[in_graph][order]
        return found, np.full(len(queries), min(count, len(in_graph)), dtype=np.int64)

    got = rc.calibrate(perfect, "l2", rc.ArrayVectors(keys, matrix), sample, 0.95, [128, 1024])
    assert (got.recall, got.ef_search) == (1.0, 128)


class _SlowVectors(rc.ArrayVectors):
    """Vectors whose brute-force pass takes 10 ms a block; counts the blocks read."""

    def __init__(self, matrix: np.ndarray, block: int) -> None:
        super().__init__(np.arange(len(matrix), dtype=np.uint64), matrix, block)
        self.blocks = 0

    def chunks(self):
        for start, block in super().chunks():
            time.sleep(0.01)
            self.blocks += 1
            yield start, block


def test_a_stopped_build_stops_the_brute_force_pass_at_its_next_block() -> None:
    """A build stopped (dropped collection, closing process) mid-measurement ends within a
    block of the brute-force pass, not at its end (400 blocks here: 4 s)."""
    matrix = np.zeros((4_000, 4), dtype=np.float32)
    vectors = _SlowVectors(matrix, 10)
    stop = threading.Event()
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    began = time.monotonic()
    with pytest.raises(BuildStopped):
        rc.calibrate(_unused_search, "l2", vectors, rc.holdout_rows(4_000), 0.9, [128], stop)
    assert time.monotonic() - began < 2.0 and vectors.blocks < 100


def _unused_search(queries: np.ndarray, count: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
    raise AssertionError("the graph is searched only after the exact answers")
