"""Render a checked filter tree (`engine/filters.py`) as SQLite SQL over `records`.

A predicate is a boolean SQL expression on the alias `r` (a row of `records`) plus its
parameters. Metadata terms select keys from the typed `record_meta` side table through its
covering (cid, name, kind, is_array, value, key) index; negations are `NOT` of their
positive form. `$contains` on documents narrows by the FTS5 trigram index (an AND of the
text's trigrams), then confirms with `instr`; `$regex` calls `huedb_regexp` (Chroma's
dialect on RE2, registered on every connection). A positive metadata-only filter also has
a key-set form: a compound SELECT of keys read from the covering index alone, which a
filtered query uses.
"""

from __future__ import annotations

from typing import Any

from huedb.engine import regex_dialect
from huedb.engine.budget import check_running_deadline
from huedb.engine.filters import (
    COMPARISONS,
    DocTerm,
    FieldTerm,
    Logical,
    MetaTerm,
    Node,
    positive,
)

_COMPARE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
# Compound SELECTs are limited in SQLite (500 terms); larger filters use the predicate form.
MAX_KEY_SET_TERMS = 64
# The trigram index serves substrings of 3 to 256 characters; a longer one would expand into
# thousands of trigram lookups (a 1 MB operand took minutes), so it is scanned with instr.
MIN_INDEXED_SUBSTRING, MAX_INDEXED_SUBSTRING = 3, 256


def trigram_query(text: str) -> str:
    """The document index's query for a text of 3 characters or more: every third of its
    trigrams and its last one, each quoted, ANDed. The index holds no positions, so a
    document with them all is only a candidate, which `instr` then confirms."""
    starts = sorted({*range(0, len(text) - 2, 3), len(text) - 3})
    grams = dict.fromkeys(text[i : i + 3] for i in starts)  # distinct, in order
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def regexp_match(pattern: str, text: str | None) -> int:
    """SQLite function: does the pattern occur in text (find semantics, Chroma's dialect).
    Stops the statement once the read's deadline passed (DeadlinePassed): one document can
    take seconds, more than SQLite's progress handler waits between its looks."""
    check_running_deadline()
    return 1 if regex_dialect.search(pattern, text) else 0


def balanced(joiner: str, parts: list[str]) -> str:
    """Join conditions as a balanced tree, so SQLite's expression depth stays logarithmic."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({balanced(joiner, parts[:middle])}{joiner}{balanced(joiner, parts[middle:])})"


class _NotAKeySet(Exception):
    """The filter cannot be written as a compound SELECT of keys."""


def predicate(tree: Node, cid: int) -> tuple[str, list[Any]]:
    """The boolean SQL on `r` of a filter tree for collection `cid`, and its parameters."""
    renderer = _Renderer(cid)
    return renderer.predicate(tree), renderer.params


def key_set(tree: Node, cid: int) -> tuple[str, list[Any]] | None:
    """A SELECT of the keys matching `tree` over the covering metadata index, if it has one.

    Only for positive metadata terms joined by $and / $or, at most MAX_KEY_SET_TERMS of
    them: $and becomes INTERSECT and $or UNION. None for anything else (negations,
    documents), which the predicate form handles.
    """
    renderer = _Renderer(cid)
    try:
        sql = renderer.key_set(tree)
    except _NotAKeySet:
        return None
    return (sql, renderer.params) if renderer.selects <= MAX_KEY_SET_TERMS else None


class _Renderer:
    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.params: list[Any] = []
        self.selects = 0

    def predicate(self, node: Node) -> str:
        if isinstance(node, Logical):
            joiner = " AND " if node.op == "$and" else " OR "
            return balanced(joiner, [self.predicate(child) for child in node.children])
        if isinstance(node, MetaTerm):
            sql = f"r.key IN ({self._meta_select(node)})"
            return sql if positive(node.op) == node.op else f"NOT {sql}"
        if isinstance(node, FieldTerm):
            sql = self._field(node)
            return sql if positive(node.op) == node.op else f"NOT {sql}"
        return self._document(node)

    def key_set(self, node: Node) -> str:
        if isinstance(node, Logical):
            joiner = " INTERSECT " if node.op == "$and" else " UNION "
            return joiner.join(f"SELECT key FROM ({self.key_set(c)})" for c in node.children)
        if not isinstance(node, MetaTerm) or positive(node.op) != node.op:
            raise _NotAKeySet
        return self._meta_select(node)

    def _field(self, term: FieldTerm) -> str:
        """Whether the record's document or uri is one of the term's strings (false, never
        NULL, for a record without it; the column's binary collation: exact equality)."""
        column = f"r.{term.field}"  # the records column of that name
        self.params.extend(term.values)
        marks = ", ".join("?" for _ in term.values)
        return f"coalesce({column} IN ({marks}), 0)"

    def _meta_select(self, term: MetaTerm) -> str:
        """The keys whose metadata satisfies the positive form of `term`."""
        self.selects += 1
        op = positive(term.op)
        if op in COMPARISONS:
            cond = f"value {_COMPARE_SQL[op]} ?"
        elif op == "$in":
            cond = f"value IN ({', '.join('?' for _ in term.values)})"
        else:
            cond = "value = ?"
        self.params.extend((self.cid, term.key, term.kind, int(term.is_array), *term.values))
        # An array may hold a value twice: one key per record.
        distinct = "DISTINCT " if term.is_array else ""
        return (
            f"SELECT {distinct}key FROM record_meta WHERE cid = ? AND name = ? AND kind = ? "
            f"AND is_array = ? AND {cond}"
        )

    def _document(self, term: DocTerm) -> str:
        if positive(term.op) == "$regex":
            self.params.append(term.text)
            sql = "huedb_regexp(?, r.document)"
        else:
            sql = self._substring(term.text)
        return sql if positive(term.op) == term.op else f"NOT ({sql})"

    def _substring(self, text: str) -> str:
        """Case-sensitive substring test, narrowed by the trigram index when it helps (and
        the text can be written as its query)."""
        exact = "coalesce(instr(r.document, ?), 0) > 0"
        # The full-text index's query syntax cannot hold a NUL (an "unterminated string").
        if not MIN_INDEXED_SUBSTRING <= len(text) <= MAX_INDEXED_SUBSTRING or "\0" in text:
            self.params.append(text)
            return exact
        self.params.extend((trigram_query(text), text))
        return (
            f"(r.key IN (SELECT rowid FROM documents_fts WHERE documents_fts MATCH ?) AND {exact})"
        )
