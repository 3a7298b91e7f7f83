"""chromadb's reading of a dense `$knn` query in `Rank.from_dict`: exactly one vector;
a list of numbers becomes a float32 array (so it is sent as widened doubles), an array keeps
its type; checked with chromadb's messages (ValueError)."""

from __future__ import annotations

from typing import Any

import numpy as np

_EMBEDDING_DTYPES = (np.float16, np.float32, np.float64, np.int32, np.int64)


def one_dense_query(query: Any) -> np.ndarray:
    """Exactly one dense vector: a list of numbers becomes float32, an array keeps its type."""
    if len(query) == 0:
        raise ValueError(f"Expected Embeddings to be non-empty list or numpy array, got {query}")
    rows = _rows(query)
    if len(rows) != 1:
        raise ValueError("$knn requires exactly one query embedding")
    row = rows[0]
    if not isinstance(row, np.ndarray):
        raise ValueError(
            "Expected each embedding in the embeddings to be a numpy array, got "
            f"{[type(row).__name__]}"
        )
    if row.ndim == 0 or row.size == 0:
        raise ValueError("Expected each embedding to be a 1-dimensional array with values")
    if row.dtype not in _EMBEDDING_DTYPES:
        raise ValueError(
            f"Expected each value in the embedding to be a int or float, got an embedding with "
            f"{row.dtype} - {row}"
        )
    return row


def _rows(query: Any) -> list[Any]:
    """chromadb's reading of one-or-many embeddings, before its checks."""
    if isinstance(query, np.ndarray):
        if query.ndim == 1:
            return [query]
        if query.ndim == 2:
            return list(query)
    elif isinstance(query, list):
        first = query[0]
        if _is_number(first):
            return [np.array(query, dtype=np.float32)]
        if isinstance(first, np.ndarray):
            return query
        if isinstance(first, list) and first and _is_number(first[0]):
            return [np.array(row, dtype=np.float32) for row in query]
    raise ValueError(
        "Expected embeddings to be a list of floats or ints, a list of lists, a numpy array, "
        f"or a list of numpy arrays, got {query}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
