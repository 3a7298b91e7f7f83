"""`GroupBy` with its aggregates `MinK` / `MaxK`: keep the best `k` records of each group."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from huedb.execution.expression.where import Key, key_name

KeyOrKeys = Key | str | Sequence[Key | str]


def _names(keys: KeyOrKeys) -> list[str]:
    """One key or a list of keys, as names (as chromadb: only a list counts as many)."""
    return [key_name(k) for k in keys] if isinstance(keys, list | tuple) else [key_name(keys)]


@dataclass(frozen=True)
class Aggregate:
    """Which records of a group are kept."""

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Aggregate:
        """Build from `{"$min_k": {"keys": [...], "k": n}}` or `{"$max_k": ...}`."""
        if not isinstance(data, dict):
            raise TypeError(f"Expected dict for Aggregate, got {type(data).__name__}")
        if not data:
            raise ValueError("Aggregate dict cannot be empty")
        if len(data) != 1:
            raise ValueError(f"Aggregate dict must contain exactly one operator, got {len(data)}")
        op, body = next(iter(data.items()))
        kinds = {"$min_k": MinK, "$max_k": MaxK}
        if op not in kinds:
            raise ValueError(f"Unknown aggregate operator: {op}")
        if not isinstance(body, dict):
            raise TypeError(f"{op} requires a dict, got {type(body).__name__}")
        for name in ("keys", "k"):
            if name not in body:
                raise ValueError(f"{op} requires '{name}' field")
        keys, k = body["keys"], body["k"]
        if not isinstance(keys, list | tuple):
            raise TypeError(f"{op} keys must be a list, got {type(keys).__name__}")
        if not keys:
            raise ValueError(f"{op} keys cannot be empty")
        if not isinstance(k, int):
            raise TypeError(f"{op} k must be an integer, got {type(k).__name__}")
        if k <= 0:
            raise ValueError(f"{op} k must be positive, got {k}")
        return kinds[op]([Key(n) if isinstance(n, str) else n for n in keys], k)

    def to_dict(self) -> dict[str, Any]:
        """The aggregate JSON sent on the wire."""
        raise NotImplementedError("Subclasses must implement to_dict()")


@dataclass(frozen=True)
class _KAggregate(Aggregate):
    op: ClassVar[str]
    keys: KeyOrKeys
    k: int

    def __post_init__(self) -> None:
        if isinstance(self.keys, list):
            object.__setattr__(self, "keys", tuple(self.keys))

    def to_dict(self) -> dict[str, Any]:
        return {self.op: {"keys": _names(self.keys), "k": self.k}}


@dataclass(frozen=True)
class MinK(_KAggregate):
    """Keep the `k` records with the smallest values of `keys` (a tuple, compared in order)."""

    op = "$min_k"


@dataclass(frozen=True)
class MaxK(_KAggregate):
    """Keep the `k` records with the largest values of `keys`."""

    op = "$max_k"


@dataclass(frozen=True)
class GroupBy:
    """Group ranked records by the values of `keys`; keep what `aggregate` selects of each."""

    keys: KeyOrKeys = ()
    aggregate: Aggregate | None = None

    def __post_init__(self) -> None:
        if isinstance(self.keys, list):
            object.__setattr__(self, "keys", tuple(self.keys))

    def to_dict(self) -> dict[str, Any]:
        """`{}` unless both keys and aggregate are set."""
        if not self.keys or self.aggregate is None:
            return {}
        return {"keys": _names(self.keys), "aggregate": self.aggregate.to_dict()}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> GroupBy:
        """Build from `{}` (no grouping) or `{"keys": [...], "aggregate": {...}}`."""
        if not isinstance(data, dict):
            raise TypeError(f"Expected dict for GroupBy, got {type(data).__name__}")
        if not data:
            return GroupBy()
        for name in ("keys", "aggregate"):
            if name not in data:
                raise ValueError(f"GroupBy requires '{name}' field")
        keys, aggregate = data["keys"], data["aggregate"]
        if not isinstance(keys, list | tuple):
            raise TypeError(f"GroupBy keys must be a list, got {type(keys).__name__}")
        if not keys:
            raise ValueError("GroupBy keys cannot be empty")
        if not isinstance(aggregate, dict):
            raise TypeError(f"GroupBy aggregate must be a dict, got {type(aggregate).__name__}")
        return GroupBy(
            [Key(n) if isinstance(n, str) else n for n in keys], Aggregate.from_dict(aggregate)
        )
