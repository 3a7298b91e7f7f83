"""Per-process cache of collection indexes, caught up from the oplog before every search.

Each process (or server worker) keeps one `VectorIndex` per collection it has searched,
with the oplog `watermark` it reflects. Before a search, inside the query's read session
(`engine/store.py`), the cache applies every oplog entry of the collection after the
watermark, so a search always sees exactly the acknowledged writes of all processes as of
that session's snapshot. A graph's snapshot is started after the read session ends, never
inside it, and written by a thread while the graph takes no changes (they are searched
exactly beside it until the thread is done; close and deletes wait for it).

When an exact index grows past the exact-search threshold (or a large collection is loaded
from the store), its HNSW graph is built in a background thread from a copy of the vectors.
Searches stay exact (slower, never wrong) until the graph is adopted: swapped in at the
watermark of the copy, then caught up from the oplog like a snapshot. The build thread
also measures the `ef_search` that meets the collection's recall target
(`recall_calibration`); it is kept with the graph and in its snapshot, and measured again,
on a snapshot in another thread, once a fifth of the graph has changed.

With a memory budget (`EngineOptions.index_memory`), the least recently used indexes, dense
or sparse (the engine's `SparseIndexes`, sharing this cache's clock of uses), are evicted
once the indexes held exceed it: a graph with changes its snapshot lacks is snapshotted
first (evicted by `checkpoint`, after the read session), a sparse index is dropped after
the read session (`release_sparse`), any other index is dropped at once. Its next query
reloads it synchronously (a mapped snapshot, or the store's vectors for an exact-only
index), so it is answered correctly at once. The index a call is working on, and indexes a
background thread is reading, are never evicted; eviction only drops the cache's
reference, so a search still holding an index finishes on it. A query answered by the
index held (`warm`) checks the budget too, with one comparison when it is kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from huedb.engine import events, index_calibration, snapshot
from huedb.engine.catalog import CollectionRow
from huedb.engine.graph_backlog import INLINE_MAX_CHANGES
from huedb.engine.graph_build import Feed, apply_backlog, grow_graph
from huedb.engine.hnsw_config import (
    DEFAULT_RECALL_TARGET,
    collection_space,
    ef_search_set,
    hnsw_setting,
    recall_target,
)
from huedb.engine.index_state import (
    IndexJob,
    IndexState,
    retry_delay,
    running_jobs,
    waits_to_retry,
    wanted_elsewhere,
)
from huedb.engine.oplog_read import read_changes
from huedb.engine.recall_calibration import (
    Calibration,
    Search,
    Vectors,
    measure_recall,
)
from huedb.engine.snapshot_writer import SnapshotWriter
from huedb.engine.sparse_index import SparseIndexes, SparseState
from huedb.engine.store import StoreSession
from huedb.engine.vector_index import (
    GRAPH_DTYPE,
    FlatVectors,
    HnswParams,
    MappedGraph,
    Thresholds,
    VectorIndex,
    graph_view,
    map_graph_file,
)
from huedb.errors import InvalidArgumentError, NotFoundError
from huedb.options import EngineOptions

logger = logging.getLogger(__name__)

REBUILD_CHUNK = 5_000  # rows per fetch when reading vectors (bounds the transient copies)


WRITER_HOLD_FACTOR = 4  # a writer holds an index of at most this many thresholds' rows


def hnsw_params(col: CollectionRow) -> HnswParams:
    """The graph parameters recorded in a collection's configuration."""
    config = col.configuration
    return HnswParams(
        space=collection_space(config),
        max_neighbors=int(hnsw_setting(config, "max_neighbors")),
        ef_construction=int(hnsw_setting(config, "ef_construction")),
        ef_search=int(hnsw_setting(config, "ef_search")),
        ef_search_set=ef_search_set(config),
        recall_target=_recall_target(col),
    )


def _recall_target(col: CollectionRow) -> float:
    """The collection's recall target; the default for a stored value the checks at
    create and modify would refuse (a collection written by an older huedb)."""
    try:
        return recall_target(col.metadata)
    except InvalidArgumentError:
        return DEFAULT_RECALL_TARGET


