"""The reads of a query on an index already in memory, as calls of one read session (the
SQLite store's `rows_at_head` and `read_filtered`: in-process, so no round trips to save)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from huedb.engine.catalog import CollectionRow
from huedb.engine.filters import RecordFilter
from huedb.engine.sqlite_store.session import SQLiteSession
from huedb.errors import NotFoundError

# The keys a filter allows in the open read, given the collection's row read in it.
AllowedKeys = Callable[[SQLiteSession, CollectionRow, RecordFilter], np.ndarray]


class SessionRead:
    """`engine.store.FilteredRead` over a read session: row, head (and allowed keys for a
    filter, by `allowed_keys`) on creation, then `rows`."""

    def __init__(
        self,
        db: SQLiteSession,
        col: CollectionRow,
        flt: RecordFilter | None,
        allowed_keys: AllowedKeys,
    ) -> None:
        self._db = db
        self._cid = col.cid
        try:
            self.collection: CollectionRow | None = db.collection_by_uuid(col.uuid)
        except NotFoundError:
            self.collection = None
        self.head = 0 if self.collection is None else db.oplog_head(col.cid)
        if self.collection is None or flt is None:
            self.allowed = np.empty(0, np.uint64)
        else:
            self.allowed = allowed_keys(db, self.collection, flt)

    def rows(
        self, keys: Sequence[int], probes: np.ndarray | None, with_vectors: bool
    ) -> tuple[dict[int, tuple], list[list[int]]]:
        if self.collection is None:
            return {}, []
        same = [self._db.keys_with_vector(self._cid, p) for p in (() if probes is None else probes)]
        wanted = sorted({int(k) for k in keys}.union(*same))
        found = self._db.fetch_by_keys(self._cid, wanted, with_vectors) if wanted else {}
        return found, same
