"""A query on an index already in memory, confirmed by the store in the snapshot of its reads.

The usual path reads the collection's row and oplog head, catches the index up, searches,
and then reads rows: several statements, each a round trip on PostgreSQL. When this process
already holds the collection's index, the search can run first, on the index as it is, and
one read in one snapshot (`Store.rows_at_head`, or `Store.confirm_at_head`, which may send
its statement before the search) then fetches what the answer needs (rows, graph
candidates' vectors, records holding the query vector itself) together with the
collection's row and oplog head. If the row and head are those the index reflects, the
index equalled the table in that snapshot, so the answer is exactly what the usual path
would have given at that moment. Otherwise (another process wrote meanwhile, the collection
changed or is gone) the caller falls back to the usual path, which catches up first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from huedb.engine.budget import check_query_results
from huedb.engine.catalog import CollectionRow
from huedb.engine.filters import RecordFilter
from huedb.engine.record_values import vectors_in_order
from huedb.engine.store import FilteredRead, RowsAtHead, Store
from huedb.engine.vector_index import APPROXIMATE_PLANS, SearchHits, VectorIndex, query_plan
from huedb.options import EngineOptions


@dataclass(frozen=True)
class WarmIndex:
    """What a process holds for a collection: its row, index and the oplog head it reflects."""

    collection: CollectionRow
    index: VectorIndex
    watermark: int


Answer = tuple[list[SearchHits], dict[int, tuple], str]  # hits per query, rows by key, plan


def confirmed_search(
    store: Store,
    warm: WarmIndex,
    queries: np.ndarray,
    n_results: int,
    with_vectors: bool,
    timeout: float,
) -> Answer | None:
    """Per query the best keys and distances, the rows by key (with vectors when asked) and
    the plan, or None when the store's snapshot is not the one the index reflects.

    An index holding its float32 vectors ranks before it reads, so only the answers' rows
    (and the records holding a query vector itself) are read; an index without them reads
    its candidates' vectors and ranks after."""
    index, col = warm.index, warm.collection
    assert col.dimension is not None
    graph = index.uses_graph
    if not index.has_vectors:
        return _read_then_ranked(store, warm, queries, n_results, with_vectors, timeout)
    probes = queries if graph else None
    with store.confirm_at_head(col, warm.watermark, probes, with_vectors, timeout) as read:
        if graph:
            hits = [
                index.rank(q, n_results, index.graph_candidates(q, n_results), _no_fetch)
                for q in queries
            ]
        else:
            hits = [index.search(q, n_results, None, _no_fetch) for q in queries]
        seen = read.rows(_keys_found([h[0] for h in hits]))
    if not _reflects(seen, warm):
        return None
    if graph:  # an exact search cannot miss the vector itself
        hits = [
            index.with_exact_matches(q, n_results, h, same, _no_fetch)
            for q, h, same in zip(queries, hits, seen.same_vector, strict=True)
        ]
    return _answer(hits, seen.rows, with_vectors, query_plan(index, None))


def _read_then_ranked(
    store: Store,
    warm: WarmIndex,
    queries: np.ndarray,
    n_results: int,
    with_vectors: bool,
    timeout: float,
) -> Answer | None:
    """`confirmed_search` on an index without float32 vectors: its candidates' rows (the
    graph's, or those its 16-bit rows shortlist) are read with their vectors, which then
    rank them."""
    index, col = warm.index, warm.collection
    found = [index.candidates(q, n_results) for q in queries]
    keys = _keys_found(found)
    seen = store.rows_at_head(col, keys, queries, True, timeout)
    if not _reflects(seen, warm):
        return None

    fetch = _stored_vectors(seen.rows, index.dim)
    hits = []
    for q, candidates, same in zip(queries, found, seen.same_vector, strict=True):
        ranked = index.rank(q, n_results, candidates, fetch)
        hits.append(index.with_exact_matches(q, n_results, ranked, same, fetch))
    return _answer(hits, seen.rows, with_vectors, query_plan(index, None))