class IndexCache:
    """The indexes of one process, keyed by collection."""

    def __init__(
        self,
        snapshot_dir: Path | None,
        options: EngineOptions,
        store_id: str = "",
        *,
        exists: Callable[[str], bool],
        sparse: SparseIndexes | None = None,
    ) -> None:
        self._store_id = store_id
        self._dir = snapshot_dir
        # On a store other nodes share (PostgreSQL), a collection's snapshot_seq says some
        # node snapshotted it, not this one: no local snapshot is then no loss.
        self._shared_store = bool(options.store)
        self._writer = (
            None if snapshot_dir is None else SnapshotWriter(snapshot_dir, self.owner, exists)
        )
        self._thresholds = Thresholds(options.exact_max_floats, options.filtered_exact_max_floats)
        self._snapshot_every = options.snapshot_every
        self._states: dict[int, IndexState] = {}
        self._pending: dict[int, CollectionRow] = {}
        self._budget = options.index_memory
        self._resident = 0
        # The sparse indexes sharing the budget: their bytes when last counted, the
        # collections of those used (`sparse_used`), and those chosen for eviction (by
        # cid, with their last use then), dropped by `release_sparse`.
        self._sparse = sparse
        self._sparse_bytes = 0
        self._sparse_cids: set[int] = set()
        self._sparse_leaving: dict[int, int] = {}
        self._sparse_keep = -1  # the sparse index in use when they were chosen
        self._clock = itertools.count(1)
        self._evicted: dict[int, CollectionRow] = {}
        self._counts_lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "evictions": 0}
        self._access: list[bool] | None = None  # inside `query_access`: [used, loaded]
        self._write_checks: dict[int, int] = {}  # oplog head when a writer last counted

    @contextlib.contextmanager
    def query_access(self) -> Iterator[None]:
        """Count the query run inside as a hit (it found its index held) or a miss (it had
        to load it); a query that used no index (an empty collection) counts as neither."""
        self._access = [False, False]  # an index was used, one was loaded
        try:
            yield
        finally:
            used, loaded = self._access
            self._access = None
            if used:
                self._count("misses" if loaded else "hits")
                events.index_cache_access(not loaded)

    def ready(
        self,
        db: StoreSession,
        col: CollectionRow,
        need_vectors: bool = False,
        searching: bool = True,
        writes_only: bool = False,
    ) -> VectorIndex | None:
        """The collection's index, caught up to the snapshot of the read session `db`.

        With `need_vectors` (filtered searches gather many vectors at once), a graph index
        is given its vectors (16-bit rows unless few), read from the store in the same snapshot,
        unless it holds them or is a view of a snapshot whose 16-bit rows rank its records
        first (`MappedRows`): only the few rows that may be in an answer are then read at
        32 bits. Unless the
        caller only applies its own write (not `searching`), a graph being built is
        wanted: it is finished as soon as it holds the rows handed to it. `writes_only`:
        an index loaded here is held for a writer's changes only (`IndexState.writes_only`).
        """
        if col.dimension is None:
            return None
        state = self._states.get(col.cid)
        params = hnsw_params(col)
        held = not (
            state is None
            or state.watermark < col.pruned_seq
            or state.index.dim != col.dimension
            or state.index.params != params
        )
        if self._access is not None:
            self._access[0] = True
            self._access[1] |= not held
        if state is None or not held:
            state = self._install(col.cid, self._load(db, col, params))
            state.writes_only = writes_only
        elif state.awaits_build:
            state = self._adopt_other_build(db, col, state, params)
        state.col = col
        state.writes_only &= not searching
        state.last_used = next(self._clock)
        state.evicting = False  # used again: no longer the least recently used
        self._adopt_snapshot(col, state)
        unsnapshotted = state.unsnapshotted
        self._adopt_backlog_pass(col, state)
        state.resized |= self._catch_up(db, col, state)
        if state.index.wants_rebuild and state.saving is None and state.backlog_pass is None:
            state = self._rebuild_graph(db, col, state)
        state.changed_since_calibration += max(0, state.unsnapshotted - unsnapshotted)
        self._feed_build(state, searching)
        self._adopt_finished_build(db, col, state)
        index_calibration.adopt_finished(state)
        self._start_build_if_needed(col, state, writing=not searching)
        self._start_backlog_pass_if_needed(col, state)
        self._start_calibration_if_due(col, state)
        index = state.index
        if need_vectors and not (index.has_vectors or index.ranks_subsets_in_place):
            index.attach_vectors(self._read_vectors(db, col, index.params))
            state.resized = True
        building = state.build is not None and not state.index.uses_graph
        # No snapshot of a graph that is behind its watermark (a backlog being applied).
        if (
            not building
            and not state.index.backlog
            and state.saving is None
            and self._snapshot_due(state)
        ) or state.saved_at is not None:
            self._pending[col.cid] = col
        self._measure(state)
        self.keep_within_budget(db, col.cid)
        return state.index

    def fresh_load(self, db: StoreSession, col: CollectionRow) -> VectorIndex | None:
        """The collection's index as a fresh process would load it (its snapshot, caught up
        from the oplog; a large catch-up noted, not applied), neither kept nor built on and
        starting no background work: for checks. The index this process holds stays."""
        if col.dimension is None:
            return None
        state = self._load(db, col, hnsw_params(col))
        self._catch_up(db, col, state)
        return state.index

    def after_write(self, db: StoreSession, col: CollectionRow) -> None:
        """Apply this process's own write to the collection's index, if it holds one.

        A process that holds none starts holding it (`_writer_holds`) once the collection
        has just grown past the exact-search threshold with no graph yet, so its graph is
        built while the collection is still being written, or once the changes since its
        graph snapshot are due another snapshot, so they are noted for the graph as they
        are written rather than read back at its first search (docs/ARCHITECTURE.md,
        "Building the graph during ingest", "A writer of a collection with a graph
        snapshot").
        """
        if col.cid in self._states:
            self.ready(db, col, searching=False)
            return
        reason = self._writer_holds(db, col)
        if reason is not None:
            self.ready(db, col, searching=False, writes_only=reason == "snapshot")

    def _writer_holds(self, db: StoreSession, col: CollectionRow) -> str | None:
        """Why a writer holding no index of `col` should start ("build" or "snapshot"),
        or None. Never for a collection evicted here. "build", with no graph snapshot: it
        has more rows than exact search serves but at most `WRITER_HOLD_FACTOR` times that
        (a writer never loads a large collection's vectors in a write call) and twice its
        float32 vectors fit the memory budget. "snapshot": `_snapshot_behind`. Counted
        once per threshold's worth of oplog growth, so most writes cost no count."""
        dim = col.dimension
        if dim is None or col.cid in self._evicted:
            return None
        rows = self._thresholds.exact_max_floats // dim + 1  # the fewest that want a graph
        head = db.oplog_head(col.cid)
        checked = self._write_checks.get(col.cid)
        if checked is not None and head - checked < rows:
            return None
        self._write_checks[col.cid] = head
        if col.snapshot_seq > 0:
            return "snapshot" if self._snapshot_behind(db, col) else None
        count = db.count_records(col.cid)
        if not rows <= count <= WRITER_HOLD_FACTOR * rows:
            return None
        if self._budget and 2 * count * dim * 4 > self._budget:  # vectors + graph
            return None
        return "build"

    def _snapshot_behind(self, db: StoreSession, col: CollectionRow) -> bool:
        """Whether this directory's graph snapshot of `col` misses as many changes as
        would make a holder write the next one (`_snapshot_due`): a writer then maps it
        and notes each write's changes (`IndexState.writes_only`), instead of leaving them all
        to its first search (at 1M x 384, 300,000 changed vectors read back: 4.2-5.5 s).
        A snapshot only another node has is left alone (loading would build the graph
        inside a write call)."""
        if self._dir is None or not snapshot.snapshot_path(self._dir, col.uuid).exists():
            return False
        changes = db.count_changes(col.cid, col.snapshot_seq)
        if changes < self._snapshot_every:  # (no count of the records needed)
            return False
        return changes >= self._snapshot_size(db.count_records(col.cid))

    def rebuild(self, db: StoreSession, col: CollectionRow) -> VectorIndex | None:
        """Rebuild a collection's index from the store, ignoring any snapshot (inside a read);
        its snapshot replaces the one on disk, which is left to serve until then."""
        if col.dimension is None:
            return None
        state = self._install(col.cid, self._rebuild(db, col, hnsw_params(col)))
        state.replaces_snapshot = True
        state.unsnapshotted = max(state.unsnapshotted, 1)
        state.last_used = next(self._clock)
        self._start_build_if_needed(col, state, writing=False)
        self._measure(state)
        self.keep_within_budget(db, col.cid)
        return state.index

    def loaded(self, cid: int) -> VectorIndex | None:
        """The index this process holds for a collection, if any."""
        state = self._states.get(cid)
        return None if state is None else state.index

    def confirmed(self, collection_uuid: str) -> None:
        """A search on the warm index was confirmed current (`warm`): note when. An index
        only writes had used (`IndexState.writes_only`) is now a searched one: the pass over
        its backlog starts, after this first search (the pass's start holds the GIL for
        a while: at 1M x 384, started before it, the first answer took 1.24 s, not 0.05)."""
        for state in self._states.values():
            if state.col.uuid == collection_uuid:
                state.current_at = time.monotonic()
                if state.writes_only:
                    state.writes_only = False
                    self._start_backlog_pass_if_needed(state.col, state)
                return

    def pruned(self, row: CollectionRow) -> None:
        """Hold `row`, read just after this process pruned its collection's oplog (and
        recorded a snapshot), in place of the row held when the two differ only in those
        watermarks (neither reaches past the index's own): warm searches then confirm
        against it instead of failing once and reading the row the usual way."""
        state = self._states.get(row.cid)
        if state is None or state.watermark < row.pruned_seq:
            return
        marks = {"pruned_seq": row.pruned_seq, "snapshot_seq": row.snapshot_seq}
        if dataclasses.replace(state.col, **marks) == row:
            state.col = row

    def warm(self, collection_uuid: str) -> tuple[CollectionRow, VectorIndex, int] | None:
        """The collection row, index and watermark this process holds, with no store read.

        For a search that confirms afterwards, in one snapshot, that the collection's row
        and oplog head still equal these (then the index was current for that snapshot).
        None when the process holds no index for it, or a finished graph build, pass or
        measurement waits to be adopted (a `ready()` does that; a finished snapshot thread
        is taken up here), or, awaiting another process's build, it has not marked that
        wanted yet or a new snapshot landed. A search wants a graph being built (`ready`).
        """
        for state in list(self._states.values()):
            if state.col.uuid == collection_uuid:
                self._adopt_snapshot(state.col, state)
                jobs = (state.build, state.calibrating, state.backlog_pass)
                if any(job is not None and not job.thread.is_alive() for job in jobs):
                    return None
                if state.awaits_build and self._other_build_news(state):
                    return None  # `ready()` marks the job wanted, or adopts its snapshot
                if state.build is not None and state.build.feed is not None:
                    state.build.feed.want()
                state.last_used = next(self._clock)
                if self._access is not None:
                    self._access[0] = True
                if self.over_budget(state.nbytes):
                    self.keep_within_budget(None, state.col.cid)
                return state.col, state.index, state.watermark
        return None

    def owner(self, col: CollectionRow) -> str:
        """The identity a snapshot of this collection must carry."""
        return snapshot.owner_name(self._store_id, col.uuid)

    def clear(self) -> None:
        """Drop every in-memory index (after a reset)."""
        for cid in list(self._states):
            self.drop(cid)  # no snapshot lands after the reset
        # Entries of collections holding no index:
        self._pending.clear()
        self._evicted.clear()
        self._write_checks.clear()
        self._sparse_cids.clear()
        self._sparse_leaving.clear()
        self._set_resident(0)

    def forget(self, cid: int) -> None:
        """Drop a collection's in-memory index (after it was deleted, or a check)."""
        state = self._states.pop(cid, None)
        self._pending.pop(cid, None)
        self._evicted.pop(cid, None)
        self._write_checks.pop(cid, None)
        if state is not None:
            self._set_resident(self._resident - state.nbytes)
            if state.backlog_pass is not None:  # its graph is no longer used
                state.backlog_pass.stop.set()
            if state.build is not None:  # nor is the graph it builds
                state.build.stop.set()
                if state.build.feed is not None:
                    state.build.feed.interrupt()
            if state.saving is not None:  # not started yet: not written (see `drop`)
                state.saving.stop.set()

    def collection_uuids(self) -> set[str]:
        """The collections this process holds an index of, or evicted one of."""
        held = {s.col.uuid for s in self._states.values()}
        return held | {col.uuid for col in self._evicted.values()}

    def forget_collection(self, collection_uuid: str) -> None:
        """`forget` the index of a collection found deleted (by another process)."""
        held = [c for c, s in self._states.items() if s.col.uuid == collection_uuid]
        evicted = [c for c, col in self._evicted.items() if col.uuid == collection_uuid]
        for cid in held + evicted:
            self.forget(cid)

    def drop(self, cid: int) -> None:
        """`forget` a deleted collection's index once a thread writing its snapshot has
        ended, so that no snapshot of it lands after its files are removed."""
        state = self._states.get(cid)
        if state is not None and state.saving is not None:
            state.saving.thread.join()
        self.forget(cid)

    def memory_figures(self) -> dict[str, Any]:
        """The budget, the bytes held, the resident collections (least recently used first,
        with their bytes) and the evicted ones, and the hit, miss and eviction counts."""
        resident = sorted(self._states.values(), key=lambda s: s.last_used)
        with self._counts_lock:
            counts = dict(self._counts)
        return {
            "budget_bytes": self._budget,
            "resident_bytes": self._resident,
            "resident": [(s.col, s.nbytes) for s in resident],
            "evicted": list(self._evicted.values()),
            **counts,
        }

    def _count(self, what: str) -> None:
        with self._counts_lock:
            self._counts[what] += 1

    def _install(self, cid: int, state: IndexState) -> IndexState:
        """Hold `state` as the collection's index (replacing any other)."""
        self.forget(cid)
        self._states[cid] = state
        return state

    def _set_resident(self, nbytes: int) -> None:
        self._resident = nbytes
        events.index_memory_held(nbytes + self._sparse_bytes)

    def sparse_used(self, state: SparseState) -> None:
        """A sparse index was just searched: stamp the use on this cache's clock (so dense
        and sparse indexes are evicted least recently used first) and count its bytes."""
        state.last_used = next(self._clock)
        self._sparse_cids.add(state.col.cid)
        self._sparse_leaving.pop(state.col.cid, None)  # used again: kept
        self.sparse_changed()

    def sparse_changed(self) -> None:
        """Count the bytes of the sparse indexes again (after they may have changed)."""
        nbytes = 0 if self._sparse is None else self._sparse.resident_bytes()
        if nbytes != self._sparse_bytes:
            self._sparse_bytes = nbytes
            events.index_memory_held(self._resident + nbytes)

    def over_budget(self, using_bytes: int) -> bool:
        """Whether the indexes held, but the one in use (`using_bytes`), exceed the budget,
        as last counted: the check of queries answered by an index already held (one
        comparison when within the budget)."""
        return (
            bool(self._budget) and self._resident + self._sparse_bytes - using_bytes > self._budget
        )

    def _measure(self, state: IndexState) -> None:
        """Account for the index's size if it may have changed."""
        if not state.resized:
            return
        state.resized = False
        nbytes = state.index.nbytes
        if nbytes != state.nbytes:
            self._set_resident(self._resident + nbytes - state.nbytes)
            state.nbytes = nbytes

    def keep_within_budget(
        self, db: StoreSession | None, using: int | None = None, sparse_using: int | None = None
    ) -> None:
        """Evict the least recently used indexes, dense or sparse, until the others fit in
        the budget.

        Never the dense index of collection `using` nor the sparse index of `sparse_using`
        (the caller's), nor one a background thread still reads. A finished snapshot
        write or backlog pass is taken up first (its thread no longer holds the index),
        and so is a finished build when there is a read session `db` (it catches up from
        the oplog; so its graph is not lost). A graph with changes its snapshot lacks, or
        whose oplog a snapshot just written lets prune, is only marked: `checkpoint` evicts
        it once snapshotted (after the read session; the engine calls it next). Sparse
        indexes are dropped by `release_sparse`, also after the read session.
        """
        if not self._budget:
            return
        self.sparse_changed()
        sparse = self._held_sparse()
        leaving = sum(s.nbytes for s in self._states.values() if s.evicting)
        leaving += sum(s.nbytes for s in sparse if s.col.cid in self._sparse_leaving)
        excess = self._resident + self._sparse_bytes - leaving - self._budget
        if excess <= 0:
            return
        excess = self._release_vectors(excess)
        if excess <= 0:
            return
        held: list[tuple[int, IndexState | SparseState]] = list(self._states.items())
        held += [(s.col.cid, s) for s in sparse]
        for cid, state in sorted(held, key=lambda item: item[1].last_used):
            if excess <= 0:
                break
            if isinstance(state, SparseState):
                if cid != sparse_using and cid not in self._sparse_leaving:
                    self._sparse_leaving[cid] = state.last_used
                    self._sparse_keep = -1 if sparse_using is None else sparse_using
                    excess -= state.nbytes
                continue
            if cid == using or self._states.get(cid) is not state:
                continue
            if state.evicting:  # its snapshot is not written yet: ask for it again
                self._pending[cid] = state.col
                continue
            before = state.nbytes
            if state.build is not None and not state.build.thread.is_alive():
                if db is None:  # taken up by a call with a read session
                    continue
                # The collection's current row: adopting catches up from the oplog floor.
                try:
                    current = db.collection_by_uuid(state.col.uuid)
                except NotFoundError:  # deleted by another process
                    self.forget(cid)
                    continue
                state.col = current
                self._adopt_finished_build(db, current, state)
            self._adopt_finished_jobs(state)
            self._measure(state)
            excess += state.nbytes - before
            if state.build or state.backlog_pass or state.saving:  # threads still reading it
                continue
            excess -= state.nbytes
            graph_changed = state.index.uses_graph and state.unsnapshotted > 0
            if self._dir is not None and (graph_changed or state.saved_at is not None):
                state.evicting = True
                self._pending[cid] = state.col
            else:
                self._evict(cid)

    def _release_vectors(self, excess: int) -> int:
        """Let go of the vectors graphs do without (`VectorIndex.release_vectors`: a view
        of a snapshot whose rows rank filtered searches), least recently used first, the
        collection in use included, until `excess` bytes are freed: before any index is
        evicted, since such a copy only makes re-ranking faster. The excess left."""
        for state in sorted(self._states.values(), key=lambda s: s.last_used):
            if excess <= 0:
                break
            if state.build is not None:  # a build reads the copy (a pass or a snapshot: not)
                continue
            before = state.nbytes
            if state.index.release_vectors():
                logger.info("float32 vectors of %s released (index memory budget)", state.col.uuid)
                state.resized = True
                self._measure(state)
                excess -= before - state.nbytes
        return excess

    def _adopt_finished_jobs(self, state: IndexState) -> None:
        """Take up a snapshot thread or backlog pass that has ended (as a use of the
        collection would), so that the index may be evicted."""
        saving, passing = state.saving, state.backlog_pass
        if saving is not None and not saving.thread.is_alive():
            self._adopt_snapshot(state.col, state)
        if passing is not None and not passing.thread.is_alive():
            self._adopt_backlog_pass(state.col, state)

    def _held_sparse(self) -> list[SparseState]:
        """The sparse indexes held that were used (`sparse_used`)."""
        if self._sparse is None:
            return []
        held = []
        for cid in list(self._sparse_cids):
            state = self._sparse.held(cid)
            if state is None:
                self._sparse_cids.discard(cid)
                self._sparse_leaving.pop(cid, None)
            else:
                held.append(state)
        return held

    def release_sparse(self) -> None:
        """Drop the sparse indexes `keep_within_budget` chose, least recently used first
        (`SparseIndexes.keep_within`: one with changes its snapshot lacks is snapshotted
        first, so its next search reloads it instead of scanning); one searched since is
        kept. Outside read sessions."""
        if not self._sparse_leaving or self._sparse is None:
            return
        leaving = self._sparse_leaving
        dropping = sum(
            s.nbytes for s in self._held_sparse() if leaving.get(s.col.cid) == s.last_used
        )
        self._sparse_leaving = {}
        if dropping:
            self._sparse.keep_within(self._sparse.resident_bytes() - dropping, self._sparse_keep)
        self.sparse_changed()

    def _evict(self, cid: int) -> None:
        state = self._states[cid]
        self.forget(cid)
        self._evicted[cid] = state.col
        self._count("evictions")
        events.index_evicted()
        logger.info(
            "evicted the index of collection %s (%d bytes) to stay within index_memory",
            state.col.uuid,
            state.nbytes,
        )

    def pending_maintenance(self) -> list[CollectionRow]:
        """Collections whose index should be snapshotted and oplog pruned."""
        pending = list(self._pending.values())
        self._pending.clear()
        return pending

    def finish_builds(self) -> list[CollectionRow]:
        """Wait for the background graph builds and backlog passes a search wanted, here or
        in a process awaiting them (`snapshot.mark_wanted`; their collections need a
        `ready()` to adopt them); stop and drop the others (a writer's, that no search
        asked for: the next process to search builds or loads the graph, or catches it
        up)."""
        waiting = []
        for state in self._states.values():
            passing = state.backlog_pass
            if passing is not None and state.writes_only and not wanted_elsewhere(passing):
                # A pure writer's pass: stopped, its changes stay in the backlog, so no
                # snapshot is written and the oplog keeps them for the next process.
                passing.stop.set()
                passing.thread.join()
                state.backlog_pass = None
                continue
            if passing is not None:
                passing.thread.join()
                waiting.append(state.col)
                continue
            build = state.build
            if build is None:
                continue
            if build.feed is not None and not build.feed.wanted:
                if wanted_elsewhere(build):  # finished with the rows handed over
                    build.feed.want()
                else:
                    build.stop.set()
                    build.feed.interrupt()
                    build.thread.join()
                    state.build = None
                    continue
            build.thread.join()
            waiting.append(state.col)
        return waiting

    def _feed_build(self, state: IndexState, searching: bool) -> None:
        """Hand a running build the exact index's rows as caught up (see `graph_build`)."""
        build = state.build
        if build is None or build.feed is None or state.index.flat is None:
            return
        if state.index.uses_graph:
            return
        if build.feed.hand_over(state.index.flat, state.watermark):
            build.watermark = build.feed.watermark
        if searching or wanted_elsewhere(build):  # a search here or in a process awaiting it
            build.feed.want()

    def _start_backlog_pass_if_needed(self, col: CollectionRow, state: IndexState) -> None:
        """Have a background pass apply the graph's backlog (`graph_backlog`) to a copy of
        the graph in a child process, unless one is already at it. An index held for a
        writer's changes only (`IndexState.writes_only`) waits for a search, or for a backlog
        of half its records (its float32 vectors then weigh as much as the graph's 16-bit
        rows): a pass beside a stream of writes slowed them (at 100k x 384, deletes
        18-19k -> 12-14k records/s, upserts -20 %; with no pass, -7 %)."""
        index = state.index
        if state.backlog_pass is not None or state.saving is not None or not index.backlog:
            return
        if state.writes_only and index.backlog < max(self._snapshot_every, len(index) // 2):
            return
        self._start_leased(
            col,
            state,
            not state.writes_only,
            lambda lease: self._start_backlog_pass(col, state, lease),
        )

    def _start_backlog_pass(
        self, col: CollectionRow, state: IndexState, lease: snapshot.BuildLease | None
    ) -> None:
        """Start the pass in a thread (which lets `lease` go as it ends)."""
        index = state.index
        work = index.take_backlog()
        job = IndexJob(
            threading.Thread(daemon=True),
            state.watermark,
            covered=state.unsnapshotted,
            replaces=state.replaces_snapshot,
            lease=lease,
        )
        workdir = self._dir if self._dir is not None and self._dir.is_dir() else None
        calibration = index_calibration.to_store(state)

        def read(graph_file: Path) -> MappedGraph:
            """The child's graph is the collection at the watermark the work was taken at."""
            return self._serve_as_snapshot(col, job, index, calibration, graph_file)

        def run() -> None:
            started = time.perf_counter()
            try:
                job.outcome.append((apply_backlog(index, work, job.stop, workdir, read), work))
            except Exception as exc:  # reported when adopting, in the caller's thread
                job.outcome.append(exc)
            finally:
                if lease is not None:  # after the snapshot (`read`): others adopt it
                    lease.release()
            seconds, ok = time.perf_counter() - started, not isinstance(job.outcome[0], Exception)
            events.graph_backlog_applied(seconds, ok, len(work.keys))
            if ok:
                logger.info(
                    "applied %d changes to the graph of collection %s in %.1f s",
                    len(work.keys),
                    col.uuid,
                    seconds,
                )

        job.thread = threading.Thread(target=run, name=f"huedb-backlog-{col.uuid}", daemon=True)
        state.backlog_pass = job
        running_jobs.add(job)
        logger.info(
            "collection %s: %d changes for its graph are applied in the background; "
            "queries search them exactly until then",
            col.uuid,
            len(work.keys),
        )
        job.thread.start()

    def _adopt_backlog_pass(self, col: CollectionRow, state: IndexState) -> None:
        """Serve the graph a finished background pass made; what was noted meanwhile is
        applied at once when small (else by the next pass). A pass that failed leaves
        every change noted; they are then applied here, in the caller's thread."""
        job = state.backlog_pass
        if job is None or job.thread.is_alive():
            return
        state.backlog_pass = None
        state.resized = True
        # Unless the pass wrote its graph as the snapshot, the one on disk is older: the
        # recall is measured on the next.
        state.may_calibrate = job.saved
        if job.saved:
            self._snapshot_landed(col, state, job)
        index = state.index
        outcome = job.outcome[0] if job.outcome else RuntimeError("the pass produced nothing")
        if isinstance(outcome, Exception):
            logger.error("applying the graph backlog of %s failed: %r", col.uuid, outcome)
            index.apply_backlog_here()
            return
        graph, work = outcome
        index.adopt_backlog_graph(graph, work)
        if index.backlog <= INLINE_MAX_CHANGES and not index.keeps_view:
            index.apply_backlog_here()

    def _serve_as_snapshot(
        self,
        col: CollectionRow,
        job: IndexJob,
        index: VectorIndex,
        calibration: Calibration | None,
        graph_file: Path,
    ) -> MappedGraph:
        """A graph a child process saved to `graph_file`, holding the collection as of
        `job.watermark` (a build's or a backlog pass's), copied behind a header as the
        snapshot (`job.saved`) and served as a view of it, else of the child's file: the
        graph is neither saved by usearch nor read into memory here, so no usearch call
        holds the GIL for it (at 1M x 384 `Index.restore` held it 2-8 s, `save` 2 s)."""
        if self._writer is not None and not job.stop.is_set():
            with contextlib.suppress(NotFoundError):  # deleted: the child's file serves
                job.saved = self._writer.write_or_warn(
                    col, job.watermark, index, calibration, job.replaces, graph_file
                )
        if job.saved:
            assert self._dir is not None
            path = snapshot.snapshot_path(self._dir, col.uuid)
            snap = snapshot.read_snapshot(path, self.owner(col), check_payload=False)
            if snap is not None and snap.watermark == job.watermark:
                return MappedGraph(graph_view(snap.payload), snap.mapping, snap.payload)
        return map_graph_file(graph_file)

    def _start_build_if_needed(self, col: CollectionRow, state: IndexState, writing: bool) -> None:
        if state.build is not None or not state.index.wants_graph or waits_to_retry(state):
            return
        self._start_leased(
            col, state, not writing, lambda lease: self._start_build(col, state, writing, lease)
        )

    def _start_leased(
        self,
        col: CollectionRow,
        state: IndexState,
        searching: bool,
        start: Callable[[snapshot.BuildLease | None], None],
    ) -> None:
        """`start(lease)` a build or pass holding the collection's build lease (`_build_lease`;
        none without a directory), unless this process is to start none; the lease is let
        go if starting fails (once started, the job's thread lets it go as it ends)."""
        lease = None
        if self._dir is not None:
            lease = self._build_lease(col, state, searching)
            if lease is None:
                return
        try:
            start(lease)
        except BaseException:
            if lease is not None:
                lease.release()
            raise

    def _start_build(
        self,
        col: CollectionRow,
        state: IndexState,
        writing: bool,
        lease: snapshot.BuildLease | None,
    ) -> None:
        """Start the collection's graph build in a thread (which lets `lease` go as it ends)."""
        index = state.index
        # From now on its vectors are held as the graph's 16-bit rows: during the build,
        # beside the graph process's memory, and after it.
        index.to_graph_rows()
        state.resized = True
        assert index.flat is not None
        feed = Feed(index.flat, state.watermark, writing)
        build = IndexJob(
            threading.Thread(daemon=True),
            state.watermark,
            feed=feed,
            replaces=state.replaces_snapshot,
            lease=lease,
        )
        if not writing:
            feed.want()
        workdir = self._dir if self._dir is not None and self._dir.is_dir() else None
        size = len(index)

        def work() -> None:
            started = time.perf_counter()
            added = [0]

            def progress(vectors: int) -> None:
                added[0] += vectors
                events.index_build_progress(vectors)

            params = index.params

            def measure(search: Search, source: Vectors, held: np.ndarray) -> Any:
                return measure_recall(search, params, source, held, build.stop)

            def read(graph_file: Path, calibration: Calibration | None) -> MappedGraph:
                """The graph holds the rows handed over up to the feed's watermark."""
                build.watermark = feed.watermark  # closed: final
                return self._serve_as_snapshot(col, build, index, calibration, graph_file)

            try:
                graph, build.calibration = grow_graph(
                    index.dim,
                    params,
                    feed,
                    build.stop,
                    progress,
                    measure if params.recall_target > 0 else None,
                    workdir,
                    read,
                )
                build.outcome.append(graph)
            except Exception as exc:  # reported when adopting, in the caller's thread
                build.outcome.append(exc)
            finally:
                feed.end()
                if lease is not None:  # after the snapshot (`read`): others adopt it
                    lease.release()
            ok = not isinstance(build.outcome[0], Exception)
            events.index_build_done(time.perf_counter() - started, ok, size, added[0])
            if build.calibration is not None:
                index_calibration.log(col.uuid, build.calibration, params.ef_search_set)

        build.thread = threading.Thread(target=work, name=f"huedb-graph-{col.uuid}", daemon=True)
        state.build = build
        running_jobs.add(build)
        logger.info(
            "building the HNSW graph of collection %s (%d vectors%s) in the background; "
            "queries use exact search until it is ready",
            col.uuid,
            size,
            ", and those written meanwhile" if writing else "",
        )
        events.index_build_started(size)
        build.thread.start()

    def _build_lease(
        self, col: CollectionRow, state: IndexState, searching: bool
    ) -> snapshot.BuildLease | None:
        """The collection's build lease (`snapshot.BuildLease`), or None when this process
        is to build nothing: another holds the lease (the state then awaits its snapshot;
        `searching`, a search here marks the job wanted, so that its holder finishes it at
        close), or one's snapshot landed since this state last looked (adopted at the next
        use)."""
        assert self._dir is not None
        lease = snapshot.take_build_lease(self._dir, col.uuid)
        if lease is None:
            if searching and not state.marked_wanted:
                snapshot.mark_wanted(self._dir, col.uuid)
                state.marked_wanted = True
            if not state.awaits_build:
                state.awaits_build = True
                state.seen_snapshot = self._snapshot_identity(col.uuid)
                logger.info(
                    "another process is building or changing the HNSW graph of collection "
                    "%s; queries here search exactly what its graph lacks until its "
                    "snapshot is written",
                    col.uuid,
                )
            return None
        adopts = state.awaits_build and not state.replaces_snapshot
        if adopts and self._landed_snapshot(state) is not None:
            lease.release()  # the holder just wrote its snapshot and let go
            return None
        state.awaits_build = state.marked_wanted = False
        return lease

    def _other_build_news(self, state: IndexState) -> bool:
        """For a search of a state awaiting another's build: whether `ready()` has
        something to do (mark the job wanted; adopt a snapshot landed since it looked)."""
        assert self._dir is not None
        if not state.marked_wanted:  # (a state only writes had used, too)
            return True
        return self._landed_snapshot(state) is not None

    def _snapshot_identity(self, collection_uuid: str) -> tuple[int, int, int, int] | None:
        """`snapshot.file_identity` of the collection's graph snapshot here."""
        assert self._dir is not None
        return snapshot.file_identity(snapshot.snapshot_path(self._dir, collection_uuid))

    def _landed_snapshot(self, state: IndexState) -> tuple[int, int, int, int] | None:
        """The identity of the graph snapshot at the collection's path when it is another
        than the one the awaiting `state` last saw; None when there is none (a snapshot
        removed is none landed) or it is the same."""
        found = self._snapshot_identity(state.col.uuid)
        return None if found is None or found == state.seen_snapshot else found

    def _adopt_other_build(
        self, db: StoreSession, col: CollectionRow, state: IndexState, params: HnswParams
    ) -> IndexState:
        """A state awaiting another process's build or backlog pass, replaced by the graph
        of a snapshot landed since it last looked (caught up from the oplog then, as any
        snapshot loaded: what the other's graph lacks is searched exactly), or kept (no new
        file, or one it cannot use: it may build itself once the lease is free). A rebuilt
        index (`replaces_snapshot`) adopts none: it waits for the lease and builds."""
        assert self._dir is not None
        if state.saving is not None:  # this process's own snapshot: `_snapshot_landed`
            return state
        if state.replaces_snapshot:  # a rebuild replaces the graph on disk, never adopts it
            return state
        seen = self._landed_snapshot(state)
        if seen is None:
            return state
        state.seen_snapshot = seen
        path = snapshot.snapshot_path(self._dir, col.uuid)
        snap = snapshot.read_snapshot(path, self.owner(col))
        if snap is None:
            return state
        loaded = self._snapshot_state(col, params, path, snap, db.oplog_head(col.cid))
        if loaded is None:
            return state
        loaded.writes_only = state.writes_only
        logger.info("collection %s: serving the graph another process built", col.uuid)
        return self._install(col.cid, loaded)

    def _adopt_finished_build(
        self, db: StoreSession, col: CollectionRow, state: IndexState
    ) -> None:
        build = state.build
        if build is None or build.thread.is_alive():
            return
        state.build = None
        outcome = build.outcome[0] if build.outcome else RuntimeError("no graph was produced")
        if isinstance(outcome, Exception):
            state.build_failures += 1
            state.build_failed_at = time.monotonic()
            logger.error(
                "building the graph of %s failed: %s; queries use exact search, and the "
                "build is tried again in %.0f s",
                col.uuid,
                outcome,
                retry_delay(state.build_failures),
            )
            return
        if build.watermark < col.pruned_seq:
            logger.info("graph of %s is older than the oplog floor; building again", col.uuid)
            return
        # The exact index's rows (16-bit) were kept current while the graph was built:
        # keep them.
        state.index = VectorIndex.from_graph(
            state.index.dim, state.index.params, self._thresholds, outcome, state.index.flat
        )
        state.watermark = build.watermark
        state.unsnapshotted = len(state.index)
        state.build_failures = 0
        if build.saved:  # the graph process's output was written as the snapshot
            build.covered = state.unsnapshotted
            self._snapshot_landed(col, state, build)
        state.resized = True
        index_calibration.use(state, build.calibration)
        self._catch_up(db, col, state)
        logger.info("HNSW graph of collection %s is ready", col.uuid)

    def calibration(self, col: CollectionRow) -> Calibration | None:
        """The recall measurement this process's index of a collection searches by, or,
        when it holds none, the one in the collection's snapshot."""
        state = self._states.get(col.cid)
        if state is not None:
            return state.calibration
        if self._dir is None:
            return None
        header = snapshot.read_header(snapshot.snapshot_path(self._dir, col.uuid))
        return None if header is None else Calibration.from_json(header.get("calibration"))

    def _start_calibration_if_due(self, col: CollectionRow, state: IndexState) -> None:
        """`index_calibration.start_if_due` on the snapshot in this cache's directory."""
        if self._dir is not None:
            index_calibration.start_if_due(col, state, self._dir, self.owner)

    def dirty(self) -> list[CollectionRow]:
        """Collections with index changes not yet snapshotted (checkpointed at close)."""
        return [
            s.col
            for s in self._states.values()
            if s.unsnapshotted > 0 or s.saving is not None or s.saved_at is not None
        ]

    def checkpoint(self, col: CollectionRow, final: bool = False) -> tuple[int | None, bool]:
        """Snapshot the index if it is a graph.

        Returns the oplog seq up to which entries may be pruned, and whether a graph snapshot
        now covers it. A snapshot on disk is never replaced by an older one. The snapshot
        is written by a thread (`_start_snapshot`: at 1M x 384 a 1 GB file, 4-6 s that
        held up the query or write that asked for it), so what it covers is returned by
        the checkpoint after it ends; `final` (closing, a rebuild) and an index being
        evicted wait for it, or write in the caller's thread.
        """
        state = self._states.get(col.cid)
        if state is None:
            return None, False
        if state.saving is not None:
            if not (final or state.evicting):
                return None, False
            self._adopt_snapshot(col, state, wait=True)
        evicting, state.evicting = state.evicting, False
        saved, state.saved_at = state.saved_at, None
        if saved is not None and (state.unsnapshotted == 0 or not (final or evicting)):
            if evicting:
                self._evict(col.cid)
            else:
                self._start_calibration_if_due(col, state)
            return saved, True
        if state.index.backlog:
            # The graph is behind its watermark until its backlog is applied: no snapshot,
            # and the oplog is kept (an evicted index's next load catches up from it).
            if evicting and state.backlog_pass is None:
                self._evict(col.cid)
            return (saved, True) if saved is not None else (None, False)
        if not state.index.uses_graph:
            state.unsnapshotted = 0
            if state.awaits_build:
                # Another process's build catches up from a watermark this one does not
                # know: pruning to this exact index's would make it build again.
                return None, False
            # A graph being built will catch up from its own watermark: keep that oplog.
            floor = state.build.watermark if state.build is not None else state.watermark
            return floor, False
        if self._writer is None:
            return None, False
        if not (final or evicting):
            if self._snapshot_due(state):
                self._start_snapshot(col, state)
            return None, False
        try:
            written = self._writer.write_or_warn(
                col,
                state.watermark,
                state.index,
                index_calibration.to_store(state),
                state.replaces_snapshot,
            )
        except NotFoundError:  # deleted by another process: nothing to keep
            self.forget(col.cid)
            return None, False
        if not written:
            return None, False  # another process is writing it: evict on a later round
        state.unsnapshotted = 0
        state.replaces_snapshot = False
        state.may_calibrate = True
        if evicting:
            self._evict(col.cid)
        else:
            self._start_calibration_if_due(col, state)
        return state.watermark, True

    def _snapshot_due(self, state: IndexState) -> bool:
        """Whether enough changes since the last snapshot call for another."""
        return state.unsnapshotted >= self._snapshot_size(len(state.index))

    def _snapshot_size(self, records: int) -> int:
        """The changes that call for another snapshot of a graph of `records`:
        `snapshot_every`, or a tenth of them."""
        return max(self._snapshot_every, records // 10)

    def _start_snapshot(self, col: CollectionRow, state: IndexState) -> None:
        """Write the graph's snapshot in a thread. The graph is not changed until it ends:
        changes meanwhile are searched exactly beside it (`VectorIndex.defer`) and applied
        when the thread is done (`_adopt_snapshot`)."""
        index, watermark, calibration = (
            state.index,
            state.watermark,
            index_calibration.to_store(state),
        )
        job = IndexJob(
            threading.Thread(daemon=True),
            watermark,
            covered=state.unsnapshotted,
            replaces=state.replaces_snapshot,
        )

        writer = self._writer
        assert writer is not None

        def work() -> None:
            with contextlib.suppress(NotFoundError):  # deleted: the next call forgets it
                if not job.stop.is_set() and writer.write_or_warn(
                    col, watermark, index, calibration, job.replaces
                ):
                    job.outcome.append(True)

        job.thread = threading.Thread(target=work, name=f"huedb-snapshot-{col.uuid}", daemon=True)
        state.saving = job
        running_jobs.add(job)
        job.thread.start()

    def _adopt_snapshot(self, col: CollectionRow, state: IndexState, wait: bool = False) -> None:
        """Once the snapshot thread has ended: count what the snapshot covers (the oplog up
        to it is pruned by the next checkpoint) and apply the changes deferred meanwhile,
        here when few or when `wait`ing (closing, evicting), else by a background pass."""
        job = state.saving
        if job is None or (job.thread.is_alive() and not wait):
            return
        job.thread.join()
        state.saving = None
        if job.outcome:
            self._snapshot_landed(col, state, job)
        index = state.index
        few = index.backlog <= INLINE_MAX_CHANGES and not index.keeps_view
        if index.backlog and state.backlog_pass is None and (few or wait):
            index.apply_backlog_here()
            state.resized = True

    def _snapshot_landed(self, col: CollectionRow, state: IndexState, job: IndexJob) -> None:
        """Count what a thread's snapshot covers: the next checkpoint prunes the oplog up
        to it, and the recall may be measured on it."""
        state.unsnapshotted = max(0, state.unsnapshotted - job.covered)
        if state.awaits_build and self._dir is not None:  # not another process's to adopt
            state.seen_snapshot = self._snapshot_identity(col.uuid)
        state.saved_at = job.watermark
        state.may_calibrate = True
        state.replaces_snapshot = False
        self._pending[col.cid] = col

    def link_snapshot(self, col: CollectionRow) -> tuple[int, int] | None:
        """`SnapshotWriter.link` on the collection's snapshot (`huedb verify --repair`);
        None without an index directory."""
        return None if self._writer is None else self._writer.link(col)

    def _load(self, db: StoreSession, col: CollectionRow, params: HnswParams) -> IndexState:
        assert col.dimension is not None
        if self._dir is not None:
            path = snapshot.snapshot_path(self._dir, col.uuid)
            snap = snapshot.read_snapshot(path, self.owner(col))
            if snap is not None:
                state = self._snapshot_state(col, params, path, snap, db.oplog_head(col.cid))
                if state is not None:
                    return state
            elif col.snapshot_seq > 0 and self._shared_store and not path.exists():
                logger.info(
                    "no index snapshot of collection %s on this node yet; building it from "
                    "the store",
                    col.uuid,
                )
            elif col.snapshot_seq > 0:
                logger.warning(
                    "index snapshot %s of collection %s is missing or unusable; "
                    "rebuilding from the store",
                    path,
                    col.uuid,
                )
        return self._rebuild(db, col, params)

    def _snapshot_state(
        self,
        col: CollectionRow,
        params: HnswParams,
        path: Path,
        snap: snapshot.Snapshot,
        head: int,
    ) -> IndexState | None:
        """The collection's index as the snapshot read from `path` holds it, or None when
        this process cannot serve it (older than the oplog floor, ahead of the oplog head
        `head` the read session sees, another dimension or space, a payload that is no
        index: each warned about; the last one removed).

        A snapshot ahead of the head holds changes the session cannot see: another process
        wrote it after the session began (rare: it is left for the next session), or the
        store is an older copy than the index directory (a file-level restore of
        huedb.sqlite3 alone): its graph would hold records the store does not, whose rows
        no read finds. The index is then built from the store, whose snapshot replaces that
        file once written; the file itself is left (it may be the newer one)."""
        assert self._dir is not None and col.dimension is not None
        if snap.watermark < col.pruned_seq or snap.dim != col.dimension:
            logger.warning("index snapshot %s is older than the oplog floor; rebuilding", path)
            return None
        if snap.watermark > head:
            logger.warning(
                "index snapshot %s holds changes up to %d, past the store's %d (the store "
                "older than its index directory, or a snapshot newer than this read); "
                "building the index from the store",
                path,
                snap.watermark,
                head,
            )
            return None
        if snap.space != params.space:
            logger.warning("index snapshot %s has another space; rebuilding", path)
            return None
        try:
            index = VectorIndex.from_serialized(
                col.dimension, params, self._thresholds, snap.payload, snap.mapping
            )
        except (ValueError, RuntimeError) as exc:
            logger.warning("cannot load index snapshot %s (%s); rebuilding", path, exc)
            snapshot.discard(path, self._dir, col.uuid, snap)
            return None
        state = IndexState(col, index, snap.watermark, may_calibrate=True)
        index_calibration.use(state, Calibration.from_json(snap.calibration))
        return state

    def _rebuild_graph(self, db: StoreSession, col: CollectionRow, state: IndexState) -> IndexState:
        """Replace a graph that is mostly tombstones (`VectorIndex.wants_rebuild`) with the
        store's vectors, searched exactly while a new graph is built from them; its
        snapshot replaces the one on disk."""
        logger.info(
            "collection %s: its graph holds %d tombstones beside %d records; building it again",
            col.uuid,
            state.index.tombstones,
            len(state.index),
        )
        state = self._install(col.cid, self._rebuild(db, col, state.index.params))
        state.last_used = next(self._clock)
        state.replaces_snapshot = True
        state.unsnapshotted = max(state.unsnapshotted, 1)
        if self._dir is not None and not (state.index.uses_graph or state.index.wants_graph):
            # Below the exact-search threshold now: no graph will replace the stale one.
            snapshot.remove_graph_snapshot(self._dir, col.uuid)
        return state

    def _rebuild(self, db: StoreSession, col: CollectionRow, params: HnswParams) -> IndexState:
        assert col.dimension is not None
        # The head first: the vectors read next hold every change up to it (one snapshot).
        head = db.oplog_head(col.cid)
        index = VectorIndex(col.dimension, params, self._thresholds)
        index.attach_vectors(self._read_vectors(db, col, params))
        return IndexState(col, index, head)

    def _read_vectors(
        self, db: StoreSession, col: CollectionRow, params: HnswParams
    ) -> FlatVectors:
        """Every vector of a collection as of the session's snapshot: float32, or the 16-bit
        rows of a graph (`VectorIndex.to_graph_rows`) when there are too many for exact
        search (no float32 copy of them all is ever held)."""
        assert col.dimension is not None
        count = db.count_records(col.cid)
        if count * col.dimension > self._thresholds.exact_max_floats:
            flat = FlatVectors(col.dimension, GRAPH_DTYPE, params.space)
        else:
            flat = FlatVectors(col.dimension)
        flat.reserve(count)
        for keys, vectors in db.vector_chunks(col.cid, col.dimension, REBUILD_CHUNK):
            flat.upsert(keys, vectors)
        if len(flat):
            logger.info("loaded %d vectors of collection %s from the store", len(flat), col.uuid)
        return flat

    def _catch_up(self, db: StoreSession, col: CollectionRow, state: IndexState) -> bool:
        """Apply the oplog entries after the index's watermark; True if any changed it."""
        head = db.oplog_head(col.cid)
        now = time.monotonic()
        behind_since, state.current_at = state.current_at, now
        if head <= state.watermark:
            return False
        index = state.index
        changes = read_changes(db, col.cid, state.watermark, index.dim)
        state.watermark = head
        if not changes.entries:
            return False
        events.caught_up(changes.entries, now - behind_since)
        removed, keys, vectors = changes.removed, changes.keys, changes.vectors
        changed_keys = len(removed) + len(keys)
        defer = bool(index.backlog) or state.saving is not None or index.keeps_view
        defer |= state.writes_only
        if index.uses_graph and (defer or changed_keys > INLINE_MAX_CHANGES):
            # Too many for the graph within this call, the graph is being saved or is a
            # view too large to copy, or only this process's writes use it: a background
            # pass or the end of the save applies them (and skips those whose vector did
            # not change).
            index.defer(removed, keys, vectors)
            state.unsnapshotted += changed_keys
            return True
        if len(keys):
            # Entries of a metadata-only change (a sparse value) leave the vector as it was.
            changed = ~_unchanged(index, keys, vectors)
            keys, vectors = keys[changed], vectors[changed]
        index.remove(removed)
        index.upsert(keys, vectors)
        applied = len(removed) + len(keys)
        state.unsnapshotted += applied
        return applied > 0


def _unchanged(index: VectorIndex, keys: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Per key, whether the index already holds exactly this vector (its rows when it has
    them, float32 or at graph precision, and its graph's, at graph precision, when it has
    one)."""
    same = np.ones(len(keys), dtype=bool)
    flat = index.flat
    if flat is not None:
        same = flat.same_rows(keys, vectors)
    if index.uses_graph and np.any(same):
        wrong = set(index.mismatched(keys[same], vectors[same]))
        same[same] = [int(k) not in wrong for k in keys[same]]
    return same
