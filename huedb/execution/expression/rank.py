"""Rank expressions of the Search API: `Knn`, `Val`, arithmetic on them, and `Rrf`.

Operators build trees as chromadb does: `a + b` is `Sum` (flattened), `a - b` `Sub`,
`a * b` `Mul` (flattened), `a / b` `Div`, `-a` is `Mul([Val(-1), a])`, `abs(a)` `Abs`,
`a.exp()`, `a.log()`, `a.max(b)` / `a.min(b)` (flattened); plain numbers become `Val`.
Every node is immutable; `to_dict()` is the rank JSON of the Search route, and
`Rank.from_dict` reads it back with chromadb's client-side checks. `Rrf` has no wire form of
its own: it serialises as `-(sum of w_i / (k + rank_i))`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from huedb.execution.expression.dense_query import one_dense_query
from huedb.execution.expression.where import Key, key_name
from huedb.sparse_vector import SPARSE_VECTOR_TYPE_VALUE, TYPE_KEY, SparseVector


def _rank(value: Any) -> Any:
    """A number as `Val`; anything else unchanged (as chromadb, no type check)."""
    return Val(value) if isinstance(value, int | float) else value


def _flattened(kind: type[_Nary], left: Any, right: Any) -> Any:
    parts = [*_parts(kind, left), *_parts(kind, right)]
    return kind(parts)


def _parts(kind: type[_Nary], rank: Any) -> tuple[Any, ...]:
    return rank.ranks if isinstance(rank, kind) else (rank,)


@dataclass(frozen=True)
class Rank:
    """Base class of rank expressions. Lower scores rank first."""

    def to_dict(self) -> dict[str, Any]:
        """The rank JSON sent on the wire."""
        raise NotImplementedError("Subclasses must implement to_dict()")

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Rank:
        """Build the expression of a rank JSON dict, checked as chromadb checks it: one
        operator per dict, `$val` a number, `$knn` with a `query` that is one dense vector or
        a tagged sparse-vector dict, a positive `limit`, a bool `return_rank`; `$sum`, `$mul`,
        `$max`, `$min` with at least two ranks; `$sub` / `$div` with `left` and `right`."""
        return rank_from_dict(data)

    def __add__(self, other: Rank | float) -> Sum:
        return _flattened(Sum, self, _rank(other))

    def __radd__(self, other: float) -> Sum:
        return Val(other) + self

    def __sub__(self, other: Rank | float) -> Sub:
        return Sub(self, _rank(other))

    def __rsub__(self, other: float) -> Sub:
        return Sub(Val(other), self)

    def __mul__(self, other: Rank | float) -> Mul:
        return _flattened(Mul, self, _rank(other))

    def __rmul__(self, other: float) -> Mul:
        return Val(other) * self

    def __truediv__(self, other: Rank | float) -> Div:
        return Div(self, _rank(other))

    def __rtruediv__(self, other: float) -> Div:
        return Div(Val(other), self)

    def __neg__(self) -> Mul:
        return Mul([Val(-1), self])

    def __abs__(self) -> Abs:
        return Abs(self)

    def abs(self) -> Abs:
        """|rank|."""
        return Abs(self)

    def exp(self) -> Exp:
        """e ** rank."""
        return Exp(self)

    def log(self) -> Log:
        """Natural logarithm of rank."""
        return Log(self)

    def max(self, other: Rank | float) -> Max:
        """The larger of rank and `other`."""
        return _flattened(Max, self, _rank(other))

    def min(self, other: Rank | float) -> Min:
        """The smaller of rank and `other`."""
        return _flattened(Min, self, _rank(other))


@dataclass(frozen=True)
class _Unary(Rank):
    op: ClassVar[str]
    rank: Rank

    def to_dict(self) -> dict[str, Any]:
        return {self.op: self.rank.to_dict()}


@dataclass(frozen=True)
class Abs(_Unary):
    op = "$abs"


@dataclass(frozen=True)
class Exp(_Unary):
    op = "$exp"


@dataclass(frozen=True)
class Log(_Unary):
    op = "$log"


@dataclass(frozen=True)
class _Binary(Rank):
    op: ClassVar[str]
    left: Rank
    right: Rank

    def to_dict(self) -> dict[str, Any]:
        return {self.op: {"left": self.left.to_dict(), "right": self.right.to_dict()}}


@dataclass(frozen=True)
class Sub(_Binary):
    op = "$sub"


@dataclass(frozen=True)
class Div(_Binary):
    op = "$div"


@dataclass(frozen=True)
class _Nary(Rank):
    op: ClassVar[str]
    ranks: Sequence[Rank]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranks", tuple(self.ranks))

    def to_dict(self) -> dict[str, Any]:
        return {self.op: [r.to_dict() for r in self.ranks]}


@dataclass(frozen=True)
class Sum(_Nary):
    op = "$sum"


@dataclass(frozen=True)
class Mul(_Nary):
    op = "$mul"


@dataclass(frozen=True)
class Max(_Nary):
    op = "$max"


@dataclass(frozen=True)
class Min(_Nary):
    op = "$min"


@dataclass(frozen=True)
class Val(Rank):
    """A constant."""

    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"$val": self.value}


@dataclass(frozen=True)
class Knn(Rank):
    """The `limit` nearest records to `query` under `key`, scored by distance (or position).

    `query`: a dense vector (list or numpy array) searched in `#embedding`, a sparse vector
    (a `SparseVector`, or a dict of `indices` / `values`) searched in the metadata key `key`,
    or a string that `Collection.search` embeds first. `default`: the score of records not
    in this list (None: such records are dropped); `return_rank`: score by 0-based position.
    """

    query: Any
    key: Key | str = Key.EMBEDDING
    limit: int = 16
    default: float | None = None
    return_rank: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "query", _frozen_query(self.query))

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "query": query_to_wire(self.query),
            "key": key_name(self.key),
            "limit": self.limit,
        }
        if self.default is not None:
            body["default"] = self.default
        if self.return_rank:
            body["return_rank"] = self.return_rank
        return {"$knn": body}


def _frozen_query(query: Any) -> Any:
    """An unchangeable copy of a query (the caller may reuse its list or array)."""
    if isinstance(query, np.ndarray):
        frozen = query.copy()
        frozen.flags.writeable = False
        return frozen
    if isinstance(query, list):
        return tuple(query)
    if isinstance(query, dict):
        return copy.deepcopy(query)
    return query


def query_to_wire(query: Any) -> Any:
    """The JSON form of a Knn query: list, sparse-vector dict, dict or string as given."""
    if isinstance(query, np.ndarray):
        return query.tolist()
    if isinstance(query, tuple):
        return list(query)
    if isinstance(query, dict):
        return copy.deepcopy(query)
    if hasattr(query, "indices") and hasattr(query, "values"):
        return sparse_to_wire(query)
    return query


def sparse_to_wire(vector: Any) -> dict[str, Any]:
    """`{"#type": "sparse_vector", "indices", "values"}` plus `"tokens"` when labelled."""
    wire: dict[str, Any] = {
        TYPE_KEY: SPARSE_VECTOR_TYPE_VALUE,
        "indices": list(vector.indices),
        "values": list(vector.values),
    }
    labels = getattr(vector, "labels", None)
    if labels is not None:
        wire["tokens"] = list(labels)
    return wire


@dataclass(frozen=True)
class Rrf(Rank):
    """Reciprocal rank fusion: `-(sum of w_i / (k + rank_i))` over `ranks` (lower is better).

    Give the ranks `return_rank=True` to fuse positions, and a `default` to fuse a union
    rather than an intersection of their lists. Checked when serialised.
    """

    ranks: Sequence[Rank]
    k: int = 60
    weights: Sequence[float] | None = None
    normalize: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranks", tuple(self.ranks))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(self.weights))

    def to_dict(self) -> dict[str, Any]:
        return self.expanded().to_dict()

    def expanded(self) -> Rank:
        """The expression of plain operators that Rrf stands for."""
        if not self.ranks:
            raise ValueError("RRF requires at least one rank")
        if self.k <= 0:
            raise ValueError(f"k must be positive, got {self.k}")
        weights = self.weights
        if weights is not None:
            if len(weights) != len(self.ranks):
                raise ValueError(
                    f"Number of weights ({len(weights)}) must match number of ranks "
                    f"({len(self.ranks)})"
                )
            if any(w < 0.0 for w in weights):
                raise ValueError("All weights must be non-negative")
        if not weights:
            weights = (1.0,) * len(self.ranks)
        if self.normalize:
            total = sum(weights)
            if total == 0:
                raise ValueError("Sum of weights must be positive when normalize=True")
            weights = tuple(w / total for w in weights)
        terms = [w / (self.k + r) for w, r in zip(weights, self.ranks, strict=True)]
        fused = terms[0]
        for term in terms[1:]:
            fused = fused + term
        return -fused


_UNARY = {"$abs": Abs, "$exp": Exp, "$log": Log}
_NARY = {
    "$sum": Rank.__add__,
    "$mul": Rank.__mul__,
    "$max": Rank.max,
    "$min": Rank.min,
}
_BINARY = {"$sub": Rank.__sub__, "$div": Rank.__truediv__}


def rank_from_dict(data: Any) -> Rank:
    """The expression of one rank dict (recursively)."""
    if not isinstance(data, dict):
        raise TypeError(f"Expected dict for Rank, got {type(data).__name__}")
    if not data:
        raise ValueError("Rank dict cannot be empty")
    if len(data) != 1:
        raise ValueError(f"Rank dict must contain exactly one operator, got {len(data)}")
    op, body = next(iter(data.items()))
    if op == "$val":
        if not isinstance(body, int | float):
            raise TypeError(f"$val requires a number, got {type(body).__name__}")
        return Val(body)
    if op == "$knn":
        return _knn_from_dict(body)
    if op in _NARY:
        if not isinstance(body, list | tuple):
            raise TypeError(f"{op} requires a list, got {type(body).__name__}")
        if len(body) < 2:
            raise ValueError(f"{op} requires at least 2 ranks, got {len(body)}")
        ranks = [rank_from_dict(r) for r in body]
        result = ranks[0]
        for rank in ranks[1:]:
            result = _NARY[op](result, rank)
        return result
    if op in _BINARY:
        if not isinstance(body, dict):
            raise TypeError(
                f"{op} requires a dict with 'left' and 'right', got {type(body).__name__}"
            )
        if "left" not in body or "right" not in body:
            raise ValueError(f"{op} requires 'left' and 'right' fields")
        return _BINARY[op](rank_from_dict(body["left"]), rank_from_dict(body["right"]))
    if op in _UNARY:
        if not isinstance(body, dict):
            raise TypeError(f"{op} requires a rank dict, got {type(body).__name__}")
        return _UNARY[op](rank_from_dict(body))
    raise ValueError(f"Unknown rank operator: {op}")


def _knn_from_dict(body: Any) -> Knn:
    if not isinstance(body, dict):
        raise TypeError(f"$knn requires a dict, got {type(body).__name__}")
    if "query" not in body:
        raise ValueError("$knn requires 'query' field")
    query = body["query"]
    if isinstance(query, dict):
        if query.get(TYPE_KEY) != SPARSE_VECTOR_TYPE_VALUE:
            raise ValueError(
                f"Expected dict with {TYPE_KEY}='{SPARSE_VECTOR_TYPE_VALUE}', got {query}"
            )
        query = SparseVector.from_dict(query)
    elif isinstance(query, list | tuple | np.ndarray):
        query = one_dense_query(query)
    else:
        raise TypeError(
            "$knn query must be a list, numpy array, or SparseVector dict, "
            f"got {type(query).__name__}"
        )
    key = body.get("key", "#embedding")
    if not isinstance(key, str):
        raise TypeError(f"$knn key must be a string, got {type(key).__name__}")
    limit = body.get("limit", 16)
    if not isinstance(limit, int):
        raise TypeError(f"$knn limit must be an integer, got {type(limit).__name__}")
    if limit <= 0:
        raise ValueError(f"$knn limit must be positive, got {limit}")
    return_rank = body.get("return_rank", False)
    if not isinstance(return_rank, bool):
        raise TypeError(f"$knn return_rank must be a boolean, got {type(return_rank).__name__}")
    return Knn(query, key, limit, body.get("default"), return_rank)
