"""A search's checked filter (`plan.FilterNode`) into the engine's `RecordFilter`.

Metadata and `#document` conditions become the nodes `get` and `query` use (compiled by the
engine's `FilterChecker`, so the semantics are theirs: shared/chroma-search-api.md, 3.5).
The engine's filters have no node for record ids, so `#id` conditions are resolved here:
positive ones (`$eq`, `$in`) among the top-level conditions become the filter's id list;
anywhere else, the filter is evaluated as set algebra (one engine read per `#id`-free
subtree) into the list of matching ids.

First, what has a constant outcome is folded (`_folded`): `$and: []` matches every record,
`$or: []` none, and an `#id` condition with a number or bool (Chroma compares a metadata
key `#id` no record has) matches none, or every record for `$ne`, `$nin`, `$not_contains`.
A string compared with `#document` as a metadata key is Chroma's 400 (its schema has no
string index on `#document`), raised before anything is read.
"""

from __future__ import annotations

from huedb.engine.engine import Engine
from huedb.engine.filters import FilterChecker, FilterSize, Logical, Node, RecordFilter
from huedb.errors import InvalidArgumentError
from huedb.search.filter_parse import DOCUMENT_OPS, is_document_string_comparison
from huedb.search.plan import FilterLogic, FilterNode, FilterTerm, filter_terms

ID_KEY = "#id"
DOCUMENT_KEY = "#document"
# Operators matching the records their positive form does not.
NEGATED_OPS = ("$ne", "$nin", "$not_contains")


def record_filter(engine: Engine, collection_uuid: str, node: FilterNode | None) -> RecordFilter:
    """The engine filter of the records `node` lets through."""
    if node is None:
        return RecordFilter(None)
    if any(is_document_string_comparison(t) for t in filter_terms(node)):
        raise InvalidArgumentError(
            "Cannot filter using metadata key '#document' with type 'Str' because indexing "
            "is disabled"
        )
    folded = _folded(node)
    if folded is True:
        return RecordFilter(None)
    if folded is False:
        return RecordFilter([])
    node = folded
    if not _has_id(node):
        return _compiled(None, node)
    conjuncts = node.children if isinstance(node, FilterLogic) and node.op == "$and" else (node,)
    id_terms = [c for c in conjuncts if isinstance(c, FilterTerm) and c.key == ID_KEY]
    rest = [c for c in conjuncts if not (isinstance(c, FilterTerm) and c.key == ID_KEY)]
    positive = [t for t in id_terms if t.op in ("$eq", "$in")]
    if positive and not any(_has_id(c) for c in rest):
        ids = set.intersection(*(_id_values(t) for t in positive))
        for term in id_terms:
            if term.op in ("$ne", "$nin"):
                ids -= _id_values(term)
        if not rest:
            return RecordFilter(sorted(ids))
        tree = rest[0] if len(rest) == 1 else FilterLogic("$and", tuple(rest))
        return _compiled(sorted(ids), tree)
    universe = {
        row[1] for row in engine.get(collection_uuid, RecordFilter(None), None, None, False)
    }
    return RecordFilter(sorted(_matching_ids(engine, collection_uuid, node, universe)))


def _folded(node: FilterNode) -> FilterNode | bool:
    """`node` without its constant parts: True (every record) or False (none) when the
    whole of it is constant."""
    if isinstance(node, FilterTerm):
        if node.key == ID_KEY and not _on_ids(node):
            return node.op in NEGATED_OPS
        return node
    absorbing = node.op == "$or"  # True decides an $or, False an $and
    neutral = not absorbing  # and the other changes nothing
    children = []
    for child in node.children:
        folded = _folded(child)
        if folded is absorbing:
            return absorbing
        if folded is not neutral:
            children.append(folded)
    if not children:
        return neutral
    return children[0] if len(children) == 1 else FilterLogic(node.op, tuple(children))


def _on_ids(term: FilterTerm) -> bool:
    """Whether an `#id` term compares record ids (strings), not a metadata key `#id`."""
    value = term.value[0] if isinstance(term.value, tuple) else term.value
    return isinstance(value, str)


def _compiled(ids: list[str] | None, node: FilterNode) -> RecordFilter:
    checker = FilterChecker()
    tree = _tree(node, checker, 0)
    size = FilterSize(checker.terms, checker.in_values, checker.pattern_bytes, checker.regex_terms)
    return RecordFilter(ids, tree, size)


def _tree(node: FilterNode, checker: FilterChecker, depth: int) -> Node:
    if isinstance(node, FilterLogic):
        children = tuple(_tree(child, checker, depth + 1) for child in node.children)
        return Logical(node.op, children)
    if node.key == DOCUMENT_KEY and node.op in DOCUMENT_OPS:
        return checker.document({node.op: node.value}, depth)
    value = list(node.value) if isinstance(node.value, tuple) else node.value
    return checker.where({node.key: {node.op: value}}, depth)


def _has_id(node: FilterNode) -> bool:
    if isinstance(node, FilterTerm):
        return node.key == ID_KEY
    return any(_has_id(child) for child in node.children)


def _id_values(term: FilterTerm) -> set[str]:
    return set(term.value) if isinstance(term.value, tuple) else {term.value}


def _matching_ids(
    engine: Engine, collection_uuid: str, node: FilterNode, universe: set[str]
) -> set[str]:
    """The ids of `universe` that `node` lets through (set algebra over engine reads)."""
    if not _has_id(node):
        rows = engine.get(collection_uuid, _compiled(None, node), None, None, False)
        return {row[1] for row in rows}
    if isinstance(node, FilterTerm):
        values = _id_values(node)
        return universe & values if node.op in ("$eq", "$in") else universe - values
    parts = [_matching_ids(engine, collection_uuid, c, universe) for c in node.children]
    return set.intersection(*parts) if node.op == "$and" else set.union(*parts)
