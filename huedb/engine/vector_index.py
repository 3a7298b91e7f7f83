"""The vector index of one collection: exact search when small, usearch HNSW when large.

This is the only module that imports usearch (but for `graph_process`'s child, which
builds a graph in another interpreter). Keys are the records' integer keys (never
reused), so an index entry can never point at the wrong record. Distances follow Chroma:
l2 = squared L2, ip = 1 - dot, cosine = 1 - cosine similarity, all in float32.

A `VectorIndex` starts exact: a `FlatVectors` matrix of the float32 vectors. When it grows
past the exact-search threshold, its owner builds a 16-bit HNSW graph (`GRAPH_DTYPE`) from those
vectors (lent without a copy, `FlatVectors.contents`; `graph_build`, in a child process or a
thread) and swaps it in with `VectorIndex.from_graph`; until then searches stay exact, so
slower but never wrong.
A large batch of changes for a graph is deferred (`defer`, `graph_backlog`): searches take
the changed keys exactly beside the graph while a background pass applies them.
A graph only proposes candidates: their distances are always recomputed from the float32
vectors (the flat copy when the index holds one, else the caller's `fetch`), so results are
ranked and reported at full precision.
"""

from __future__ import annotations

import functools
import logging
import math
import mmap
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from usearch.index import Index

from huedb.engine import graph_reach
from huedb.engine.graph_backlog import Backlog, BacklogWork
from huedb.engine.hnsw_config import (
    DEFAULT_RECALL_TARGET,
    HNSW_DEFAULTS,
    UNCHOSEN_EF_MIN,
    search_expansion,
)
from huedb.engine.mapped_rows import (
    F16_ROUNDING_BOUND,
    MappedRows,
    certified_shortlist,
    stored_norms,
)

# usearch's metric of a new graph, by Chroma space. A cosine graph holds unit vectors under
# the inner product (`graph_input`): the same order as cosine for a third of the distance
# work (usearch's cosine kernel sums a.b, a.a and b.b for every pair). At 100k x 384
# bfloat16, usearch alone: build CPU 20.3 -> 12.9 s, search 0.53 -> 0.22 ms, same recall.
GRAPH_METRICS = {"l2": "l2sq", "ip": "ip", "cosine": "ip"}
LEGACY_COSINE_METRIC = "cos"  # cosine graphs of snapshots written before unit vectors


def _graph_dtype() -> str:
    """bfloat16 where usearch has SIMD kernels for it, else float16. A build's CPU time is
    mostly distances: at 100k x 384 (M 16, ef_construction 100) bfloat16's cost ~30 % less
    than float16's, at the same recall once candidates are re-ranked in float32."""
    probe = Index(ndim=8, metric="cos", dtype="bf16")
    return "f16" if probe.hardware_acceleration == "serial" else "bf16"


@functools.cache
def has_int8_kernel(metric: str) -> bool:
    """Whether usearch has a SIMD kernel for int8 rows under `metric` here (a build's links
    are then chosen on int8 rows, `int8_links`)."""
    return Index(ndim=8, metric=metric, dtype="i8").hardware_acceleration != "serial"


logger = logging.getLogger(__name__)
GRAPH_DTYPE = _graph_dtype()
RERANK_MARGIN = 16
FILTER_OVERSAMPLE = 2
GATHER_BLOCK = 2048  # rows scored per block in filtered exact search (~3 MB at 384 dims)
NORM_BLOCK = 8192  # rows whose norms `row_norms` computes at a time
GRAPH_GET_BLOCK = 8192  # keys whose graph rows are read and compared at a time
BUILD_CHUNK = 10_000
SAVE_BLOCK = 2**20  # bytes per write when a viewed graph's serialized bytes are copied
# A view of at least this many bytes is never copied into private memory: its changes wait
# in a backlog for a pass (copying the 917 MB view of 1M x 384 held the GIL 4.0 s).
VIEW_KEPT_MIN_BYTES = 256 * 2**20
# Exact search among at least this many keys of a graph view (a filtered query) ranks them
# roughly with the snapshot's 16-bit rows first (`MappedRows`) and reads only the float32
# vectors of the rows that may be in the answer; fewer are read outright.
MAPPED_ROWS_MIN_KEYS = 64
# How far a bfloat16 graph's values may be from the float32 ones, relative to them: a
# truncating usearch build's bound (one rounding to nearest is within half of it), since the
# snapshot may have been written by another build than this process's.
BF16_ROUNDING_BOUND = 2.0**-7
# The matrix types of `FlatVectors`: float32 vectors, or a graph's 16-bit rows (bfloat16
# bits, or float16).
ROW_DTYPES = {None: np.dtype(np.float32), "bf16": np.dtype(np.uint16), "f16": np.dtype(np.float16)}

# A node taken out of a graph (a record deleted, or the old vector of one updated) stays in it
# as a tombstone: renamed to a key from TOMBSTONE_BASE up (records' keys are far below),
# searched through like any node but never returned. usearch's `remove` would free the node
# for its next `add` to reuse, and a reused node loses its links: a record linked to only
# by such nodes was never found again, even by a search with ef above the graph's size.
# The same bound as graph_reach's: nodes from here up are never linked in nor counted.
TOMBSTONE_BASE = graph_reach.RECORD_KEYS_BELOW
# A graph is rebuilt (`VectorIndex.wants_rebuild`) once its tombstones outnumber both its
# records and this.
REBUILD_MIN_TOMBSTONES = 256

SearchHits = tuple[np.ndarray, np.ndarray]  # (keys uint64, distances float32), best first
APPROXIMATE_PLANS = ("graph", "filtered_graph")  # plans that may miss a record (of QUERY_PLANS)
VectorFetch = Callable[[np.ndarray], np.ndarray]  # keys -> float32 rows, in the order given

_EMPTY: SearchHits = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32))


@dataclass(frozen=True)
class HnswParams:
    """Graph parameters, named as in Chroma's configuration, and the recall target.

    `ef_search_set`: the user chose `ef_search` (it is then used as is); otherwise searches
    use the larger of it and the ef measured to meet `recall_target` (0: no measurement).
    """

    space: str = HNSW_DEFAULTS["space"]
    max_neighbors: int = HNSW_DEFAULTS["max_neighbors"]
    ef_construction: int = HNSW_DEFAULTS["ef_construction"]
    ef_search: int = HNSW_DEFAULTS["ef_search"]
    ef_search_set: bool = False
    recall_target: float = DEFAULT_RECALL_TARGET


@dataclass(frozen=True)
class Thresholds:
    """Planner thresholds in floats (vectors x dimension), from `EngineOptions`."""

    exact_max_floats: int
    filtered_exact_max_floats: int


def matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix @ vector on one thread.

    Not BLAS: a multi-threaded BLAS gemv waits for a busy core, and on a loaded 2-core
    machine its p90 for 2,048 x 384 went from 1.9 to 40 ms; this loop stays at 1.7 ms.
    """
    return np.einsum("ij,j->i", matrix, vector)


def squared_l2(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Squared L2 distances of every row to `query`, from differences a block at a time.

    Not |m|^2 - 2 m.q: on vectors far from the origin next to their spread, that cancels
    in float32 and ranks near-ties at random.
    """
    out = np.empty(len(matrix), dtype=np.float32)
    for start in range(0, len(matrix), GATHER_BLOCK):
        diff = matrix[start : start + GATHER_BLOCK] - query
        out[start : start + GATHER_BLOCK] = np.einsum("ij,ij->i", diff, diff)
    return out


# Below this float32 norm a row's squares may have lost precision to underflow.
TINY_NORM = 1e-18


def row_norms(matrix: np.ndarray) -> np.ndarray:
    """The L2 norms (float32) along the last axis, in float32 arithmetic but for rows whose
    squares leave float32's range (components beyond ~1e19, or a norm under `TINY_NORM`):
    those are computed in float64, as `graph_input` scales a cosine graph's rows, so such a
    row has its true norm rather than infinity or 0 (a cosine distance of 1.0 whatever its
    direction, where a graph of its unit vector ranks it by direction)."""
    with np.errstate(over="ignore", under="ignore"):  # those rows are computed again
        # What np.linalg.norm(matrix, axis=-1) computes, bit for bit, without its checks
        # (10.6 -> 3.5 us for 14 x 384), a block of rows at a time: the squares of a whole
        # large matrix were a temporary as large (200k x 384: 0.093 -> 0.045 s).
        if matrix.ndim == 2 and len(matrix) > NORM_BLOCK:
            blocks = (matrix[at : at + NORM_BLOCK] for at in range(0, len(matrix), NORM_BLOCK))
            norms = np.concatenate([np.sqrt(np.add.reduce(b * b, axis=-1)) for b in blocks])
        else:
            norms = np.sqrt(np.add.reduce(matrix * matrix, axis=-1))
    good = (norms >= TINY_NORM) & (norms < np.inf)  # NaN is neither
    if not good.all():
        bad = ~good
        wide = np.asarray(matrix[bad], dtype=np.float64)
        norms[bad] = np.sqrt(np.einsum("ij,ij->i", wide, wide))
    return norms


