"""The vector index of one collection: exact search when small, usearch HNSW when large.

This is the only module that imports usearch. Keys are the records' integer keys (never
reused), so an index entry can never point at the wrong record. Distances follow Chroma:
l2 = squared L2, ip = 1 - dot, cosine = 1 - cosine similarity, all in float32.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from usearch.index import Index
from usearch.index import search as exact_search

METRICS = {"l2": "l2sq", "ip": "ip", "cosine": "cos"}
LIBRARY = "usearch"


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

    @property
    def uses_graph(self) -> bool:
        """True once the collection is large enough to be served by HNSW."""
        return self._graph is not None

    def __len__(self) -> int:
        return len(self._graph) if self._graph is not None else len(self._row_of)

    def upsert(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace vectors under their keys."""
        if len(keys) == 0:
            return
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._graph is not None:
            present = self._graph.contains(keys)
            if np.any(present):
                self._graph.remove(keys[present])
            self._graph.add(keys, vectors, threads=_threads(len(keys)))
            return
        self._flat_upsert(keys, vectors)
        if len(self._row_of) * self.dim > self.thresholds.exact_max_floats:
            self._build_graph()

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

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None) -> SearchHits:
        """The k nearest vectors to one query, optionally among `allowed` keys only."""
        n = len(self)
        if n == 0 or k <= 0:
            return _EMPTY
        if allowed is None:
            if self._graph is None:
                return self._exact(self._matrix[:n], self._keys[:n], query, k)
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
        extra_keys, extra_dists = self._exact(self.vectors_of(missing), missing, query, k)
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

    @classmethod
    def from_serialized(
        cls, dim: int, params: HnswParams, thresholds: Thresholds, payload: bytes
    ) -> VectorIndex:
        """Restore an index from `serialize()` output; raises ValueError if it does not fit."""
        graph = Index.restore(payload)
        index = cls(dim, params, thresholds)
        if graph is None or graph.ndim != dim or _metric_name(graph) != index.metric:
            raise ValueError("snapshot does not match the collection")
        graph.expansion_search = params.ef_search
        index._graph = graph
        return index

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

    def _build_graph(self) -> None:
        n = len(self._row_of)
        graph = Index(
            ndim=self.dim,
            metric=self.metric,
            dtype="f32",
            connectivity=self.params.max_neighbors,
            expansion_add=self.params.ef_construction,
            expansion_search=self.params.ef_search,
        )
        graph.add(self._keys[:n], self._matrix[:n], threads=_threads(n))
        self._graph = graph
        self._matrix = np.empty((0, self.dim), dtype=np.float32)
        self._keys = np.empty(0, dtype=np.uint64)
        self._row_of = {}

    def _exact(self, matrix: np.ndarray, keys: np.ndarray, query: np.ndarray, k: int) -> SearchHits:
        k = min(k, len(keys))
        found = exact_search(matrix, query, k, self.metric, exact=True, threads=1)
        count = int(found.count) if hasattr(found, "count") else len(found.keys)
        positions = np.asarray(found.keys[:count], dtype=np.int64)
        return keys[positions], np.asarray(found.distances[:count], dtype=np.float32)

    def _exact_among(self, query: np.ndarray, k: int, allowed: np.ndarray) -> SearchHits:
        matrix = np.ascontiguousarray(self.vectors_of(allowed), dtype=np.float32)
        return self._exact(matrix, allowed, query, k)

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


def _metric_name(graph: Index) -> str:
    return str(graph.metric.name).lower()


def _threads(batch: int) -> int:
    return 1 if batch < 256 else (os.cpu_count() or 1)