def confirmed_filtered_search(
    store: Store,
    warm: WarmIndex,
    queries: np.ndarray,
    n_results: int,
    flt: RecordFilter,
    with_vectors: bool,
    options: EngineOptions,
) -> Answer | None:
    """The same for a filtered query: the allowed keys are read first, with the row and
    head that confirm the index, and the rows after the search, in the same snapshot (or
    the keys kept from an earlier snapshot at the index's head, confirmed by the rows'
    read: see `Store.read_filtered`).

    Only for an index holding its float32 vectors, or one whose 16-bit rows (its own, or
    its snapshot's) rank the allowed keys first (`_ranked_after_read`; the usual path gives
    other graphs their vectors), and a filter the store reads in one statement.
    """
    index, col = warm.index, warm.collection
    in_place = not index.has_vectors
    if in_place and not index.ranks_subsets_in_place:
        return None
    with store.read_filtered(col, flt, warm.watermark, options.query_timeout) as read:
        if read is None or not _reflects(read, warm):
            return None
        allowed = read.allowed
        check_query_results(options, len(queries), min(n_results, len(allowed)))
        plan = query_plan(index, allowed)
        approximate = plan in APPROXIMATE_PLANS
        if in_place:
            return _ranked_after_read(read, warm, queries, n_results, with_vectors, plan)
        hits = [index.search(q, n_results, allowed, _no_fetch) for q in queries]
        keys = _keys_found([h[0] for h in hits])
        rows, same = read.rows(keys, queries if approximate else None, with_vectors)
        if not _reflects(read, warm):
            return None  # kept keys (see Store.read_filtered) the rows' snapshot disowned
    if approximate:  # an exact search cannot miss the vector itself
        hits = _with_allowed_matches(index, queries, n_results, hits, same, allowed, _no_fetch)
    return _answer(hits, rows, with_vectors, plan)


def _ranked_after_read(
    read: FilteredRead,
    warm: WarmIndex,
    queries: np.ndarray,
    n_results: int,
    with_vectors: bool,
    plan: str,
) -> Answer | None:
    """A filtered search on an index without float32 vectors: an exact one ranks the
    allowed keys with 16-bit rows (the snapshot's, or those the index holds), a graph
    search takes the graph's allowed candidates; only the keys that may be in an answer
    are read (the open read's one `rows`), with their vectors, which then rank them."""
    index, allowed = warm.index, read.allowed
    approximate = plan in APPROXIMATE_PLANS
    found = [_filtered_candidates(index, q, n_results, allowed, approximate) for q in queries]
    keys = _keys_found(found)
    rows, same = read.rows(keys, queries if approximate else None, True)
    if not _reflects(read, warm) or not rows.keys() >= set(keys):
        return None
    fetch = _stored_vectors(rows, index.dim)
    hits = [index.rank(q, n_results, c, fetch) for q, c in zip(queries, found, strict=True)]
    if approximate:  # an exact search cannot miss the vector itself (its row was read too)
        hits = _with_allowed_matches(index, queries, n_results, hits, same, allowed, fetch)
    return _answer(hits, rows, with_vectors, plan)


def _with_allowed_matches(
    index: VectorIndex,
    queries: np.ndarray,
    k: int,
    hits: list[SearchHits],
    same: list[list[int]],
    allowed: np.ndarray,
    fetch: Callable[[np.ndarray], np.ndarray],
) -> list[SearchHits]:
    """Each query's hits with the allowed records holding the query vector itself merged
    in (`VectorIndex.with_exact_matches`)."""
    return [
        index.with_exact_matches(q, k, h, [key for key in matches if np.isin(key, allowed)], fetch)
        for q, h, matches in zip(queries, hits, same, strict=True)
    ]


def _filtered_candidates(
    index: VectorIndex, query: np.ndarray, k: int, allowed: np.ndarray, approximate: bool
) -> np.ndarray:
    """The keys whose vectors rank a filtered search's answer (`_ranked_after_read`)."""
    if approximate:
        candidates = index.filtered_graph_candidates(query, k, allowed)
        if candidates is not None:
            return candidates
    return index.exact_candidates(query, k, allowed)


def _stored_vectors(rows: dict[int, tuple], dim: int) -> Callable[[np.ndarray], np.ndarray]:
    """A fetch of the vectors of rows read with them (a row's sixth column)."""

    def fetch(wanted: np.ndarray) -> np.ndarray:
        stored = {int(k): rows[int(k)][5] for k in wanted}
        return vectors_in_order(stored, [int(k) for k in wanted], dim)

    return fetch


def _answer(
    hits: list[SearchHits], rows: dict[int, tuple], with_vectors: bool, plan: str
) -> Answer | None:
    answered = {int(k) for h in hits for k in h[0]}
    if not answered <= rows.keys():
        return None  # cannot happen when the head matched; the usual path decides then
    width = 6 if with_vectors else 5
    return hits, {k: rows[k][:width] for k in answered}, plan


def _keys_found(found: list[np.ndarray]) -> list[int]:
    """The keys found for every query, for the read (one query's are distinct already;
    several queries' overlap)."""
    if len(found) <= 1:
        return found[0].tolist() if found else []
    return np.unique(np.concatenate(found)).tolist()


def _reflects(seen: RowsAtHead | FilteredRead, warm: WarmIndex) -> bool:
    """Whether the snapshot read is the one the index reflects (same row, same head)."""
    return seen.collection == warm.collection and seen.head == warm.watermark


def _no_fetch(keys: np.ndarray) -> np.ndarray:
    """The fetch of an index holding every float32 vector itself, which never calls it."""
    raise RuntimeError("an index holding its float32 vectors reads no stored vector")
