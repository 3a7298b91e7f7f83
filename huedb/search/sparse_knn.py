"""Sparse `$knn` semantics (shared/chroma-search-api.md, 3.2, 4.4), and the scan that
defines them: searches run on the engine's posting lists (`engine/sparse_postings.py`,
`Engine.sparse_knn`), which give the same float32 measures; `SparseColumn` is the plain
scan over records, kept as the reference the index is tested against.

A record is a candidate when its metadata value under the Knn's key is a sparse vector
(the wire dict `{"#type": "sparse_vector", ...}` or a `SparseVector`) sharing at least one
index with the query; its measure is `1 - sum_t q_t * d_t` (float64 sum, then float32).
With `bm25: true`, `q_t` is first multiplied by `idf(t) = ln(1 + (N - n_t + 0.5) /
(n_t + 0.5))`, where `N` is the number of live records of the collection and `n_t` the
number of them whose vector under the key holds `t` (the filter does not restrict either).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from huedb.engine.sparse_postings import idf
from huedb.search.plan import SparseQuery

__all__ = ["SPARSE_TYPE", "SparseColumn", "idf", "query_weights", "stored_sparse"]

SPARSE_TYPE = "sparse_vector"
_F32_MAX = float(np.finfo(np.float32).max)


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


def query_weights(query: SparseQuery, idf_of: dict[int, float] | None) -> dict[int, float]:
    """Query index -> weight (times its IDF when `idf_of` is given)."""
    raw = query.values
    if raw and min(raw) >= -_F32_MAX and max(raw) <= _F32_MAX:  # no cast can overflow
        values = np.asarray(raw, dtype=np.float32).tolist()
    else:
        with np.errstate(over="ignore"):  # beyond float32: inf, as np.float32(value) gives
            values = np.asarray(raw, dtype=np.float32).tolist()
    if idf_of is None:
        return dict(zip(query.indices, values, strict=True))
    return {i: q * idf_of[i] for i, q in zip(query.indices, values, strict=True)}


class SparseColumn:
    """The sparse vectors under one key of a set of records, concatenated for numpy: entry
    `j` is (`indices[j]`, `values[j]`) of record `keys[owner[j]]`."""

    def __init__(self, records: Iterable[tuple[int, dict[str, Any] | None]], key: str) -> None:
        keys, lengths, indices, values = [], [], [], []
        for record_key, metadata in records:
            parts = stored_sparse(metadata.get(key)) if metadata else None
            if parts is None:
                continue
            keys.append(record_key)
            lengths.append(len(parts[0]))
            indices.extend(parts[0])
            values.extend(parts[1])
        self.keys = np.asarray(keys, dtype=np.int64)
        self.owner = np.repeat(np.arange(len(keys)), lengths)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)

    def document_frequencies(self, terms: set[int]) -> dict[int, int]:
        """n_t for each of `terms`: how many of the vectors hold index t."""
        counts = dict.fromkeys(terms, 0)
        held, per_term = np.unique(
            self.indices[np.isin(self.indices, list(terms))], return_counts=True
        )
        counts.update(zip(held.tolist(), per_term.tolist(), strict=True))
        return counts

    def measures(self, weights: dict[int, float]) -> list[tuple[int, float]]:
        """(record key, `1 - dot` in float32) of every vector sharing an index with the
        query (float64 sum; stored values are float32 already)."""
        terms = np.asarray(sorted(weights), dtype=np.int64)
        if not len(terms) or not len(self.indices):
            return []
        at = np.minimum(np.searchsorted(terms, self.indices), len(terms) - 1)
        shared = terms[at] == self.indices
        term_weights = np.asarray([weights[t] for t in terms.tolist()], dtype=np.float64)
        owners = self.owner[shared]
        dots = np.bincount(owners, term_weights[at[shared]] * self.values[shared], len(self.keys))
        candidates = np.unique(owners)
        scores = (1.0 - dots[candidates]).astype(np.float32)
        return list(zip(self.keys[candidates].tolist(), scores.tolist(), strict=True))
