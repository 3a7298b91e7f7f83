"""Per-process sparse indexes, caught up from the oplog like the dense index (docs/
ARCHITECTURE.md, "Sparse index").

Per collection this process has run a sparse `$knn` on: the set of live record keys (N,
for BM25's IDF), one `PostingColumn` per sparse-vector key searched, the ids of the records
those columns hold (so a search returning only ids and scores reads no record rows), and
the oplog `watermark` they reflect. Inside the search's read session the cache applies the oplog
entries after the watermark: for each changed key it reads the record's current metadata
in the same snapshot and replaces the key's postings (the stores log a record whenever its
vector or one of its sparse metadata values changes). An index older than the collection's
pruned oplog is reloaded from its snapshot (`<index dir>/<uuid>.sparse`, written next to the
graph snapshot under the same lock) or, failing that, built by one scan of the collection.
"""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from huedb.engine import snapshot
from huedb.engine.catalog import CollectionRow
from huedb.engine.filters import RecordFilter
from huedb.engine.sparse_postings import IdMap, KeyMap, PostingColumn, sparse_parts
from huedb.engine.store import StoreSession
from huedb.options import EngineOptions
from huedb.sparse_vector import SPARSE_VECTOR_TYPE_VALUE, TYPE_KEY

logger = logging.getLogger(__name__)

SCAN_PAGE = 5_000  # rows per read when building a column by a scan
SPACE = "sparse"  # the `space` a sparse snapshot's header carries
# The `dim` a sparse snapshot's header carries: its payload's format (3 added the records'
# ids; a snapshot of another format is rebuilt, never read).
FORMAT = 3


def sparse_snapshot_path(directory: Path, collection_uuid: str) -> Path:
    """Where a collection's sparse index snapshot lives."""
    return directory / f"{collection_uuid}{snapshot.SPARSE_SUFFIX}"


@dataclass
class SparseState:
    """One collection's sparse index in this process."""

    col: CollectionRow
    watermark: int
    present: KeyMap = field(default_factory=KeyMap)  # 1 for a live record key
    ids: IdMap = field(default_factory=IdMap)  # at least every key a column holds
    n_records: int = 0
    columns: dict[str, PostingColumn] = field(default_factory=dict)
    unsnapshotted: int = 0
    snapshot_watermark: int = -1  # the watermark of the snapshot on disk it equals, if any
    last_used: int = 0  # the cache's clock at its last search (least recent is evicted first)

    @property
    def nbytes(self) -> int:
        columns = sum(c.nbytes for c in self.columns.values())
        return self.present.nbytes + self.ids.nbytes + columns


