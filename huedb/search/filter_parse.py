"""A search's `filter` (a where-dict) into checked `FilterTerm` / `FilterLogic` nodes.

The grammar of `get`/`query`'s `where` (shared/chroma-compat.md, 3.1) with two special
keys: `#document` ($contains, $not_contains, $regex, $not_regex with a non-empty string;
regexes in Chroma's dialect, checked here) and `#id` ($eq, $ne with a string, $in, $nin
with a list of strings). `$and` / `$or` take one condition or more; `{}` at the top means no
filter. Anything else is Chroma's 422 `Invalid where clause` (a bad regex: `Regex syntax
errror: ...`, Chroma's spelling).
"""

from __future__ import annotations

from typing import Any

from huedb.engine import regex_dialect
from huedb.engine.filters import ints_then_a_float
from huedb.errors import InvalidArgumentError
from huedb.search.plan import FilterLogic, FilterNode, FilterTerm
from huedb.search.wire_errors import body_error

MAX_FILTER_DEPTH = 64
DOCUMENT_OPS = ("$contains", "$not_contains", "$regex", "$not_regex")
ID_OPS = ("$eq", "$ne", "$in", "$nin")
METADATA_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
METADATA_OPS += ("$contains", "$not_contains")
_COMPARISONS = ("$gt", "$gte", "$lt", "$lte")


class _Invalid(Exception):
    """A where clause Chroma refuses."""


def parse_filter(value: Any, path: str) -> FilterNode | None:
    """The filter of a payload at `path` (None when absent, null or `{}`)."""
    if value is None or value == {}:
        return None
    try:
        return _node(value, 0)
    except _Invalid:
        raise body_error(path, "Invalid where clause") from None
    except InvalidArgumentError as exc:
        raise body_error(path, f"Regex syntax errror: {exc}") from None


def _node(where: Any, depth: int) -> FilterNode:
    if depth > MAX_FILTER_DEPTH or not isinstance(where, dict) or len(where) != 1:
        raise _Invalid
    key, value = next(iter(where.items()))
    if key in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise _Invalid
        return FilterLogic(key, tuple(_node(child, depth + 1) for child in value))
    if not isinstance(key, str) or key.startswith("$") or key == "":
        raise _Invalid
    if isinstance(value, dict):
        if len(value) != 1:
            raise _Invalid
        op, operand = next(iter(value.items()))
    else:
        op, operand = "$eq", value
    if key == "#document":
        return _document(op, operand)
    if key == "#id":
        return _ids(op, operand)
    return _metadata(key, op, operand)


def _document(op: str, operand: Any) -> FilterTerm:
    if op not in DOCUMENT_OPS or not isinstance(operand, str) or not operand:
        raise _Invalid
    if op in ("$regex", "$not_regex"):
        regex_dialect.compile_pattern(operand)
    return FilterTerm("#document", op, operand)


def _ids(op: str, operand: Any) -> FilterTerm:
    if op not in ID_OPS:
        raise _Invalid
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand:  # Chroma: an empty list is refused
            raise _Invalid
        if not all(isinstance(v, str) for v in operand):
            raise _Invalid
        return FilterTerm("#id", op, tuple(operand))
    if not isinstance(operand, str):
        raise _Invalid
    return FilterTerm("#id", op, operand)


def _scalar_kind(value: Any) -> type | None:
    """bool, int and float (one kind: numbers), or str; None for anything else."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, int | float):
        return float
    return str if isinstance(value, str) else None


def _metadata(key: str, op: str, operand: Any) -> FilterTerm:
    if op not in METADATA_OPS:
        raise _Invalid
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand:
            raise _Invalid
        kinds = {_scalar_kind(v) for v in operand}
        if None in kinds or len(kinds) != 1 or ints_then_a_float(operand):
            raise _Invalid
        return FilterTerm(key, op, tuple(operand))
    kind = _scalar_kind(operand)
    if kind is None or (op in _COMPARISONS and kind is not float):
        raise _Invalid
    return FilterTerm(key, op, operand)
