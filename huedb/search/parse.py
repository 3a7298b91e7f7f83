"""A search request's JSON into a checked `SearchRequest` (shared/chroma-search-api.md, 2).

Errors come in Chroma's order: first the shape of the whole body (422 `ChromaError`,
`Failed to deserialize the JSON body into the target type: searches[i].<path>: ...`; a rank
that is not an object is Chroma's 400 `Failed to parse the request body as JSON`), found in
document order; then each payload's rules (400 `InvalidArgumentError`, `Validation error:
searches[i].<field>: ...`). Checks that need the collection (its id, its existence, its
schema: `schema_rules.check_schema`) come after, at the route. Unknown fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huedb.errors import InvalidArgumentError
from huedb.search.filter_parse import parse_filter
from huedb.search.plan import (
    DEFAULT_KNN_LIMIT,
    EMBEDDING_KEY,
    READ_LEVELS,
    Aggregate,
    BinaryNode,
    DenseQuery,
    FilterNode,
    Grouping,
    KnnNode,
    NaryNode,
    Page,
    RankNode,
    SearchPlan,
    SearchRequest,
    Selection,
    SparseQuery,
    UnaryNode,
    ValNode,
    knn_leaves,
)
from huedb.search.wire_errors import (
    body_error,
    f32,
    sequence,
    string,
    struct,
    u32,
    validation_error,
    wrong_type,
)

MAX_RANK_DEPTH = 64
RANK_OPS = ("$abs", "$div", "$exp", "$knn", "$log", "$max", "$min", "$mul", "$sub", "$sum", "$val")
_UNARY = ("$abs", "$exp", "$log")
_BINARY = ("$sub", "$div")
_NARY = ("$sum", "$mul", "$max", "$min")
_AGGREGATES = ("$min_k", "$max_k")
_GROUP_KEYS_REFUSED = ("#score", "#document", "#embedding", "#metadata")
_AGGREGATE_KEYS_REFUSED = ("#document", "#embedding", "#metadata")


def parse_search_request(body: Any) -> SearchRequest:
    """The checked request of a search route's JSON body (raises Chroma's 422 / 400)."""
    body = struct(body, "", "SearchRequestPayload")
    searches: list[_Payload] | None = None
    read_level = READ_LEVELS[0]
    for name, value in body.items():
        if name == "searches":
            items = sequence(value, "searches")
            searches = [_payload(item, f"searches[{i}]") for i, item in enumerate(items)]
        elif name == "read_level":
            read_level = _read_level(value)
    if searches is None:
        raise body_error("", "missing field `searches`")
    plans = tuple(payload.checked(f"searches[{i}]") for i, payload in enumerate(searches))
    return SearchRequest(plans, read_level)


def parse_search_payload(payload: Any, path: str = "searches[0]") -> SearchPlan:
    """One payload's checked plan (the errors name it `path`)."""
    return _payload(payload, path).checked(path)


def _read_level(value: Any) -> str:
    if not isinstance(value, str):
        raise wrong_type("read_level", value, "enum ReadLevel")
    if value not in READ_LEVELS:
        expected = ", ".join(f"`{level}`" for level in READ_LEVELS)
        raise body_error("read_level", f"unknown variant `{value}`, expected one of {expected}")
    return value


@dataclass(frozen=True)
class _Payload:
    """A payload of the right shape, before its rules are checked."""

    filter: FilterNode | None = None
    rank: RankNode | None = None
    group_keys: tuple[str, ...] = ()
    aggregate: Aggregate | None = None
    page: Page = Page()
    select: Selection = Selection()

    def checked(self, path: str) -> SearchPlan:
        """The plan, once the payload's rules hold (400 otherwise)."""
        for knn in knn_leaves(self.rank):
            if isinstance(knn.query, SparseQuery):
                check_sparse_query(knn.query, f"{path}.rank")
        grouping = self._grouping(f"{path}.group_by")
        if grouping is not None and self.rank is None:
            raise validation_error(
                f"{path}.__all__", "group_by requires rank expression to be specified"
            )
        return SearchPlan(self.filter, self.rank, grouping, self.page, self.select)

    def _grouping(self, path: str) -> Grouping | None:
        if not self.group_keys and self.aggregate is None:
            return None
        if not self.group_keys or self.aggregate is None:
            raise validation_error(
                path, "group_by keys and aggregate must both be specified or both be omitted"
            )
        if any(k in _GROUP_KEYS_REFUSED for k in self.group_keys):
            raise validation_error(
                path,
                "group_by keys must be metadata fields "
                "(cannot use #score, #document, #embedding, or #metadata)",
            )
        if not self.aggregate.keys:  # Chroma's order: empty keys, k, then each key
            raise validation_error(path, "aggregate keys must not be empty")
        if self.aggregate.k <= 0:
            raise validation_error(path, "aggregate k must be greater than 0")
        if any(k in _AGGREGATE_KEYS_REFUSED for k in self.aggregate.keys):
            raise validation_error(
                path,
                "aggregate keys must be metadata fields or #score "
                "(cannot use #document, #embedding, or #metadata)",
            )
        return Grouping(self.group_keys, self.aggregate)


def check_sparse_query(query: SparseQuery, path: str) -> None:
    """A sparse query's rules: one value (and token) per index, indices strictly ascending."""
    prefix = "Invalid sparse vector in KNN query: Sparse vector indices"
    lengths = {len(query.indices), len(query.values)}
    if query.tokens is not None:
        lengths.add(len(query.tokens))
    if len(lengths) > 1:
        raise validation_error(
            path, f"{prefix}, values, and tokens (when present) must have the same length"
        )
    if any(b <= a for a, b in zip(query.indices, query.indices[1:], strict=False)):
        raise validation_error(
            path, f"{prefix} must be sorted in strictly ascending order (no duplicates)"
        )


