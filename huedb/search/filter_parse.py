"""A search's `filter` (a where-dict) into checked `FilterTerm` / `FilterLogic` nodes.

Chroma's server reads a search filter with the parser of `get`'s `where` (Rust
`parse_where`), so each condition here is checked by the grammar huedb's `get` uses
(`engine.filters.FilterChecker`), with what only a search gives a meaning to:

- `$and` / `$or` take any number of conditions: `{"$and": []}` matches every record,
  `{"$or": []}` none (`filter_compile` folds them). `{}` at the top means no filter.
- `#document` with `$contains`, `$not_contains`, `$regex` or `$not_regex` and a string
  (even "") is a document condition (regexes in Chroma's dialect, checked here). With any
  other operator it is a metadata condition on a key no record has, as in `get`: numbers and
  bools match nothing, their negations everything; a string (bare, `$eq`, `$ne`, `$in`,
  `$nin`) is accepted here and refused when the search runs (`filter_compile`), with
  Chroma's 400 `Cannot filter using metadata key '#document' with type 'Str' because
  indexing is disabled`.
- `#id` compares record ids: a string with `$eq` / `$contains` (kept as `$eq`), `$ne` /
  `$not_contains` (kept as `$ne`), strings with `$in` / `$nin`. A number or bool operand,
  which Chroma compares with a metadata key `#id` no record has, is kept as given and
  matches nothing, or everything for `$ne`, `$nin`, `$not_contains` (`filter_compile`).
- The key "" is an ordinary metadata key (no record has it).

Anything the grammar refuses is Chroma's 422 `Invalid where clause` (a bad regex: `Regex
syntax errror: ...`, Chroma's spelling).
"""

from __future__ import annotations

from typing import Any

from huedb.engine import regex_dialect
from huedb.engine.filters import FilterChecker
from huedb.errors import InvalidArgumentError
from huedb.search.plan import FilterLogic, FilterNode, FilterTerm
from huedb.search.wire_errors import body_error

MAX_FILTER_DEPTH = 64
DOCUMENT_KEY = "#document"
ID_KEY = "#id"
DOCUMENT_OPS = ("$contains", "$not_contains", "$regex", "$not_regex")
SET_OPS = ("$in", "$nin")
# `#id` operators on a string, as the operator kept in the plan.
_ID_STRING_OPS = {"$eq": "$eq", "$contains": "$eq", "$ne": "$ne", "$not_contains": "$ne"}


class _Invalid(Exception):
    """A where clause Chroma refuses."""


class _BadRegex(Exception):
    """A `#document` regex Chroma's regex parser refuses."""


def parse_filter(value: Any, path: str) -> FilterNode | None:
    """The filter of a payload at `path` (None when absent, null or `{}`)."""
    if value is None or value == {}:
        return None
    try:
        return _node(value, 0)
    except _Invalid:
        raise body_error(path, "Invalid where clause") from None
    except _BadRegex as exc:
        raise body_error(path, f"Regex syntax errror: {exc}") from None


def is_document_string_comparison(term: FilterTerm) -> bool:
    """Whether a term compares `#document` with strings as a metadata key (which Chroma
    refuses when the search runs: the key has no string index)."""
    if term.key != DOCUMENT_KEY or term.op in DOCUMENT_OPS:
        return False
    value = term.value[0] if isinstance(term.value, tuple) else term.value
    return isinstance(value, str)


def _node(where: Any, depth: int) -> FilterNode:
    if depth > MAX_FILTER_DEPTH or not isinstance(where, dict) or len(where) != 1:
        raise _Invalid
    key, value = next(iter(where.items()))
    if key in ("$and", "$or"):
        if not isinstance(value, list):
            raise _Invalid
        return FilterLogic(key, tuple(_node(child, depth + 1) for child in value))
    if not isinstance(key, str) or key.startswith("$"):
        raise _Invalid
    if isinstance(value, dict):
        if len(value) != 1:
            raise _Invalid
        op, operand = next(iter(value.items()))
    else:
        op, operand = "$eq", value
    if key == DOCUMENT_KEY:
        return _document(op, operand)
    _check(key, op, operand)
    if key == ID_KEY:
        return _ids(op, operand)
    return _term(key, op, operand)


def _check(key: str, op: str, operand: Any) -> None:
    """Whether `get`'s where grammar takes the condition (_Invalid if not)."""
    try:
        FilterChecker().where({key: {op: operand}}, 0)
    except InvalidArgumentError:
        raise _Invalid from None


def _term(key: str, op: str, operand: Any) -> FilterTerm:
    return FilterTerm(key, op, tuple(operand) if op in SET_OPS else operand)


def _document(op: str, operand: Any) -> FilterTerm:
    if op in DOCUMENT_OPS:
        if not isinstance(operand, str):
            raise _Invalid
        if op in ("$regex", "$not_regex"):
            try:
                regex_dialect.compile_pattern(operand)
            except InvalidArgumentError as exc:
                raise _BadRegex(str(exc)) from None
        _check(DOCUMENT_KEY, op, operand)
        return FilterTerm(DOCUMENT_KEY, op, operand)
    first = operand[0] if op in SET_OPS and isinstance(operand, list) and operand else operand
    if isinstance(first, str):
        # A string compared with the metadata key `#document`: well formed as for any key.
        strings = operand if op in SET_OPS and isinstance(operand, list) else [operand]
        if op not in ("$eq", "$ne", *SET_OPS) or not all(isinstance(s, str) for s in strings):
            raise _Invalid
        return _term(DOCUMENT_KEY, op, operand)
    if op in ("$and", "$or"):  # `get`'s engine would read these as a where_document
        raise _Invalid
    _check(DOCUMENT_KEY, op, operand)  # a number or bool: a metadata term, as in `get`
    return _term(DOCUMENT_KEY, op, operand)


def _ids(op: str, operand: Any) -> FilterTerm:
    if isinstance(operand, str):
        return FilterTerm(ID_KEY, _ID_STRING_OPS[op], operand)
    return _term(ID_KEY, op, operand)
