"""The planner's recall target: the `ef_search` a graph needs, measured on the graph itself.

The build thread leaves a seeded sample of 200 to 1,000 stored vectors (`sample_size`) out of
the graph (`holdout_rows`), and once the rest is built uses them as queries: held-out points of the
collection's own distribution, as a new record or a query like the records would be. Their
exact top 10 among the other vectors is found by brute force (matrix products on the
build's copy of the vectors); the graph is then searched as `VectorIndex.search` does
(k + k/4 + 2 candidates, re-ranked by exact distance) at increasing `ef_search` until the
mean recall@10, less 1.645 standard errors, reaches the target; then the sample is added
to the graph. The smallest such ef (never below the configured `ef_search`) is what
searches use unless the user set one.

Measuring again later (after large changes, or for a snapshot without a measurement) runs
on a read-only view of the graph's snapshot, where the sample cannot be left out: each
query's own node is dropped from its answers, which flatters the graph (measured on random
Gaussian data: 0.889 against 0.822 for held-out queries at ef 100), so such a measurement
never lowers the ef the build measured (`IndexCache`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from huedb.engine.fork_guard import blas_call
from huedb.engine.graph_process import ChildFailed
from huedb.engine.hnsw_config import UNCHOSEN_EF_MIN, search_expansion
from huedb.engine.mapped_rows import rows_as_float32
from huedb.engine.vector_index import (
    RERANK_MARGIN,
    BuildStopped,
    HnswParams,
    graph_keys,
    graph_vectors,
    graph_view,
    row_norms,
    search_graph,
)

logger = logging.getLogger(__name__)

# Queries per measurement: one per 1,000 vectors, at least 200 and at most 1,000 (and a tenth
# of the collection at most). The target must hold for the mean less 1.645 standard errors;
# with 200 queries that margin was ~0.011 at 1M x 384, and the sample's own spread moved the
# ef four builds chose between 416 and 640 (query p50 ~3.1 to ~5.5 ms) for graphs whose
# recall on the bench's queries crosses 0.95 near 360. 1,000 queries cost ~10 s of brute
# force at 1M (a build there takes ~5 min), 200 ~2 s (mostly the matrix products).
SAMPLE_QUERIES = 200
DISTANCE_QUERIES = 25  # queries whose candidates' vectors are gathered at once
SAMPLE_QUERIES_MAX = 1_000
VECTORS_PER_QUERY = 1_000
RECALL_K = 10
# Steps of 32 to 512, then 64: at 1M x 384 (the bench's clustered data) 384 missed 0.95 and
# 512 passed by 0.001, and with the old coarser steps (384, 512, 768) one build's graph went
# from 512 straight to 768 (search ~2.3 ms at 512, ~3.9 ms at 768). Each step is 200 graph
# searches (~0.3 s at 1M on two cores), tried only until one passes.
EF_LADDER = (*range(128, 512, 32), *range(512, 768, 64), 768, 896, 1024)
CONFIDENCE_Z = 1.645  # the target must hold for the mean minus this many standard errors
# Rows per block of the brute-force pass (a score array: 3 MB for 200 queries, 16 MB for 1,000)
CHUNK_ROWS = 4_096
RECALIBRATE_FRACTION = 0.2  # changes since the measurement, as a share of the graph


@dataclass(frozen=True)
class Calibration:
    """What one measurement found: the ef to search with and the recall it gave."""

    target: float
    ef_search: int  # the smallest ef tried that met the target (else the largest tried)
    recall: float  # mean recall@10 of the sample at `ef_search`
    floor: int  # the configured ef_search the ladder started from
    queries: int
    graph_size: int
    seconds: float
    # Changes applied to the graph after the measurement, as of the snapshot that stores it:
    # a process that loads the snapshot goes on counting from there (`stale`).
    changed_since: int = 0
    # Tombstones the graph measured held beside its `graph_size` records (none in a fresh
    # build): searches widen `ef_search` for those added since (`live_share`).
    tombstones: int = 0

    def to_json(self) -> dict[str, Any]:
        """The calibration as stored in a snapshot header."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Calibration | None:
        """A calibration read back from a snapshot header; None if absent or malformed."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                target=float(value["target"]),
                ef_search=int(value["ef_search"]),
                recall=float(value["recall"]),
                floor=int(value["floor"]),
                queries=int(value["queries"]),
                graph_size=int(value["graph_size"]),
                seconds=float(value["seconds"]),
                changed_since=int(value.get("changed_since", 0)),
                tombstones=int(value.get("tombstones", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def live_share(self) -> float:
        """The share of the measured graph's nodes that were records, not tombstones."""
        return self.graph_size / max(self.graph_size + self.tombstones, 1)

    def stale(self, target: float, floor: int, changes: int) -> bool:
        """True when it was measured for another target or ef_search, or the graph has
        changed by more than `RECALIBRATE_FRACTION` of its size since."""
        moved = changes > RECALIBRATE_FRACTION * max(self.graph_size, 1)
        return moved or self.target != target or self.floor != floor