def exact_distances(space: str, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Chroma's distance from `query` to every row, computed directly in float32 (cosine
    norms by `row_norms`)."""
    if space == "l2":
        return squared_l2(matrix, query)
    dots = matvec(matrix, query)
    if space == "ip":
        return (1.0 - dots).astype(np.float32)
    norms = row_norms(matrix) * row_norms(query[None, :])[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(norms > 0, dots / norms, 0.0)
    return (1.0 - cos).astype(np.float32)


def rank_exact(space: str, matrix: np.ndarray, keys: np.ndarray, query: np.ndarray, k: int):
    """The k best of the given rows by exact distance, equal distances by key (insertion
    order)."""
    dists = exact_distances(space, matrix, query)
    order = np.lexsort((keys, dists))[:k]
    return keys[order], dists[order].astype(np.float32)


def top_k_exact(
    space: str,
    matrix: np.ndarray,
    keys: np.ndarray,
    query: np.ndarray,
    k: int,
    norms: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> SearchHits:
    """The k nearest rows: rough scores to shortlist, then direct distances to rank (equal
    distances by key, so equal vectors at the cut are kept in insertion order).

    Searches every row of `matrix`, or only `rows` of it; `keys` (and `norms`, the rows' L2
    norms if known: they save a pass for cosine) are aligned with the rows searched.
    """
    n = len(keys)
    k = min(k, n)
    if k <= 0:
        return _EMPTY
    query = np.ascontiguousarray(query, dtype=np.float32)
    shortlist = min(n, 2 * k + RERANK_MARGIN)
    if shortlist >= n:
        picked = np.arange(n)
    else:
        if rows is not None:
            order = np.argsort(rows)  # ascending addresses: the hardware prefetches
            rows, keys = rows[order], keys[order]
            norms = None if norms is None else norms[order]
        rough = _rough_scores(space, matrix, query, rows, norms)
        picked = np.argpartition(rough, shortlist - 1)[:shortlist]
        cut = rough[picked[-1]]
        if cut == cut:  # and every row scoring the same as the last one kept (equal vectors)
            picked = np.flatnonzero(rough <= cut)
            hits = rank_exact(space, matrix[_at(rows, picked)], keys[picked], query, k)
            reach = _rounding_reach(space, hits, k, query)
            if reach is None or reach <= cut:
                return hits
            # Rows past the cut whose distance rounds to the k-th's: equal by key.
            picked = np.flatnonzero(rough <= reach)
    return rank_exact(space, matrix[_at(rows, picked)], keys[picked], query, k)


def _at(rows: np.ndarray | None, picked: np.ndarray) -> np.ndarray:
    """The matrix rows of positions `picked` among the rows searched."""
    return picked if rows is None else rows[picked]


def _rounding_reach(space: str, hits: SearchHits, k: int, query: np.ndarray) -> float | None:
    """The highest rough score (`_rough_scores`) whose row's exact distance may round to
    the k-th of `hits` or below: the inner product's distance is float32(1 - dot), so
    distinct dots round to one distance (every |dot| under ~3e-8 to exactly 1.0), and a
    row scored a little worse than the shortlist's last may tie the k-th and come first by
    key. None for l2 (its rough score is its distance) or fewer than k hits."""
    if space == "l2" or len(hits[1]) < k:
        return None
    limit = float(hits[1][k - 1])
    reach = limit + 8 * float(np.finfo(np.float32).eps) * max(1.0, abs(limit)) - 1.0
    if space == "cosine":  # the rough score is -cos times the query's norm
        reach *= float(row_norms(query[None, :])[0])
    return reach


def _rough_scores(
    space: str,
    matrix: np.ndarray,
    query: np.ndarray,
    rows: np.ndarray | None,
    norms: np.ndarray | None,
) -> np.ndarray:
    """Scores ordered like the distances (lower is nearer), a block of rows at a time, so a
    gathered block stays in cache."""
    count = len(matrix) if rows is None else len(rows)
    scores = np.empty(count, dtype=np.float32)
    for start in range(0, count, GATHER_BLOCK):
        part = slice(start, start + GATHER_BLOCK)
        # (np.take: ~60 % of fancy indexing's time for 2,048 rows of 384 here)
        block = matrix[part] if rows is None else np.take(matrix, rows[part], axis=0)
        scores[part] = squared_l2(block, query) if space == "l2" else matvec(block, query)
    if space == "l2":
        return scores
    if space == "ip":
        return -scores
    if norms is None:
        norms = row_norms(matrix if rows is None else matrix[rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(norms > 0, scores / norms, 0.0)


class BuildStopped(Exception):
    """A background graph build was asked to stop (the process is exiting)."""


def build_graph(
    dim: int,
    params: HnswParams,
    keys: np.ndarray,
    vectors: np.ndarray,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    skip: np.ndarray | None = None,
) -> Index:
    """An HNSW graph over the given vectors (multi-threaded; releases the GIL), but the
    rows `skip` (ascending; the caller adds them later).

    Vectors are added in chunks so that `stop` is honoured within one chunk's time;
    `progress` is told how many vectors each chunk added.
    """
    graph = Index(**graph_config(dim, params))
    kept = None if skip is None else np.setdiff1d(np.arange(len(keys)), skip)
    for start in range(0, len(keys) if kept is None else len(kept), BUILD_CHUNK):
        if stop is not None and stop.is_set():
            raise BuildStopped
        end = start + BUILD_CHUNK
        if kept is None:
            chunk_keys, chunk = keys[start:end], vectors[start:end]
        else:
            chunk_keys, chunk = keys[kept[start:end]], vectors[kept[start:end]]
        graph.add(chunk_keys, graph_input(params.space, chunk), threads=_threads(len(chunk_keys)))
        if progress is not None:
            progress(len(chunk_keys))
    return graph


def graph_config(dim: int, params: HnswParams) -> dict[str, Any]:
    """usearch's `Index` arguments for a collection's graph (also sent to a build's child
    process, `graph_process`)."""
    return {
        "ndim": dim,
        "metric": GRAPH_METRICS[params.space],
        "dtype": GRAPH_DTYPE,
        "connectivity": params.max_neighbors,
        "expansion_add": params.ef_construction,
        "expansion_search": search_expansion(params.ef_search),
    }


class LocalGraph:
    """A graph built by the calling thread (the same methods as `graph_process.ChildGraph`,
    which builds one in a child process)."""

    def __init__(self, dim: int, params: HnswParams) -> None:
        self._graph = Index(**graph_config(dim, params))

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        """Add vectors on `threads` threads."""
        if len(keys):
            self._graph.add(keys, vectors, threads=threads)

    def search(self, queries: np.ndarray, count: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch searched on the graph as it is (`search_graph`)."""
        return search_graph(self._graph, queries, count, ef)

    def finish(self, read: Callable[[Path], Any] | None = None) -> Index:
        """The graph built, with the nodes no search reached linked in (in memory: there
        is no file for `read`)."""
        return reconnected(self._graph)

    def kill(self) -> None:
        """Nothing to end: the graph is dropped with this object."""

    def interrupt(self) -> None:
        """Nothing to interrupt: a stop is seen between two `add` calls."""


def reconnected(graph: Index) -> Index:
    """`graph` with the nodes no search reaches linked in (`graph_reach`, on its serialized
    form, read back), or `graph` itself when every node was reached."""
    serialized = bytearray(graph.save())
    try:
        result = graph_reach.reconnect(np.frombuffer(serialized, dtype=np.uint8), nearest_in(graph))
    except Exception as exc:  # noqa: BLE001 - linking only improves a graph already whole
        logger.warning("unreachable nodes of a graph not linked in: %r", exc)
        return graph
    graph_reach.report(result)
    if result is None or not result[0]:
        return graph
    linked = Index.restore(serialized)
    linked.expansion_add = graph.expansion_add
    linked.expansion_search = graph.expansion_search
    return linked