class SparseIndexes:
    """The sparse indexes of one process, by collection."""

    def __init__(
        self,
        snapshot_dir: Path | None,
        options: EngineOptions,
        store_id: str = "",
        *,
        exists: Callable[[str], bool],
    ) -> None:
        self._dir = snapshot_dir
        self._store_id = store_id
        self._exists = exists  # whether the store still has a collection (by uuid)
        self._snapshot_every = options.snapshot_every
        self._states: dict[int, SparseState] = {}
        self._pending: dict[int, CollectionRow] = {}
        self.counts = {
            "scans": 0,
            "snapshot_loads": 0,
            "caught_up": 0,
            "evictions": 0,
            "confirmed": 0,  # searches answered by a held index confirmed in one read
        }
        self._clock = itertools.count(1)

    def ready(
        self, db: StoreSession, col: CollectionRow, key: str
    ) -> tuple[SparseState, PostingColumn]:
        """The collection's state and its column for `key`, caught up to the snapshot of
        the read session `db` (loaded or built first when needed)."""
        state = self._states.get(col.cid)
        if state is None or state.watermark < col.pruned_seq or state.col.uuid != col.uuid:
            state = self._states[col.cid] = self._load(db, col)
        state.col = col
        state.last_used = next(self._clock)
        self._catch_up(db, col, state)
        column = state.columns.get(key)
        if column is None:
            column = state.columns[key] = self._scan_column(db, col, state, key)
        if state.unsnapshotted >= max(self._snapshot_every, state.n_records // 10):
            self._pending[col.cid] = col
        return state, column

    def held(self, cid: int) -> SparseState | None:
        """The state this process holds for a collection, if any."""
        return self._states.get(cid)

    def warm(self, collection_uuid: str, key: str) -> tuple[SparseState, PostingColumn] | None:
        """The state and column of `key` this process holds for a collection, as they are
        (not caught up: `confirmed_sparse` confirms them against the store), if any."""
        for state in self._states.values():
            if state.col.uuid == collection_uuid:
                column = state.columns.get(key)
                if column is None:
                    return None
                state.last_used = next(self._clock)
                return state, column
        return None

    def catch_up(self, db: StoreSession, col: CollectionRow) -> None:
        """Catch a held index up (after this process's own write, or before pruning)."""
        state = self._states.get(col.cid)
        if state is None:
            return
        if state.watermark < col.pruned_seq:
            self.forget(col.cid)  # reloaded by its next search
            return
        state.col = col
        self._catch_up(db, col, state)

    def forget(self, cid: int) -> None:
        """Drop a collection's sparse index from memory."""
        self._states.pop(cid, None)
        self._pending.pop(cid, None)

    def collection_uuids(self) -> set[str]:
        """The collections this process holds a sparse index of."""
        return {s.col.uuid for s in self._states.values()}

    def forget_collection(self, collection_uuid: str) -> None:
        """`forget` the index of a collection found deleted (by another process)."""
        for cid in [c for c, s in self._states.items() if s.col.uuid == collection_uuid]:
            self.forget(cid)

    def clear(self) -> None:
        """Drop every sparse index from memory."""
        self._states.clear()
        self._pending.clear()

    def pending(self) -> list[CollectionRow]:
        """Collections whose sparse index should be snapshotted."""
        cols = list(self._pending.values())
        self._pending.clear()
        return cols

    def dirty(self) -> list[CollectionRow]:
        """Collections whose sparse index has changes its snapshot lacks."""
        return [s.col for s in self._states.values() if s.unsnapshotted > 0]

    def resident_bytes(self) -> int:
        """Bytes held by every sparse index of this process."""
        return sum(s.nbytes for s in self._states.values())

    def keep_within(self, budget: int, using: int) -> None:
        """Drop the least recently used sparse indexes, never collection `using`'s, until
        the others fit in `budget` bytes; one with changes its snapshot lacks is snapshotted
        first, so its next search reloads it instead of scanning (outside read sessions)."""
        by_age = sorted(self._states.values(), key=lambda s: s.last_used)
        held = sum(s.nbytes for s in by_age)
        for state in by_age:
            if held <= budget:
                return
            if state.col.cid == using:
                continue
            if state.unsnapshotted:
                self.checkpoint(state.col)
            held -= state.nbytes
            self.forget(state.col.cid)
            self.counts["evictions"] += 1
            logger.info(
                "evicted the sparse index of collection %s (%d bytes) to stay within index_memory",
                state.col.uuid,
                state.nbytes,
            )

    # -- loading ---------------------------------------------------------------------

    def _owner(self, col: CollectionRow) -> str:
        return snapshot.owner_name(self._store_id, col.uuid)

    def _load(self, db: StoreSession, col: CollectionRow) -> SparseState:
        if self._dir is not None:
            path = sparse_snapshot_path(self._dir, col.uuid)
            snap = snapshot.read_snapshot(path, self._owner(col))
            if snap is not None:
                try:
                    if snap.space != SPACE or snap.dim != FORMAT:
                        raise ValueError("not a sparse index snapshot of this format")
                    if snap.watermark < col.pruned_seq:
                        raise ValueError("older than the oplog floor")
                    state = _from_payload(col, snap.watermark, bytes(snap.payload))
                    state.snapshot_watermark = snap.watermark
                    self.counts["snapshot_loads"] += 1
                    logger.info(
                        "loaded the sparse index of collection %s from its snapshot (seq %d)",
                        col.uuid,
                        snap.watermark,
                    )
                    return state
                except (ValueError, KeyError, OSError) as exc:
                    logger.warning("sparse index snapshot %s unusable (%s); rescanning", path, exc)
                    snapshot.discard(path, self._dir, col.uuid, snap)
                finally:
                    snap.payload.release()
                    snap.mapping.close()
        # The head first: the rows read next hold every change up to it (one snapshot).
        state = SparseState(col, db.oplog_head(col.cid))
        keys = np.asarray(db.collection_keys(col.cid), dtype=np.int64)
        state.present.set(keys, 1)
        state.n_records = len(keys)
        return state

    def _scan_column(
        self, db: StoreSession, col: CollectionRow, state: SparseState, key: str
    ) -> PostingColumn:
        """Build the column of `key` from every record (the state is at this snapshot)."""
        pages: list[tuple[np.ndarray, ...]] = []
        offset = 0
        while True:  # by pages, so no more than a page of rows is held at once
            rows = db.fetch_rows(col.cid, RecordFilter(None), SCAN_PAGE, offset, False)
            pages.append(_page_entries(rows, key))
            offset += len(rows)
            if len(rows) < SCAN_PAGE:
                break
        keys, lengths, terms, values = (
            np.concatenate(part) for part in zip(*[p[:4] for p in pages], strict=True)
        )
        state.ids.set(keys.tolist(), [i for page in pages for i in page[4]])
        column = PostingColumn()
        column.load(keys, lengths, terms, values)
        state.unsnapshotted = max(state.unsnapshotted, 1)
        self._pending[col.cid] = col
        self.counts["scans"] += 1
        logger.info(
            "built the sparse index of key %r of collection %s by a scan (%d vectors)",
            key,
            col.uuid,
            len(keys),
        )
        return column

    def _catch_up(self, db: StoreSession, col: CollectionRow, state: SparseState) -> None:
        head = db.oplog_head(col.cid)
        if head <= state.watermark:
            return
        # The keys only: the sparse values are read from the rows (`oplog_changes` read
        # every changed dense vector too, 1.5 KB a record at 384 dims, for nothing).
        changed = db.changed_keys(col.cid, state.watermark)
        state.watermark = head
        if not changed:
            return
        rows = db.fetch_by_keys(col.cid, changed, False)
        key_array = np.asarray(changed, dtype=np.int64)
        was = state.present.get(key_array) > 0
        now = np.asarray([k in rows for k in changed], dtype=bool)
        state.present.set(key_array, np.where(now, 1, -1))
        state.n_records += int(now.sum()) - int(was.sum())
        state.ids.unset([k for k in changed if k not in rows])
        state.ids.set([k for k in changed if k in rows], [rows[k][1] for k in changed if k in rows])
        metadatas = [_metadata(rows[k][4]) if k in rows else None for k in changed]
        for name, column in state.columns.items():
            vectors = [None if m is None else sparse_parts(m.get(name)) for m in metadatas]
            column.replace(changed, vectors)
        state.unsnapshotted += len(changed)
        self.counts["caught_up"] += len(changed)

    # -- snapshots -------------------------------------------------------------------

    def checkpoint(self, col: CollectionRow) -> int | None:
        """Snapshot the collection's sparse index if it changed since its last snapshot;
        the watermark its snapshot now covers (None when none was written). A collection
        the store no longer has (deleted by another process) is forgotten instead, and its
        files are removed: none lands after its deleter removed them."""
        state = self._states.get(col.cid)
        if state is None or self._dir is None or not state.columns:
            return None
        if state.snapshot_watermark == state.watermark:
            return state.watermark
        path = sparse_snapshot_path(self._dir, col.uuid)
        try:
            with snapshot.exclusive_lock(self._dir, col.uuid) as locked:
                if not locked:
                    return None
                if not self._exists(col.uuid):
                    snapshot.unlink_collection_files(self._dir, col.uuid)
                    self.forget(col.cid)
                    return None
                owner = self._owner(col)
                if not snapshot.covers(path, owner, state.watermark, FORMAT, SPACE):
                    payload = _payload(state)
                    snapshot.write_snapshot(path, owner, state.watermark, FORMAT, SPACE, payload)
                    logger.debug("sparse snapshot of %s at seq %d", col.uuid, state.watermark)
        except OSError as exc:  # a snapshot is a cache: never fail the call for it
            logger.warning("could not write sparse index snapshot %s: %s", path, exc)
            return None
        state.unsnapshotted = 0
        state.snapshot_watermark = state.watermark
        return state.watermark


def _page_entries(rows: list[tuple], key: str) -> tuple[Any, ...]:
    """(keys, lengths, terms, values, ids) of the sparse vectors under `key` in `rows`."""
    ids: list[str] = []
    keys: list[int] = []
    lengths: list[int] = []
    terms: list[int] = []
    values: list[float] = []
    for row in rows:
        value = orjson.loads(row[4]).get(key) if row[4] else None
        if isinstance(value, dict) and value.get(TYPE_KEY) == SPARSE_VECTOR_TYPE_VALUE:
            keys.append(row[0])
            ids.append(row[1])
            lengths.append(len(value["indices"]))
            terms.extend(value["indices"])
            values.extend(value["values"])
    return (
        np.asarray(keys, dtype=np.int64),
        np.asarray(lengths, dtype=np.int32),
        np.asarray(terms, dtype=np.int64),
        np.asarray(values, dtype=np.float32),
        ids,
    )


def _metadata(blob: str | bytes | None) -> dict | None:
    return orjson.loads(blob) if blob else {}


def _payload(state: SparseState) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    names = sorted(state.columns)
    arrays["__names__"] = np.frombuffer(orjson.dumps(names), dtype=np.uint8)
    arrays["__present__"] = state.present.keys()
    arrays["__id_keys__"], arrays["__id_ends__"], arrays["__ids__"] = state.ids.arrays()
    for n, name in enumerate(names):
        arrays.update(state.columns[name].arrays(f"{n}."))
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _from_payload(col: CollectionRow, watermark: int, payload: bytes) -> SparseState:
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        names = orjson.loads(arrays["__names__"].tobytes())
        state = SparseState(col, watermark)
        present = np.asarray(arrays["__present__"], dtype=np.int64)
        state.present.set(present, 1)
        state.n_records = len(present)
        state.ids = IdMap.from_arrays(
            arrays["__id_keys__"], arrays["__id_ends__"], arrays["__ids__"]
        )
        for n, name in enumerate(names):
            state.columns[name] = PostingColumn.from_arrays(arrays, f"{n}.")
    return state


def top_matching(
    db: StoreSession,
    cid: int,
    column: PostingColumn,
    weights: dict[int, float],
    n_records: int | None,
    limit: int,
    flt: RecordFilter,
    ids: IdMap | None = None,
) -> tuple[list[tuple[int, float]], dict[int, tuple]]:
    """The `limit` best records of `column` that `flt` lets through (its allowed keys, read
    as dense queries read them), and their rows, in the session's snapshot. Given the
    index's `ids` (caught up to this snapshot), the rows are only `(key, id)`, read from it
    rather than the store (`id_rows`)."""
    if limit <= 0:
        return [], {}
    allowed = None if flt.selects_all else db.allowed_keys(cid, flt)
    found = column.search(weights, n_records, limit, allowed)
    rows = id_rows(ids, found) if ids is not None else None
    if rows is None:
        rows = db.fetch_by_keys(cid, [k for k, _ in found], False) if found else {}
    return found, rows


def id_rows(ids: IdMap, found: list[tuple[int, float]]) -> dict[int, tuple] | None:
    """`(key, id)` of each found record by key, from the index's ids (None when one is
    missing: the caller reads the rows instead)."""
    keys = [k for k, _ in found]
    known = ids.ids(keys)
    if known is None:
        return None
    return {k: (k, i) for k, i in zip(keys, known, strict=True)}
