"""Compile Chroma `where` / `where_document` filters into SQL over the records table.

The result is a boolean SQL expression on the alias `r` (a row of `records`) plus its
parameters. Metadata predicates select keys from the typed `record_meta` side table through
its (cid, name, kind, value) index; negations are the exact complement of their positive
form, which gives Chroma's semantics for missing keys and type mismatches for free.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from huedb.engine import regex_dialect
from huedb.engine.schema import KIND_BOOL, KIND_NUMBER, KIND_STR
from huedb.errors import InvalidArgumentError, RequestLimitError
from huedb.options import LIMIT_CEILINGS

_COMPARE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
MAX_FILTER_DEPTH = 64
# Beyond these no configuration admits a filter, so compiling stops there (the configured
# limits, at most these, are checked by the engine: `engine/budget.py`).
MAX_FILTER_TERMS = LIMIT_CEILINGS["max_filter_terms"]
MAX_IN_VALUES = LIMIT_CEILINGS["max_in_values"]
# Compound SELECTs are limited in SQLite (500 terms); larger filters use the predicate form.
MAX_KEY_SET_TERMS = 64
# The trigram index serves substrings of 3 to 256 characters; a longer one would expand into
# thousands of trigram lookups (a 1 MB operand took minutes), so it is scanned with instr.
MIN_INDEXED_SUBSTRING, MAX_INDEXED_SUBSTRING = 3, 256


def balanced(joiner: str, parts: list[str]) -> str:
    """Join conditions as a balanced tree, so SQLite's expression depth stays logarithmic."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({balanced(joiner, parts[:middle])}{joiner}{balanced(joiner, parts[middle:])})"


class _NotAKeySet(Exception):
    """The filter cannot be written as a compound SELECT of keys."""


def _invalid(detail: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"Invalid where clause: {detail}")


def value_kind(value: Any) -> int:
    """The record_meta kind of a scalar value."""
    if isinstance(value, bool):
        return KIND_BOOL
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise _invalid(f"non-finite number {value}")
        return KIND_NUMBER
    if isinstance(value, str):
        return KIND_STR
    raise _invalid(f"expected a str, int, float or bool operand, got {value!r}")


def sql_value(value: Any) -> Any:
    """The value stored in record_meta for a scalar (bools as 0/1)."""
    if isinstance(value, bool):
        return int(value)
    return value


def regexp_match(pattern: str, text: str | None) -> int:
    """SQLite function: does the pattern occur in text (find semantics, Chroma's dialect)."""
    return 1 if regex_dialect.search(pattern, text) else 0


class _Collection:
    """Stands in a compiled filter's parameters for the collection's id until it is bound."""


COLLECTION = _Collection()
Compiled = tuple[str, tuple[Any, ...]]


def _bind(compiled: Compiled, cid: int) -> tuple[str, list[Any]]:
    sql, params = compiled
    return sql, [cid if p is COLLECTION else p for p in params]


@dataclass(frozen=True)
class FilterSize:
    """What a filter asks of the engine, measured while it is compiled."""

    terms: int = 0  # operators ($and, $or) and conditions of where and where_document
    in_values: int = 0  # values of every $in / $nin together
    pattern_bytes: int = 0  # UTF-8 bytes of the longest document operand
    regex_terms: int = 0  # $regex / $not_regex conditions


@dataclass(frozen=True)
class RecordFilter:
    """A checked, compiled filter (ids, `where`, `where_document`) for any collection.

    Compiled once per call by `compile_filter`; the engine binds it to a collection. A
    positive metadata `where` alone also has a key-set form (`key_set`), compiled the
    first time a query asks for it.
    """

    ids: list[str] | None
    predicate: Compiled  # boolean SQL on the alias `r` (a row of `records`), "1" for all
    key_set_where: Any = None  # the `where` whose key-set form `key_set` compiles
    size: FilterSize = FilterSize()

    @functools.cached_property
    def key_set(self) -> Compiled | None:
        """A SELECT of the matching keys over the covering metadata index, if there is one."""
        if self.key_set_where is None:
            return None
        return FilterCompiler().key_set(self.key_set_where)

    @property
    def selects_all(self) -> bool:
        """True when the filter lets every record of the collection through."""
        return self.ids is None and self.predicate[0] == "1"

    def bind(self, cid: int) -> tuple[str, list[Any]]:
        """The predicate and its parameters for the collection `cid`."""
        return _bind(self.predicate, cid)

    def bind_key_set(self, cid: int) -> tuple[str, list[Any]] | None:
        """The key-set SELECT for `cid`, when the filter has one and names no ids."""
        if self.ids is not None or self.key_set is None:
            return None
        return _bind(self.key_set, cid)


