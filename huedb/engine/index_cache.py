"""Per-process cache of collection indexes, caught up from the oplog before every search.

Each process (or server worker) keeps one `VectorIndex` per collection it has searched,
with the oplog `watermark` it reflects. Before a search, inside the query's read session
(`engine/store.py`), the cache applies every oplog entry of the collection after the
watermark, so a search always sees exactly the acknowledged writes of all processes as of
that session's snapshot. Snapshots are written after the read session ends, never inside it.

When an exact index grows past the exact-search threshold (or a large collection is loaded
from the store), its HNSW graph is built in a background thread from a copy of the vectors.
Searches stay exact (slower, never wrong) until the graph is adopted: swapped in at the
watermark of the copy, then caught up from the oplog like a snapshot.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from huedb.engine import events, snapshot
from huedb.engine.catalog import CollectionRow
from huedb.engine.hnsw_config import collection_space, hnsw_setting
from huedb.engine.record_values import key_vector_rows
from huedb.engine.store import StoreSession
from huedb.engine.vector_index import FlatVectors, HnswParams, Thresholds, VectorIndex, build_graph
from huedb.options import EngineOptions

logger = logging.getLogger(__name__)

REBUILD_CHUNK = 5_000  # rows per fetch when reading vectors (bounds the transient copies)


@dataclass(eq=False)
class _Build:
    thread: threading.Thread
    watermark: int
    outcome: list[Any] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


_running_builds: weakref.WeakSet[_Build] = weakref.WeakSet()


@atexit.register
def _stop_running_builds() -> None:
    """Stop background builds before the interpreter exits (native threads must not be cut)."""
    builds = list(_running_builds)
    for build in builds:
        build.stop.set()
    for build in builds:
        build.thread.join()


@dataclass
class _State:
    col: CollectionRow
    index: VectorIndex
    watermark: int
    unsnapshotted: int = 0
    build: _Build | None = None
    build_failed: bool = False


def hnsw_params(col: CollectionRow) -> HnswParams:
    """The graph parameters recorded in a collection's configuration."""
    config = col.configuration
    return HnswParams(
        space=collection_space(config),
        max_neighbors=int(hnsw_setting(config, "max_neighbors")),
        ef_construction=int(hnsw_setting(config, "ef_construction")),
        ef_search=int(hnsw_setting(config, "ef_search")),
    )


