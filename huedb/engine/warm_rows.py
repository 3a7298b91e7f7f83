"""The rows of a one-statement warm read, as both stores' `rows_at_head` return them.

Each store sends one SELECT whose rows are all laid out alike: the collection's columns
(`COLLECTION_COLUMNS`) and its oplog head, then a tag `n`, then a record's `(key, id,
document, uri, metadata, vector)`. The collection's own row has tag NULL (and no record);
a record asked for by key has tag 0 (its vector only when asked for); a record found
through probe `n`'s vector digest has tag `n` and its vector, compared here with the probe
(a digest is no proof). This module reads such rows back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from huedb.bounded_cache import BoundedCache
from huedb.engine.catalog import COLLECTION_COLUMNS, CollectionRow, collection_row
from huedb.engine.store import RowsAtHead

COLLECTION_WIDTH = len(COLLECTION_COLUMNS.split(","))  # a row's columns before the head
TAG = COLLECTION_WIDTH + 1  # the position of the tag `n`


def probe_blobs(probes: np.ndarray | None) -> list[bytes]:
    """The stored bytes of each probe vector."""
    vectors = () if probes is None else probes
    return [np.ascontiguousarray(p, np.float32).tobytes() for p in vectors]


def matched_rows(
    tagged: Iterable[Sequence], blobs: list[bytes]
) -> tuple[dict[int, tuple], list[list[int]]]:
    """Rows by key (the keys asked for, and the probes' exact matches) and per probe its
    matches' keys, from `(n, *record)` rows; a record found by a probe's digest counts only
    when its vector equals the probe."""
    by_key: dict[int, tuple] = {}
    matches: list[list[int]] = [[] for _ in blobs]
    for n, *record in tagged:
        if n == 0:
            by_key[record[0]] = tuple(record)
        elif record[5] == blobs[n - 1]:
            by_key[record[0]] = tuple(record)
            matches[n - 1].append(record[0])
    return by_key, matches


class WarmRows:
    """Reads a store's warm-read rows, decoding a collection's row again only when its
    stored columns changed (a warm query reads it every time; decoding its JSON columns
    cost ~15 us)."""

    def __init__(self) -> None:
        # uuid -> (stored columns, their row); bounded as a server sees collections come and go
        self._known: BoundedCache[str, tuple[tuple, CollectionRow]] = BoundedCache(4096)

    def result(self, uuid: str, rows: list[tuple], blobs: list[bytes]) -> RowsAtHead:
        """The `RowsAtHead` of collection `uuid`'s warm-read rows (see the module)."""
        stored = next((row[:TAG] for row in rows if row[TAG] is None), None)
        if stored is None:  # the collection is gone
            self._known.pop(uuid)
            return RowsAtHead(None, 0, {}, [])
        tagged = (row[TAG:] for row in rows if row[TAG] is not None)
        by_key, matches = matched_rows(tagged, blobs)
        return RowsAtHead(self._collection(stored[:-1]), stored[-1] or 0, by_key, matches)

    def _collection(self, columns: tuple) -> CollectionRow:
        known = self._known.get(columns[1])
        if known is not None and known[0] == columns:
            return known[1]
        row = collection_row(columns)
        self._known.put(row.uuid, (columns, row))
        return row
