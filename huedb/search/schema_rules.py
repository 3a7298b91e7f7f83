"""The checks of a search against its collection's schema (shared/chroma-search-api.md,
2.5 step 5), after the collection was found: 400 `InvalidArgumentError` for

- a sparse `$knn` on a key without an enabled sparse-vector index (`#embedding` included);
- a filter on a metadata key and value type whose inverted index is disabled;
- a `#document` filter when full-text search on `#document` is disabled.

`schema` is the collection's schema JSON as stored and echoed (`{"defaults", "keys"}`), or
None for none. A dense `$knn` is not checked (any `key` passes, as in Chroma).
"""

from __future__ import annotations

from typing import Any

from huedb.errors import InvalidArgumentError
from huedb.search.plan import SearchPlan, SearchRequest, filter_terms, knn_leaves

# Chroma's name of a filter value's type, the schema's value type and its inverted index.
_VALUE_TYPES = {
    bool: ("Bool", "bool", "bool_inverted_index"),
    int: ("Int", "int", "int_inverted_index"),
    float: ("Float", "float", "float_inverted_index"),
    str: ("Str", "string", "string_inverted_index"),
}


def check_schema(request: SearchRequest, schema: dict[str, Any] | None) -> None:
    """Raise Chroma's error for the first search the schema refuses."""
    for plan in request.searches:
        check_plan(plan, schema or {})


def check_plan(plan: SearchPlan, schema: dict[str, Any]) -> None:
    """Raise Chroma's error if `schema` refuses this search (sparse Knn first, then filter)."""
    keys = schema.get("keys") or {}
    defaults = schema.get("defaults") or {}
    for knn in knn_leaves(plan.rank):
        if knn.sparse and not _enabled(keys.get(knn.key), "sparse_vector", "sparse_vector_index"):
            raise _disabled(knn.key, "SparseVector")
    for term in filter_terms(plan.filter):
        if term.key == "#id":
            continue
        if term.key == "#document":
            fts = _index(keys.get("#document"), "string", "fts_index")
            if fts is None:
                fts = _index(defaults, "string", "fts_index")
            if fts is not None and not fts.get("enabled"):
                raise InvalidArgumentError(
                    "Cannot filter using full-text search because FTS indexing is disabled"
                )
            continue
        operand = term.value[0] if isinstance(term.value, tuple) else term.value
        type_name, value_type, index_name = _VALUE_TYPES[type(operand)]
        index = _index(keys.get(term.key), value_type, index_name)
        if index is None:
            index = _index(defaults, value_type, index_name)
        if index is not None and not index.get("enabled"):
            raise _disabled(term.key, type_name)


def _index(types: Any, value_type: str, index_name: str) -> dict[str, Any] | None:
    """The index config `types[value_type][index_name]`, None where any level is missing."""
    if not isinstance(types, dict):
        return None
    index = (types.get(value_type) or {}).get(index_name)
    return index if isinstance(index, dict) else None


def _enabled(types: Any, value_type: str, index_name: str) -> bool:
    index = _index(types, value_type, index_name)
    return bool(index and index.get("enabled"))


def _disabled(key: str, type_name: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"Cannot filter using metadata key '{key}' with type '{type_name}' because indexing "
        "is disabled"
    )