class IndexCache:
    """The indexes of one process, keyed by collection."""

    def __init__(
        self, snapshot_dir: Path | None, options: EngineOptions, store_id: str = ""
    ) -> None:
        self._store_id = store_id
        self._dir = snapshot_dir
        self._thresholds = Thresholds(options.exact_max_floats, options.filtered_exact_max_floats)
        self._snapshot_every = options.snapshot_every
        self._states: dict[int, _State] = {}
        self._pending: dict[int, CollectionRow] = {}

    def ready(
        self, db: StoreSession, col: CollectionRow, need_vectors: bool = False
    ) -> VectorIndex | None:
        """The collection's index, caught up to the snapshot of the read session `db`.

        With `need_vectors` (filtered searches gather many vectors at once), a graph index
        is given its float32 vectors, read from the store in the same snapshot.
        """
        if col.dimension is None:
            return None
        state = self._states.get(col.cid)
        params = hnsw_params(col)
        if (
            state is None
            or state.watermark < col.pruned_seq
            or state.index.dim != col.dimension
            or state.index.params != params
        ):
            state = self._load(db, col, params)
            self._states[col.cid] = state
        state.col = col
        self._catch_up(db, col, state)
        self._adopt_finished_build(db, col, state)
        self._start_build_if_needed(col, state)
        if need_vectors and not state.index.has_vectors:
            state.index.attach_vectors(self._read_vectors(db, col))
        if state.unsnapshotted >= max(self._snapshot_every, len(state.index) // 10):
            self._pending[col.cid] = col
        return state.index

    def rebuild(self, db: StoreSession, col: CollectionRow) -> VectorIndex | None:
        """Rebuild a collection's index from the store, ignoring any snapshot (inside a read)."""
        if col.dimension is None:
            return None
        state = self._rebuild(db, col, hnsw_params(col))
        state.unsnapshotted = max(state.unsnapshotted, 1)
        self._states[col.cid] = state
        self._start_build_if_needed(col, state)
        return state.index

    def loaded(self, cid: int) -> VectorIndex | None:
        """The index this process holds for a collection, if any."""
        state = self._states.get(cid)
        return None if state is None else state.index

    def warm(self, collection_uuid: str) -> tuple[CollectionRow, VectorIndex, int] | None:
        """The collection row, index and watermark this process holds, with no store read.

        For a search that confirms afterwards, in one snapshot, that the collection's row
        and oplog head still equal these (then the index was current for that snapshot).
        None when the process holds no index for it, or a finished graph build waits to be
        adopted (a `ready()` does that).
        """
        for state in self._states.values():
            if state.col.uuid == collection_uuid:
                if state.build is not None and not state.build.thread.is_alive():
                    return None
                return state.col, state.index, state.watermark
        return None

    def owner(self, col: CollectionRow) -> str:
        """The identity a snapshot of this collection must carry."""
        return f"{self._store_id}/{col.uuid}"

    def clear(self) -> None:
        """Drop every in-memory index (after a reset)."""
        self._states.clear()
        self._pending.clear()

    def forget(self, cid: int) -> None:
        """Drop a collection's in-memory index (after it was deleted)."""
        self._states.pop(cid, None)
        self._pending.pop(cid, None)

    def pending_maintenance(self) -> list[CollectionRow]:
        """Collections whose index should be snapshotted and oplog pruned."""
        pending = list(self._pending.values())
        self._pending.clear()
        return pending

    def finish_builds(self) -> list[CollectionRow]:
        """Wait for background graph builds; their collections need a `ready()` to adopt."""
        waiting = [s for s in self._states.values() if s.build is not None]
        for state in waiting:
            assert state.build is not None
            state.build.thread.join()
        return [s.col for s in waiting]

    def _start_build_if_needed(self, col: CollectionRow, state: _State) -> None:
        if state.build is not None or state.build_failed or not state.index.wants_graph:
            return
        index = state.index
        keys, vectors = index.contents()
        build = _Build(threading.Thread(daemon=True), state.watermark)

        def work() -> None:
            started = time.perf_counter()
            try:
                graph = build_graph(index.dim, index.params, keys, vectors, build.stop)
                build.outcome.append(graph)
            except Exception as exc:  # reported when adopting, in the caller's thread
                build.outcome.append(exc)
            ok = not isinstance(build.outcome[0], Exception)
            events.index_build_done(time.perf_counter() - started, ok)

        build.thread = threading.Thread(target=work, name=f"huedb-graph-{col.uuid}", daemon=True)
        state.build = build
        _running_builds.add(build)
        logger.info(
            "building the HNSW graph of collection %s (%d vectors) in the background; "
            "queries use exact search until it is ready",
            col.uuid,
            len(keys),
        )
        build.thread.start()

    def _adopt_finished_build(self, db: StoreSession, col: CollectionRow, state: _State) -> None:
        build = state.build
        if build is None or build.thread.is_alive():
            return
        state.build = None
        outcome = build.outcome[0] if build.outcome else RuntimeError("no graph was produced")
        if isinstance(outcome, Exception):
            state.build_failed = True
            logger.error("building the graph of %s failed: %s", col.uuid, outcome)
            return
        if build.watermark < col.pruned_seq:
            logger.info("graph of %s is older than the oplog floor; building again", col.uuid)
            return
        # The exact index's vectors were kept current while the graph was built: keep them.
        state.index = VectorIndex.from_graph(
            state.index.dim, state.index.params, self._thresholds, outcome, state.index.flat
        )
        state.watermark = build.watermark
        state.unsnapshotted = len(state.index)
        self._catch_up(db, col, state)
        logger.info("HNSW graph of collection %s is ready", col.uuid)

    def dirty(self) -> list[CollectionRow]:
        """Collections with index changes not yet snapshotted (checkpointed at close)."""
        return [s.col for s in self._states.values() if s.unsnapshotted > 0]

    def checkpoint(self, col: CollectionRow) -> tuple[int | None, bool]:
        """Snapshot the index if it is a graph.

        Returns the oplog seq up to which entries may be pruned, and whether a graph snapshot
        now covers it. A snapshot on disk is never replaced by an older one.
        """
        state = self._states.get(col.cid)
        if state is None:
            return None, False
        if not state.index.uses_graph:
            state.unsnapshotted = 0
            # A graph being built will catch up from its own watermark: keep that oplog.
            floor = state.build.watermark if state.build is not None else state.watermark
            return floor, False
        if self._dir is None:
            return None, False
        path = snapshot.snapshot_path(self._dir, col.uuid)
        with snapshot.exclusive_lock(self._dir, col.uuid) as locked:
            if not locked:
                return None, False
            header = snapshot.read_header(path)
            if header is None or int(header.get("watermark", -1)) < state.watermark:
                payload = state.index.serialize()
                assert payload is not None
                try:
                    snapshot.write_snapshot(
                        path,
                        self.owner(col),
                        state.watermark,
                        state.index.dim,
                        state.index.params.space,
                        payload,
                    )
                except OSError as exc:
                    # A snapshot is a cache: failing to write one (disk full, I/O error)
                    # must not fail the query or write that triggered it.
                    logger.warning("could not write index snapshot %s: %s", path, exc)
                    return None, False
                logger.debug("snapshot of %s at seq %d", col.uuid, state.watermark)
        state.unsnapshotted = 0
        return state.watermark, True

    def _load(self, db: StoreSession, col: CollectionRow, params: HnswParams) -> _State:
        assert col.dimension is not None
        if self._dir is not None:
            path = snapshot.snapshot_path(self._dir, col.uuid)
            snap = snapshot.read_snapshot(path, self.owner(col))
            if snap is not None:
                if snap.watermark < col.pruned_seq or snap.dim != col.dimension:
                    logger.warning(
                        "index snapshot %s is older than the oplog floor; rebuilding", path
                    )
                elif snap.space != params.space:
                    logger.warning("index snapshot %s has another space; rebuilding", path)
                else:
                    try:
                        index = VectorIndex.from_serialized(
                            col.dimension, params, self._thresholds, snap.payload, snap.mapping
                        )
                        return _State(col, index, snap.watermark)
                    except (ValueError, RuntimeError) as exc:
                        logger.warning("cannot load index snapshot %s (%s); rebuilding", path, exc)
            elif col.snapshot_seq > 0:
                logger.warning(
                    "index snapshot %s of collection %s is missing; rebuilding from the store",
                    path,
                    col.uuid,
                )
        return self._rebuild(db, col, params)

    def _rebuild(self, db: StoreSession, col: CollectionRow, params: HnswParams) -> _State:
        assert col.dimension is not None
        # The head first: the vectors read next hold every change up to it (one snapshot).
        head = db.oplog_head(col.cid)
        index = VectorIndex(col.dimension, params, self._thresholds)
        index.attach_vectors(self._read_vectors(db, col))
        return _State(col, index, head)

    def _read_vectors(self, db: StoreSession, col: CollectionRow) -> FlatVectors:
        """Every float32 vector of a collection as of the session's snapshot."""
        assert col.dimension is not None
        flat = FlatVectors(col.dimension)
        flat.reserve(db.count_records(col.cid))
        for keys, vectors in db.vector_chunks(col.cid, col.dimension, REBUILD_CHUNK):
            flat.upsert(keys, vectors)
        if len(flat):
            logger.info("loaded %d vectors of collection %s from the store", len(flat), col.uuid)
        return flat

    def _catch_up(self, db: StoreSession, col: CollectionRow, state: _State) -> None:
        head = db.oplog_head(col.cid)
        if head <= state.watermark:
            return
        changes = db.oplog_changes(col.cid, state.watermark)
        state.watermark = head
        if not changes:
            return
        events.caught_up(len(changes))
        latest: dict[int, bytes | None] = {}
        for _, key, vector in changes:
            latest[key] = vector
        removed = [k for k, v in latest.items() if v is None]
        present = [(k, v) for k, v in latest.items() if v is not None]
        if removed:
            state.index.remove(np.asarray(removed, dtype=np.uint64))
        if present:
            state.index.upsert(*key_vector_rows(present, state.index.dim))
        state.unsnapshotted += len(latest)
