"""`Search`: one search of `Collection.search`, an immutable builder.

`Search(where, rank, group_by, limit, select)` takes expression objects or their dicts;
each builder method (`where`, `rank`, `group_by`, `limit`, `select`, `select_all`) returns a
new `Search`. `to_dict()` is the payload the Search route takes (all five fields).
"""

from __future__ import annotations

from typing import Any

from huedb.execution.expression.grouping import GroupBy
from huedb.execution.expression.paging import Limit, Select
from huedb.execution.expression.rank import Rank
from huedb.execution.expression.where import Key, Where

WhereLike = Where | dict[str, Any] | None
RankLike = Rank | dict[str, Any] | None
GroupByLike = GroupBy | dict[str, Any] | None
LimitLike = Limit | dict[str, Any] | int | None
SelectLike = Select | dict[str, Any] | list[Any] | set[Any] | None


class Search:
    """Filter (`where`), rank, group, page (`limit`) and the fields returned (`select`)."""

    __slots__ = ("_group_by", "_limit", "_rank", "_select", "_where")

    def __init__(
        self,
        where: WhereLike = None,
        rank: RankLike = None,
        group_by: GroupByLike = None,
        limit: LimitLike = None,
        select: SelectLike = None,
    ):
        _set = object.__setattr__
        _set(self, "_where", _where(where))
        _set(self, "_rank", _rank(rank))
        _set(self, "_group_by", _group_by(group_by))
        _set(self, "_limit", _limit(limit))
        _set(self, "_select", _select(select))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Search is immutable: its builder methods return a new Search")

    def __repr__(self) -> str:
        return f"Search({self.to_dict()!r})"

    def to_dict(self) -> dict[str, Any]:
        """The search payload: `filter`, `rank`, `group_by`, `limit`, `select`."""
        return {
            "filter": self._where.to_dict() if self._where is not None else None,
            "rank": self._rank.to_dict() if self._rank is not None else None,
            "group_by": self._group_by.to_dict(),
            "limit": self._limit.to_dict(),
            "select": self._select.to_dict(),
        }

    def _with(self, **changes: Any) -> Search:
        fields = {
            "where": self._where,
            "rank": self._rank,
            "group_by": self._group_by,
            "limit": self._limit,
            "select": self._select,
        }
        return Search(**{**fields, **changes})

    def where(self, where: WhereLike) -> Search:
        """This search with another filter."""
        return self._with(where=where)

    def rank(self, rank_expr: RankLike) -> Search:
        """This search with another rank expression."""
        return self._with(rank=rank_expr)

    def group_by(self, group_by: GroupByLike) -> Search:
        """This search with another grouping."""
        return self._with(group_by=group_by)

    def limit(self, limit: int, offset: int = 0) -> Search:
        """This search with another page (not checked here, as in chromadb)."""
        return self._with(limit=Limit(offset=offset, limit=limit))

    def select(self, *keys: Key | str) -> Search:
        """This search returning `keys` (replacing the selection)."""
        return self._with(select=Select(keys=keys))

    def select_all(self) -> Search:
        """This search returning document, embedding, metadata and score."""
        return self._with(
            select=Select(keys=(Key.DOCUMENT, Key.EMBEDDING, Key.METADATA, Key.SCORE))
        )


def _where(where: WhereLike) -> Where | None:
    if where is None or isinstance(where, Where):
        return where
    if isinstance(where, dict):
        return Where.from_dict(where)
    raise TypeError(f"where must be a Where object, dict, or None, got {type(where).__name__}")


def _rank(rank: RankLike) -> Rank | None:
    if rank is None or isinstance(rank, Rank):
        return rank
    if isinstance(rank, dict):
        return Rank.from_dict(rank)
    raise TypeError(f"rank must be a Rank object, dict, or None, got {type(rank).__name__}")


def _group_by(group_by: GroupByLike) -> GroupBy:
    if group_by is None:
        return GroupBy()
    if isinstance(group_by, GroupBy):
        return group_by
    if isinstance(group_by, dict):
        return GroupBy.from_dict(group_by)
    raise TypeError(
        f"group_by must be a GroupBy object, dict, or None, got {type(group_by).__name__}"
    )


def _limit(limit: LimitLike) -> Limit:
    if limit is None:
        return Limit()
    if isinstance(limit, Limit):
        return limit
    if isinstance(limit, int):
        return Limit.from_dict({"limit": limit, "offset": 0})
    if isinstance(limit, dict):
        return Limit.from_dict(limit)
    raise TypeError(f"limit must be a Limit object, dict, int, or None, got {type(limit).__name__}")


def _select(select: SelectLike) -> Select:
    if select is None:
        return Select()
    if isinstance(select, Select):
        return select
    if isinstance(select, dict):
        return Select.from_dict(select)
    if isinstance(select, list | set):
        return Select.from_dict({"keys": list(select)})
    raise TypeError(
        f"select must be a Select object, dict, list, set, or None, got {type(select).__name__}"
    )