def link_saved_graph(path: Path, graph: Index | None = None) -> tuple[int, int] | None:
    """Link in the nodes no search reaches of the graph saved to `path` (`graph_reach`;
    `graph` is the one saved, else a view of the file is searched); what
    `graph_reach.reconnect` returned. A failure is logged, not raised (None): the file
    holds a valid graph either way (a link is taken in only once written whole)."""
    try:
        mapped = map_graph_file(path) if graph is None else None  # (unmapped on return)
        searched = mapped.graph if mapped is not None else graph
        result = graph_reach.reconnect_file(path, nearest_in(searched))
    except Exception as exc:  # noqa: BLE001 - linking only improves a graph already whole
        logger.warning("unreachable nodes of the graph saved to %s not linked in: %r", path, exc)
        return None
    graph_reach.report(result)
    return result


def nearest_in(graph: Index) -> graph_reach.Nearest:
    """`graph_reach.Nearest` by a search of `graph` (`search_graph`, at its own
    expansion) with its own vectors of the keys; keys it does not hold find nothing."""

    def nearest(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = np.zeros((len(keys), graph_reach.NEAREST), dtype=np.uint64)
        counts = np.zeros(len(keys), dtype=np.int64)
        held = np.flatnonzero(np.asarray(graph.contains(keys), dtype=bool).reshape(len(keys)))
        if len(held):
            vectors = np.vstack(graph.get(keys[held], dtype=np.float32))
            hits, hit_counts = search_graph(
                graph, vectors, graph_reach.NEAREST, graph.expansion_search
            )
            found[held, : hits.shape[1]] = hits  # (fewer columns in a graph that small)
            counts[held] = hit_counts
        return found, counts

    return nearest


def graph_input(space: str, vectors: np.ndarray, in_place: bool = False) -> np.ndarray:
    """float32 vectors (one or a matrix) as a new graph of `space` takes them: scaled to
    unit length for cosine (a zero vector stays zero), else as they are; scaled in place
    when `in_place` (a buffer of the caller's)."""
    if space != "cosine":
        return vectors
    # Norms and scales in float64: a float32 sum of squares overflows above ~1e19 per
    # component and underflows below ~1e-19, which would leave such a vector zero.
    norms = np.linalg.norm(vectors.astype(np.float64), axis=-1, keepdims=True)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    if in_place:
        return np.multiply(vectors, scale, out=vectors)
    return (vectors * scale).astype(np.float32)


# A FlatVectors matrix growing past this many rows is given room for as many rows as the
# machine's memory holds (`_reserved_matrix`): growth never copies it again.
RESERVED_MIN_ROWS = 65_536
# Linux's MAP_NORESERVE (absent from Python's mmap module): no swap space is set aside for
# the room reserved, only for pages written.
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform == "linux" else 0)


