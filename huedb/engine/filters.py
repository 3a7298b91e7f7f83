"""Check Chroma `where` / `where_document` filters into a tree every store can evaluate.

`compile_filter` walks a request's filters once: it raises Chroma's errors for a malformed
one (InvalidArgumentError) or one beyond what any configuration admits (RequestLimitError),
measures what the engine's limits need (`FilterSize`), and returns a `RecordFilter` whose
`tree` holds only checked nodes: metadata terms (`MetaTerm`, operands as stored:
`record_values.value_kind` / `sql_value`), document terms (`DocTerm`, regexes already
compiled once in Chroma's dialect), string equality on a record's document or uri
(`FieldTerm`) and `$and` / `$or` (`Logical`). Each store renders the tree in its own dialect
(`engine/sqlite_store/filters.py`). Semantics every rendering keeps: negations (`$ne`,
`$nin`, `$not_contains`, `$not_regex`) are the exact complement of their positive form, so
records without the key or with another value type match them, as in Chroma; `$regex` is
evaluated with `engine/regex_dialect.py`, never a store's own regex.

Chroma keeps a record's document and uri as the metadata keys `chroma:document` and
`chroma:uri`, so a string `$eq` / `$ne` / `$in` / `$nin` on one of those keys compares the
document or uri (`FieldTerm`), or a string such a key holds in metadata (`MetaTerm`: what
huedb stored before it moved them). `#document` with any other operator than `$contains`,
`$not_contains`, `$regex` or `$not_regex` is a metadata term on a key no record has, as in
Chroma (a string operand: an error, `api/checks.compares_document_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huedb.engine import regex_dialect
from huedb.engine.record_values import KIND_NUMBER, KIND_STR, sql_value, value_kind
from huedb.errors import InvalidArgumentError, RequestLimitError
from huedb.options import LIMIT_CEILINGS
from huedb.record_batch import DOCUMENT_META_KEY, URI_META_KEY

MAX_FILTER_DEPTH = 64
# Beyond these no configuration admits a filter, so checking stops there (the configured
# limits, at most these, are checked by the engine: `engine/budget.py`).
MAX_FILTER_TERMS = LIMIT_CEILINGS["max_filter_terms"]
MAX_IN_VALUES = LIMIT_CEILINGS["max_in_values"]

COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
DOCUMENT_OPS = ("$contains", "$not_contains", "$regex", "$not_regex")
# The metadata keys under which Chroma keeps a record's fields, and huedb's field for each.
FIELD_KEYS = {DOCUMENT_META_KEY: "document", URI_META_KEY: "uri"}
# Operators whose match is the complement of another's, and that other.
NEGATIONS = {
    "$ne": "$eq",
    "$nin": "$in",
    "$not_contains": "$contains",
    "$not_regex": "$regex",
}


@dataclass(frozen=True)
class MetaTerm:
    """A metadata condition on `key`, among values of one `kind`.

    `op` is $eq, $ne, one of COMPARISONS, $in, $nin (on scalar values) or $contains,
    $not_contains (on array elements); `values` are in stored form (one, or the list).
    """

    key: str
    op: str
    kind: int
    values: tuple[Any, ...]

    @property
    def is_array(self) -> bool:
        """Whether the condition is on the elements of array values."""
        return self.op in ("$contains", "$not_contains")


@dataclass(frozen=True)
class DocTerm:
    """A document condition: $contains / $not_contains (case-sensitive substring) or
    $regex / $not_regex (Chroma's dialect: `regex_dialect.search`)."""

    op: str
    text: str


@dataclass(frozen=True)
class Logical:
    """$and / $or of at least one child."""

    op: str
    children: tuple[Node, ...]


@dataclass(frozen=True)
class FieldTerm:
    """A record's document or uri (`field`) compared with strings: `op` is $eq, $ne, $in or
    $nin; a record without the field matches only the negations."""

    field: str  # "document" or "uri": the `records` column each store compares
    op: str
    values: tuple[str, ...]


Node = MetaTerm | DocTerm | FieldTerm | Logical


def positive(op: str) -> str:
    """The operator a negation complements (the operator itself when positive)."""
    return NEGATIONS.get(op, op)


@dataclass(frozen=True)
class FilterSize:
    """What a filter asks of the engine, measured while it is checked."""

    terms: int = 0  # operators ($and, $or) and conditions of where and where_document
    in_values: int = 0  # values of every $in / $nin together
    pattern_bytes: int = 0  # UTF-8 bytes of the longest document operand
    regex_terms: int = 0  # $regex / $not_regex conditions


@dataclass(frozen=True)
class RecordFilter:
    """A checked filter (ids, `where` and `where_document` as one tree) for any collection.

    Checked once per call by `compile_filter`; the engine hands it to its store session,
    which renders `tree` for the collection. `tree` is None when no filter was given.
    """

    ids: list[str] | None
    tree: Node | None = None
    size: FilterSize = FilterSize()

    @property
    def selects_all(self) -> bool:
        """True when the filter lets every record of the collection through."""
        return self.ids is None and self.tree is None


def compile_filter(ids: list[str] | None, where: Any, where_document: Any) -> RecordFilter:
    """Check a filter; raises InvalidArgumentError for a malformed one."""
    checker = FilterChecker()
    parts: list[Node] = []
    if where is not None:
        parts.append(checker.where(where, 0))
    if where_document is not None:
        parts.append(checker.document(where_document, 0))
    tree = None if not parts else parts[0] if len(parts) == 1 else Logical("$and", tuple(parts))
    size = FilterSize(checker.terms, checker.in_values, checker.pattern_bytes, checker.regex_terms)
    return RecordFilter(ids, tree, size)


def _invalid(detail: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"Invalid where clause: {detail}")


def _utf8_bytes(text: str, clause: str) -> int:
    """The UTF-8 length of a filter's key or operand; InvalidArgumentError for text that is
    not valid Unicode (a lone surrogate), which Chroma refuses too."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            f"Invalid {clause} clause: {text[:40]!r} is not valid Unicode (a lone surrogate)"
        ) from None


class FilterChecker:
    """Turns filters into checked nodes, counting what the limits measure."""

    def __init__(self) -> None:
        self.terms = 0
        self.in_values = 0
        self.pattern_bytes = 0
        self.regex_terms = 0

    def _count_term(self) -> None:
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise RequestLimitError(
                f"The filter has more than {MAX_FILTER_TERMS:,} operators and conditions, "
                "the most any configuration of max_filter_terms allows"
            )

    def where(self, where: Any, depth: int) -> Node:
        """The node of a `where` (at nesting `depth`)."""
        if depth > MAX_FILTER_DEPTH:
            raise _invalid("nested too deeply")
        if not isinstance(where, dict) or len(where) != 1:
            raise _invalid(f"expected a dict with exactly one key, got {where!r}")
        key, value = next(iter(where.items()))
        self._count_term()
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise _invalid(f"{key} expects a non-empty list")
            return Logical(key, tuple(self.where(w, depth + 1) for w in value))
        # "" is a key no record has (Chroma's server answers no match, not an error).
        if not isinstance(key, str) or key.startswith("$"):
            raise _invalid(f"bad key {key!r}")
        _utf8_bytes(key, "where")
        if key == "#document" and not _metadata_on_document(value):
            self.terms -= 1  # the condition inside is the term
            return self.document(value, depth + 1)
        if isinstance(value, dict):
            if len(value) != 1:
                raise _invalid(f"expected exactly one operator for {key!r}, got {value!r}")
            op, operand = next(iter(value.items()))
        else:
            op, operand = "$eq", value
        term = self._metadata(key, op, operand)
        field = FIELD_KEYS.get(key)
        if field is None or term.kind != KIND_STR or positive(term.op) not in ("$eq", "$in"):
            return term
        # The record's field, or (stored before huedb moved it there) the key's value.
        joiner = "$or" if positive(term.op) == term.op else "$and"
        return Logical(joiner, (FieldTerm(field, term.op, term.values), term))

    def _metadata(self, key: str, op: str, operand: Any) -> MetaTerm:
        if op in ("$eq", "$ne", "$contains", "$not_contains"):
            return MetaTerm(key, op, _operand_kind(operand), (sql_value(operand),))
        if op in COMPARISONS:
            if isinstance(operand, bool) or value_kind(operand) != KIND_NUMBER:
                raise _invalid(f"{op} expects a number, got {operand!r}")
            return MetaTerm(key, op, KIND_NUMBER, (sql_value(operand),))
        if op in ("$in", "$nin"):
            if not isinstance(operand, list) or not operand:
                raise _invalid(f"{op} expects a non-empty list")
            self.in_values += len(operand)
            if self.in_values > MAX_IN_VALUES:
                raise RequestLimitError(
                    f"The filter's $in / $nin lists hold more than {MAX_IN_VALUES:,} values, "
                    "the most any configuration of max_in_values allows"
                )
            kinds = {_operand_kind(v) for v in operand}
            if len(kinds) != 1 or ints_then_a_float(operand):
                raise _invalid(f"{op} expects values of one type, got {operand!r}")
            return MetaTerm(key, op, kinds.pop(), tuple(sql_value(v) for v in operand))
        raise _invalid(f"unknown operator {op!r}")

    def document(self, where_document: Any, depth: int) -> Node:
        """The node of a `where_document` (at nesting `depth`)."""
        if depth > MAX_FILTER_DEPTH:
            raise InvalidArgumentError("Invalid where document clause: nested too deeply")
        if not isinstance(where_document, dict) or len(where_document) != 1:
            raise InvalidArgumentError(
                f"Invalid where document clause: expected one operator, got {where_document!r}"
            )
        op, operand = next(iter(where_document.items()))
        self._count_term()
        if op in ("$and", "$or"):
            if not isinstance(operand, list) or not operand:
                raise InvalidArgumentError(
                    f"Invalid where document clause: {op} expects a non-empty list"
                )
            return Logical(op, tuple(self.document(w, depth + 1) for w in operand))
        # An empty operand is no error on Chroma's server: "" occurs in every document
        # (Chroma's Python client refuses it before sending; its JS client does not).
        if not isinstance(operand, str):
            raise InvalidArgumentError(f"Invalid where document clause: {op} expects a string")
        self.pattern_bytes = max(self.pattern_bytes, _utf8_bytes(operand, "where document"))
        if op in ("$contains", "$not_contains"):
            return DocTerm(op, operand)
        if op in ("$regex", "$not_regex"):
            self.regex_terms += 1
            regex_dialect.compile_pattern(operand)
            return DocTerm(op, operand)
        raise InvalidArgumentError(f"Invalid where document clause: unknown operator {op!r}")


def ints_then_a_float(values: list[Any]) -> bool:
    """Whether a list starts with an integer and holds a float: Chroma's server reads a list
    by its first value, so `[1, 2.5]` is refused there (an integer list) while `[2.5, 1]`
    is a float list."""
    return type(values[0]) is int and any(type(v) is float for v in values)


def _metadata_on_document(value: Any) -> bool:
    """Whether a `where` condition on `#document` is a metadata one in Chroma: an operator
    other than the document ones with a number or bool (or a non-empty list of them, for
    `$in` / `$nin`), bare or not. Chroma then compares a metadata key `#document`, which no
    record has: no match, every record for a negation."""
    if isinstance(value, dict):
        if len(value) != 1:
            return False
        op, operand = next(iter(value.items()))
        if op in DOCUMENT_OPS or op in ("$and", "$or"):
            return False
        if op in ("$in", "$nin") and isinstance(operand, list) and operand:
            operand = operand[0]
    else:
        operand = value
    return isinstance(operand, int | float)


def _operand_kind(operand: Any) -> int:
    """`value_kind` of a metadata operand, whose text must be valid Unicode."""
    kind = value_kind(operand)
    if kind == KIND_STR:
        _utf8_bytes(operand, "where")
    return kind