def _payload(value: Any, path: str) -> _Payload:
    fields: dict[str, Any] = {}
    for name, item in struct(value, path, "SearchPayload").items():
        here = f"{path}.{name}"
        if name == "filter":
            fields["filter"] = parse_filter(item, here)
        elif name == "rank":
            fields["rank"] = None if item is None else _rank(item, here, 0)
        elif name == "group_by":
            fields["group_keys"], fields["aggregate"] = _group_by(item, here)
        elif name == "limit":
            fields["page"] = _page(item, here)
        elif name == "select":
            fields["select"] = _select(item, here)
    return _Payload(**fields)


def _rank(value: Any, path: str, depth: int) -> RankNode:
    if not isinstance(value, dict):
        raise InvalidArgumentError(
            f"Failed to parse the request body as JSON: {path}: expected value"
        )
    if depth >= MAX_RANK_DEPTH:
        raise body_error(path, "recursion limit exceeded")
    if len(value) != 1:
        raise body_error(path, f"invalid length {len(value)}, expected map with a single key")
    op, body = next(iter(value.items()))
    here = f"{path}.{op}"
    if op == "$val":
        return ValNode(f32(body, here))
    if op == "$knn":
        return _knn(body, here)
    if op in _UNARY:
        return UnaryNode(op, _rank(body, here, depth + 1))
    if op in _BINARY:
        sides = struct(body, here, "BinaryOperands")
        for side in ("left", "right"):
            if side not in sides:
                raise body_error(here, f"missing field `{side}`")
        left = _rank(sides["left"], f"{here}.left", depth + 1)
        return BinaryNode(op, left, _rank(sides["right"], f"{here}.right", depth + 1))
    if op in _NARY:
        items = sequence(body, here)
        return NaryNode(op, tuple(_rank(r, f"{here}[{i}]", depth + 1) for i, r in enumerate(items)))
    expected = ", ".join(f"`{o}`" for o in RANK_OPS)
    raise body_error(path, f"unknown variant `{op}`, expected one of {expected}")


def _knn(value: Any, path: str) -> KnnNode:
    body = struct(value, path, "Knn")
    if "query" not in body:
        raise body_error(path, "missing field `query`")
    query = _query(body["query"], f"{path}.query")
    key = string(body.get("key", EMBEDDING_KEY), f"{path}.key")
    limit = u32(body.get("limit", DEFAULT_KNN_LIMIT), f"{path}.limit")
    default = body.get("default")
    if default is not None:
        default = f32(default, f"{path}.default")
    return_rank = body.get("return_rank", False)
    if not isinstance(return_rank, bool):
        raise wrong_type(f"{path}.return_rank", return_rank, "a boolean")
    return KnnNode(query, key, limit, default, return_rank)


def _query(value: Any, path: str) -> DenseQuery | SparseQuery:
    """A dense vector (array of numbers) or a sparse one (object), as Chroma's untagged enum."""
    query: DenseQuery | SparseQuery | None = None
    if isinstance(value, list) and all(_is_number(v) for v in value):
        query = DenseQuery(tuple(float(v) for v in value))
    elif isinstance(value, dict) and value.get("#type", "sparse_vector") == "sparse_vector":
        query = _sparse(value)
    if query is None:
        raise body_error(path, "data did not match any variant of untagged enum QueryVector")
    return query


def _sparse(value: dict[str, Any]) -> SparseQuery | None:
    indices, values, tokens = value.get("indices"), value.get("values"), value.get("tokens")
    if not isinstance(indices, list) or not isinstance(values, list):
        return None
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**32 for i in indices):
        return None
    if not all(_is_number(v) for v in values):
        return None
    if tokens is not None and not (
        isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
    ):
        return None
    return SparseQuery(
        tuple(indices), tuple(float(v) for v in values), None if tokens is None else tuple(tokens)
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _group_by(value: Any, path: str) -> tuple[tuple[str, ...], Aggregate | None]:
    body = struct(value, path, "GroupBy")
    keys = sequence(body.get("keys", []), f"{path}.keys")
    names = tuple(string(k, f"{path}.keys[{i}]") for i, k in enumerate(keys))
    aggregate = body.get("aggregate")
    if aggregate is None:
        return names, None
    return names, _aggregate(aggregate, f"{path}.aggregate")


def _aggregate(value: Any, path: str) -> Aggregate:
    body = struct(value, path, "Aggregate")
    if len(body) != 1:
        raise body_error(path, f"invalid length {len(body)}, expected map with a single key")
    op, inner = next(iter(body.items()))
    if op not in _AGGREGATES:
        raise body_error(path, f"unknown variant `{op}`, expected `$min_k` or `$max_k`")
    here = f"{path}.{op}"
    inner = struct(inner, here, "KAggregate")
    for name in ("keys", "k"):
        if name not in inner:
            raise body_error(here, f"missing field `{name}`")
    keys = sequence(inner["keys"], f"{here}.keys")
    names = tuple(string(k, f"{here}.keys[{i}]") for i, k in enumerate(keys))
    return Aggregate(op, names, u32(inner["k"], f"{here}.k"))


def _page(value: Any, path: str) -> Page:
    body = struct(value, path, "Limit")
    offset = u32(body.get("offset", 0), f"{path}.offset")
    limit = body.get("limit")
    return Page(offset, None if limit is None else u32(limit, f"{path}.limit"))


def _select(value: Any, path: str) -> Selection:
    body = struct(value, path, "Select")
    keys = sequence(body.get("keys", []), f"{path}.keys")
    return Selection.of([string(k, f"{path}.keys[{i}]") for i, k in enumerate(keys)])
