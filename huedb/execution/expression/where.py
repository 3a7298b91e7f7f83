"""Filter expressions of the Search API: `Key` and the `Where` nodes its operators build.

`Key("f") == 1` builds `Eq("f", 1)`; `&` and `|` join conditions into `And` / `Or`, flattened
(`a & b & c` is one `And` of three), as chromadb does. Every node is immutable and
serialises with `to_dict()` to the where-dict the Search route takes (`{"f": {"$eq": 1}}`).
Values are not type-checked here: the server does that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Where:
    """Base class of filter expressions; `&` is AND, `|` is OR."""

    def to_dict(self) -> dict[str, Any]:
        """The where-dict sent on the wire."""
        raise NotImplementedError("Subclasses must implement to_dict()")

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Where:
        """Build the expression of a where-dict (`{"f": v}`, `{"f": {"$op": v}}`, `$and`, `$or`)."""
        if not isinstance(data, dict):
            raise TypeError(f"Expected dict for Where, got {type(data).__name__}")
        if not data:
            raise ValueError("Where dict cannot be empty")
        for logical, join in (("$and", Where.__and__), ("$or", Where.__or__)):
            if logical in data:
                return _logical_from_dict(data, logical, join)
        if len(data) != 1:
            raise ValueError(f"Where dict must contain exactly one field, got {len(data)}")
        name, condition = next(iter(data.items()))
        if not isinstance(name, str):
            raise TypeError(f"Field name must be a string, got {type(name).__name__}")
        if not isinstance(condition, dict):
            return Key(name) == condition
        if not condition:
            raise ValueError(f"Operator dict for field '{name}' cannot be empty")
        if len(condition) != 1:
            raise ValueError(f"Operator dict for field '{name}' must contain exactly one operator")
        op, value = next(iter(condition.items()))
        return _condition_from_dict(Key(name), op, value)

    def __and__(self, other: Where) -> And:
        return And(_flat(self, And) + _flat(other, And))

    def __or__(self, other: Where) -> Or:
        return Or(_flat(self, Or) + _flat(other, Or))


def _flat(where: Where, kind: type[And] | type[Or]) -> list[Where]:
    return list(where.conditions) if isinstance(where, kind) else [where]


def _logical_from_dict(data: dict[str, Any], op: str, join: Any) -> Where:
    items = data[op]
    if not isinstance(items, list):
        raise TypeError(f"{op} must be a list, got {type(items).__name__}")
    if not items:
        raise ValueError(f"{op} requires at least one condition")
    if len(data) > 1:
        raise ValueError(f"{op} cannot be combined with other fields in the same dict")
    result = Where.from_dict(items[0])
    for item in items[1:]:
        result = join(result, Where.from_dict(item))
    return result


def _condition_from_dict(key: Key, op: str, value: Any) -> Where:
    simple = {
        "$eq": Key.__eq__,
        "$ne": Key.__ne__,
        "$gt": Key.__gt__,
        "$gte": Key.__ge__,
        "$lt": Key.__lt__,
        "$lte": Key.__le__,
    }
    if op in simple:
        return simple[op](key, value)
    if op in ("$in", "$nin"):
        if not isinstance(value, list):
            raise TypeError(f"{op} requires a list, got {type(value).__name__}")
        return key.is_in(value) if op == "$in" else key.not_in(value)
    if op in ("$contains", "$not_contains"):
        if not isinstance(value, str | int | float | bool):
            raise TypeError(f"{op} requires a str, int, float, or bool, got {type(value).__name__}")
        return key.contains(value) if op == "$contains" else key.not_contains(value)
    if op in ("$regex", "$not_regex"):
        if not isinstance(value, str):
            raise TypeError(f"{op} requires a string pattern, got {type(value).__name__}")
        return key.regex(value) if op == "$regex" else key.not_regex(value)
    raise ValueError(f"Unknown operator: {op}")


@dataclass(frozen=True)
class And(Where):
    """All of `conditions`."""

    conditions: Sequence[Where]

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(self.conditions))

    def to_dict(self) -> dict[str, Any]:
        return {"$and": [c.to_dict() for c in self.conditions]}


@dataclass(frozen=True)
class Or(Where):
    """Any of `conditions`."""

    conditions: Sequence[Where]

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(self.conditions))

    def to_dict(self) -> dict[str, Any]:
        return {"$or": [c.to_dict() for c in self.conditions]}


@dataclass(frozen=True)
class _Compare(Where):
    """`key` compared with `value` by the operator `op` of the subclass."""

    op: ClassVar[str]
    key: str
    value: Any

    def to_dict(self) -> dict[str, Any]:
        return {self.key: {self.op: self.value}}


@dataclass(frozen=True)
class Eq(_Compare):
    op = "$eq"


@dataclass(frozen=True)
class Ne(_Compare):
    op = "$ne"


@dataclass(frozen=True)
class Gt(_Compare):
    op = "$gt"


@dataclass(frozen=True)
class Gte(_Compare):
    op = "$gte"


@dataclass(frozen=True)
class Lt(_Compare):
    op = "$lt"


@dataclass(frozen=True)
class Lte(_Compare):
    op = "$lte"


@dataclass(frozen=True)
class Contains(_Compare):
    """Substring of the document on `#document`; array membership on a metadata key."""

    op = "$contains"


@dataclass(frozen=True)
class NotContains(_Compare):
    op = "$not_contains"


@dataclass(frozen=True)
class _Member(Where):
    op: ClassVar[str]
    key: str
    values: Sequence[Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))

    def to_dict(self) -> dict[str, Any]:
        return {self.key: {self.op: list(self.values)}}


@dataclass(frozen=True)
class In(_Member):
    op = "$in"


@dataclass(frozen=True)
class Nin(_Member):
    op = "$nin"


@dataclass(frozen=True)
class _Pattern(Where):
    op: ClassVar[str]
    key: str
    pattern: str

    def to_dict(self) -> dict[str, Any]:
        return {self.key: {self.op: self.pattern}}


@dataclass(frozen=True)
class Regex(_Pattern):
    op = "$regex"


@dataclass(frozen=True)
class NotRegex(_Pattern):
    op = "$not_regex"


class Key:
    """A field: `#id`, `#document`, `#embedding`, `#metadata`, `#score`, or a metadata key.

    Its comparison operators build filters, so two keys cannot be compared for equality.
    """

    ID: ClassVar[Key]
    DOCUMENT: ClassVar[Key]
    EMBEDDING: ClassVar[Key]
    METADATA: ClassVar[Key]
    SCORE: ClassVar[Key]

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Key({self.name!r})"

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, value: Any) -> Eq:  # type: ignore[override]
        return Eq(self.name, value)

    def __ne__(self, value: Any) -> Ne:  # type: ignore[override]
        return Ne(self.name, value)

    def __gt__(self, value: Any) -> Gt:
        return Gt(self.name, value)

    def __ge__(self, value: Any) -> Gte:
        return Gte(self.name, value)

    def __lt__(self, value: Any) -> Lt:
        return Lt(self.name, value)

    def __le__(self, value: Any) -> Lte:
        return Lte(self.name, value)

    def is_in(self, values: Sequence[Any]) -> In:
        """The field's value is one of `values`."""
        return In(self.name, values)

    def not_in(self, values: Sequence[Any]) -> Nin:
        """The field's value is none of `values` (or the field is missing)."""
        return Nin(self.name, values)

    def regex(self, pattern: str) -> Regex:
        """The field (the document) matches `pattern`."""
        return Regex(self.name, pattern)

    def not_regex(self, pattern: str) -> NotRegex:
        """The field (the document) does not match `pattern`."""
        return NotRegex(self.name, pattern)

    def contains(self, value: Any) -> Contains:
        """Substring of `#document`, or element of an array metadata value."""
        _document_needs_str(self.name, "$contains", value)
        return Contains(self.name, value)

    def not_contains(self, value: Any) -> NotContains:
        """Negation of `contains`."""
        _document_needs_str(self.name, "$not_contains", value)
        return NotContains(self.name, value)


def _document_needs_str(name: str, op: str, value: Any) -> None:
    if name == "#document" and not isinstance(value, str):
        raise TypeError(f"{op} on #document requires a string pattern")


Key.ID = Key("#id")
Key.DOCUMENT = Key("#document")
Key.EMBEDDING = Key("#embedding")
Key.METADATA = Key("#metadata")
Key.SCORE = Key("#score")

K = Key


def key_name(key: Key | str) -> str:
    """The field name of a `Key` or a plain string."""
    return key.name if isinstance(key, Key) else key