def compile_filter(ids: list[str] | None, where: Any, where_document: Any) -> RecordFilter:
    """Check and compile a filter; raises InvalidArgumentError for a malformed one."""
    compiler = FilterCompiler()
    sql, params = compiler.compile(where, where_document)
    key_set_where = where if where_document is None else None
    size = FilterSize(
        compiler.terms, compiler.in_values, compiler.pattern_bytes, compiler.regex_terms
    )
    return RecordFilter(ids, (sql, tuple(params)), key_set_where, size)


class FilterCompiler:
    """Turns filters into (sql, params), with `COLLECTION` where the collection id goes."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self.terms = 0
        self.in_values = 0
        self.pattern_bytes = 0
        self.regex_terms = 0
        self.selects = 0

    def compile(self, where: Any, where_document: Any) -> tuple[str, list[Any]]:
        """SQL condition for both filters (either may be None)."""
        parts = []
        if where is not None:
            parts.append(self._where(where, 0))
        if where_document is not None:
            parts.append(self._document(where_document, 0))
        return (" AND ".join(parts) if parts else "1"), self.params

    def _count_term(self) -> None:
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise RequestLimitError(
                f"The filter has more than {MAX_FILTER_TERMS:,} operators and conditions, "
                "the most any configuration of max_filter_terms allows"
            )

    def key_set(self, where: Any) -> Compiled | None:
        """A SELECT of the keys matching `where`, read from the covering metadata index alone.

        Only for a `where` (already checked by `compile`) made of positive metadata
        conditions joined by $and / $or, with at most MAX_KEY_SET_TERMS conditions: $and
        becomes INTERSECT and $or UNION. Returns None for anything else (negations,
        documents), which the predicate form of `compile` handles.
        """
        self.params = []
        self.selects = 0
        try:
            sql = self._key_set(where)
        except _NotAKeySet:
            return None
        return (sql, tuple(self.params)) if self.selects <= MAX_KEY_SET_TERMS else None

    def _key_set(self, where: dict[str, Any]) -> str:
        key, value = next(iter(where.items()))
        if key in ("$and", "$or"):
            joiner = " INTERSECT " if key == "$and" else " UNION "
            return joiner.join(f"SELECT key FROM ({self._key_set(w)})" for w in value)
        if key == "#document":
            raise _NotAKeySet
        op, operand = next(iter(value.items())) if isinstance(value, dict) else ("$eq", value)
        if op == "$eq":
            return self._meta_select(key, value_kind(operand), 0, "value = ?", sql_value(operand))
        if op in _COMPARE_SQL:
            return self._meta_select(key, KIND_NUMBER, 0, f"value {_COMPARE_SQL[op]} ?", operand)
        if op == "$in":
            marks = ", ".join("?" for _ in operand)
            vals = (sql_value(v) for v in operand)
            return self._meta_select(key, value_kind(operand[0]), 0, f"value IN ({marks})", *vals)
        if op == "$contains":
            return self._meta_select(key, value_kind(operand), 1, "value = ?", sql_value(operand))
        raise _NotAKeySet

    def _meta_select(self, name: str, kind: int, is_array: int, cond: str, *vals: Any) -> str:
        self.selects += 1
        self.params.extend((COLLECTION, name, kind, is_array, *vals))
        # An array may hold a value twice: one key per record.
        distinct = "DISTINCT " if is_array else ""
        return (
            f"SELECT {distinct}key FROM record_meta WHERE cid = ? AND name = ? AND kind = ? "
            f"AND is_array = ? AND {cond}"
        )

    def _meta_subquery(self, name: str, kind: int, is_array: int, cond: str, *vals: Any) -> str:
        return f"r.key IN ({self._meta_select(name, kind, is_array, cond, *vals)})"

    def _where(self, where: Any, depth: int) -> str:
        if depth > MAX_FILTER_DEPTH:
            raise _invalid("nested too deeply")
        if not isinstance(where, dict) or len(where) != 1:
            raise _invalid(f"expected a dict with exactly one key, got {where!r}")
        key, value = next(iter(where.items()))
        self._count_term()
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise _invalid(f"{key} expects a non-empty list")
            joiner = " AND " if key == "$and" else " OR "
            return balanced(joiner, [self._where(w, depth + 1) for w in value])
        if not isinstance(key, str) or key == "" or key.startswith("$"):
            raise _invalid(f"bad key {key!r}")
        if key == "#document":
            self.terms -= 1  # the condition inside is the term
            return self._document(value, depth + 1)
        if isinstance(value, dict):
            if len(value) != 1:
                raise _invalid(f"expected exactly one operator for {key!r}, got {value!r}")
            op, operand = next(iter(value.items()))
        else:
            op, operand = "$eq", value
        return self._predicate(key, op, operand)

    def _predicate(self, key: str, op: str, operand: Any) -> str:
        if op in ("$eq", "$ne"):
            kind = value_kind(operand)
            sql = self._meta_subquery(key, kind, 0, "value = ?", sql_value(operand))
            return sql if op == "$eq" else f"NOT {sql}"
        if op in _COMPARE_SQL:
            if isinstance(operand, bool) or value_kind(operand) != KIND_NUMBER:
                raise _invalid(f"{op} expects a number, got {operand!r}")
            return self._meta_subquery(key, KIND_NUMBER, 0, f"value {_COMPARE_SQL[op]} ?", operand)
        if op in ("$in", "$nin"):
            if not isinstance(operand, list) or not operand:
                raise _invalid(f"{op} expects a non-empty list")
            self.in_values += len(operand)
            if self.in_values > MAX_IN_VALUES:
                raise RequestLimitError(
                    f"The filter's $in / $nin lists hold more than {MAX_IN_VALUES:,} values, "
                    "the most any configuration of max_in_values allows"
                )
            kinds = {value_kind(v) for v in operand}
            if len(kinds) != 1:
                raise _invalid(f"{op} expects values of one type, got {operand!r}")
            marks = ", ".join("?" for _ in operand)
            sql = self._meta_subquery(
                key, kinds.pop(), 0, f"value IN ({marks})", *(sql_value(v) for v in operand)
            )
            return sql if op == "$in" else f"NOT {sql}"
        if op in ("$contains", "$not_contains"):
            kind = value_kind(operand)
            sql = self._meta_subquery(key, kind, 1, "value = ?", sql_value(operand))
            return sql if op == "$contains" else f"NOT {sql}"
        raise _invalid(f"unknown operator {op!r}")

    def _substring(self, text: str) -> str:
        """Case-sensitive substring test, narrowed by the trigram index when it helps."""
        self.params.append(text)
        exact = "coalesce(instr(r.document, ?), 0) > 0"
        if not MIN_INDEXED_SUBSTRING <= len(text) <= MAX_INDEXED_SUBSTRING:
            return exact
        self.params.insert(len(self.params) - 1, '"' + text.replace('"', '""') + '"')
        return (
            f"(r.key IN (SELECT rowid FROM documents_fts WHERE documents_fts MATCH ?) AND {exact})"
        )

    def _document(self, where_document: Any, depth: int) -> str:
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
            joiner = " AND " if op == "$and" else " OR "
            return balanced(joiner, [self._document(w, depth + 1) for w in operand])
        if not isinstance(operand, str) or operand == "":
            raise InvalidArgumentError(
                f"Invalid where document clause: {op} expects a non-empty string"
            )
        self.pattern_bytes = max(self.pattern_bytes, len(operand.encode("utf-8", "surrogatepass")))
        if op in ("$contains", "$not_contains"):
            sql = self._substring(operand)
            return sql if op == "$contains" else f"NOT ({sql})"
        if op in ("$regex", "$not_regex"):
            self.regex_terms += 1
            regex_dialect.compile_pattern(operand)
            self.params.append(operand)
            sql = "huedb_regexp(?, r.document)"
            return sql if op == "$regex" else f"NOT ({sql})"
        raise InvalidArgumentError(f"Invalid where document clause: unknown operator {op!r}")
