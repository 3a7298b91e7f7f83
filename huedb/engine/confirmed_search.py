"""An unfiltered query on an index already in memory, confirmed by one store read afterwards.

The usual path reads the collection's row and oplog head, catches the index up, searches,
and then reads rows: several statements, each a round trip on PostgreSQL. When this process
already holds the collection's index, the search can run first, on the index as it is, and
one read in one snapshot (`Store.rows_at_head`) then fetches what the answer needs (rows,
graph candidates' vectors, records holding the query vector itself) together with the
collection's row and oplog head. If the row and head are those the index reflects, the
index equalled the table in that snapshot, so the answer is exactly what the usual path
would have given at that moment. Otherwise (another process wrote meanwhile, the collection
changed or is gone) the caller falls back to the usual path, which catches up first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from huedb.engine.catalog import CollectionRow
from huedb.engine.record_values import vectors_in_order
from huedb.engine.store import RowsAtHead, Store
from huedb.engine.vector_index import SearchHits, VectorIndex


@dataclass(frozen=True)
class WarmIndex:
    """What a process holds for a collection: its row, index and the oplog head it reflects."""

    collection: CollectionRow
    index: VectorIndex
    watermark: int


def confirmed_search(
    store: Store,
    warm: WarmIndex,
    queries: np.ndarray,
    n_results: int,
    with_vectors: bool,
    timeout: float,
) -> tuple[list[SearchHits], dict[int, tuple]] | None:
    """Per query the best keys and distances, and the rows by key (with vectors when asked),
    or None when the store's snapshot is not the one the index reflects."""
    index, col = warm.index, warm.collection
    assert col.dimension is not None
    graph = index.uses_graph
    if graph:
        found = [index.graph_candidates(q, n_results) for q in queries]
        keys = np.unique(np.concatenate(found)) if found else np.empty(0, np.uint64)
    else:
        hits = [index.search(q, n_results, None, _no_fetch) for q in queries]
        keys = np.unique(np.concatenate([h[0] for h in hits]))
    need_vectors = with_vectors or (graph and not index.has_vectors)
    seen = store.rows_at_head(col, keys.tolist(), queries if graph else None, need_vectors, timeout)
    if not _reflects(seen, warm):
        return None
    if graph:

        def fetch(wanted: np.ndarray) -> np.ndarray:
            stored = {int(k): seen.rows[int(k)][5] for k in wanted}
            return vectors_in_order(stored, [int(k) for k in wanted], col.dimension)

        hits = []
        for q, candidates, same in zip(queries, found, seen.same_vector, strict=True):
            ranked = index.rank(q, n_results, candidates, fetch)
            hits.append(index.with_exact_matches(q, n_results, ranked, same, fetch))
    answered = {int(k) for h in hits for k in h[0]}
    if not answered <= seen.rows.keys():
        return None  # cannot happen when the head matched; the usual path decides then
    width = 6 if with_vectors else 5
    return hits, {k: seen.rows[k][:width] for k in answered}


def _reflects(seen: RowsAtHead, warm: WarmIndex) -> bool:
    """Whether the snapshot read is the one the index reflects (same row, same head)."""
    return seen.collection == warm.collection and seen.head == warm.watermark


def _no_fetch(keys: np.ndarray) -> np.ndarray:
    """The fetch of an exact index's search, which holds every vector itself."""
    raise RuntimeError("an exact index searched without a filter reads no stored vector")
