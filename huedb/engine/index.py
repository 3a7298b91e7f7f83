"""The vector index of one collection: exact search when small, usearch HNSW when large.

This is the only module that imports usearch. Keys are the records' integer keys (never
reused), so an index entry can never point at the wrong record. Distances follow Chroma:
l2 = squared L2, ip = 1 - dot, cosine = 1 - cosine similarity, all in float32.

A `VectorIndex` starts exact (a numpy matrix). When it grows past the exact-search
threshold, its owner builds a graph from a copy of its vectors (`build_graph`, which may run
in another thread) and swaps it in with `VectorIndex.from_graph`; until then searches stay
exact, so they are slower but never wrong.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

import numpy as np
from usearch.index import Index

METRICS = {"l2": "l2sq", "ip": "ip", "cosine": "cos"}
RERANK_MARGIN = 16
BUILD_CHUNK = 10_000


@dataclass(frozen=True)
class HnswParams:
    """Graph parameters, named as in Chroma's configuration."""

    space: str = "l2"
    max_neighbors: int = 16
    ef_construction: int = 100
    ef_search: int = 100


@dataclass(frozen=True)
class Thresholds:
    """Planner thresholds in floats (vectors x dimension), from ann-choice.md."""

    exact_max_floats: int = 2_000_000
    filtered_exact_max_floats: int = 3_000_000


SearchHits = tuple[np.ndarray, np.ndarray]  # (keys uint64, distances float32), best first

_EMPTY: SearchHits = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.float32))


def exact_distances(space: str, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Chroma's distance from `query` to every row, computed directly in float32."""
    if space == "l2":
        diff = matrix - query
        return np.einsum("ij,ij->i", diff, diff)
    dots = matrix @ query
    if space == "ip":
        return (1.0 - dots).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1) * np.float32(np.linalg.norm(query))
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(norms > 0, dots / norms, 0.0)
    return (1.0 - cos).astype(np.float32)


