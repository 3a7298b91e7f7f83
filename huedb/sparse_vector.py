"""Chroma's ``SparseVector``: a sparse vector value, its client-side checks and its wire form.

A sparse vector is a pair of parallel lists: strictly ascending non-negative integer
``indices`` and numeric ``values``, with optional string ``labels`` (the tokens a BM25 vector
was built from). It travels inside record metadata as
``{"#type": "sparse_vector", "indices": [...], "values": [...]}``, plus ``"tokens": [...]``
when labels are set (Python ``labels`` is wire ``tokens``).

The checks and their messages are chromadb's (1.5.x), in chromadb's order, all ``ValueError``.
Like chromadb, ``bool`` passes as an integer or number (it is one in Python) and numpy
integers do not pass as indices; range limits of the server (indices below 2**32, finite
values) are not client-side checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "SPARSE_VECTOR_TYPE_VALUE",
    "TYPE_KEY",
    "SparseVector",
    "SparseVectors",
    "trusted_sparse_vector",
    "validate_sparse_vectors",
]

TYPE_KEY: Final[str] = "#type"
"""The key that tags a typed value in a metadata dict on the wire."""

SPARSE_VECTOR_TYPE_VALUE: Final[str] = "sparse_vector"
"""The ``#type`` of a sparse vector."""


@dataclass
class SparseVector:
    """A sparse vector: ``indices`` (strictly ascending ints >= 0), ``values`` (numbers) and
    optional ``labels`` (one string per index). Checked on construction (``ValueError``)."""

    indices: list[int]
    values: list[float]
    labels: list[str] | None = None

    def __post_init__(self) -> None:
        """Refuse malformed vectors with chromadb's messages."""
        _check_lists(self.indices, self.values, self.labels)
        _check_indices(self.indices)
        _check_values(self.values)
        _check_ascending(self.indices)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{"#type": "sparse_vector", "indices", "values"}`` (+ ``tokens``)."""
        wire: dict[str, Any] = {
            TYPE_KEY: SPARSE_VECTOR_TYPE_VALUE,
            "indices": self.indices,
            "values": self.values,
        }
        if self.labels is not None:
            wire["tokens"] = self.labels
        return wire

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SparseVector:
        """Rebuild from the wire form; ``#type`` must be ``"sparse_vector"``."""
        tag = d.get(TYPE_KEY)
        if tag != SPARSE_VECTOR_TYPE_VALUE:
            raise ValueError(f"Expected {TYPE_KEY}='{SPARSE_VECTOR_TYPE_VALUE}', got {tag}")
        missing = [key for key in ("indices", "values") if key not in d]
        if missing:  # chromadb raises a bare KeyError here; a ValueError says what is wrong
            raise ValueError(f"Expected a sparse vector with indices and values, missing {missing}")
        return cls(indices=d["indices"], values=d["values"], labels=d.get("tokens"))


SparseVectors = list[SparseVector]


def trusted_sparse_vector(
    indices: list[int], values: list[float], labels: list[str] | None = None
) -> SparseVector:
    """A vector huedb built itself and knows to be valid, made without the checks (they cost
    about a fifth of BM25 embedding time)."""
    vector = object.__new__(SparseVector)
    vector.indices, vector.values, vector.labels = indices, values, labels
    return vector


def _check_lists(indices: Any, values: Any, labels: Any) -> None:
    """Indices, values (and labels) are lists of one length."""
    if not isinstance(indices, list):
        raise ValueError(
            f"Expected SparseVector indices to be a list, got {type(indices).__name__}"
        )
    if not isinstance(values, list):
        raise ValueError(f"Expected SparseVector values to be a list, got {type(values).__name__}")
    if len(indices) != len(values):
        raise ValueError(
            "SparseVector indices and values must have the same length, "
            f"got {len(indices)} indices and {len(values)} values"
        )
    if labels is None:
        return
    if not isinstance(labels, list):
        raise ValueError(f"Expected SparseVector labels to be a list, got {type(labels).__name__}")
    if len(labels) != len(indices):
        raise ValueError(
            "SparseVector labels must have the same length as indices and values, "
            f"got {len(labels)} labels, {len(indices)} indices"
        )


def _check_indices(indices: list[Any]) -> None:
    """Every index is a non-negative int (checked position by position)."""
    for position, index in enumerate(indices):
        if not isinstance(index, int):
            raise ValueError(
                "SparseVector indices must be integers, "
                f"got {type(index).__name__} at position {position}"
            )
        if index < 0:
            raise ValueError(
                f"SparseVector indices must be non-negative, got {index} at position {position}"
            )


def _check_values(values: list[Any]) -> None:
    """Every value is an int or a float."""
    for position, value in enumerate(values):
        if not isinstance(value, int | float):
            raise ValueError(
                "SparseVector values must be numbers, "
                f"got {type(value).__name__} at position {position}"
            )


def _check_ascending(indices: list[int]) -> None:
    """Indices strictly ascend (sorted, no duplicates)."""
    for position in range(1, len(indices)):
        before, here = indices[position - 1], indices[position]
        if here <= before:
            raise ValueError(
                "SparseVector indices must be sorted in strictly ascending order, "
                f"found indices[{position}]={here} <= indices[{position - 1}]={before}"
            )


def validate_sparse_vectors(vectors: Any) -> SparseVectors:
    """A sparse embedding function's output: a non-empty list of ``SparseVector``."""
    if not isinstance(vectors, list):
        raise ValueError(f"Expected sparse vectors to be a list, got {type(vectors).__name__}")
    if not vectors:
        raise ValueError(
            f"Expected sparse vectors to be a non-empty list, got {len(vectors)} sparse vectors"
        )
    for position, vector in enumerate(vectors):
        if not isinstance(vector, SparseVector):
            raise ValueError(
                f"Expected SparseVector instance at position {position}, "
                f"got {type(vector).__name__}"
            )
    return vectors
