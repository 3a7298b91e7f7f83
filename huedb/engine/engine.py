"""The engine: a store as the truth, plus per-process indexes caught up from the oplog.

All public methods take the engine lock (one store, one connection, per engine), run in
one store session (a read snapshot or a write transaction: `engine/store.py`), and raise
huedb.errors on bad state (missing collection, wrong dimension). Argument shapes are
checked by the API layer before they get here; names by the engine, before the store.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from huedb.engine import events, graph_reach, node_dir, snapshot
from huedb.engine.budget import (
    Deadline,
    check_query_embeddings,
    check_query_results,
    check_read,
)
from huedb.engine.catalog import (
    CollectionRow,
    validate_database_name,
    validate_name,
    validate_tenant_name,
)
from huedb.engine.confirmed_search import (
    WarmIndex,
    confirmed_filtered_search,
    confirmed_search,
)
from huedb.engine.confirmed_sparse import confirmed_sparse_top
from huedb.engine.filters import RecordFilter
from huedb.engine.hnsw_config import recall_target
from huedb.engine.index_cache import IndexCache, hnsw_params
from huedb.engine.sparse_index import SparseIndexes, top_matching
from huedb.engine.store import Store, StoreSession
from huedb.engine.store_factory import open_store
from huedb.engine.vector_index import (
    APPROXIMATE_PLANS,
    VectorIndex,
    query_plan,
    unfiltered_search_ef,
)
from huedb.errors import (
    ClientClosedError,
    InvalidArgumentError,
    NotFoundError,
    StorageUnavailableError,
)
from huedb.options import EngineOptions
from huedb.record_batch import RecordBatch

logger = logging.getLogger(__name__)

INDEX_DIRNAME = "index"
LATENCY_WINDOW = 1000
# How often, at most, a process checks that the collections it holds indexes of still exist
# (another process or worker may have deleted them): one read of the collections' uuids.
DELETED_CHECK_INTERVAL_S = 5.0
CLOSED_MESSAGE = "This client has been closed: create a new client to use the store again"


class EngineLock:
    """The engine's reentrant lock, which refuses every caller once the engine is closed
    (`ClientClosedError`, checked once the lock is held, so a call that waited for
    `close()` is refused too)."""

    def __init__(self) -> None:
        self._rlock = threading.RLock()
        self.closed = False

    def __enter__(self) -> None:
        self._rlock.acquire()
        try:
            self.check_open()
        except ClientClosedError:
            self._rlock.release()
            raise

    def check_open(self) -> None:
        """ClientClosedError once the engine is closed (for calls that take no lock)."""
        if self.closed:
            raise ClientClosedError(CLOSED_MESSAGE)

    def __exit__(self, *exc: object) -> None:
        self._rlock.release()

    @contextlib.contextmanager
    def closing(self) -> Iterator[bool]:
        """Hold the lock, closed or not; yields whether the engine is still open."""
        with self._rlock:
            yield not self.closed


@dataclass
class QueryHits:
    """Per query: the matching keys and distances, best first; plus the rows by key."""

    keys: list[list[int]]
    distances: list[list[float]]
    rows: dict[int, tuple]
    plan: str = "exact"  # how the index was searched: one of events.QUERY_PLANS


class Engine:
    """One huedb store (a directory, or memory) opened by this process."""

    def __init__(self, path: Path | None, options: EngineOptions | None = None) -> None:
        """Open (creating or migrating) the store `options.store` selects (the SQLite store
        at `path`, or one in memory for None; or a PostgreSQL database), with this node's
        derived files in `path` (none for None).

        Callers other than tests go through `engine.registry.acquire_engine`.
        """
        self.path = path
        self.options = options or EngineOptions()
        self._lock = EngineLock()
        self._store: Store = open_store(path, self.options)
        # Taken after the store opened: the SQLite store may first need the lock exclusively.
        self._dir_lock = None
        try:
            self._dir_lock = None if path is None else node_dir.hold_directory(path)
            self._index_dir = None if path is None else path / INDEX_DIRNAME
            self._node_id = "" if path is None else node_dir.node_id(path)
            store_id, exists = self._store.store_id, self._collection_exists
            self._sparse = SparseIndexes(self._index_dir, self.options, store_id, exists=exists)
            # One memory budget over both (the index cache evicts either kind).
            self._indexes = IndexCache(
                self._index_dir, self.options, store_id, exists=exists, sparse=self._sparse
            )
            self._latencies: dict[str, deque[float]] = {}
            self._next_deleted_check = time.monotonic() + DELETED_CHECK_INTERVAL_S
            with self._lock, self._store.write() as db:
                db.ensure_defaults(DEFAULT_TENANT, DEFAULT_DATABASE)
        except BaseException:
            self._store.close()
            node_dir.release_directory(self._dir_lock)
            raise

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Snapshot dirty indexes, prune the oplog and close the store; every later call
        raises ClientClosedError."""
        with self._lock.closing() as still_open:
            if not still_open:
                return
            try:
                self._adopt_builds()
                self._maintain(self._indexes.dirty(), final=True)
                for col in self._sparse.dirty():
                    self._sparse.checkpoint(col)
            except Exception as exc:  # a store or file error must not keep the store open
                logger.warning("could not snapshot indexes at close: %s", exc)
            self._store.close()
            node_dir.release_directory(self._dir_lock)
            self._lock.closed = True

    def _collection_exists(self, collection_uuid: str) -> bool:
        """Whether the store still has the collection, read in a session of its own (never
        the engine's lock: snapshot threads ask, and `close()` waits for them). True when
        the store cannot say: the snapshot is written, as a cache (`compact` removes it
        should the collection be gone)."""
        session = self._store.snapshot_session()
        if session is None:  # in memory: no snapshot files either
            return True
        try:
            with session as db:
                db.collection_by_uuid(collection_uuid)
        except NotFoundError:
            return False
        except Exception as exc:
            logger.warning("could not check that collection %s exists: %s", collection_uuid, exc)
        return True

    def _adopt_builds(self) -> None:
        """Wait for background graph builds and swap them in, so close can snapshot them."""
        while building := self._indexes.finish_builds():
            with self._store.read() as db:
                for col in building:
                    try:
                        self._indexes.ready(db, db.collection_by_uuid(col.uuid))
                    except NotFoundError:
                        self._indexes.forget(col.cid)

    def reset(self) -> None:
        """Delete every tenant, database, collection and record."""
        with self._lock:
            with self._store.write() as db:
                uuids = db.collection_uuids()
                db.delete_everything()
                db.ensure_defaults(DEFAULT_TENANT, DEFAULT_DATABASE)
            self._indexes.clear()
            self._sparse.clear()
            self._indexes.sparse_changed()
            if self._index_dir is not None:
                for u in uuids:
                    snapshot.remove_collection_files(self._index_dir, u)

    # -- tenants and databases -------------------------------------------------------

    def create_tenant(self, name: str) -> None:
        validate_tenant_name(name)
        with self._lock, self._store.write() as db:
            db.create_tenant(name)

    def get_tenant(self, name: str) -> dict[str, Any]:
        with self._lock, self._store.read() as db:
            return db.get_tenant(name)

    def delete_empty_tenant(self, name: str) -> None:
        """Delete a tenant that holds no database (neither Chroma's API nor huedb's deletes
        tenants: operations use it to undo what they created)."""
        with self._lock, self._store.write() as db:
            db.delete_empty_tenant(name)

    def create_database(self, name: str, tenant: str) -> None:
        validate_database_name(name)
        with self._lock, self._store.write() as db:
            db.create_database(name, tenant)

    def get_database(self, name: str, tenant: str) -> dict[str, Any]:
        with self._lock, self._store.read() as db:
            return db.get_database(name, tenant)

    def list_databases(
        self, tenant: str, limit: int | None, offset: int | None
    ) -> list[dict[str, Any]]:
        with self._lock, self._store.read() as db:
            return db.list_databases(tenant, limit, offset)

    def delete_database(self, name: str, tenant: str) -> None:
        with self._lock:
            with self._store.write() as db:
                cols = db.delete_database(name, tenant)
                for col in cols:
                    db.delete_collection_records(col.cid)
            for col in cols:
                self._drop_index(col)

    # -- collections -----------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        metadata: dict[str, Any] | None,
        configuration: dict[str, Any],
        get_or_create: bool,
        tenant: str,
        database: str,
    ) -> CollectionRow:
        recall_target(metadata)  # refused before anything is written
        with self._lock, self._store.write() as db:
            db_id = db.database_id(tenant, database)
            if get_or_create:
                try:
                    return db.collection_by_name(db_id, name)
                except NotFoundError:
                    pass
            return db.insert_collection(db_id, name, metadata, configuration)

    def fix_dimension(self, collection_uuid: str, dimension: int) -> None:
        """Give a collection that has no dimension yet (no vector written) this one, as
        the first vector written would (operations carrying over a source's dimension)."""
        with self._lock, self._store.write() as db:
            db.set_dimension(db.collection_by_uuid(collection_uuid).cid, dimension)

    def get_collection(self, name: str, tenant: str, database: str) -> CollectionRow:
        with self._lock, self._store.read() as db:
            return db.collection_by_name(db.database_id(tenant, database), name)

    def get_collection_by_uuid(self, collection_uuid: str) -> CollectionRow:
        with self._lock, self._store.read() as db:
            return db.collection_by_uuid(collection_uuid)

    def database_of(self, col: CollectionRow) -> tuple[str, str]:
        """(tenant, database) names of a collection (the defaults when its database is gone
        meanwhile: for reports; an owner check uses `owner_of`)."""
        return self.owner_of(col) or (DEFAULT_TENANT, DEFAULT_DATABASE)

    def owner_of(self, col: CollectionRow) -> tuple[str, str] | None:
        """(tenant, database) names of a collection; None when its database no longer
        exists (deleted since the collection's row was read)."""
        with self._lock, self._store.read() as db:
            return db.database_names(col.database_id)

    def list_collections(
        self, tenant: str, database: str, limit: int | None, offset: int | None
    ) -> list[CollectionRow]:
        with self._lock, self._store.read() as db:
            return db.list_collections(db.database_id(tenant, database), limit, offset)

    def count_collections(self, tenant: str, database: str) -> int:
        with self._lock, self._store.read() as db:
            return db.count_collections(db.database_id(tenant, database))

    def update_collection(
        self,
        collection_uuid: str,
        new_name: str | None,
        new_metadata: dict[str, Any] | None,
        configure: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> None:
        """Rename a collection, replace its metadata and change its configuration.

        `configure` maps the stored configuration to the new one; it is applied to the row
        read inside the write transaction, so keys another process's writes added to the
        schema meanwhile are kept.
        """
        recall_target(new_metadata)
        with self._lock, self._store.write() as db:
            if new_name is not None:
                db.lock_database_of(collection_uuid)  # a catalog change of its database
            col = db.collection_by_uuid(collection_uuid)
            config = None if configure is None else configure(col.configuration)
            db.update_collection(col, new_name, new_metadata, config)

    def fork_collection(self, collection_uuid: str, new_name: str) -> CollectionRow:
        """A copy of a collection named `new_name` in its database, as of one moment (one
        write transaction): metadata, configuration and every record. Later writes to either
        are independent; the copy's index is loaded from the store on its first query."""
        with self._lock, self._store.write() as db:
            db.lock_database_of(collection_uuid)  # a catalog change of its database
            source = db.collection_by_uuid(collection_uuid)
            validate_name(new_name, "new_name")
            fork = db.fork_collection(source, new_name)
            db.record_fork(source.uuid, fork.uuid)
            return fork

    def fork_count(self, collection_uuid: str) -> int:
        """Forks made in the collection's lineage tree (Chroma Cloud's `fork_count`)."""
        with self._lock, self._store.read() as db:
            return db.fork_count(db.collection_by_uuid(collection_uuid).uuid)

    def delete_collection(self, name: str, tenant: str, database: str) -> None:
        with self._lock:
            with self._store.write() as db:
                db_id = db.database_id(tenant, database)
                if db.alias_target(db_id, name) is not None:
                    raise InvalidArgumentError(
                        f"[{name}] is an alias: delete_alias() it, or delete the collection by "
                        "its own name"
                    )
                col = db.collection_by_name(db_id, name)
                pointing = db.aliases_of(col.cid)
                if pointing:
                    raise InvalidArgumentError(
                        f"Collection [{name}] is the target of alias(es) {', '.join(pointing)}: "
                        "point them elsewhere or delete them first"
                    )
                db.delete_collection_records(col.cid)
                db.delete_collection_row(col.cid)
            self._drop_index(col)

    def set_alias(self, alias: str, target: str, create: bool, tenant: str, database: str) -> None:
        """Create an alias, or switch it to another collection atomically."""
        with self._lock, self._store.write() as db:
            db_id = db.database_id(tenant, database)
            validate_name(alias)
            if db.alias_target(db_id, target) is not None:  # was "Collection [x] does not exist"
                raise InvalidArgumentError(
                    f"[{target}] is an alias; an alias must name a collection (alias "
                    "the collection it names instead)"
                )
            db.set_alias(db_id, alias, target, create)

    def delete_alias(self, alias: str, tenant: str, database: str) -> None:
        with self._lock, self._store.write() as db:
            db.delete_alias(db.database_id(tenant, database), alias)

    def list_aliases(self, tenant: str, database: str) -> list[dict[str, str]]:
        with self._lock, self._store.read() as db:
            return db.list_aliases(db.database_id(tenant, database))

    def _drop_index(self, col: CollectionRow) -> None:
        self._indexes.drop(col.cid)
        self._sparse.forget(col.cid)
        self._indexes.sparse_changed()
        if self._index_dir is not None:
            snapshot.remove_collection_files(self._index_dir, col.uuid)

    # -- records ---------------------------------------------------------------------

    def add(self, collection_uuid: str, batch: RecordBatch) -> None:
        """Insert records whose ids are new; ids that exist are left unchanged."""
        with self._writing(collection_uuid) as db:
            col = self._writable(db, collection_uuid, batch)
            existing = db.existing_keys(col.cid, batch.ids)
            fresh = batch.take([i for i, rid in enumerate(batch.ids) if rid not in existing])
            db.insert_records(col.cid, fresh)
            self._fix_dimension(db, col, fresh)

    def update(self, collection_uuid: str, batch: RecordBatch) -> None:
        """Update records that exist; missing ids are ignored."""
        with self._writing(collection_uuid) as db:
            col = self._writable(db, collection_uuid, batch)
            existing = db.existing_keys(col.cid, batch.ids)
            found = batch.take([i for i, rid in enumerate(batch.ids) if rid in existing])
            db.update_records(col.cid, [existing[rid] for rid in found.ids], found)
            self._fix_dimension(db, col, found)

    def upsert(self, collection_uuid: str, batch: RecordBatch) -> None:
        """Update the ids that exist and insert the others, in one transaction."""
        with self._writing(collection_uuid) as db:
            col = self._writable(db, collection_uuid, batch)
            existing = db.existing_keys(col.cid, batch.ids)
            old = batch.take([i for i, rid in enumerate(batch.ids) if rid in existing])
            new = batch.take([i for i, rid in enumerate(batch.ids) if rid not in existing])
            db.update_records(col.cid, [existing[rid] for rid in old.ids], old)
            db.insert_records(col.cid, new)
            self._fix_dimension(db, col, batch)

    def delete(self, collection_uuid: str, flt: RecordFilter, limit: int | None) -> int:
        """Delete matching records; returns how many were deleted.

        The selection runs under the time budget; past it, nothing is deleted.
        """
        check_read(self.options, flt)
        with self._writing(collection_uuid) as db:
            col = db.collection_by_uuid(collection_uuid)
            with self._budget(db):
                keys = db.select_keys(col.cid, flt, limit)
            db.delete_keys(col.cid, keys)
            return len(keys)

    @contextlib.contextmanager
    def _writing(self, collection_uuid: str) -> Iterator[StoreSession]:
        """One write transaction on a collection, then this process's index catches up.

        Once the transaction committed, the write has happened: a failure of the catch-up
        (the collection deleted by another process meanwhile, an index or snapshot error) is
        logged, never raised to a caller who would take the write for failed; the indexes
        catch up from the store's operation log on their next use."""
        with self._on_collection(collection_uuid):
            with self._store.write() as db:
                yield db
            try:
                self._refresh_index(collection_uuid)
            except StorageUnavailableError as exc:
                # The store went away just after the commit: an operational condition
                # the connection layer has already logged, not a fault of huedb's.
                logger.warning(
                    "a committed write to collection %s left this process's index behind "
                    "(%s); it catches up from the store on its next use",
                    collection_uuid,
                    exc,
                )
            except NotFoundError:
                # Deleted by another process or worker just after the commit: nothing to
                # catch up, and the write stands (it happened before the delete).
                logger.info("collection %s was deleted just after a write to it", collection_uuid)
                self._forget_collection(collection_uuid)
            except Exception:
                logger.exception(
                    "a committed write to collection %s left this process's index behind; "
                    "it catches up from the store on its next use",
                    collection_uuid,
                )

    @contextlib.contextmanager
    def _on_collection(self, collection_uuid: str) -> Iterator[None]:
        """The engine lock, for a call on one collection: when the store no longer has it
        (NotFoundError: deleted by another process, or node), the indexes this process held
        of it are forgotten, so no snapshot of it is written later, and its files here are
        removed, held or not (another node's deleter removes only its own)."""
        with self._lock:
            try:
                yield
            except NotFoundError:
                self._forget_collection(collection_uuid)
                raise
            self._forget_deleted_collections()

    def _forget_collection(self, collection_uuid: str) -> None:
        """Forget this process's indexes of a collection the store no longer has, and remove
        its files here unless it exists again. Called under the engine lock."""
        self._indexes.forget_collection(collection_uuid)
        self._sparse.forget_collection(collection_uuid)
        self._indexes.sparse_changed()
        if self._has_index_files(collection_uuid) and not self._collection_exists(collection_uuid):
            self._remove_orphan_files(collection_uuid)

    def _forget_deleted_collections(self, now: bool = False) -> None:
        """Forget the indexes (held or evicted) of collections the store no longer has, and
        remove their files here: deleted by another process or worker, they were otherwise
        kept until a call on that very collection, and their memory with them. One read of
        the collections' uuids, at most every `DELETED_CHECK_INTERVAL_S` unless `now`, and
        none while this process holds no index. Called under the engine lock."""
        if not now and time.monotonic() < self._next_deleted_check:
            return
        self._next_deleted_check = time.monotonic() + DELETED_CHECK_INTERVAL_S
        known = self._indexes.collection_uuids() | self._sparse.collection_uuids()
        if not known:
            return
        try:
            with self._store.read() as db:
                gone = known - set(db.collection_uuids())
        except Exception as exc:  # the call it follows succeeded: never fail it for this
            logger.warning("could not check which collections were deleted: %s", exc)
            return
        for collection_uuid in sorted(gone):
            logger.info("forgetting the index of collection %s: it was deleted", collection_uuid)
            self._indexes.forget_collection(collection_uuid)
            self._sparse.forget_collection(collection_uuid)
            if self._has_index_files(collection_uuid):
                self._remove_orphan_files(collection_uuid)
        self._indexes.sparse_changed()

    def _has_index_files(self, collection_uuid: str) -> bool:
        """Whether this directory holds files of the collection (an index evicted or never
        loaded here still has its snapshot)."""
        if self._index_dir is None or not self._index_dir.is_dir():
            return False
        return any(self._index_dir.glob(f"{glob.escape(collection_uuid)}.*"))

    def _remove_orphan_files(self, collection_uuid: str) -> list[str]:
        """`snapshot.remove_orphan_files` of a collection the store no longer has."""
        if self._index_dir is None:
            return []
        owner = snapshot.owner_name(self._store.store_id, collection_uuid)
        return snapshot.remove_orphan_files(self._index_dir, collection_uuid, owner)

    def _writable(
        self, db: StoreSession, collection_uuid: str, batch: RecordBatch
    ) -> CollectionRow:
        """The collection, after checking the batch's dimension against the fixed one.

        Checked here, inside the write transaction, because the dimension is fixed by the
        first write of any process (and a missing collection is reported first).
        """
        col = db.collection_by_uuid(collection_uuid)
        vectors = batch.embeddings
        if any(i == "" for i in batch.ids):
            raise InvalidArgumentError("Empty ID, ID must have at least one character")
        if vectors is None or len(vectors) == 0 or col.dimension is None:
            return col
        dim = int(vectors.shape[1])
        if col.dimension != dim:
            raise InvalidArgumentError(
                f"Collection expecting embedding with dimension of {col.dimension}, got {dim}"
            )
        return col

    @staticmethod
    def _fix_dimension(db: StoreSession, col: CollectionRow, written: RecordBatch) -> None:
        """The first write that stores vectors fixes the collection's dimension."""
        if col.dimension is None and written.embeddings is not None and len(written) > 0:
            db.set_dimension(col.cid, int(written.embeddings.shape[1]))

    # -- reads -----------------------------------------------------------------------

    def count(self, collection_uuid: str) -> int:
        with self._on_collection(collection_uuid), self._store.read() as db, self._budget(db):
            return db.count_records(db.collection_by_uuid(collection_uuid).cid)

    def get(
        self,
        collection_uuid: str,
        flt: RecordFilter,
        limit: int | None,
        offset: int | None,
        with_vectors: bool,
    ) -> list[tuple]:
        """Matching rows (key, id, document, uri, metadata_json[, vector]) in storage order."""
        check_read(self.options, flt)
        with self._on_collection(collection_uuid), self._store.read() as db, self._budget(db):
            col = db.collection_by_uuid(collection_uuid)
            return db.fetch_rows(col.cid, flt, limit, offset, with_vectors)

    def query(
        self,
        collection_uuid: str,
        queries: np.ndarray,
        n_results: int,
        flt: RecordFilter,
        with_vectors: bool,
    ) -> QueryHits:
        """Nearest records to each query vector among those matching the filters."""
        check_read(self.options, flt)
        check_query_embeddings(self.options, len(queries))
        started = time.perf_counter()
        with self._on_collection(collection_uuid), self._indexes.query_access():
            hits = self._query_warm_index(collection_uuid, queries, n_results, flt, with_vectors)
            if hits is None:
                with self._store.read() as db, self._budget(db) as deadline:
                    hits = self._query_in_snapshot(
                        db, collection_uuid, queries, n_results, flt, with_vectors, deadline
                    )
            self._maintain(self._indexes.pending_maintenance())
            took = time.perf_counter() - started
            window = self._latencies.setdefault(collection_uuid, deque(maxlen=LATENCY_WINDOW))
            window.append(took)
        events.query_done(hits.plan, took)
        return hits

    def sparse_knn(
        self,
        collection_uuid: str,
        key: str,
        weights: dict[int, float],
        bm25: bool,
        limit: int,
        flt: RecordFilter,
        with_rows: bool = True,
    ) -> tuple[list[tuple[int, float]], dict[int, tuple]]:
        """The `limit` records nearest a sparse query under metadata key `key` among those
        matching the filter: (key, `1 - sum_t w_t d_t` as float32) by ascending measure then
        key, and their rows (without `with_rows`, only `(key, id)`, from the index). `weights`
        maps each query index to its float32 weight; with `bm25` each is scaled by the
        index's IDF over the whole collection (`sparse_postings`). A held index answers
        first, confirmed by one store read (`confirmed_sparse`); else the sparse index is
        caught up from the oplog in the read's snapshot (`sparse_index`).
        """
        check_read(self.options, flt)
        with self._on_collection(collection_uuid):
            if flt.selects_all and limit > 0:
                answer = confirmed_sparse_top(
                    self._store,
                    self._sparse,
                    collection_uuid,
                    key,
                    weights,
                    bm25,
                    limit,
                    with_rows,
                    self.options.query_timeout,
                )
                if answer is not None:
                    self._sparse_searched_warm(collection_uuid, key)
                    return answer
            with self._store.read() as db, self._budget(db) as deadline:
                col = db.collection_by_uuid(collection_uuid)
                with deadline.paused():  # loading or catching up is never cut halfway
                    state, column = self._sparse.ready(db, col, key)
                    self._indexes.sparse_used(state)
                records = state.n_records if bm25 else None
                ids = None if with_rows else state.ids
                found, rows = top_matching(db, col.cid, column, weights, records, limit, flt, ids)
                with deadline.paused():  # may take up a finished graph build
                    self._indexes.keep_within_budget(db, sparse_using=col.cid)
            for pending in self._sparse.pending():
                self._sparse.checkpoint(pending)
            self._maintain(self._indexes.pending_maintenance())
        return [(k, m) for k, m in found if k in rows], rows

    def _sparse_searched_warm(self, collection_uuid: str, key: str) -> None:
        """After a sparse search answered by the held index: count it as a use, and evict
        (as any call that loads an index) when the others exceed the memory budget."""
        held = self._sparse.warm(collection_uuid, key)
        if held is None:
            return
        state = held[0]
        self._indexes.sparse_used(state)
        if self._indexes.over_budget(state.nbytes):
            self._indexes.keep_within_budget(None, sparse_using=state.col.cid)
            self._maintain(self._indexes.pending_maintenance())

    def indexing_status(self, collection_uuid: str) -> dict[str, Any]:
        """How much of the collection this process's index serves through its graph.

        Loading the index if needed (which starts a background graph build for a large
        collection): `op_indexing_progress` is 1.0 once queries no longer need exact search.
        Chroma's four fields, then the recall target and what this process measured
        (`_recall_figures`).
        """
        with self._on_collection(collection_uuid):
            with self._store.read() as db:
                col = db.collection_by_uuid(collection_uuid)
                index = self._indexes.ready(db, col)
                # The index is caught up to this snapshot, so it holds every record: no
                # count(*) scan (50 ms at 1M records, and callers poll this).
                total = len(index) if index is not None else 0
            self._maintain(self._indexes.pending_maintenance())
            recall = self._recall_figures(col, index)
        pending = 0
        if index is not None:  # exact until the graph is built, or changes it has yet to take
            pending = total if index.wants_graph else min(index.backlog, total)
        return {
            "num_indexed_ops": total - pending,
            "num_unindexed_ops": pending,
            "total_ops": total,
            "op_indexing_progress": 1.0 if total == 0 else (total - pending) / total,
            **recall,
        }

    def _recall_figures(self, col: CollectionRow, index: VectorIndex | None) -> dict[str, Any]:
        """The recall target, the recall@10 last measured on the graph (None until a graph
        was measured), the ef_search graph searches use and where it comes from:
        "configuration" (set by the user), "recall_target" (measured), "default"."""
        measured = self._indexes.calibration(col)
        params = hnsw_params(col)
        ef, source = params.ef_search, "default"
        if params.ef_search_set:
            source = "configuration"
        elif index is not None and index.uses_graph:
            if index.search_ef != ef:
                ef, source = index.search_ef, "recall_target"
        elif measured is not None or col.snapshot_seq > 0:  # a graph snapshot, not held here
            tuned = None if measured is None else measured.ef_search  # from its header
            searched = unfiltered_search_ef(params, tuned)
            if searched != ef:
                ef, source = searched, "recall_target"
        return {
            "recall_target": params.recall_target,
            "recall": None if measured is None else measured.recall,
            "ef_search": ef,
            "ef_search_source": source,
        }

    def recent_latencies(self, collection_uuid: str) -> list[float]:
        """Durations in seconds of this process's recent queries on a collection."""
        with self._lock:
            return list(self._latencies.get(collection_uuid, ()))

    def _query_warm_index(
        self,
        collection_uuid: str,
        queries: np.ndarray,
        n_results: int,
        flt: RecordFilter,
        with_vectors: bool,
    ) -> QueryHits | None:
        """A query answered by the index this process holds, confirmed by the store in the
        same snapshot as its reads (`confirmed_search`); None when that cannot be done or
        confirmed (the usual path answers then)."""
        held = self._indexes.warm(collection_uuid)
        if held is None:
            return None
        warm = WarmIndex(*held)
        index, dimension = warm.index, warm.collection.dimension
        if len(index) == 0 or n_results <= 0 or queries.shape[1] != dimension:
            return None  # the usual path answers (or refuses) these
        if flt.selects_all:
            top = min(n_results, len(index))
            check_query_results(self.options, len(queries), top)
            timeout = self.options.query_timeout
            found = confirmed_search(self._store, warm, queries, top, with_vectors, timeout)
        else:
            found = confirmed_filtered_search(
                self._store, warm, queries, n_results, flt, with_vectors, self.options
            )
        if found is None:
            return None
        self._indexes.confirmed(collection_uuid)
        hits, rows, plan = found
        return QueryHits(
            [[int(k) for k in keys] for keys, _ in hits],
            [[float(d) for d in dists] for _, dists in hits],
            rows,
            plan,
        )

    def _query_in_snapshot(
        self,
        db: StoreSession,
        collection_uuid: str,
        queries: np.ndarray,
        n_results: int,
        flt: RecordFilter,
        with_vectors: bool,
        deadline: Deadline,
    ) -> QueryHits:
        col = db.collection_by_uuid(collection_uuid)
        empty = QueryHits([[] for _ in range(len(queries))], [[] for _ in range(len(queries))], {})
        if col.dimension is None:
            return empty
        if queries.shape[1] != col.dimension:
            raise InvalidArgumentError(
                f"Collection expecting embedding with dimension of {col.dimension}, "
                f"got {queries.shape[1]}"
            )
        allowed = None if flt.selects_all else db.allowed_keys(col.cid, flt)
        with deadline.paused():  # loading or catching up the index is never cut halfway
            index = self._indexes.ready(db, col, need_vectors=allowed is not None)
        if index is None:
            return empty
        candidates = len(index) if allowed is None else len(allowed)
        check_query_results(self.options, len(queries), min(n_results, candidates))

        def fetch(keys: np.ndarray) -> np.ndarray:
            return db.vectors_by_keys(keys, col.dimension)

        plan = query_plan(index, allowed)
        all_keys: list[list[int]] = []
        all_dists: list[list[float]] = []
        for q in queries:
            deadline.check()
            keys_found, dists = index.search(q, n_results, allowed, fetch)
            if plan in APPROXIMATE_PLANS:  # an exact search cannot miss the vector itself
                same = db.keys_with_vector(col.cid, q)
                if same and allowed is not None:
                    same = [k for k in same if np.isin(k, allowed)]
                keys_found, dists = index.with_exact_matches(
                    q, n_results, (keys_found, dists), same, fetch
                )
            all_keys.append([int(k) for k in keys_found])
            all_dists.append([float(d) for d in dists])
        wanted = sorted({k for ks in all_keys for k in ks})
        rows = db.fetch_by_keys(col.cid, wanted, with_vectors) if wanted else {}
        return QueryHits(all_keys, all_dists, rows, plan)

    # -- maintenance -------------------------------------------------------------------

    def collections(self) -> list[CollectionRow]:
        """Every collection of every tenant and database."""
        with self._lock, self._store.read() as db:
            return [db.collection_by_uuid(u) for u in db.collection_uuids()]

    def integrity_problems(self) -> list[str]:
        """The store's integrity check plus huedb's own cross-table invariants."""
        with self._lock:
            return self._store.integrity_problems()

    def check_index(self, collection_uuid: str, sample: int = 1000) -> IndexCheck:
        """Compare the collection's index (snapshot + catch-up) with the store, and say
        whether its snapshot is usable: "unusable" (unreadable, damaged, another store's)
        or "ahead of the store" (it holds changes past the store's oplog head: a store
        older than its index directory) are problems `verify --repair` rebuilds."""
        with self._lock:
            check, watermark = self._check_index(collection_uuid, sample)
            if watermark is not None:
                # Ahead of the session that read the store: ahead for good only if a read
                # begun now still sees an older head (another process may have written the
                # snapshot after that session began).
                with self._store.read() as db:
                    head = db.oplog_head(db.collection_by_uuid(collection_uuid).cid)
                if watermark > head:
                    check.snapshot = SNAPSHOT_AHEAD
            return check

    def _check_index(self, collection_uuid: str, sample: int) -> tuple[IndexCheck, int | None]:
        """`check_index` and the snapshot's watermark when it is past the session's head."""
        ahead_at = None
        with self._store.read() as db:
            col = db.collection_by_uuid(collection_uuid)
            snap, unreachable = "none", None
            if self._index_dir is not None:
                path = snapshot.snapshot_path(self._index_dir, col.uuid)
                if path.exists():
                    read = snapshot.read_snapshot(path, self._indexes.owner(col))
                    snap = "ok" if read is not None else SNAPSHOT_UNUSABLE
                    if read is not None:
                        payload = np.frombuffer(read.payload, dtype=np.uint8)
                        unreachable = graph_reach.unreachable_records(payload)
                        if read.watermark > db.oplog_head(col.cid):
                            ahead_at = read.watermark
            index = self._indexes.fresh_load(db, col)
            keys = db.collection_keys(col.cid)
            indexed = set() if index is None else set(index.keys().tolist())
            stored = set(keys)
            wrong: list[int] = []
            probe = sorted(stored & indexed)[:: max(1, len(stored) // max(sample, 1))]
            if index is not None and probe:
                vectors = db.vectors_by_keys(probe, col.dimension)
                wrong = index.mismatched(np.asarray(probe, dtype=np.uint64), vectors)
            check = IndexCheck(
                collection=col.uuid,
                name=col.name,
                records=len(stored),
                indexed=len(indexed),
                missing=sorted(stored - indexed),
                extra=sorted(indexed - stored),
                wrong_vectors=wrong,
                snapshot=snap,
                unreachable=unreachable,
            )
        return check, ahead_at

    def rebuild_index(self, collection_uuid: str, keep_snapshot: bool = False) -> bool:
        """Rebuild a collection's index from the store and replace its snapshot; whether
        the rebuilt index holds a graph.

        Without `keep_snapshot` the snapshot is removed first: it is suspect (`huedb verify
        --repair`: the index loaded from it disagrees with the store). With it, a usable
        snapshot serves other processes until the rebuilt graph's replaces it (by rename):
        removed first, every process loading the index meanwhile rebuilt it from the store.
        It is removed afterwards when the rebuilt index wants no graph (it is exact); one
        that wants a graph but has none (another process holds the build lease) leaves it.
        """
        with self._lock:
            self._adopt_builds()  # this process's own build or pass holds the build lease
            with self._store.read() as db:
                col = db.collection_by_uuid(collection_uuid)
                self._indexes.rebuild(db, col)
            if self._index_dir is not None and not keep_snapshot:
                snapshot.remove_snapshot(self._index_dir, col.uuid)
            self._adopt_builds()
            self._maintain(self._indexes.dirty(), final=True)
            index = self._indexes.loaded(col.cid)
            if self._index_dir is not None and (
                index is None or not (index.uses_graph or index.wants_graph)
            ):
                snapshot.remove_graph_snapshot(self._index_dir, col.uuid)
            return index is not None and index.uses_graph

    def link_snapshot(self, collection_uuid: str) -> tuple[int, int] | None:
        """Link in the records the graph of a collection's snapshot does not reach, in a
        new snapshot at the same watermark (`SnapshotWriter.link`)."""
        if self._index_dir is None:
            return None
        with self._lock:
            with self._store.read() as db:
                col = db.collection_by_uuid(collection_uuid)
            return self._indexes.link_snapshot(col)

    def compact_index(self, collection_uuid: str) -> bool:
        """Rebuild a graph index without the tombstones of deleted vectors; True if done.
        Its snapshot is replaced once the new graph's is written (`rebuild_index`)."""
        with self._lock:
            with self._store.read() as db:
                index = self._indexes.ready(db, db.collection_by_uuid(collection_uuid))
            if index is None or not (index.uses_graph or index.wants_graph):
                return False
            return self.rebuild_index(collection_uuid, keep_snapshot=True)

    def reclaim_space(self) -> int:
        """Drop what deletes left behind (index files of deleted collections included),
        then return free space to the file system.

        Returns the bytes the store shrank by, from before the leftovers were dropped (on
        SQLite, deleting them from the document index first adds pages) to the end; 0
        when it grew (writes meanwhile, or a cleanup that gave nothing back).
        """
        with self._lock:
            self.remove_orphan_snapshots()
            before = self._store.storage_figures()["bytes"]
            with self._store.write() as db:
                pruned = db.prune_leftovers()
            logger.info("removed the %d digests and document postings of deleted records", pruned)
            self._store.free_pages()
            after = self._store.storage_figures()["bytes"]
        if after > before:
            logger.info("the store grew by %d bytes while it was compacted", after - before)
        return max(0, before - after)

    def remove_orphan_snapshots(self) -> list[str]:
        """Remove the index files (snapshots, temporaries, locks) of collections the store
        no longer has: left by a delete killed before it removed them, or written before
        snapshot writers checked that their collection still exists. Files of live
        collections, and another store's sharing the directory, are kept. Returns the
        names removed."""
        with self._lock:
            removed = [name for u in self._orphan_uuids() for name in self._remove_orphan_files(u)]
        if removed:
            logger.info("removed %d index files of deleted collections", len(removed))
        return removed

    def orphan_files(self) -> tuple[list[str], list[str]]:
        """The index files of collections the store no longer has, nothing removed: those
        `remove_orphan_snapshots` removes, and another store's snapshots it keeps."""
        removable: list[str] = []
        kept: list[str] = []
        with self._lock:
            for u in self._orphan_uuids():
                assert self._index_dir is not None
                owner = snapshot.owner_name(self._store.store_id, u)
                files, foreign = snapshot.orphan_files(self._index_dir, u, owner)
                removable += files
                kept += foreign
        return removable, kept

    def _orphan_uuids(self) -> list[str]:
        """The collections that name files of the index directory but not the store."""
        if self._index_dir is None:
            return []
        # Listed before the store is read: a collection created after has no file yet.
        on_disk = snapshot.collection_uuids_in(self._index_dir)
        with self._store.read() as db:
            live = set(db.collection_uuids())
        return sorted(on_disk - live)

    def copy_database_to(self, target: Path) -> None:
        """Write a consistent copy of the store to `target`, a SQLite file (the backup format).

        Runs apart from the engine's connection, so this engine keeps serving while it copies.
        """
        self._lock.check_open()
        self._store.copy_to(target)

    def snapshot_pages(self, collection_uuid: str, page_size: int) -> Iterator[list[tuple]]:
        """Every row (key, id, document, uri, metadata_json, vector) of a collection, in pages
        by increasing key, all read from one snapshot of the store.

        The store's snapshot session holds one read transaction on a connection of its own
        for the whole iteration: the engine lock is never taken, so this engine, its other
        threads and other processes keep reading and writing, and nothing they commit
        meanwhile is seen. A store with one connection (in memory) is read under the engine
        lock for the whole iteration. Close the iterator (or exhaust it) to end the snapshot.
        """
        if page_size < 1:
            raise InvalidArgumentError(f"page_size must be at least 1, got {page_size}")
        self._lock.check_open()
        session = self._store.snapshot_session()
        if session is None:
            with self._lock, self._store.read() as db:
                yield from self._pages(db, collection_uuid, page_size)
            return
        with session as db:
            yield from self._pages(db, collection_uuid, page_size)

    @staticmethod
    def _pages(db: StoreSession, collection_uuid: str, page_size: int) -> Iterator[list[tuple]]:
        cid = db.collection_by_uuid(collection_uuid).cid
        last = -1
        while rows := db.fetch_after_key(cid, last, page_size):
            yield rows
            last = rows[-1][0]
            if len(rows) < page_size:
                return

    def settings_in_force(self) -> dict[str, Any]:
        """The options this engine was opened with, and the store's settings as read back."""
        with self._lock:
            store_settings = self._store.settings_in_force()
        return {**self.options.public_dict(), **store_settings}

    @property
    def store_kind(self) -> str:
        """The store this engine runs on: "sqlite" or "postgresql"."""
        return self._store.kind

    def storage_figures(self) -> dict[str, Any]:
        """Store-level sizes: bytes, reclaimable bytes."""
        with self._lock:
            return self._store.storage_figures()

    def collection_figures(self, col: CollectionRow) -> dict[str, Any]:
        """Per-collection sizes: rows, bytes of vectors, documents and metadata, oplog rows;
        the index kind and its recall figures (`_recall_figures`)."""
        with self._lock, self._store.read() as db:
            count, doc_bytes, meta_bytes, oplog_rows = db.collection_sizes(col.cid)
            index = self._indexes.loaded(col.cid)
            recall = self._recall_figures(col, index)
        return {
            "count": count,
            "vector_bytes": count * 4 * (col.dimension or 0),
            "document_bytes": doc_bytes,
            "metadata_bytes": meta_bytes,
            "oplog_rows": oplog_rows,
            "index_loaded": index is not None,
            "index_kind": None if index is None else ("hnsw" if index.uses_graph else "exact"),
            **recall,
        }

    def index_memory(self) -> dict[str, Any]:
        """This process's index memory: budget, bytes held by dense indexes, resident (least
        recently used first, with bytes) and evicted collections, hits, misses and
        evictions; and the bytes its sparse indexes hold (under the same budget: the least
        recently used index of either kind is evicted first). Indexes of collections
        deleted by another process are forgotten first."""
        with self._lock:
            self._forget_deleted_collections(now=True)
            return {
                **self._indexes.memory_figures(),
                "sparse_resident_bytes": self._sparse.resident_bytes(),
            }

    def _budget(self, db: StoreSession) -> contextlib.AbstractContextManager[Deadline]:
        """The time budget of one read, inside its session (`engine/budget.py`)."""
        return db.time_budget(self.options.query_timeout)

    def _maintain(self, cols: list[CollectionRow], final: bool = False) -> None:
        """Snapshot indexes and prune the oplog entries they cover (outside reads); a
        graph's snapshot is written in the background unless `final`."""
        for col in cols:
            prunable, snapshotted = self._indexes.checkpoint(col, final)
            if not prunable:
                continue
            prunable = self._sparse_floor(col, prunable)
            with self._store.write() as db:
                db.prune_oplog(col.cid, prunable, snapshotted, self._node_id)
                try:
                    row = db.collection_by_uuid(col.uuid)
                except NotFoundError:  # deleted meanwhile by another process
                    continue
            self._indexes.pruned(row)
        self._indexes.release_sparse()

    def _sparse_floor(self, col: CollectionRow, prunable: int) -> int:
        """How far the oplog may be pruned once this process's sparse index of `col` (if
        it holds one) is caught up and snapshotted: other processes reload that snapshot
        instead of rescanning the collection."""
        state = self._sparse.held(col.cid)
        if state is None:
            return prunable
        if state.watermark < prunable:
            with self._store.read() as db:
                self._sparse.catch_up(db, db.collection_by_uuid(col.uuid))
        covered = self._sparse.checkpoint(col)
        self._indexes.sparse_changed()
        return prunable if covered is None else min(prunable, covered)

    def _refresh_index(self, collection_uuid: str) -> None:
        """Apply this process's own write to its indexes, if it holds any for the collection.

        A process that queries a collection keeps its index warm this way, so the next
        query has nothing to catch up. A process that only writes holds no index, but for
        a collection that has just grown past the exact-search threshold, whose graph it
        then builds while it writes (`IndexCache.after_write`).
        """
        with self._store.read() as db:
            col = db.collection_by_uuid(collection_uuid)
            self._sparse.catch_up(db, col)
            self._indexes.after_write(db, col)
            if self._sparse.held(col.cid) is not None:  # it may have grown past the budget
                self._indexes.keep_within_budget(db, col.cid, sparse_using=col.cid)
        self._indexes.sparse_changed()
        self._maintain(self._indexes.pending_maintenance())


SNAPSHOT_UNUSABLE = "unusable"
SNAPSHOT_AHEAD = "ahead of the store"


@dataclass
class IndexCheck:
    """How a collection's index agrees with the store."""

    collection: str
    name: str
    records: int
    indexed: int
    missing: list[int]
    extra: list[int]
    wrong_vectors: list[int]
    snapshot: str
    # Records of the snapshot's graph no search reaches (None: no snapshot, or its form not
    # read); not a disagreement with the store: filtered and exact searches return them.
    unreachable: int | None = None

    @property
    def agrees(self) -> bool:
        """Whether the index loaded (snapshot + catch-up) holds exactly the store's records."""
        return not (self.missing or self.extra or self.wrong_vectors)

    @property
    def ok(self) -> bool:
        """The index agrees with the store and its snapshot, if any, is usable (a damaged
        one is rebuilt by every process that loads the index, until one is written)."""
        return self.agrees and self.snapshot not in (SNAPSHOT_UNUSABLE, SNAPSHOT_AHEAD)
