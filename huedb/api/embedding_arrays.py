"""chromadb's checks of embedding arrays (`validate_embeddings`), for the embeddings a write
is given (`api/validation.py`) and those an embedding function returns (`api/types.py`)."""

from __future__ import annotations

from typing import Any

import numpy as np

EMBEDDING_DTYPES = (np.float16, np.float32, np.float64, np.int32, np.int64)


def check_array_rows(rows: list[Any]) -> None:
    """Each row a numpy array of one dimension or more, not empty, of ints or floats
    (ValueError with chromadb's messages)."""
    if not all(isinstance(row, np.ndarray) for row in rows):
        raise ValueError(
            "Expected each embedding in the embeddings to be a numpy array, got "
            f"{list({type(row).__name__ for row in rows})}"
        )
    for index, row in enumerate(rows):
        check_embedding_array(row, index)


def check_embedding_array(row: np.ndarray, index: int) -> None:
    """chromadb's `validate_embeddings` checks of one embedding array."""
    if row.ndim == 0:
        raise ValueError(f"Expected a 1-dimensional array, got a 0-dimensional array {row}")
    if row.size == 0:
        raise ValueError(
            "Expected each embedding in the embeddings to be a 1-dimensional numpy array with "
            "at least 1 int/float value. Got a 1-dimensional numpy array with no values at "
            f"pos {index}"
        )
    if row.dtype not in EMBEDDING_DTYPES:
        raise ValueError(
            "Expected each value in the embedding to be a int or float, got an embedding with "
            f"{row.dtype} - {row}"
        )