def top_k_exact(
    space: str, matrix: np.ndarray, keys: np.ndarray, query: np.ndarray, k: int
) -> SearchHits:
    """The k nearest rows: a BLAS pass to shortlist, then direct distances to rank."""
    n = len(keys)
    k = min(k, n)
    if k <= 0:
        return _EMPTY
    query = np.ascontiguousarray(query, dtype=np.float32)
    shortlist = min(n, 2 * k + RERANK_MARGIN)
    if shortlist < n:
        if space == "l2":
            rough = np.einsum("ij,ij->i", matrix, matrix) - 2.0 * (matrix @ query)
        elif space == "ip":
            rough = -(matrix @ query)
        else:
            norms = np.linalg.norm(matrix, axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                rough = -np.where(norms > 0, (matrix @ query) / norms, 0.0)
        rows = np.argpartition(rough, shortlist - 1)[:shortlist]
    else:
        rows = np.arange(n)
    dists = exact_distances(space, matrix[rows], query)
    order = np.argsort(dists, kind="stable")[:k]
    return keys[rows[order]], dists[order].astype(np.float32)


class BuildStopped(Exception):
    """A background graph build was asked to stop (the process is exiting)."""


def build_graph(
    dim: int,
    params: HnswParams,
    keys: np.ndarray,
    vectors: np.ndarray,
    stop: threading.Event | None = None,
) -> Index:
    """An HNSW graph over the given vectors (multi-threaded; releases the GIL).

    Vectors are added in chunks so that `stop` is honoured within one chunk's time.
    """
    graph = Index(
        ndim=dim,
        metric=METRICS[params.space],
        dtype="f32",
        connectivity=params.max_neighbors,
        expansion_add=params.ef_construction,
        expansion_search=params.ef_search,
    )
    for start in range(0, len(keys), BUILD_CHUNK):
        if stop is not None and stop.is_set():
            raise BuildStopped
        end = start + BUILD_CHUNK
        graph.add(keys[start:end], vectors[start:end], threads=_threads(end - start))
    return graph


class VectorIndex:
    """In-memory vectors of one collection, with exact and HNSW search."""

    def __init__(self, dim: int, params: HnswParams, thresholds: Thresholds) -> None:
        self.dim = dim
        self.params = params
        self.thresholds = thresholds
        self.metric = METRICS[params.space]
        self._graph: Index | None = None
        self._matrix = np.empty((0, dim), dtype=np.float32)
        self._keys = np.empty(0, dtype=np.uint64)
        self._row_of: dict[int, int] = {}

    @classmethod
    def from_graph(
        cls, dim: int, params: HnswParams, thresholds: Thresholds, graph: Index
    ) -> VectorIndex:
        """An index served by an existing graph."""
        index = cls(dim, params, thresholds)
        if graph.ndim != dim or str(graph.metric.name).lower() != index.metric:
            raise ValueError("graph does not match the collection")
        graph.expansion_search = params.ef_search
        index._graph = graph
        return index

    @classmethod
    def from_serialized(
        cls, dim: int, params: HnswParams, thresholds: Thresholds, payload: bytes
    ) -> VectorIndex:
        """Restore an index from `serialize()` output; raises ValueError if it does not fit."""
        graph = Index.restore(payload)
        if graph is None:
            raise ValueError("snapshot payload is not an index")
        return cls.from_graph(dim, params, thresholds, graph)

    @property
    def uses_graph(self) -> bool:
        """True once searches are served by HNSW."""
        return self._graph is not None

    @property
    def wants_graph(self) -> bool:
        """True when the index is exact but large enough to deserve a graph."""
        return self._graph is None and len(self) * self.dim > self.thresholds.exact_max_floats

    def __len__(self) -> int:
        return len(self._graph) if self._graph is not None else len(self._row_of)

    def upsert(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace vectors under their keys."""
        if len(keys) == 0:
            return
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._graph is None:
            self._flat_upsert(keys, vectors)
            return
        present = self._graph.contains(keys)
        if np.any(present):
            self._graph.remove(keys[present])
        self._graph.add(keys, vectors, threads=_threads(len(keys)))

    def remove(self, keys: np.ndarray) -> None:
        """Remove keys that are present; absent keys are ignored."""
        if len(keys) == 0:
            return
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if self._graph is not None:
            present = self._graph.contains(keys)
            if np.any(present):
                self._graph.remove(keys[present])
            return
        for key in keys.tolist():
            row = self._row_of.pop(key, None)
            if row is None:
                continue
            last = len(self._row_of)
            if row != last:
                moved = int(self._keys[last])
                self._matrix[row] = self._matrix[last]
                self._keys[row] = moved
                self._row_of[moved] = row

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the exact index's keys and vectors (to build a graph from)."""
        n = len(self._row_of)
        return self._keys[:n].copy(), self._matrix[:n].copy()

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> SearchHits:
        """The k nearest vectors to one query, optionally among `allowed` keys only."""
        n = len(self)
        if n == 0 or k <= 0:
            return _EMPTY
        if allowed is None:
            if self._graph is None:
                return top_k_exact(self.params.space, self._matrix[:n], self._keys[:n], query, k)
            return self._graph_search(query, min(k, n))
        if len(allowed) == 0:
            return _EMPTY
        allowed = np.ascontiguousarray(allowed, dtype=np.uint64)
        small = len(allowed) * self.dim <= self.thresholds.filtered_exact_max_floats
        if self._graph is None or small:
            return self._exact_among(query, k, allowed)
        return self._filtered_graph_search(query, k, allowed)

    def with_exact_matches(
        self, query: np.ndarray, k: int, hits: SearchHits, keys: list[int]
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
        extra_keys, extra_dists = self._exact_among(query, k, missing)
        all_keys = np.concatenate([hits[0], extra_keys])
        all_dists = np.concatenate([hits[1], extra_dists])
        order = np.argsort(all_dists, kind="stable")[:k]
        return all_keys[order], all_dists[order]

    def vectors_of(self, keys: np.ndarray) -> np.ndarray:
        """The stored vectors of present keys, as a matrix in the order given."""
        if self._graph is not None:
            got = self._graph.get(np.ascontiguousarray(keys, dtype=np.uint64), dtype=np.float32)
            rows = [got] if isinstance(got, np.ndarray) and got.ndim == 1 else list(got)
            return np.vstack(rows) if rows else np.empty((0, self.dim), dtype=np.float32)
        rows_idx = [self._row_of[k] for k in keys.tolist()]
        return self._matrix[rows_idx]

    def serialize(self) -> bytes | None:
        """The HNSW graph as bytes for a snapshot; None while the index is exact-only."""
        if self._graph is None:
            return None
        return bytes(self._graph.save())

    def keys(self) -> np.ndarray:
        """All keys currently indexed."""
        if self._graph is not None:
            return np.asarray(self._graph.keys, dtype=np.uint64)
        return self._keys[: len(self._row_of)].copy()

    def _flat_upsert(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        new_rows = []
        for i, key in enumerate(keys.tolist()):
            row = self._row_of.get(key)
            if row is None:
                new_rows.append(i)
            else:
                self._matrix[row] = vectors[i]
        if not new_rows:
            return
        start = len(self._row_of)
        end = start + len(new_rows)
        if end > len(self._matrix):
            capacity = max(end, 2 * len(self._matrix), 64)
            matrix = np.empty((capacity, self.dim), dtype=np.float32)
            matrix[:start] = self._matrix[:start]
            key_arr = np.empty(capacity, dtype=np.uint64)
            key_arr[:start] = self._keys[:start]
            self._matrix, self._keys = matrix, key_arr
        idx = np.asarray(new_rows)
        self._matrix[start:end] = vectors[idx]
        self._keys[start:end] = keys[idx]
        for offset, key in enumerate(keys[idx].tolist()):
            self._row_of[key] = start + offset

    def _exact_among(self, query: np.ndarray, k: int, allowed: np.ndarray) -> SearchHits:
        matrix = np.ascontiguousarray(self.vectors_of(allowed), dtype=np.float32)
        return top_k_exact(self.params.space, matrix, allowed, query, k)

    def _graph_search(self, query: np.ndarray, k: int, ef: int | None = None) -> SearchHits:
        graph = self._graph
        assert graph is not None
        graph.expansion_search = max(self.params.ef_search, ef or 0)
        found = graph.search(query, k, threads=1)
        keys = np.asarray(found.keys, dtype=np.uint64)
        dists = np.asarray(found.distances, dtype=np.float32)
        if len(keys) < k:
            found = graph.search(query, k, threads=1, exact=True)
            keys = np.asarray(found.keys, dtype=np.uint64)
            dists = np.asarray(found.distances, dtype=np.float32)
        return keys, dists

    def _filtered_graph_search(self, query: np.ndarray, k: int, allowed: np.ndarray) -> SearchHits:
        n = len(self)
        want = min(k, len(allowed))
        count = min(n, math.ceil(2 * k * n / len(allowed)))
        keys, dists = self._graph_search(query, count, ef=count)
        keep = np.isin(keys, allowed)
        keys, dists = keys[keep][:want], dists[keep][:want]
        if len(keys) < want:
            return self._exact_among(query, k, allowed)
        return keys, dists


def _threads(batch: int) -> int:
    return 1 if batch < 256 else (os.cpu_count() or 1)
