"""The checked request of `Search` objects without their JSON body, for the usual shapes.

`Collection.search` sends a request body that the route parses (`parse.py`). For a search
of the usual shape (no filter, no grouping, no rank or one `Knn` on a dense or sparse vector
query, a page and a selection), `direct_request` builds the same `SearchRequest` straight
from the objects: the plan `parse_search_request(request_body(searches))` would give, with
the same payload rules checked (`parse.check_sparse_query`, in the same order). Anything else (a
filter, a rank expression, a string query, a value the body route would refuse by its
shape) returns None, and the caller takes the body route, which answers or raises as
before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from huedb.execution.expression.plan import Search
from huedb.execution.expression.rank import Knn
from huedb.execution.expression.where import key_name
from huedb.execution.read_level import ReadLevel
from huedb.search.parse import check_sparse_query
from huedb.search.plan import (
    READ_LEVELS,
    DenseQuery,
    KnnNode,
    Page,
    SearchPlan,
    SearchRequest,
    Selection,
    SparseQuery,
)
from huedb.search.wire_errors import U32_MAX
from huedb.sparse_vector import SparseVector

_NUMBERS = {float, int}
MAX_SELECTIONS = 256  # selections remembered (`_selection`)
_SELECTIONS: dict[tuple[Any, ...], Selection] = {}


def direct_request(searches: Any, read_level: Any) -> SearchRequest | None:
    """The checked request of `searches` (one `Search` or a list), or None when one of them
    is not of the usual shape (the body route then handles the call)."""
    items = list(searches) if isinstance(searches, (list, tuple)) else [searches]
    plans = []
    for item in items:
        plan = _plan(item) if type(item) is Search else None
        if plan is None:
            return None
        plans.append(plan)
    # As `collection_search.request_body` (a bad read level raises there too).
    level = READ_LEVELS[0] if read_level is None else ReadLevel(read_level).value
    for i, plan in enumerate(plans):  # the payload rules, in order, once all are read
        if plan.rank is not None and isinstance(plan.rank.query, SparseQuery):
            check_sparse_query(plan.rank.query, f"searches[{i}].rank")
    return SearchRequest(tuple(plans), level)


def _plan(search: Search) -> SearchPlan | None:
    grouping = search._group_by
    if search._where is not None or (grouping.keys and grouping.aggregate is not None):
        return None  # a filter or a grouping: the body route
    rank = search._rank
    knn = None
    if rank is not None:
        knn = _knn(rank) if type(rank) is Knn else None
        if knn is None:
            return None
    page = _page(search._limit.offset, search._limit.limit)
    select = _selection(tuple(key_name(k) for k in search._select.keys))
    if page is None or select is None:
        return None
    return SearchPlan(None, knn, None, page, select)


def _selection(names: tuple[Any, ...]) -> Selection | None:
    """`Selection.of(names)` (remembered: a program asks for the same few selections)."""
    select = _SELECTIONS.get(names)
    if select is None:
        if not set(map(type, names)) <= {str}:
            return None
        if len(_SELECTIONS) >= MAX_SELECTIONS:
            _SELECTIONS.clear()
        select = _SELECTIONS[names] = Selection.of(names)
    return select


def _knn(knn: Knn) -> KnnNode | None:
    query = knn.query
    if isinstance(query, SparseVector):
        found: DenseQuery | SparseQuery | None = _sparse(query)
    elif isinstance(query, np.ndarray):
        found = _dense(query.tolist()) if query.ndim == 1 and query.dtype.kind in "fiu" else None
    else:
        found = _dense(query) if type(query) is tuple else None
    key, limit, default = key_name(knn.key), knn.limit, knn.default
    if (
        found is None
        or type(key) is not str
        or not _u32(limit)
        or type(knn.return_rank) is not bool
        or not (default is None or type(default) in (int, float))
    ):
        return None
    if default is not None:
        try:
            default = float(default)
        except OverflowError:
            return None
    return KnnNode(found, key, limit, default, knn.return_rank)


def _sparse(vector: SparseVector) -> SparseQuery | None:
    indices, values, labels = tuple(vector.indices), tuple(vector.values), vector.labels
    if indices and not (
        set(map(type, indices)) <= {int} and min(indices) >= 0 and max(indices) <= U32_MAX
    ):
        return None
    if not set(map(type, values)) <= _NUMBERS:
        return None
    tokens = None
    if labels is not None:
        tokens = tuple(labels)
        if not set(map(type, tokens)) <= {str}:
            return None
    return SparseQuery(indices, tuple(map(float, values)), tokens)


def _dense(values: list[Any] | tuple[Any, ...]) -> DenseQuery | None:
    if not set(map(type, values)) <= _NUMBERS:
        return None
    return DenseQuery(tuple(map(float, values)))


def _page(offset: Any, limit: Any) -> Page | None:
    if not _u32(offset) or not (limit is None or _u32(limit)):
        return None
    return Page(offset, limit)


def _u32(value: Any) -> bool:
    return type(value) is int and 0 <= value <= U32_MAX
