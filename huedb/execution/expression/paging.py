"""`Limit` (offset and page size) and `Select` (the fields returned) of a search."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from huedb.execution.expression.where import Key, key_name

_SPECIAL_KEYS = {k.name: k for k in (Key.ID, Key.DOCUMENT, Key.EMBEDDING, Key.METADATA, Key.SCORE)}


@dataclass(frozen=True)
class Limit:
    """Skip `offset` ranked records, then return at most `limit` (None: all the rest)."""

    offset: int = 0
    limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """`{"offset": o}`, plus `"limit"` when set."""
        wire: dict[str, Any] = {"offset": self.offset}
        if self.limit is not None:
            wire["limit"] = self.limit
        return wire

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Limit:
        """Build from `{"offset": o, "limit": n}` (offset >= 0, limit > 0, both optional)."""
        if not isinstance(data, dict):
            raise TypeError(f"Expected dict for Limit, got {type(data).__name__}")
        offset = data.get("offset", 0)
        if not isinstance(offset, int):
            raise TypeError(f"Limit offset must be an integer, got {type(offset).__name__}")
        if offset < 0:
            raise ValueError(f"Limit offset must be non-negative, got {offset}")
        limit = data.get("limit")
        if limit is not None:
            if not isinstance(limit, int):
                raise TypeError(f"Limit limit must be an integer, got {type(limit).__name__}")
            if limit <= 0:
                raise ValueError(f"Limit limit must be positive, got {limit}")
        unexpected = set(data) - {"offset", "limit"}
        if unexpected:
            raise ValueError(f"Unexpected keys in Limit dict: {unexpected}")
        return Limit(offset=offset, limit=limit)


@dataclass(frozen=True)
class Select:
    """The fields returned besides ids: `Key.DOCUMENT`, `Key.EMBEDDING`, `Key.METADATA`,
    `Key.SCORE`, or metadata keys. A set: order and repeats do not matter (huedb keeps the
    caller's order, without repeats, where chromadb sends set order)."""

    keys: Iterable[Key | str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        unique: dict[str, Key | str] = {}
        for k in self.keys:
            unique.setdefault(key_name(k), k)
        object.__setattr__(self, "keys", tuple(unique.values()))

    def to_dict(self) -> dict[str, Any]:
        """`{"keys": [names]}`."""
        return {"keys": [key_name(k) for k in self.keys]}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Select:
        """Build from `{"keys": [...]}`; the five `#` names become the `Key` constants."""
        if not isinstance(data, dict):
            raise TypeError(f"Expected dict for Select, got {type(data).__name__}")
        keys = data.get("keys", [])
        if not isinstance(keys, list | tuple | set):
            raise TypeError(f"Select keys must be a list/tuple/set, got {type(keys).__name__}")
        for k in keys:
            if not isinstance(k, str):
                raise TypeError(f"Select key must be a string, got {type(k).__name__}")
        unexpected = set(data) - {"keys"}
        if unexpected:
            raise ValueError(f"Unexpected keys in Select dict: {unexpected}")
        return Select(keys=[_SPECIAL_KEYS.get(k) or Key(k) for k in keys])
