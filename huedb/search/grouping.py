"""`group_by` on ranked records (shared/chroma-search-api.md, 3.6).

Records are grouped by the tuple of their values for the group keys (a missing value is a
group of its own; `1` and `1.0` are different groups). Each group keeps its first `k`
records sorted by the aggregate keys (metadata values, or the score for `#score`):
ascending for `$min_k`, descending for `$max_k`, ties in rank order. Values compare by type
first (None < bool < int < float < str < sparse vector < array), then by value; a NaN score
is above every other (as in the rank order, where it comes last). The kept records are
returned in rank order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from huedb.search.plan import Grouping
from huedb.search.ranks import score_order, score_value
from huedb.search.sparse_knn import stored_sparse

SCORE_KEY = "#score"
Scored = tuple[int, np.float32]


def ordered_value(value: Any) -> tuple[Any, ...]:
    """A metadata value as a comparable, hashable tuple: (type rank, value)."""
    if value is None:
        return (0,)
    if isinstance(value, bool):
        return (1, value)
    if isinstance(value, int):
        return (2, value)
    if isinstance(value, float):
        return (3, value)
    if isinstance(value, str):
        return (4, value)
    sparse = stored_sparse(value)
    if sparse is not None:
        return (5, tuple(sparse[0]), tuple(sparse[1]))
    if isinstance(value, list):
        return (6, tuple(ordered_value(v) for v in value))
    return (7, repr(value))


def group(
    ranked: list[Scored], metadata_of: dict[int, dict[str, Any] | None], grouping: Grouping
) -> list[Scored]:
    """The records `grouping` keeps of `ranked` (sorted by score), in rank order."""
    groups: dict[tuple[Any, ...], list[Scored]] = {}
    for record in ranked:
        metadata = metadata_of.get(record[0]) or {}
        key = tuple(ordered_value(metadata.get(k)) for k in grouping.keys)
        groups.setdefault(key, []).append(record)
    aggregate = grouping.aggregate

    def sort_key(record: Scored) -> tuple[Any, ...]:
        metadata = metadata_of.get(record[0]) or {}
        return tuple(
            (3, *score_value(record[1])) if k == SCORE_KEY else ordered_value(metadata.get(k))
            for k in aggregate.keys
        )

    kept: list[Scored] = []
    for members in groups.values():
        members.sort(key=sort_key, reverse=aggregate.op == "$max_k")
        kept.extend(members[: aggregate.k])
    kept.sort(key=lambda r: score_order(*r))
    return kept