def shortfall(
    recall: float | None, target: float, ef_search: int, chosen_by_user: bool
) -> str | None:
    """What to do when the recall measured at `ef_search` is below the target (None when
    it is not, or nothing was measured): raise the ef the user set, or, when the planner's
    largest ef does not reach it, build a denser graph or lower the target."""
    if recall is None or target <= 0 or recall >= target:
        return None
    found = f"recall@10 {recall:.4f} at ef_search {ef_search} is below its target {target:.2f}"
    if chosen_by_user:
        return (
            f"{found}: raise the ef_search set in the configuration, or remove it and the "
            "planner chooses one"
        )
    return (
        f"{found} (the largest ef_search the planner tries is {EF_LADDER[-1]}): this data "
        "needs a denser graph (a new collection with larger hnsw max_neighbors or "
        "ef_construction) or a lower huedb:recall_target"
    )


class Vectors(Protocol):
    """The float32 vectors a calibration reads: its keys, in row order, and rows."""

    keys: np.ndarray

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]: ...

    def rows(self, rows: np.ndarray) -> np.ndarray: ...


class ArrayVectors:
    """Vectors held as a matrix (the copy a graph was built from: float32, or the graph's
    own 16-bit rows, `FlatVectors.kind`), read by the brute-force pass in blocks of
    `block_rows`, as float32."""

    def __init__(self, keys: np.ndarray, matrix: np.ndarray, block_rows: int = CHUNK_ROWS) -> None:
        self.keys = keys
        self._matrix = matrix
        self._block_rows = block_rows

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(self.keys), self._block_rows):
            yield start, rows_as_float32(self._matrix[start : start + self._block_rows])

    def rows(self, rows: np.ndarray) -> np.ndarray:
        return rows_as_float32(self._matrix[rows])


class GraphVectors:
    """The graph's own (16-bit) vectors, read a chunk at a time: for measuring a
    snapshot without the float32 vectors."""

    def __init__(self, graph: Any) -> None:
        self.keys = graph_keys(graph)
        self._graph = graph

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(self.keys), CHUNK_ROWS):
            yield start, graph_vectors(self._graph, self.keys[start : start + CHUNK_ROWS])

    def rows(self, rows: np.ndarray) -> np.ndarray:
        return graph_vectors(self._graph, self.keys[rows])


def ladder(floor: int, user_set: bool) -> list[int]:
    """The ef values tried, in order: the configured one (at least `UNCHOSEN_EF_MIN`), then
    larger ones; only the configured one when the user set it (measured, never changed)."""
    if user_set:
        return [search_expansion(floor)]
    first = search_expansion(max(floor, UNCHOSEN_EF_MIN))
    return [first, *(ef for ef in EF_LADDER if ef > first)]