def _rows_in_memory(row_bytes: int) -> int:
    """How many rows of `row_bytes` the machine's physical memory holds."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0
    return memory // max(row_bytes, 1)


def _reserved_matrix(rows: int, dim: int, dtype: np.dtype) -> np.ndarray | None:
    """An uninitialised matrix in a private anonymous mapping: its pages are allocated as
    rows are first written, so rows never written cost nothing. None when the mapping is
    refused (e.g. strict overcommit accounting)."""
    size = rows * dim * dtype.itemsize
    if size == 0:
        return None
    try:
        room = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
    except (OSError, ValueError, OverflowError):
        return None
    return np.frombuffer(room, dtype=dtype).reshape(rows, dim)


class Loan:
    """A FlatVectors' keys and matrix as they were when borrowed (`FlatVectors.borrow`),
    unchanged until `give_back`: a change to a borrowed row copies the arrays first."""

    def __init__(self, flat: FlatVectors, keys: np.ndarray, matrix: np.ndarray, epoch: int) -> None:
        self.keys, self.matrix = keys, matrix
        self._flat, self._epoch = flat, epoch
        self._given_back = False

    def give_back(self) -> None:
        """The borrower no longer reads the arrays (idempotent)."""
        if not self._given_back:
            self._given_back = True
            self._flat._returned(self._epoch)


class FlatVectors:
    """The vectors of one collection in a matrix, with their norms and a key -> row map.

    The rows are the float32 vectors, or (`kind` "bf16" or "f16", for a collection that
    has or is building a graph) the 16-bit rows a new graph of `space` holds
    (`graph_rows_16`): half the memory, but no exact distance can be read from them, so
    searches of such rows give the keys that may be in the exact answer (`shortlist`)
    and the caller ranks those with their float32 vectors read from the store.

    The map is a dense array indexed by key minus the smallest key held so far (keys are
    small, increasing integers shared by every collection of the store, so the map spans
    this collection's key range, not the store's), so gathering the rows of 10,000 keys is
    one numpy operation.
    """

    def __init__(self, dim: int, kind: str | None = None, space: str = "l2") -> None:
        self.dim = dim
        self.kind = kind  # None: float32 vectors; else the 16-bit type of a graph of `space`
        self.space = space
        self._count = 0
        self._matrix = np.empty((0, dim), dtype=ROW_DTYPES[kind])
        # Norms of the rows as held: float32 vectors', or 16-bit rows' in float64 (bounds).
        self._norms = np.empty(0, dtype=np.float32 if kind is None else np.float64)
        self._keys = np.empty(0, dtype=np.uint64)
        self._row_by_key = np.full(0, -1, dtype=np.int64)
        self._key_base = 0  # the key of `_row_by_key[0]`
        self._loans = 0  # loans of the arrays as they are not yet given back (`borrow`)
        self._epoch = 0  # counts moves of the arrays away from their borrowers
        self._loan_lock = threading.Lock()  # loans are given back by other threads
        self.rewrites = 0  # changes to rows already held (appends are not counted)

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes of the rows held and of the key map. Spare rows are not counted: the
        arrays are allocated by the operating system's pages, and rows not yet written
        hold none (large arrays are mapped lazily)."""
        row = self._matrix.itemsize * self.dim + self._norms.itemsize + self._keys.itemsize
        return self._count * row + self._row_by_key.nbytes

    @classmethod
    def holding(cls, keys: np.ndarray, vectors: np.ndarray) -> FlatVectors:
        """FlatVectors of these distinct keys and C-contiguous float32 vectors, holding the
        caller's matrix itself (lent: a later change to a row copies it first) rather than
        a copy: a large new matrix is mostly page faults (200k x 384: 2.8 s here)."""
        flat = cls(vectors.shape[1])
        if len(keys) == 0:
            return flat
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        flat._reserve_keys(int(keys.min()), int(keys.max()) + 1)
        flat._matrix, flat._keys, flat._count = vectors, keys.copy(), len(keys)
        flat._loans = 1  # the caller's matrix: never given back
        flat._norms = row_norms(vectors)
        flat._row_by_key[keys.astype(np.int64) - flat._key_base] = np.arange(len(keys))
        return flat

    def reserve(self, rows: int) -> None:
        """Make room for `rows` vectors in total (avoids regrowth when the count is known)."""
        self._reserve_rows(rows)

    def keys(self) -> np.ndarray:
        """A copy of the keys held, in row order."""
        return self._keys[: self._count].copy()

    def graph_rows_copy(self, space: str, kind: str) -> FlatVectors:
        """These float32 vectors as the 16-bit rows of a graph of `space` and type `kind`
        (converted a block at a time)."""
        assert self.kind is None
        rows = FlatVectors(self.dim, kind, space)
        rows.reserve(self._count)
        for start in range(0, self._count, BUILD_CHUNK):
            stop = min(start + BUILD_CHUNK, self._count)
            rows.upsert(self._keys[start:stop], self._matrix[start:stop])
        return rows

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """The keys and vectors as they are now (to build a graph from, in another thread).

        No copy is made: the arrays are lent for good (a loan never given back), and the
        next change that would alter a lent row copies them first (appending into spare
        rows alters nothing lent).
        """
        loan = self.borrow()
        return loan.keys, loan.matrix

    def borrow(self) -> Loan:
        """The keys and vectors as they are now, lent without a copy until the loan is
        given back (a graph build's feed): a change to a row while any loan is out copies
        the arrays first; once every loan is back, rows change in place again (at 1M x 384
        the first update after a build copied 1.5 GB when lends were never returned)."""
        with self._loan_lock:
            self._loans += 1
            return Loan(self, self._keys[: self._count], self._matrix[: self._count], self._epoch)

    def _returned(self, epoch: int) -> None:
        with self._loan_lock:
            if epoch == self._epoch:  # else the arrays moved away from that loan already
                self._loans -= 1

    def _moved(self) -> None:
        """The arrays are new: no borrower reads them."""
        self._loans = 0
        self._epoch += 1

    def _own_rows(self) -> None:
        """Copy lent arrays before changing rows in place (of the matrix, only the rows
        held: its spare room may be large)."""
        with self._loan_lock:
            if self._loans:
                self._matrix = self._matrix_with(len(self._matrix))
                self._norms = self._norms.copy()
                self._keys = self._keys.copy()
                self._moved()

    def rows(self, keys: np.ndarray) -> np.ndarray:
        """Row numbers of the given keys (-1 for an absent key)."""
        slots = np.asarray(keys, dtype=np.int64) - self._key_base
        out = np.full(len(slots), -1, dtype=np.int64)
        inside = (slots >= 0) & (slots < len(self._row_by_key))
        out[inside] = self._row_by_key[slots[inside]]
        return out

    def _present_rows(self, keys: np.ndarray) -> np.ndarray:
        """Row numbers of present keys (KeyError for an absent one)."""
        rows = self.rows(keys)
        if np.any(rows < 0):
            raise KeyError(int(np.asarray(keys)[np.argmin(rows)]))
        return rows

    def gather(self, keys: np.ndarray) -> np.ndarray:
        """The float32 vectors of present keys, in the order given (KeyError for an absent
        one)."""
        assert self.kind is None, "16-bit rows hold no float32 vector"
        return self._matrix[self._present_rows(keys)]

    def same_rows(self, keys: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Per key, whether it is held with this float32 vector (as its rows hold it: at a
        graph's precision for 16-bit rows)."""
        rows = self.rows(keys)
        same = rows >= 0
        if np.any(same):
            held = self._matrix[rows[same]]
            same[same] = np.all(held == self._stored(vectors[same]), axis=1)
        return same

    def shortlist(self, query: np.ndarray, k: int, keys: np.ndarray | None = None) -> np.ndarray:
        """16-bit rows: the keys (of every row, or of the present `keys`) that may be among
        the exact k nearest to `query` by the float32 vectors (`certified_shortlist`)."""
        assert self.kind is not None
        if keys is None:
            n = self._count
            held, matrix, norms = self._keys[:n], self._matrix[:n], self._norms[:n]
        else:
            rows = self._present_rows(keys)
            # (np.take: about half the time of fancy indexing for 10k rows of 384 here)
            held, matrix = np.asarray(keys), np.take(self._matrix, rows, axis=0)
            norms = self._norms[rows]
        rel = rounding_bound(self.kind)
        return held[certified_shortlist(self.kind, rel, matrix, norms, self.space, query, k)]

    def _stored(self, vectors: np.ndarray) -> np.ndarray:
        """float32 vectors as rows of this matrix hold them."""
        if self.kind is None:
            return vectors
        return graph_rows_16(self.kind, self.space, vectors)

    def _norms_of(self, rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """The norms of `rows` as held (`vectors`: the float32 vectors they hold)."""
        if self.kind is None:
            return row_norms(vectors)
        return stored_norms(self.kind, rows)

    def search(self, space: str, query: np.ndarray, k: int) -> SearchHits:
        """Exact k nearest over every vector (float32 rows only)."""
        assert self.kind is None, "16-bit rows: `shortlist`, then rank float32 vectors"
        n = self._count
        return top_k_exact(space, self._matrix[:n], self._keys[:n], query, k, self._norms[:n])

    def search_among(self, space: str, query: np.ndarray, k: int, keys: np.ndarray) -> SearchHits:
        """Exact k nearest among the given present keys, read straight from the matrix
        (float32 rows only)."""
        assert self.kind is None, "16-bit rows: `shortlist`, then rank float32 vectors"
        rows = self._present_rows(keys)
        keys = np.asarray(keys)
        return top_k_exact(space, self._matrix, keys, query, k, self._norms[rows], rows)

    def upsert(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace vectors under their keys."""
        self._reserve_keys(int(keys.min()), int(keys.max()) + 1)
        rows = self._row_by_key[keys.astype(np.int64) - self._key_base]
        known = rows >= 0
        if np.any(known):
            # (Inside the branch: even an empty assignment fails on a read-only lent matrix.)
            self._own_rows()
            self.rewrites += 1
            stored = self._stored(vectors[known])
            self._matrix[rows[known]] = stored
            self._norms[rows[known]] = self._norms_of(stored, vectors[known])
        fresh = np.flatnonzero(~known)
        if len(fresh) == 0:
            return
        # A key twice in one batch: the last vector wins, as in a replay of the oplog.
        new_keys, last = np.unique(keys[fresh][::-1], return_index=True)
        fresh = fresh[::-1][last]
        start, end = self._count, self._count + len(fresh)
        self._reserve_rows(end)
        stored = self._stored(vectors[fresh])
        self._matrix[start:end] = stored
        self._norms[start:end] = self._norms_of(stored, vectors[fresh])
        self._keys[start:end] = new_keys
        self._row_by_key[new_keys.astype(np.int64) - self._key_base] = np.arange(start, end)
        self._count = end

    def remove(self, keys: np.ndarray) -> None:
        """Remove keys that are present: the surviving rows past the new end fill the holes
        (array operations, not a Python loop: 1,000 keys took ~4 ms one by one)."""
        slots = np.unique(np.asarray(keys, dtype=np.int64)) - self._key_base
        slots = slots[(slots >= 0) & (slots < len(self._row_by_key))]
        rows = self._row_by_key[slots]
        slots, rows = slots[rows >= 0], rows[rows >= 0]
        if len(rows) == 0:
            return
        self._own_rows()
        self.rewrites += 1
        self._row_by_key[slots] = -1
        end = self._count - len(rows)
        holes = np.sort(rows[rows < end])
        survives = np.ones(self._count - end, dtype=bool)
        survives[rows[rows >= end] - end] = False
        movers = end + np.flatnonzero(survives)
        self._matrix[holes] = self._matrix[movers]
        self._norms[holes] = self._norms[movers]
        self._keys[holes] = self._keys[movers]
        self._row_by_key[self._keys[holes].astype(np.int64) - self._key_base] = holes
        self._count = end

    def _reserve_rows(self, needed: int) -> None:
        # Doubling: a growing index (a writer's, `IndexCache.after_write`) copies its rows
        # about once in all (x1.25 copied them ~4 times: 0.5 s of a 40k ingest's 5 s).
        # Lent arrays stay lent until both have moved (appends change no lent row).
        moved = needed > len(self._norms) and needed > len(self._matrix)
        if needed > len(self._norms):  # 12 bytes a row: copies are cheap
            capacity, n = max(needed, 2 * len(self._norms), 64), self._count
            norms = np.empty(capacity, dtype=self._norms.dtype)
            norms[:n] = self._norms[:n]
            keys = np.empty(capacity, dtype=np.uint64)
            keys[:n] = self._keys[:n]
            self._norms, self._keys = norms, keys
        if needed > len(self._matrix):
            # Past RESERVED_MIN_ROWS the matrix takes room for as many rows as the machine's
            # memory holds: its pages exist only once written, and it never moves again (a
            # writer of 1M x 384 doubling from 7,000 rows copied 0.7 GB at 448k rows and
            # 1.4 GB at 896k inside a write call: 2-5 s).
            capacity = max(needed, 2 * len(self._matrix), 64)
            if capacity > RESERVED_MIN_ROWS:
                capacity = max(capacity, _rows_in_memory(self.dim * self._matrix.itemsize))
            self._matrix = self._matrix_with(capacity, needed)
        if moved:
            with self._loan_lock:
                self._moved()

    def _matrix_with(self, capacity: int, needed: int = 0) -> np.ndarray:
        """A new matrix of `capacity` rows (reserved room when large; else at least
        `needed` rows and at most twice the rows held) holding the rows held."""
        n = self._count
        dtype = self._matrix.dtype
        room = _reserved_matrix(capacity, self.dim, dtype) if capacity > RESERVED_MIN_ROWS else None
        if room is None:
            rows = min(capacity, max(needed, 2 * n, 64))
            room = np.empty((rows, self.dim), dtype=dtype)
        room[:n] = self._matrix[:n]
        return room

    def _reserve_keys(self, low: int, high: int) -> None:
        """Make the key map cover keys `low` to `high` - 1."""
        size = len(self._row_by_key)
        if size == 0:
            self._key_base = low
        base = min(low, self._key_base)
        if base == self._key_base and high - base <= size:
            return
        shift = self._key_base - base
        grown = np.full(max(high - base, shift + 2 * size), -1, dtype=np.int64)
        grown[shift : shift + size] = self._row_by_key
        self._row_by_key, self._key_base = grown, base


def unfiltered_search_ef(params: HnswParams, tuned_ef: int | None) -> int:
    """The ef of unfiltered graph searches: the user's `ef_search` if set (or with the
    recall target off), else the largest of the configured one, `UNCHOSEN_EF_MIN` and
    `tuned_ef`, the one measured to meet the recall target."""
    if params.ef_search_set or params.recall_target <= 0:
        return search_expansion(params.ef_search)
    return search_expansion(max(params.ef_search, UNCHOSEN_EF_MIN, tuned_ef or 0))


class VectorIndex:
    """The vectors of one collection, searched exactly or through an HNSW graph.

    Exact mode holds a `FlatVectors`. Graph mode holds the graph and, once a caller needed
    many vectors at once (filtered searches), a `FlatVectors` copy kept in step with it. A
    graph may be a read-only view of a mapped snapshot; the first change copies it.
    """

    def __init__(self, dim: int, params: HnswParams, thresholds: Thresholds) -> None:
        self.dim = dim
        self.params = params
        self.thresholds = thresholds
        self.metric = GRAPH_METRICS[params.space]
        self._graph: Index | None = None
        self._mapping: Any = None  # keeps the mapped snapshot alive under a viewed graph
        self._payload: Any = None  # the viewed graph's serialized bytes (inside `_mapping`)
        self._rows: MappedRows | None = None  # the 16-bit rows of `_rows_of` (a payload)
        self._rows_of: Any = None
        self._flat: FlatVectors | None = FlatVectors(dim)
        self.tuned_ef: int | None = None  # the ef measured to meet the recall target
        self.tuned_live_share = 1.0  # the share of records among the measured graph's nodes
        self._backlog: Backlog | None = None  # changes the graph has yet to take
        self._tombstones = 0  # nodes of the graph that are tombstones (`TOMBSTONE_BASE`)
        self._next_tombstone = TOMBSTONE_BASE  # the key the next tombstone is renamed to
        self._free_slots = 0  # nodes usearch removed (older snapshots): reused by an add

    @classmethod
    def from_graph(
        cls,
        dim: int,
        params: HnswParams,
        thresholds: Thresholds,
        graph: Index | MappedGraph,
        flat: FlatVectors | None = None,
    ) -> VectorIndex:
        """An index served by an existing graph, or a view of a mapped one (and optionally
        its vectors, float32 or 16-bit rows)."""
        if isinstance(graph, MappedGraph):
            index = cls.from_graph(dim, params, thresholds, graph.graph, flat)
            index._mapping, index._payload = graph.mapping, graph.payload
            return index
        index = cls(dim, params, thresholds)
        metric = str(graph.metric.name).lower()
        if params.space == "cosine" and metric == LEGACY_COSINE_METRIC:
            index.metric = metric  # searched, added to and compared as it was built
        if graph.ndim != dim or metric != index.metric:
            raise ValueError("graph does not match the collection")
        graph.expansion_search = index.search_ef
        index._graph = graph
        index._flat = flat
        index._count_tombstones()
        return index

    @classmethod
    def from_serialized(
        cls, dim: int, params: HnswParams, thresholds: Thresholds, payload: Any, mapping: Any
    ) -> VectorIndex:
        """A read-only view of a serialized graph; raises ValueError if it does not fit.

        `payload` is a buffer inside `mapping` (a memory-mapped snapshot), which the index
        keeps alive for as long as the view is used.
        """
        index = cls.from_graph(dim, params, thresholds, graph_view(payload))
        index._mapping, index._payload = mapping, payload
        return index

    @property
    def keeps_view(self) -> bool:
        """Whether the graph is a view too large to copy here (`VIEW_KEPT_MIN_BYTES`): its
        changes are deferred to a pass, whose graph is served as a view again."""
        return self._mapping is not None and len(self._mapping) >= VIEW_KEPT_MIN_BYTES

    @property
    def search_ef(self) -> int:
        """The ef of unfiltered graph searches (`unfiltered_search_ef`), the measured one
        widened for the dead nodes added since the measurement (`_widened`)."""
        return unfiltered_search_ef(self.params, self._widened(self.tuned_ef))

    def _widened(self, ef: int | None) -> int | None:
        """A measured `ef` that was above the measurement's first rung (the target was
        binding), scaled by how much the share of records among the graph's nodes fell
        since it was measured: tombstones and entries a backlog made stale take places in
        a search's beam of ef nodes, so the beam's live part keeps the width that met the
        target. At 1M x 384 after 10 % each updated, upserted and deleted (300,000
        tombstones), recall@10 of the bench's queries was 0.9495 at the measured ef 448,
        0.958 at 520 and 0.963 at 600 (this gives 598); a measurement on the changed
        graph (due after a fifth changed) records its tombstones, and scales nothing."""
        graph = self._graph
        if ef is None or graph is None or not len(graph):
            return ef
        if ef <= search_expansion(max(self.params.ef_search, UNCHOSEN_EF_MIN)):
            return ef
        stale = 0 if self._backlog is None else self._backlog.stale_in_graph
        live_share = max(len(graph) - self._tombstones - stale, 1) / len(graph)
        if live_share >= self.tuned_live_share:
            return ef
        return math.ceil(ef * self.tuned_live_share / live_share)

    @property
    def tombstones(self) -> int:
        """Nodes of the graph that are tombstones of records taken out (0 without a graph)."""
        return self._tombstones if self._graph is not None else 0

    @property
    def next_tombstone(self) -> int:
        """The key the graph's next tombstone is renamed to (a background pass's first)."""
        return self._next_tombstone

    @property
    def wants_rebuild(self) -> bool:
        """True when the graph is mostly tombstones (or holds nodes usearch removed, which
        an add would reuse: a snapshot of an older huedb): a graph built afresh from the
        vectors replaces it."""
        if self._graph is None:
            return False
        dead = self._tombstones + self._free_slots
        return self._free_slots > 0 or dead > max(len(self), REBUILD_MIN_TOMBSTONES)

    def _count_tombstones(self) -> None:
        """Count the graph's tombstones and the nodes usearch removed from it."""
        graph = self._graph
        assert graph is not None
        keys = np.asarray(graph.keys, dtype=np.uint64)
        buried = keys[keys >= np.uint64(TOMBSTONE_BASE)]
        self._tombstones = len(buried)
        self._next_tombstone = int(buried.max()) + 1 if len(buried) else TOMBSTONE_BASE
        self._free_slots = max(0, int(graph.stats.nodes) - len(graph))

    @property
    def uses_graph(self) -> bool:
        """True once searches are served by HNSW."""
        return self._graph is not None

    @property
    def wants_graph(self) -> bool:
        """True when the index is exact but large enough to deserve a graph."""
        return self._graph is None and len(self) * self.dim > self.thresholds.exact_max_floats

    @property
    def has_vectors(self) -> bool:
        """True when every float32 vector is held in memory (in exact mode until a graph is
        wanted: then its rows are held at 16 bits, `to_graph_rows`)."""
        return self._flat is not None and self._flat.kind is None

    @property
    def ranks_subsets_in_place(self) -> bool:
        """Whether exact searches among many keys need no float32 copy: 16-bit rows rank
        them first, the graph's as a view of a snapshot (`MappedRows`) or those held
        (`to_graph_rows`)."""
        return self._mapped_rows() is not None or self._holds_rows_16

    @property
    def _holds_rows_16(self) -> bool:
        return self._flat is not None and self._flat.kind is not None

    @property
    def flat(self) -> FlatVectors | None:
        """The in-memory vectors (float32, or a graph's 16-bit rows), if held."""
        return self._flat

    def to_graph_rows(self) -> None:
        """Hold the vectors as the 16-bit rows a new graph holds (`FlatVectors.kind`), not
        float32, from now on: for a graph's build and after it, half the memory (147 MiB
        at 100k x 384 sat beside the graph process's at the build's end). Searches then
        read the float32 vectors of only the rows the 16-bit ones shortlist."""
        flat = self._flat
        if flat is not None and flat.kind is None:
            self._flat = flat.graph_rows_copy(self.params.space, GRAPH_DTYPE)

    @property
    def nbytes(self) -> int:
        """Bytes this index holds in memory: its vectors if held (float32 or 16-bit rows),
        its backlog's, and its graph (the whole mapped file while it is a snapshot view;
        else the graph's serialized size, within ~5 % of its private memory at 2,000 x
        384)."""
        total = 0 if self._flat is None else self._flat.nbytes
        if self._backlog is not None:
            total += self._backlog.nbytes
        if self._graph is not None:
            mapped = self._mapping is not None
            total += len(self._mapping) if mapped else self._graph.serialized_length
        return total

    def attach_vectors(self, flat: FlatVectors) -> None:
        """Hold these float32 vectors (read at the index's watermark) from now on."""
        self._flat = flat

    def release_vectors(self) -> bool:
        """Let the in-memory copy go when the graph does without it: a view of a snapshot
        whose rows rank filtered searches (`MappedRows`; graph candidates are then re-ranked
        with vectors read from the store). Whether it was released."""
        if self._flat is None or self._mapped_rows() is None:
            return False
        self._flat = None
        return True

    def __len__(self) -> int:
        if self._graph is not None:
            backlog, held = self._backlog, len(self._graph) - self._tombstones
            if backlog is None:
                return held
            return held - backlog.stale_in_graph + len(backlog.fresh)
        assert self._flat is not None
        return len(self._flat)

    @property
    def backlog(self) -> int:
        """How many keys' changes the graph has yet to take (searched exactly meanwhile)."""
        return 0 if self._backlog is None else len(self._backlog)

    def upsert(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace vectors under their keys."""
        if len(keys) == 0:
            return
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        unique, last = np.unique(keys[::-1], return_index=True)
        if len(unique) < len(keys):  # a key twice in one batch: the last vector wins
            picked = len(keys) - 1 - last
            keys, vectors = keys[picked], vectors[picked]
        if self._backlog is not None:  # after the changes noted before it
            self.defer(np.empty(0, dtype=np.uint64), keys, vectors)
            return
        if self._flat is not None:
            self._flat.upsert(keys, vectors)
        if self._graph is not None:
            self._change_graph(keys, keys, vectors)

    def remove(self, keys: np.ndarray) -> None:
        """Remove keys that are present; absent keys are ignored."""
        if len(keys) == 0:
            return
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if self._backlog is not None:
            self.defer(keys, np.empty(0, dtype=np.uint64), np.empty((0, self.dim), np.float32))
            return
        if self._flat is not None:
            self._flat.remove(keys)
        if self._graph is not None:
            self._change_graph(keys, keys[:0], np.empty((0, self.dim), np.float32))

    def _change_graph(self, out: np.ndarray, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Take the keys `out` out of the graph where it holds them (their nodes become
        tombstones), then add `keys` with their float32 `vectors` (a snapshot's view is
        copied only when something changes)."""
        assert self._graph is not None
        present = self._graph.contains(out)
        if np.any(present):
            gone = np.unique(out[present])
            first = self._next_tombstone
            buried = np.arange(first, first + len(gone), dtype=np.uint64)
            self._mutable_graph().rename(gone, buried)
            self._tombstones += len(gone)
            self._next_tombstone = first + len(gone)
        if len(keys):
            rows = self.graph_rows(vectors)
            self._mutable_graph().add(keys, rows, threads=_threads(len(keys)))

    def defer(self, removed: np.ndarray, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Apply changes to the float32 vectors at once, and note them for the graph
        (`graph_backlog`) rather than change it: `removed` are gone, `keys` (distinct) hold
        `vectors`. Searches take the noted keys exactly until a pass brings the graph up to
        date (`take_backlog`, `adopt_backlog_graph`); the graph itself is not changed
        meanwhile, so a pass may read it from another thread."""
        assert self._graph is not None
        removed = np.ascontiguousarray(removed, dtype=np.uint64)
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._flat is not None:
            self._flat.remove(removed)
            if len(keys):
                self._flat.upsert(keys, vectors)
        if self._backlog is not None:
            self._backlog.note(self._graph.contains, removed, keys, vectors)
            return
        self._backlog = Backlog(FlatVectors.holding(keys, vectors))
        self._backlog.note(self._graph.contains, removed, keys, vectors, held=True)

    def take_backlog(self) -> BacklogWork:
        """The changes noted so far, for one pass; changes noted from now on wait for the
        next (`Backlog.take_work`)."""
        assert self._backlog is not None
        return self._backlog.take_work()

    def adopt_backlog_graph(self, graph: Index | MappedGraph | None, work: BacklogWork) -> None:
        """Serve `graph`: this index's graph with `work` applied (by a pass, in another
        thread or process; a view of a file when mapped; None: the work changed nothing in
        it). The work's keys not noted again since leave the backlog."""
        backlog = self._backlog
        assert backlog is not None and self._graph is not None
        if isinstance(graph, MappedGraph):
            graph.graph.expansion_search = self.search_ef
            self._graph, self._mapping, self._payload = graph.graph, graph.mapping, graph.payload
        elif graph is not None:
            graph.expansion_search = self.search_ef
            self._graph, self._mapping, self._payload = graph, None, None
        if graph is not None:
            self._rows = self._rows_of = None  # the old view's rows keep its mapping alive
            self._count_tombstones()
        backlog.settle(work, self._graph.contains)
        if len(backlog) == 0:
            self._backlog = None

    def apply_backlog_here(self) -> None:
        """Apply the whole backlog to the graph in this thread (a small one, or after a
        pass failed), then drop it."""
        if self._backlog is None:
            return
        work = self._backlog.take_work()
        self._change_graph(work.keys, work.add_keys, work.add_vectors)
        self._backlog = None

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """The exact index's keys and vectors, lent to a graph build (see FlatVectors)."""
        assert self._flat is not None
        return self._flat.contents()

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None, fetch: VectorFetch
    ) -> SearchHits:
        """The k nearest vectors to one query, optionally among `allowed` keys only.

        `fetch` returns float32 vectors by key; it is used to rank graph candidates when the
        index does not hold the vectors itself.
        """
        n = len(self)
        if n == 0 or k <= 0:
            return _EMPTY
        query = np.ascontiguousarray(query, dtype=np.float32)
        if allowed is None:
            if self.has_vectors and self._graph is None:
                assert self._flat is not None
                return self._flat.search(self.params.space, query, k)
            k = min(k, n)
            return self.rank(query, k, self.candidates(query, k), fetch)
        if len(allowed) == 0:
            return _EMPTY
        allowed = np.ascontiguousarray(allowed, dtype=np.uint64)
        small = len(allowed) * self.dim <= self.thresholds.filtered_exact_max_floats
        if self._graph is None or small:
            return self.exact_among(query, k, allowed, fetch)
        return self._filtered_graph_search(query, k, allowed, fetch)

    def exact_among(
        self, query: np.ndarray, k: int, keys: np.ndarray, fetch: VectorFetch
    ) -> SearchHits:
        """Exact k nearest among the given (present) keys."""
        keys = self.exact_candidates(query, k, keys)
        if self.has_vectors:
            assert self._flat is not None
            return self._flat.search_among(self.params.space, query, k, keys)
        matrix = np.ascontiguousarray(fetch(keys), dtype=np.float32)
        return top_k_exact(self.params.space, matrix, keys, query, k)

    def exact_candidates(self, query: np.ndarray, k: int, keys: np.ndarray) -> np.ndarray:
        """The keys (of present `keys`) whose float32 vectors an exact search for the k
        nearest among `keys` must read: those that may be among them by the
        16-bit rows held (first: current, and a tighter bound) or the snapshot's
        (`MappedRows`), or all of them without such rows."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if len(keys) < MAPPED_ROWS_MIN_KEYS:
            return keys
        if self._holds_rows_16:  # current, and rounded as this process rounds: a tighter bound
            assert self._flat is not None
            return self._flat.shortlist(query, k, keys)
        rows = self._mapped_rows()
        if rows is not None:
            return self._shortlist(rows, query, k, keys)
        return keys

    def _shortlist(
        self, rows: MappedRows, query: np.ndarray, k: int, keys: np.ndarray
    ) -> np.ndarray:
        """The keys that may be among the exact k nearest (`MappedRows.shortlist`), with
        every key the mapped rows do not hold as it is now (the backlog's changes)."""
        slots = rows.slots_of(keys)
        held = slots >= 0
        if self._backlog is not None:
            held &= ~self._backlog.is_stale(keys)
        picked = rows.shortlist(self.params.space, query, k, slots[held])
        return np.concatenate([keys[held][picked], keys[~held]])

    def _mapped_rows(self) -> MappedRows | None:
        """The 16-bit rows of the mapped snapshot the graph is a view of (None when it is
        not a view, or a graph of a layout or metric `MappedRows` does not read)."""
        payload = self._payload
        if payload is None or self.metric not in ("ip", "l2sq"):
            return None
        if self._rows_of is not payload:
            self._rows = MappedRows.of(payload, self.dim, BF16_ROUNDING_BOUND)
            self._rows_of = payload
        return self._rows

    def with_exact_matches(
        self, query: np.ndarray, k: int, hits: SearchHits, keys: list[int], fetch: VectorFetch
    ) -> SearchHits:
        """Merge records known to hold the query vector itself into approximate hits.

        HNSW can leave a few nodes unreachable (more after removals), so a graph search may
        miss a record even when queried with its own vector; the caller finds such records
        by an exact digest lookup and this puts them where they belong in the ranking.
        """
        found = set(hits[0].tolist())
        missing = np.asarray([key for key in keys if key not in found], dtype=np.uint64)
        if len(missing) == 0:
            return hits
        extra_keys, extra_dists = self.exact_among(query, k, missing, fetch)
        all_keys = np.concatenate([hits[0], extra_keys])
        all_dists = np.concatenate([hits[1], extra_dists])
        order = np.lexsort((all_keys, all_dists))[:k]
        return all_keys[order], all_dists[order]

    def mismatched(self, keys: np.ndarray, stored: np.ndarray) -> list[int]:
        """Keys whose indexed vector differs from the stored float32 one (at index precision)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if self._graph is None:
            assert self._flat is not None
            same = self._flat.same_rows(keys, np.ascontiguousarray(stored, dtype=np.float32))
            return keys[~same].tolist()
        wrong: list[int] = []
        if self._backlog is not None:  # noted keys: their current vectors are exact
            noted = self._backlog.is_stale(keys)
            fresh, noted_keys = self._backlog.fresh, keys[noted]
            held = fresh.rows(noted_keys) >= 0
            same = np.zeros(len(noted_keys), dtype=bool)
            if np.any(held):
                got = fresh.gather(noted_keys[held])
                same[held] = np.all(got == stored[noted][held], axis=1)
            wrong = noted_keys[~same].tolist()
            keys, stored = keys[~noted], stored[~noted]
        if len(keys) == 0:
            return wrong
        return wrong + keys[~self.graph_holds(keys, stored)].tolist()

    def graph_holds_any(self, keys: np.ndarray) -> bool:
        """Whether the graph holds any of these keys (it is only read)."""
        assert self._graph is not None
        return len(keys) > 0 and bool(np.any(self._graph.contains(keys)))

    def graph_holds(self, keys: np.ndarray, stored: np.ndarray) -> np.ndarray:
        """Per key, whether the graph holds exactly this float32 vector (at the graph's
        precision); the graph is only read (a background pass may call this)."""
        assert self._graph is not None
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        holds = np.zeros(len(keys), dtype=bool)
        dtype = str(self._graph.dtype.name).lower()
        # Block by block, whole arrays at a time: a pass starts with this, beside queries,
        # and a comparison a row at a time held the GIL for seconds (200,000 changed
        # vectors of a 1M x 384 graph: 2.6 s with its pages in memory, against 1.2 s; a
        # search beside it waited up to 517 ms, now 17 ms).
        for start in range(0, len(keys), GRAPH_GET_BLOCK):
            part = slice(start, start + GRAPH_GET_BLOCK)
            held = np.asarray(self._graph.contains(keys[part]), dtype=bool).reshape(-1)
            if not held.any():
                continue
            got = graph_vectors(self._graph, keys[part][held])
            want = at_graph_precision(dtype, self.graph_rows(stored[part][held]))
            held[held] = np.all(got == want, axis=1)
            holds[part] = held
        return holds

    def save_graph(self, path: Path) -> None:
        """Write the serialized HNSW graph to the file `path`, streamed (no copy of it in
        memory); OSError when it cannot be written. With a backlog, the graph is saved as
        it is, without the changes noted (a pass's starting point, never a snapshot);
        without, the file's nodes that no search reaches are then linked in (`graph_reach`:
        a graph changed in place, a node at a time, leaves some too).

        A view's serialized bytes are copied as they are, not saved by usearch, whose save
        holds the GIL throughout (2.0 s at 1M x 384: every other thread paused); a file
        write leaves it to them."""
        assert self._graph is not None
        if self._payload is not None:
            with open(path, "wb") as f:
                for start in range(0, len(self._payload), SAVE_BLOCK):
                    f.write(self._payload[start : start + SAVE_BLOCK])
            return
        # Read before the save: a write arriving meanwhile starts a backlog (the graph
        # itself stays as saved), and a pass's starting point is linked by the pass.
        link = self._backlog is None
        try:
            self._graph.save(os.fspath(path))
        except RuntimeError as exc:  # usearch reports I/O errors as RuntimeError
            raise OSError(f"cannot write the graph to {path}: {exc}") from exc
        if link:
            link_saved_graph(path, self._graph)

    def keys(self) -> np.ndarray:
        """All keys currently indexed."""
        if self._graph is not None:
            keys = graph_keys(self._graph)
            if self._backlog is None:
                return keys
            return np.concatenate([self._backlog.current(keys), self._backlog.fresh.keys()])
        assert self._flat is not None
        return self._flat.keys()

    def _mutable_graph(self) -> Index:
        """The graph, copied out of its mapped snapshot first if it is a read-only view."""
        assert self._graph is not None
        if self._mapping is not None:
            view = self._graph
            self._graph = view.copy()
            self._graph.expansion_search = self.search_ef
            self._mapping, self._payload = None, None
            self._rows = self._rows_of = None
        return self._graph

    def graph_rows(self, vectors: np.ndarray) -> np.ndarray:
        """float32 vectors as this index's graph holds them (`graph_input`, unless the graph
        is an older snapshot's cosine-metric one, which holds them unscaled)."""
        if self.metric == LEGACY_COSINE_METRIC:
            return vectors
        return graph_input(self.params.space, np.ascontiguousarray(vectors, dtype=np.float32))

    def _vectors(self, keys: np.ndarray, fetch: VectorFetch) -> np.ndarray:
        if self.has_vectors:
            assert self._flat is not None
            return self._flat.gather(keys)
        return fetch(keys)

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """The keys an unfiltered search ranks exactly for the k nearest: the graph's
        (`graph_candidates`), or the 16-bit rows' shortlist; `rank` with their vectors
        gives the answer `search` would."""
        if self._graph is not None:
            return self.graph_candidates(query, k)
        assert self._flat is not None and self._flat.kind is not None
        return self._flat.shortlist(query, min(k, len(self)))

    def graph_candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """The keys an unfiltered graph search ranks exactly for the k nearest (a margin
        over k); `rank` with their vectors gives the answer `search` would."""
        n = len(self)
        k = min(k, n)
        return self._graph_candidates(query, min(n, k + k // 4 + 2))

    def rank(
        self, query: np.ndarray, k: int, candidates: np.ndarray, fetch: VectorFetch
    ) -> SearchHits:
        """Exact distances for graph candidates, best k first."""
        if len(candidates) == 0:
            return _EMPTY
        matrix = np.ascontiguousarray(self._vectors(candidates, fetch), dtype=np.float32)
        return rank_exact(self.params.space, matrix, candidates, query, k)

    def _graph_candidates(self, query: np.ndarray, count: int, ef: int | None = None) -> np.ndarray:
        """The graph's `count` nearest keys; with a backlog, its outdated entries left out
        (the graph is asked for more until `count` current ones are found or it has no
        more) and the backlog's `count` nearest current vectors (exact) added."""
        graph, backlog = self._graph, self._backlog
        assert graph is not None
        if backlog is None:
            return self._search_graph(query, count, ef)
        size = len(graph)
        asked = min(size, count + min(backlog.stale_in_graph, count))
        current = np.empty(0, dtype=np.uint64)
        while asked > 0:
            current = backlog.current(self._search_graph(query, asked, ef))
            if len(current) >= count or asked >= size:
                break
            asked = min(size, 2 * asked)
        nearest = backlog.nearest(self.params.space, query, count)
        return np.concatenate([current[:count], nearest])

    def _search_graph(self, query: np.ndarray, count: int, ef: int | None) -> np.ndarray:
        """The keys of the graph's `count` nearest records, tombstones left out (the graph
        is asked for more until `count` are found or it has no more; an exhaustive search
        when the graph search finds fewer than the graph holds)."""
        graph = self._graph
        assert graph is not None
        size, dead = len(graph), self._tombstones
        asked = min(size, count + min(dead, count))
        while True:
            graph.expansion_search = search_expansion(max(self.search_ef, ef or 0), asked)
            found = graph.search(query, asked, threads=1)
            keys = np.asarray(found.keys, dtype=np.uint64)
            if len(keys) < min(asked, size):
                found = graph.search(query, asked, threads=1, exact=True)
                keys = np.asarray(found.keys, dtype=np.uint64)
            if dead:
                keys = keys[keys < np.uint64(TOMBSTONE_BASE)]
            if len(keys) >= count or asked >= size:
                return keys[:count]
            asked = min(size, 2 * asked)

    def _filtered_graph_search(
        self, query: np.ndarray, k: int, allowed: np.ndarray, fetch: VectorFetch
    ) -> SearchHits:
        candidates = self.filtered_graph_candidates(query, k, allowed)
        if candidates is None:
            return self.exact_among(query, k, allowed, fetch)
        return self.rank(query, min(k, len(allowed)), candidates, fetch)

    def filtered_graph_candidates(
        self, query: np.ndarray, k: int, allowed: np.ndarray
    ) -> np.ndarray | None:
        """The keys a filtered graph search ranks exactly for the k nearest among
        `allowed` (oversampled graph candidates that are allowed); None when fewer than
        can answer are found (the correlated-filter case: an exact search among `allowed`
        instead)."""
        n = len(self)
        want = min(k, len(allowed))
        count = min(n, math.ceil(FILTER_OVERSAMPLE * (k + RERANK_MARGIN) * n / len(allowed)))
        candidates = self._graph_candidates(query, count, ef=count)
        candidates = candidates[np.isin(candidates, allowed)]
        if self._backlog is None:  # the graph's order: the nearest first
            candidates = candidates[: want + RERANK_MARGIN]
        return None if len(candidates) < want else candidates


def search_graph(
    graph: Index,
    queries: np.ndarray,
    count: int,
    ef: int,
    tombstones: int = 0,
    threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Keys (queries x count) and how many were found per query, of a batch searched at
    expansion `ef` on `threads` (0: every core, for measuring a graph that no query is
    using). On a graph holding `tombstones`, twice as many as hold `count` records on
    average are asked for, and the tombstones among them left out."""
    size = len(graph)
    asked = count
    if tombstones:
        asked = max(count, min(size, 2 * count * size // max(1, size - tombstones)))
    graph.expansion_search = search_expansion(ef, asked)
    found = graph.search(queries, asked, threads=threads)
    keys = np.asarray(found.keys, dtype=np.uint64)
    if keys.ndim == 1:  # usearch answers a one-row batch as one query's `Matches`
        row = np.zeros((1, asked), dtype=np.uint64)
        row[0, : len(keys)] = keys[:asked]
        keys, counts = row, np.asarray([min(len(keys), asked)], dtype=np.int64)
    else:
        counts = np.asarray(found.counts, dtype=np.int64)
    if not tombstones:
        return keys, counts
    kept = (keys < np.uint64(TOMBSTONE_BASE)) & (np.arange(asked)[None, :] < counts[:, None])
    order = np.argsort(~kept, axis=1, kind="stable")  # the records found first, in order
    keys = np.take_along_axis(keys, order, axis=1)[:, :count]
    return keys, np.minimum(kept.sum(axis=1), count).astype(np.int64)


def graph_keys(graph: Index) -> np.ndarray:
    """Every record's key of a graph (its tombstones left out)."""
    keys = np.asarray(graph.keys, dtype=np.uint64)
    return keys[keys < np.uint64(TOMBSTONE_BASE)]


def graph_vectors(graph: Index, keys: np.ndarray) -> np.ndarray:
    """The graph's vectors of present keys as float32 (at the graph's precision)."""
    if len(keys) == 0:
        return np.empty((0, graph.ndim), dtype=np.float32)
    rows = graph.get(np.ascontiguousarray(keys, dtype=np.uint64), dtype=np.float32)
    return np.vstack(rows).astype(np.float32)


def at_graph_precision(dtype: str, vectors: np.ndarray) -> np.ndarray:
    """float32 vectors rounded as a graph of scalar type `dtype` ("f16", "bf16", "f32")
    stores them, as float32."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if dtype == "f16":
        return vectors.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        return _bf16_rounding()(vectors)
    return vectors


def graph_rows_16(kind: str, space: str, vectors: np.ndarray) -> np.ndarray:
    """float32 vectors as a new graph of `space` and 16-bit type `kind` holds them
    (`graph_input`, rounded as usearch rounds): bfloat16 bits (uint16), or float16."""
    rows = graph_input(space, np.ascontiguousarray(vectors, dtype=np.float32))
    with np.errstate(over="ignore"):  # beyond float16's range: infinite, as in the graph
        rounded = at_graph_precision(kind, rows)
    if kind == "f16":
        return rounded.astype(np.float16)
    return (rounded.view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def rounding_bound(kind: str) -> float:
    """How far, relative to it, a value this process rounds to the 16-bit type `kind` may
    be from the float32 one: half an ulp when rounding to nearest (float16; bfloat16 with
    SimSIMD), a whole ulp when truncating."""
    if kind == "f16":
        return F16_ROUNDING_BOUND
    return (
        BF16_ROUNDING_BOUND / 2 if _bf16_rounding() is _bf16_nearest_even else BF16_ROUNDING_BOUND
    )


def _bf16_nearest_even(vectors: np.ndarray) -> np.ndarray:
    bits = vectors.view(np.uint32)
    bits = bits + (np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1)))
    return (bits & np.uint32(0xFFFF0000)).view(np.float32)


def _bf16_truncated(vectors: np.ndarray) -> np.ndarray:
    return (vectors.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


@functools.cache
def _bf16_rounding() -> Callable[[np.ndarray], np.ndarray]:
    """How this usearch build rounds float32 to bfloat16 (SimSIMD's rounds to nearest even,
    a build without it truncates), learnt from a tie to even, one above half an ulp and a
    tie to odd."""
    probe_bits = np.array([[0x3F808000, 0x3F80C000, 0x3F818000]], dtype=np.uint32)
    probe = probe_bits.view(np.float32)
    graph = Index(ndim=3, metric="l2sq", dtype="bf16")
    graph.add(np.zeros(1, dtype=np.uint64), probe, threads=1)
    stored = np.asarray(graph.get(np.uint64(0), dtype=np.float32), dtype=np.float32)
    for rounding in (_bf16_nearest_even, _bf16_truncated):
        if np.array_equal(rounding(probe)[0], stored):
            return rounding
    raise RuntimeError(f"usearch rounds {probe[0]} to bfloat16 as {stored}: unknown rounding")


def load_graph(path: Path) -> Index:
    """A graph read into memory from a file usearch saved (ValueError if it holds none)."""
    graph = Index.restore(os.fspath(path))
    if graph is None:
        raise ValueError(f"{path} is not an index")
    return graph


@dataclass(frozen=True)
class MappedGraph:
    """A read-only view of a serialized graph and the mapping that must outlive it."""

    graph: Index
    mapping: Any
    payload: Any


def map_graph_file(path: Path) -> MappedGraph:
    """A view of the graph usearch saved to `path` (which may be removed afterwards: the
    mapping keeps its pages)."""
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    payload = memoryview(mapping)
    return MappedGraph(graph_view(payload), mapping, payload)


def graph_view(payload: Any) -> Index:
    """A read-only graph over a serialized one (a buffer of a mapped snapshot)."""
    graph = Index.restore(payload, view=True)
    if graph is None:
        raise ValueError("snapshot payload is not an index")
    return graph


def _threads(batch: int) -> int:
    return 1 if batch < 256 else build_threads()


def build_threads() -> int:
    """Threads for adding many vectors to a graph: every core."""
    return os.cpu_count() or 1


def query_plan(index: VectorIndex, allowed: np.ndarray | None) -> str:
    """The plan `VectorIndex.search` follows for these allowed keys (None: no filter):
    one of `events.QUERY_PLANS`."""
    if allowed is None:
        return "graph" if index.uses_graph else "exact"
    small = len(allowed) * index.dim <= index.thresholds.filtered_exact_max_floats
    return "filtered_graph" if index.uses_graph and not small else "filtered_exact"
