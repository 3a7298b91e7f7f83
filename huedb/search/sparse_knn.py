"""Sparse `$knn` by a scan of the filtered records (shared/chroma-search-api.md, 3.2, 4.4).

A record is a candidate when its metadata value under the Knn's key is a sparse vector
(the wire dict `{"#type": "sparse_vector", ...}` or a `SparseVector`) sharing at least one
index with the query; its measure is `1 - sum_t q_t * d_t` (float64 sum, then float32).
With `bm25: true`, `q_t` is first multiplied by `idf(t) = ln(1 + (N - n_t + 0.5) /
(n_t + 0.5))`, where `N` is the number of live records of the collection and `n_t` the
number of them whose vector under the key holds `t` (the filter does not restrict either).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from huedb.search.plan import SparseQuery

SPARSE_TYPE = "sparse_vector"


def stored_sparse(value: Any) -> tuple[list[int], list[float]] | None:
    """(indices, values) of a stored metadata value that is a sparse vector, else None."""
    if isinstance(value, dict):
        if value.get("#type") != SPARSE_TYPE:
            return None
        return value["indices"], value["values"]
    indices, values = getattr(value, "indices", None), getattr(value, "values", None)
    if isinstance(indices, list) and isinstance(values, list):
        return indices, values
    return None


def idf(n_records: int, containing: int) -> float:
    """BM25's inverse document frequency (n_t clamped to N)."""
    n_t = min(containing, n_records)
    return math.log(1.0 + (n_records - n_t + 0.5) / (n_t + 0.5))


def document_frequencies(
    metadatas: Iterable[dict[str, Any] | None], key: str, terms: set[int]
) -> tuple[int, dict[int, int]]:
    """(N, n_t for each of `terms`) over the metadatas of every live record."""
    counts = dict.fromkeys(terms, 0)
    n_records = 0
    for metadata in metadatas:
        n_records += 1
        parts = stored_sparse(metadata.get(key)) if metadata else None
        if parts is None:
            continue
        for index in parts[0]:
            if index in counts:
                counts[index] += 1
    return n_records, counts


def query_weights(query: SparseQuery, idf_of: dict[int, float] | None) -> dict[int, float]:
    """Query index -> weight (times its IDF when `idf_of` is given)."""
    weights = {}
    for index, value in zip(query.indices, query.values, strict=True):
        q = float(np.float32(value))
        weights[index] = q * idf_of[index] if idf_of is not None else q
    return weights


def measure(weights: dict[int, float], parts: tuple[list[int], list[float]]) -> float | None:
    """`1 - dot` of a stored vector with the query, None when they share no index."""
    dot = 0.0
    shared = False
    for index, value in zip(*parts, strict=True):
        q = weights.get(index)
        if q is not None:
            shared = True
            dot += q * float(np.float32(value))
    return float(np.float32(1.0 - dot)) if shared else None