def sample_size(n: int) -> int:
    """How many queries measure a graph of `n` vectors."""
    return min(max(SAMPLE_QUERIES, n // VECTORS_PER_QUERY), SAMPLE_QUERIES_MAX, n // 10)


def holdout_rows(n: int) -> np.ndarray:
    """The rows a build leaves out of the graph to query it with (seeded by the count, so
    the same collection draws the same sample), in ascending order."""
    count = sample_size(n)
    rng = np.random.default_rng(n)
    return np.sort(rng.choice(n, size=count, replace=False))


Search = Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]
"""Searches a graph: (queries, count, ef) -> keys (queries x count), found per query
(`vector_index.search_graph`, or a build's graph process)."""


def calibrate(
    search: Search,
    space: str,
    vectors: Vectors,
    sample: np.ndarray,
    target: float,
    efs: list[int],
    stop: threading.Event | None = None,
    sample_in_graph: bool = False,
    floor: int | None = None,
) -> Calibration:
    """Measure recall@10 of the graph `search` searches, with the vectors of rows `sample`
    as queries, against the exact answer among the other rows, at each ef of `efs` until
    the target is met. `floor` is the configured ef_search the result records (default:
    the first of `efs`).

    With `sample_in_graph`, one more candidate is asked for (the query's own node), and
    the sample's keys are dropped from the graph's answers.
    """
    started = time.perf_counter()
    floor = efs[0] if floor is None else floor
    n = len(vectors.keys)
    k = min(RECALL_K, n - len(sample))
    if k <= 0 or len(sample) == 0:
        return Calibration(target, efs[0], 1.0, floor, 0, n, 0.0)
    queries = np.ascontiguousarray(vectors.rows(sample), dtype=np.float32)
    _check(stop)
    nearest = _exact_rows(space, vectors, queries, k, sample, stop)
    truth = _distances(space, vectors, queries, nearest)
    # With fewer other rows than a shortlist holds, it holds sample rows too (the query's
    # own among them): they are no answer.
    truth[np.isin(nearest, sample)] = np.inf
    kth = np.sort(truth, axis=1)[:, k - 1]
    slack = 1e-6 * np.maximum(np.abs(kth), 1e-12)
    order = np.argsort(vectors.keys)
    left_out = vectors.keys[sample]
    count = min(n, k + k // 4 + 2 + int(sample_in_graph))  # as VectorIndex.graph_candidates
    for ef in efs:
        _check(stop)
        keys, counts = search(queries, count, ef)
        slots = np.searchsorted(vectors.keys, keys, sorter=order).clip(0, n - 1)
        rows = order[slots]
        found = (vectors.keys[rows] == keys) & (np.arange(count)[None, :] < counts[:, None])
        found &= ~np.isin(keys, left_out)
        dists = np.where(found, _distances(space, vectors, queries, rows), np.inf)
        best = np.sort(dists, axis=1)[:, :k]
        per_query = np.sum(best <= (kth + slack)[:, None], axis=1) / k
        recall = float(np.mean(per_query))
        margin = CONFIDENCE_Z * float(np.std(per_query)) / np.sqrt(len(per_query))
        if recall - margin >= target:
            break
    seconds = time.perf_counter() - started
    return Calibration(target, ef, recall, floor, len(queries), n, seconds)


def measure_recall(
    search: Search,
    params: HnswParams,
    vectors: Vectors,
    sample: np.ndarray,
    stop: threading.Event,
    sample_in_graph: bool = False,
) -> Calibration | None:
    """The recall calibration of the graph `search` searches, queried with the vectors of
    rows `sample` (None when it failed: searches then use the configured ef_search); stops
    with BuildStopped, and lets a graph process's failure through (its build then runs in
    a thread)."""
    if len(sample) == 0:  # under 10 vectors: nothing to measure with
        return None
    efs = ladder(params.ef_search, params.ef_search_set)
    target = params.recall_target
    try:
        floor = params.ef_search
        return calibrate(
            search, params.space, vectors, sample, target, efs, stop, sample_in_graph, floor
        )
    except (BuildStopped, ChildFailed):
        raise
    except Exception:
        logger.exception("measuring the recall of a graph failed")
        return None


def measure_view(
    payload: Any, params: HnswParams, stop: threading.Event, threads: int = 0
) -> Calibration | None:
    """The recall calibration of a serialized graph (a snapshot's payload), read through a
    private read-only view that is gone when this returns; its searches run on `threads`
    (0: every core)."""
    graph = graph_view(payload)
    source = GraphVectors(graph)
    sample = holdout_rows(len(source.keys))
    tombstones = len(graph) - len(source.keys)
    search = functools.partial(search_graph, graph, tombstones=tombstones, threads=threads)
    found = measure_recall(search, params, source, sample, stop, sample_in_graph=True)
    return None if found is None else dataclasses.replace(found, tombstones=tombstones)


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise BuildStopped


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = row_norms(matrix)[:, None]
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _exact_rows(
    space: str,
    vectors: Vectors,
    queries: np.ndarray,
    k: int,
    excluded: np.ndarray,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """Rows holding each query's k nearest but the `excluded` rows (queries x m, m >= k,
    unordered): rough scores by matrix products shortlist 2k + 16 per query;
    `_distances` then ranks them. A block's rows are only looked at where they beat a
    query's current shortlist (`_Shortlist`): after the first few blocks that is a few
    entries in a thousand, so the pass is mostly its matrix products. BuildStopped once
    `stop` is set (looked at every block: the pass takes ~7 s at 1M x 384)."""
    # l2 scores |x - c|^2 - 2 (q - c).(x - c) about the queries' mean c: the order of the
    # distances, without the cancellation of |x|^2 - 2 q.x for data far from the origin.
    scored = queries
    if space == "l2":
        centre = queries.mean(axis=0, dtype=np.float64).astype(np.float32)
        scored = queries - centre
    elif space == "cosine":
        scored = _unit(queries)
    shortlist = _Shortlist(len(queries), 2 * k + RERANK_MARGIN)
    for start, block in vectors.chunks():
        _check(stop)
        block = np.asarray(block, dtype=np.float32)
        if space == "l2":
            block = block - centre
        with blas_call():  # OpenBLAS's threads and a fork: `fork_guard`
            scores = scored @ block.T  # the dot products, made scores in place
        if space == "l2":
            scores *= -2
            scores += np.einsum("ij,ij->i", block, block)[None, :]
        elif space == "ip":
            np.negative(scores, out=scores)
        else:
            norms = row_norms(block)
            scores *= -np.divide(1, norms, out=np.zeros_like(norms), where=norms > 0)[None, :]
        inside = excluded[(excluded >= start) & (excluded < start + len(block))]
        scores[:, inside - start] = np.inf
        shortlist.offer(start, scores.astype(np.float32, copy=False))
    return shortlist.rows()


class _Shortlist:
    """Each query's `keep` lowest scores so far and their rows. Entries of a block that beat
    a query's cut (its keep-th lowest score at the last merge) wait in a pending list,
    merged in once it holds as many entries as the shortlist (one sort of both)."""

    def __init__(self, queries: int, keep: int) -> None:
        self._keep = keep
        self._scores = np.empty((queries, 0), dtype=np.float32)
        self._rows = np.empty((queries, 0), dtype=np.int64)
        self._cut = np.full(queries, np.inf, dtype=np.float32)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_count = 0

    def offer(self, start: int, scores: np.ndarray) -> None:
        """The scores (queries x block) of rows start.. of the next block (changed: NaN
        becomes infinity, as high as an excluded row's, so that no cut is NaN)."""
        np.nan_to_num(scores, copy=False, nan=np.inf, posinf=np.inf, neginf=-np.inf)
        if self._scores.shape[1] < self._keep:  # not full yet: the lowest of all so far
            rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
            self._scores = np.concatenate([self._scores, scores], axis=1)
            self._rows = np.concatenate([self._rows, rows], axis=1)
            if self._scores.shape[1] >= self._keep:
                part = np.argpartition(self._scores, self._keep - 1, axis=1)[:, : self._keep]
                self._scores = np.take_along_axis(self._scores, part, axis=1)
                self._rows = np.take_along_axis(self._rows, part, axis=1)
                self._cut = self._scores.max(axis=1)
            return
        query, column = np.nonzero(scores < self._cut[:, None])
        if len(query):
            self._pending.append((query, start + column, scores[query, column]))
            self._pending_count += len(query)
            if self._pending_count >= self._scores.size:
                self._merge()

    def rows(self) -> np.ndarray:
        """The rows of each query's shortlist (queries x m, m = keep unless fewer rows
        were offered)."""
        self._merge()
        return self._rows

    def _merge(self) -> None:
        if not self._pending:
            return
        queries, keep = self._scores.shape  # full: keep = self._keep
        owner = np.repeat(np.arange(queries), keep)
        parts = [(owner, self._rows.reshape(-1), self._scores.reshape(-1)), *self._pending]
        owner, rows, scores = (np.concatenate(column) for column in zip(*parts, strict=True))
        self._pending, self._pending_count = [], 0
        order = np.lexsort((scores, owner))  # by query, then score
        first = np.searchsorted(owner[order], np.arange(queries))
        picked = order[first[:, None] + np.arange(keep)]
        self._scores, self._rows = scores[picked], rows[picked]
        self._cut = self._scores[:, -1]


def _distances(space: str, vectors: Vectors, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Chroma's distance from each query to the vectors of its row of `rows`, in float32
    (one function for the truth and the graph's answers, so equal rows compare equal), a
    block of `DISTANCE_QUERIES` queries at a time: all 200 queries' 36 rows of 384 floats
    gathered at once were ~22 MiB while a build's graph process is at its largest."""
    out = np.empty(rows.shape, dtype=np.float32)
    for start in range(0, len(queries), DISTANCE_QUERIES):
        stop = start + DISTANCE_QUERIES
        out[start:stop] = _block_distances(space, vectors, queries[start:stop], rows[start:stop])
    return out


def _block_distances(
    space: str, vectors: Vectors, queries: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    gathered = vectors.rows(rows.reshape(-1)).reshape(*rows.shape, queries.shape[1])
    if space == "l2":
        diff = gathered - queries[:, None, :]
        return np.einsum("qcd,qcd->qc", diff, diff)
    dots = np.einsum("qcd,qd->qc", gathered, queries)
    if space == "ip":
        return (1.0 - dots).astype(np.float32)
    norms = row_norms(gathered) * row_norms(queries)[:, None]
    cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return (1.0 - cos).astype(np.float32)
