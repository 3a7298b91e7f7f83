"""A search request's JSON into a checked `SearchRequest` (shared/chroma-search-api.md, 2).

Errors come in Chroma's order: first the shape of the whole body (422 `ChromaError`,
`Failed to deserialize the JSON body into the target type: searches[i].<path>: ...`; a rank
or `read_level` serde_json cannot read as an enum, e.g. `{}` or `null`, is Chroma's 400
`Failed to parse the request body as JSON: <path>: expected value`), found in document order;
then each payload's rules (400 `InvalidArgumentError`, `Validation error:
searches[i].<field>: ...`). Checks that need the collection (its id, its existence, its
schema: `schema_rules.check_schema`) come after, at the route. Unknown fields are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

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
_STRUCT_VARIANTS = ("$knn", "$sub", "$div")  # the others are newtype variants
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


def as_json(body: Any) -> Any:
    """An in-process request body as its JSON, which the HTTP clients send with orjson:
    non-finite floats become null (so `Val(inf)` is the route's 422, `Knn(default=inf)` no
    default), numpy values numbers, tuples lists. A body orjson cannot encode (an int beyond
    64 bits) keeps its values, but non-finite floats are null there too."""
    try:
        return orjson.loads(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
    except orjson.JSONEncodeError:
        return _finite_or_null(body)


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def finite_numbers(request: SearchRequest) -> bool:
    """Whether the numbers of a request's `$knn` queries and defaults are all finite (a JSON
    body could carry no other: `as_json`). Their sum is finite if they are, unless it
    overflows (False then: the caller takes the body route, which is right in any case)."""
    for plan in request.searches:
        for knn in knn_leaves(plan.rank):
            default = 0.0 if knn.default is None else knn.default
            if not math.isfinite(sum(knn.query.values) + default):
                return False
    return True


def parse_search_payload(payload: Any, path: str = "searches[0]") -> SearchPlan:
    """One payload's checked plan (the errors name it `path`)."""
    return _payload(payload, path).checked(path)


def _read_level(value: Any) -> str:
    """serde_json's reading of an enum of unit variants: a string, or an object of one
    variant whose value is null; anything else (null included) is a 400 `expected value`."""
    path = "read_level"
    if isinstance(value, dict) and value:
        level, inner = next(iter(value.items()))
        _check_variant(level, READ_LEVELS, path)
        if inner is not None:
            raise wrong_type(f"{path}.{level}", inner, "unit")
        if len(value) > 1:
            raise _expected_value(path)
        return level
    if not isinstance(value, str):
        raise _expected_value(path)
    _check_variant(value, READ_LEVELS, path)
    return value


def _check_variant(name: str, variants: tuple[str, ...], path: str) -> None:
    if name not in variants:
        expected = ", ".join(f"`{v}`" for v in variants)
        raise body_error(path, f"unknown variant `{name}`, expected one of {expected}")


def _expected_value(path: str) -> InvalidArgumentError:
    """serde_json's syntax error for a value an enum cannot start with (Chroma's 400)."""
    return InvalidArgumentError(f"Failed to parse the request body as JSON: {path}: expected value")


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
    """A rank expression, read as serde_json reads Chroma's externally tagged enum: an
    object whose first key names the variant (a second key, or none, is a 400 `expected
    value` once the first one's value is read); a string is a unit variant, which no rank
    operator is (422); anything else is a 400 `expected value`."""
    if isinstance(value, str):
        _check_variant(value, RANK_OPS, path)
        kind = "struct" if value in _STRUCT_VARIANTS else "newtype"
        raise body_error(f"{path}.{value}", f"invalid type: unit variant, expected {kind} variant")
    if not isinstance(value, dict) or not value:
        raise _expected_value(path)
    if depth >= MAX_RANK_DEPTH:
        raise body_error(path, "recursion limit exceeded")
    op, body = next(iter(value.items()))
    node = _rank_variant(op, body, path, depth)
    if len(value) > 1:
        raise _expected_value(path)
    return node


def _rank_variant(op: str, body: Any, path: str, depth: int) -> RankNode:
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
