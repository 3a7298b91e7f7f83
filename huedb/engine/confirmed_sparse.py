"""A sparse `$knn` on a sparse index already in memory, confirmed by the store in one read.

The usual path (`Engine.sparse_knn`) opens a read session, reads the collection's row and
oplog head, catches the index up, searches and reads the answers' rows: several statements.
When this process already holds the collection's sparse index for the key, the search can
run first, on the index as it is (at its watermark), and one statement
(`Store.rows_at_head`, as the dense `confirmed_search` uses) then reads the collection's
row and oplog head, with the answers' rows when the caller wants more than ids. If the row
and head are those the index reflects, the index equalled the table in that snapshot
(every committed change of the collection is at or below the head, none is missing from
the index), so the answer is exactly what the usual path would have given at that moment.
Otherwise (another process wrote meanwhile, the collection changed or is gone) the caller
falls back to the usual path, which catches up first. Unfiltered searches only: a filter's
allowed keys are read by the usual path.
"""

from __future__ import annotations

from huedb.engine.sparse_index import SparseIndexes, id_rows
from huedb.engine.store import Store

Found = tuple[list[tuple[int, float]], dict[int, tuple]]  # (key, measure) best first, rows


def confirmed_sparse_top(
    store: Store,
    indexes: SparseIndexes,
    collection_uuid: str,
    key: str,
    weights: dict[int, float],
    bm25: bool,
    limit: int,
    with_rows: bool,
    timeout: float,
) -> Found | None:
    """The `limit` best records of the held column of `key` and their rows ((key, id) only
    without `with_rows`, from the index's ids), or None when this process holds no such
    column or the store's snapshot is not the one the index reflects."""
    held = indexes.warm(collection_uuid, key)
    if held is None:
        return None
    state, column = held
    found = column.search(weights, state.n_records if bm25 else None, limit, None)
    keys = [k for k, _ in found]
    rows = None if with_rows else id_rows(state.ids, found)
    seen = store.rows_at_head(state.col, keys if rows is None else [], None, False, timeout)
    if seen.head != state.watermark or not (
        seen.collection is state.col or seen.collection == state.col
    ):
        return None
    state.col = seen.collection  # the store's reads return this object while it is unchanged
    if rows is None:
        rows = seen.rows
        if not rows.keys() >= set(keys):
            return None  # cannot happen when the head matched; the usual path decides then
    indexes.counts["confirmed"] += 1
    return found, rows
