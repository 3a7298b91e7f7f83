"""A checked search request as a tree of immutable nodes, ready for an evaluator.

`parse.parse_search_request` builds it from the wire JSON; every node can say its wire form
again (`to_wire()`, the JSON chromadb's Python client would send for it). Numbers are kept
as parsed (Python floats); Chroma evaluates ranks in float32, so an evaluator should cast
(`numpy.float32`) and keep float32 arithmetic (shared/chroma-search-api.md, section 3.3).

Rank nodes and their meaning (section 3.3: every node yields a support, record -> score,
and a default for records outside it, None meaning "absent"):
- `KnnNode`: the `limit` best records for `query` (dense: `#embedding`, whatever `key` says;
  sparse: the metadata key `key`), scored by distance or, with `return_rank`, by 0-based
  position; default `default`.
- `ValNode`: empty support, default `value`.
- `UnaryNode` ($abs, $exp, $log): the function of every value and of the default.
- `BinaryNode` ($sub, $div) and `NaryNode` ($sum, $mul, $max, $min, a left fold from
  `NaryNode.identity`): merged pairwise (both defaults set: union; one set: the other's
  support; none: intersection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

READ_LEVELS = ("index_and_wal", "index_only", "index_and_bounded_wal")
EMBEDDING_KEY = "#embedding"
DEFAULT_KNN_LIMIT = 16
# The fields `select` names besides metadata keys, in the order responses list them.
SELECT_SPECIAL = ("#document", "#embedding", "#metadata", "#score")
_F32_MAX = float(np.finfo(np.float32).max)
NARY_IDENTITY = {"$sum": 0.0, "$mul": 1.0, "$max": -_F32_MAX, "$min": _F32_MAX}


@dataclass(frozen=True)
class DenseQuery:
    """A dense query vector (searched in `#embedding`)."""

    values: tuple[float, ...]

    def to_wire(self) -> list[float]:
        return list(self.values)


@dataclass(frozen=True)
class SparseQuery:
    """A sparse query vector: strictly ascending `indices`, one value (and token) each."""

    indices: tuple[int, ...]
    values: tuple[float, ...]
    tokens: tuple[str, ...] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "#type": "sparse_vector",
            "indices": list(self.indices),
            "values": list(self.values),
        }
        if self.tokens is not None:
            wire["tokens"] = list(self.tokens)
        return wire


@dataclass(frozen=True)
class KnnNode:
    """`$knn`: nearest records to `query`."""

    query: DenseQuery | SparseQuery
    key: str = EMBEDDING_KEY
    limit: int = DEFAULT_KNN_LIMIT
    default: float | None = None
    return_rank: bool = False

    @property
    def sparse(self) -> bool:
        """Whether this Knn searches a sparse-vector metadata key."""
        return isinstance(self.query, SparseQuery)

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"query": self.query.to_wire(), "key": self.key, "limit": self.limit}
        if self.default is not None:
            body["default"] = self.default
        if self.return_rank:
            body["return_rank"] = True
        return {"$knn": body}


@dataclass(frozen=True)
class ValNode:
    """`$val`: a constant."""

    value: float

    def to_wire(self) -> dict[str, Any]:
        return {"$val": self.value}


@dataclass(frozen=True)
class UnaryNode:
    """`$abs`, `$exp` or `$log` (natural) of `operand`."""

    op: str
    operand: RankNode

    def to_wire(self) -> dict[str, Any]:
        return {self.op: self.operand.to_wire()}


@dataclass(frozen=True)
class BinaryNode:
    """`$sub` (left - right) or `$div` (left / right)."""

    op: str
    left: RankNode
    right: RankNode

    def to_wire(self) -> dict[str, Any]:
        return {self.op: {"left": self.left.to_wire(), "right": self.right.to_wire()}}


@dataclass(frozen=True)
class NaryNode:
    """`$sum`, `$mul`, `$max` or `$min` of `operands` (any number, even 0 or 1)."""

    op: str
    operands: tuple[RankNode, ...]

    @property
    def identity(self) -> float:
        """The default the fold starts from (its support is empty)."""
        return NARY_IDENTITY[self.op]

    def to_wire(self) -> dict[str, Any]:
        return {self.op: [o.to_wire() for o in self.operands]}


RankNode = KnnNode | ValNode | UnaryNode | BinaryNode | NaryNode


def knn_leaves(rank: RankNode | None) -> list[KnnNode]:
    """The Knn nodes of a rank, depth first, left to right (the order lists are computed in)."""
    if rank is None or isinstance(rank, ValNode):
        return []
    if isinstance(rank, KnnNode):
        return [rank]
    if isinstance(rank, UnaryNode):
        return knn_leaves(rank.operand)
    if isinstance(rank, BinaryNode):
        return knn_leaves(rank.left) + knn_leaves(rank.right)
    return [leaf for operand in rank.operands for leaf in knn_leaves(operand)]


@dataclass(frozen=True)
class FilterTerm:
    """A condition on `key`: `#id` ($eq, $ne, $in, $nin on record ids), `#document`
    ($contains, $not_contains, $regex, $not_regex with a string) or a metadata key ($eq,
    $ne, $gt, $gte, $lt, $lte, $in, $nin, $contains, $not_contains). `value` is one value,
    or a tuple of one type for $in / $nin."""

    key: str
    op: str
    value: Any

    def to_wire(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {self.key: {self.op: value}}


@dataclass(frozen=True)
class FilterLogic:
    """`$and` / `$or` of its children (none: `$and` lets every record through, `$or` none)."""

    op: str
    children: tuple[FilterNode, ...]

    def to_wire(self) -> dict[str, Any]:
        return {self.op: [c.to_wire() for c in self.children]}


FilterNode = FilterTerm | FilterLogic


def filter_terms(node: FilterNode | None) -> list[FilterTerm]:
    """The conditions of a filter, in order."""
    if node is None:
        return []
    if isinstance(node, FilterTerm):
        return [node]
    return [term for child in node.children for term in filter_terms(child)]


@dataclass(frozen=True)
class Aggregate:
    """Keep the `k` records of a group with the smallest ($min_k) or largest ($max_k)
    values of `keys` (metadata keys or `#score`, compared as a tuple)."""

    op: str
    keys: tuple[str, ...]
    k: int

    def to_wire(self) -> dict[str, Any]:
        return {self.op: {"keys": list(self.keys), "k": self.k}}


@dataclass(frozen=True)
class Grouping:
    """Group the ranked records by the values of the metadata `keys`; apply `aggregate`."""

    keys: tuple[str, ...]
    aggregate: Aggregate

    def to_wire(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "aggregate": self.aggregate.to_wire()}


@dataclass(frozen=True)
class Page:
    """Skip `offset` records, return at most `limit` (None: all the rest; 0: none)."""

    offset: int = 0
    limit: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"offset": self.offset}
        if self.limit is not None:
            wire["limit"] = self.limit
        return wire


@dataclass(frozen=True)
class Selection:
    """The fields returned besides ids, without repeats, in the order of a response's
    `select`: #document, #embedding, #metadata, #score, then metadata keys by code point
    (`#id` is an ordinary metadata key here)."""

    keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, keys: list[str] | tuple[str, ...]) -> Selection:
        """The selection of `keys` in any order, with repeats."""
        unique = set(keys)
        special = [k for k in SELECT_SPECIAL if k in unique]
        return cls((*special, *sorted(unique.difference(SELECT_SPECIAL))))

    @property
    def fields(self) -> tuple[str, ...]:
        """The metadata keys selected one by one."""
        return tuple(k for k in self.keys if k not in SELECT_SPECIAL)

    def to_wire(self) -> dict[str, Any]:
        return {"keys": list(self.keys)}


@dataclass(frozen=True)
class SearchPlan:
    """One search: filter, then rank, group, page and select (section 3.1)."""

    filter: FilterNode | None = None
    rank: RankNode | None = None
    group_by: Grouping | None = None
    page: Page = Page()
    select: Selection = Selection()

    def to_wire(self) -> dict[str, Any]:
        """The payload as chromadb's Python client sends it (all five fields)."""
        return {
            "filter": self.filter.to_wire() if self.filter is not None else None,
            "rank": self.rank.to_wire() if self.rank is not None else None,
            "group_by": self.group_by.to_wire() if self.group_by is not None else {},
            "limit": self.page.to_wire(),
            "select": self.select.to_wire(),
        }


@dataclass(frozen=True)
class SearchRequest:
    """The searches of one request (answered independently, in order) and its read level."""

    searches: tuple[SearchPlan, ...]
    read_level: str = READ_LEVELS[0]

    def to_wire(self) -> dict[str, Any]:
        return {"searches": [s.to_wire() for s in self.searches], "read_level": self.read_level}
