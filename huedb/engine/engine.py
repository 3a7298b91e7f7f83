"""The engine: SQLite as the truth, plus per-process indexes caught up from the oplog.

All public methods take the engine lock (one SQLite connection per engine), run in one
transaction, and raise huedb.errors on bad state (missing collection, wrong dimension).
Argument shapes are checked by the API layer before they get here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from huedb.engine import catalog, records, snapshot, store_admin
from huedb.engine.budget import (
    Deadline,
    check_query_embeddings,
    check_query_results,
    check_read,
    time_budget,
)
from huedb.engine.catalog import CollectionRow
from huedb.engine.connection import (
    hold_directory,
    open_connection,
    read_transaction,
    store_id,
    write_transaction,
)
from huedb.engine.filters import RecordFilter
from huedb.engine.index_cache import IndexCache
from huedb.errors import InvalidArgumentError, NotFoundError
from huedb.options import EngineOptions
from huedb.record_batch import RecordBatch

logger = logging.getLogger(__name__)

INDEX_DIRNAME = "index"
LATENCY_WINDOW = 1000


@dataclass
class QueryHits:
    """Per query: the matching keys and distances, best first; plus the rows by key."""

    keys: list[list[int]]
    distances: list[list[float]]
    rows: dict[int, tuple]


class Engine:
    """One huedb store (a directory, or memory) opened by this process."""

    def __init__(self, path: Path | None, options: EngineOptions | None = None) -> None:
        """Open (creating or migrating) the store at `path`, or one in memory for None.

        Callers other than tests go through `engine.registry.acquire_engine`.
        """
        self.path = path
        self.options = options or EngineOptions()
        self._lock = threading.RLock()
        self._dir_lock = None if path is None else hold_directory(path)
        try:
            self._conn = open_connection(path, self.options.sync)
        except BaseException:
            self._release_directory()
            raise
        self._index_dir = None if path is None else path / INDEX_DIRNAME
        self._store_id = store_id(self._conn)
        self._indexes = IndexCache(
            self._conn,
            self._index_dir,
            self.options,
            self._store_id,
        )
        self._closed = False
        self._latencies: dict[str, deque[float]] = {}
        with self._lock, write_transaction(self._conn):
            catalog.ensure_defaults(self._conn, DEFAULT_TENANT, DEFAULT_DATABASE)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Snapshot dirty indexes, prune the oplog and close the connection."""
        with self._lock:
            if self._closed:
                return
            try:
                self._adopt_builds()
                self._maintain(self._indexes.dirty())
            except (sqlite3.Error, OSError) as exc:
                logger.warning("could not snapshot indexes at close: %s", exc)
            self._conn.close()
            self._release_directory()
            self._closed = True

    def _release_directory(self) -> None:
        if self._dir_lock is not None:
            os.close(self._dir_lock)
            self._dir_lock = None

    def _adopt_builds(self) -> None:
        """Wait for background graph builds and swap them in, so close can snapshot them."""
        while building := self._indexes.finish_builds():
            with read_transaction(self._conn):
                for col in building:
                    try:
                        self._indexes.ready(catalog.collection_by_uuid(self._conn, col.uuid))
                    except NotFoundError:
                        self._indexes.forget(col.cid)

    def reset(self) -> None:
        """Delete every tenant, database, collection and record."""
        with self._lock:
            with write_transaction(self._conn):
                uuids = store_admin.collection_uuids(self._conn)
                store_admin.delete_everything(self._conn)
                catalog.ensure_defaults(self._conn, DEFAULT_TENANT, DEFAULT_DATABASE)
            self._indexes.clear()
            if self._index_dir is not None:
                for u in uuids:
                    snapshot.remove_snapshot(self._index_dir, u)

    # -- tenants and databases -------------------------------------------------------

    def create_tenant(self, name: str) -> None:
        with self._lock, write_transaction(self._conn):
            catalog.create_tenant(self._conn, name)

    def get_tenant(self, name: str) -> dict[str, Any]:
        with self._lock, read_transaction(self._conn):
            return catalog.get_tenant(self._conn, name)

    def create_database(self, name: str, tenant: str) -> None:
        with self._lock, write_transaction(self._conn):
            catalog.create_database(self._conn, name, tenant)

    def get_database(self, name: str, tenant: str) -> dict[str, Any]:
        with self._lock, read_transaction(self._conn):
            return catalog.get_database(self._conn, name, tenant)

    def list_databases(
        self, tenant: str, limit: int | None, offset: int | None
    ) -> list[dict[str, Any]]:
        with self._lock, read_transaction(self._conn):
            return catalog.list_databases(self._conn, tenant, limit, offset)

    def delete_database(self, name: str, tenant: str) -> None:
        with self._lock:
            with write_transaction(self._conn):
                cols = catalog.delete_database(self._conn, name, tenant)
                for col in cols:
                    records.delete_collection_records(self._conn, col.cid)
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
        with self._lock, write_transaction(self._conn):
            db_id = catalog.database_id(self._conn, tenant, database)
            if get_or_create:
                try:
                    return catalog.collection_by_name(self._conn, db_id, name)
                except NotFoundError:
                    pass
            return catalog.insert_collection(self._conn, db_id, name, metadata, configuration)

    def get_collection(self, name: str, tenant: str, database: str) -> CollectionRow:
        with self._lock, read_transaction(self._conn):
            db_id = catalog.database_id(self._conn, tenant, database)
            return catalog.collection_by_name(self._conn, db_id, name)

    def get_collection_by_uuid(self, collection_uuid: str) -> CollectionRow:
        with self._lock, read_transaction(self._conn):
            return catalog.collection_by_uuid(self._conn, collection_uuid)

    def database_of(self, col: CollectionRow) -> tuple[str, str]:
        """(tenant, database) names of a collection."""
        with self._lock:
            names = catalog.database_names(self._conn, col.database_id)
        return names or (DEFAULT_TENANT, DEFAULT_DATABASE)

    def list_collections(
        self, tenant: str, database: str, limit: int | None, offset: int | None
    ) -> list[CollectionRow]:
        with self._lock, read_transaction(self._conn):
            db_id = catalog.database_id(self._conn, tenant, database)
            return catalog.list_collections(self._conn, db_id, limit, offset)

    def count_collections(self, tenant: str, database: str) -> int:
        with self._lock, read_transaction(self._conn):
            return catalog.count_collections(
                self._conn, catalog.database_id(self._conn, tenant, database)
            )

    def update_collection(
        self,
        collection_uuid: str,
        new_name: str | None,
        new_metadata: dict[str, Any] | None,
        new_configuration: dict[str, Any] | None,
    ) -> None:
        with self._lock, write_transaction(self._conn):
            col = catalog.collection_by_uuid(self._conn, collection_uuid)
            catalog.update_collection(self._conn, col, new_name, new_metadata, new_configuration)

    def delete_collection(self, name: str, tenant: str, database: str) -> None:
        with self._lock:
            with write_transaction(self._conn):
                db_id = catalog.database_id(self._conn, tenant, database)
                if catalog.alias_target(self._conn, db_id, name) is not None:
                    raise InvalidArgumentError(
                        f"[{name}] is an alias: delete_alias() it, or delete the collection by "
                        "its own name"
                    )
                col = catalog.collection_by_name(self._conn, db_id, name)
                pointing = catalog.aliases_of(self._conn, col.cid)
                if pointing:
                    raise InvalidArgumentError(
                        f"Collection [{name}] is the target of alias(es) {', '.join(pointing)}: "
                        "point them elsewhere or delete them first"
                    )
                records.delete_collection_records(self._conn, col.cid)
                catalog.delete_collection_row(self._conn, col.cid)
            self._drop_index(col)

    def set_alias(self, alias: str, target: str, create: bool, tenant: str, database: str) -> None:
        """Create an alias, or switch it to another collection atomically."""
        with self._lock, write_transaction(self._conn):
            db_id = catalog.database_id(self._conn, tenant, database)
            catalog.set_alias(self._conn, db_id, alias, target, create)

    def delete_alias(self, alias: str, tenant: str, database: str) -> None:
        with self._lock, write_transaction(self._conn):
            catalog.delete_alias(
                self._conn, catalog.database_id(self._conn, tenant, database), alias
            )

    def list_aliases(self, tenant: str, database: str) -> list[dict[str, str]]:
        with self._lock, read_transaction(self._conn):
            return catalog.list_aliases(
                self._conn, catalog.database_id(self._conn, tenant, database)
            )

    def _drop_index(self, col: CollectionRow) -> None:
        self._indexes.forget(col.cid)
        if self._index_dir is not None:
            snapshot.remove_snapshot(self._index_dir, col.uuid)

    # -- records ---------------------------------------------------------------------

    def add(self, collection_uuid: str, batch: RecordBatch) -> None:
        """Insert records whose ids are new; ids that exist are left unchanged."""
        with self._writing(collection_uuid):
            col = self._writable(collection_uuid, batch)
            existing = records.existing_keys(self._conn, col.cid, batch.ids)
            fresh = batch.take([i for i, rid in enumerate(batch.ids) if rid not in existing])
            records.insert_records(self._conn, col.cid, fresh)
            self._fix_dimension(col, fresh)

    def update(self, collection_uuid: str, batch: RecordBatch) -> None:
        """Update records that exist; missing ids are ignored."""
        with self._writing(collection_uuid):
            col = self._writable(collection_uuid, batch)
            existing = records.existing_keys(self._conn, col.cid, batch.ids)
            found = batch.take([i for i, rid in enumerate(batch.ids) if rid in existing])
            records.update_records(self._conn, col.cid, [existing[rid] for rid in found.ids], found)
            self._fix_dimension(col, found)

    def upsert(self, collection_uuid: str, batch: RecordBatch) -> None:
        """Update the ids that exist and insert the others, in one transaction."""
        with self._writing(collection_uuid):
            col = self._writable(collection_uuid, batch)
            existing = records.existing_keys(self._conn, col.cid, batch.ids)
            old = batch.take([i for i, rid in enumerate(batch.ids) if rid in existing])
            new = batch.take([i for i, rid in enumerate(batch.ids) if rid not in existing])
            records.update_records(self._conn, col.cid, [existing[rid] for rid in old.ids], old)
            records.insert_records(self._conn, col.cid, new)
            self._fix_dimension(col, batch)

    def delete(self, collection_uuid: str, flt: RecordFilter, limit: int | None) -> int:
        """Delete matching records; returns how many were deleted.

        The selection runs under the time budget; past it, nothing is deleted.
        """
        check_read(self.options, flt)
        with self._writing(collection_uuid):
            col = catalog.collection_by_uuid(self._conn, collection_uuid)
            with self._budget():
                keys = records.select_keys(self._conn, col.cid, flt, limit)
            records.delete_keys(self._conn, col.cid, keys)
            return len(keys)

    @contextlib.contextmanager
    def _writing(self, collection_uuid: str) -> Iterator[None]:
        """One write transaction on a collection, then this process's index catches up."""
        with self._lock:
            with write_transaction(self._conn):
                yield
            self._refresh_index(collection_uuid)

    def _writable(self, collection_uuid: str, batch: RecordBatch) -> CollectionRow:
        """The collection, after checking the batch's dimension against the fixed one.

        Checked here, inside the write transaction, because the dimension is fixed by the
        first write of any process (and a missing collection is reported first).
        """
        col = catalog.collection_by_uuid(self._conn, collection_uuid)
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

    def _fix_dimension(self, col: CollectionRow, written: RecordBatch) -> None:
        """The first write that stores vectors fixes the collection's dimension."""
        if col.dimension is None and written.embeddings is not None and len(written) > 0:
            catalog.set_dimension(self._conn, col.cid, int(written.embeddings.shape[1]))

    # -- reads -----------------------------------------------------------------------

    def count(self, collection_uuid: str) -> int:
        with self._lock, read_transaction(self._conn), self._budget():
            col = catalog.collection_by_uuid(self._conn, collection_uuid)
            return records.count_records(self._conn, col.cid)

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
        with self._lock, read_transaction(self._conn), self._budget():
            col = catalog.collection_by_uuid(self._conn, collection_uuid)
            return records.fetch_rows(self._conn, col.cid, flt, limit, offset, with_vectors)

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
        with self._lock:
            with read_transaction(self._conn), self._budget() as deadline:
                hits = self._query_in_snapshot(
                    collection_uuid, queries, n_results, flt, with_vectors, deadline
                )
            self._maintain(self._indexes.pending_maintenance())
            window = self._latencies.setdefault(collection_uuid, deque(maxlen=LATENCY_WINDOW))
            window.append(time.perf_counter() - started)
            return hits

    def indexing_status(self, collection_uuid: str) -> dict[str, Any]:
        """How much of the collection this process's index serves through its graph.

        Loading the index if needed (which starts a background graph build for a large
        collection): `op_indexing_progress` is 1.0 once queries no longer need exact search.
        """
        with self._lock:
            with read_transaction(self._conn):
                col = catalog.collection_by_uuid(self._conn, collection_uuid)
                index = self._indexes.ready(col)
                # The index is caught up to this snapshot, so it holds every record: no
                # count(*) scan (50 ms at 1M records, and callers poll this).
                total = len(index) if index is not None else 0
            self._maintain(self._indexes.pending_maintenance())
        pending = total if index is not None and index.wants_graph else 0
        return {
            "num_indexed_ops": total - pending,
            "num_unindexed_ops": pending,
            "total_ops": total,
            "op_indexing_progress": 1.0 if total == 0 else (total - pending) / total,
        }

    def recent_latencies(self, collection_uuid: str) -> list[float]:
        """Durations in seconds of this process's recent queries on a collection."""
        with self._lock:
            return list(self._latencies.get(collection_uuid, ()))

    def _query_in_snapshot(
        self,
        collection_uuid: str,
        queries: np.ndarray,
        n_results: int,
        flt: RecordFilter,
        with_vectors: bool,
        deadline: Deadline,
    ) -> QueryHits:
        col = catalog.collection_by_uuid(self._conn, collection_uuid)
        empty = QueryHits([[] for _ in range(len(queries))], [[] for _ in range(len(queries))], {})
        if col.dimension is None:
            return empty
        if queries.shape[1] != col.dimension:
            raise InvalidArgumentError(
                f"Collection expecting embedding with dimension of {col.dimension}, "
                f"got {queries.shape[1]}"
            )
        allowed = None if flt.selects_all else records.allowed_keys(self._conn, col.cid, flt)
        with deadline.paused():  # loading or catching up the index is never cut halfway
            index = self._indexes.ready(col, need_vectors=allowed is not None)
        if index is None:
            return empty
        candidates = len(index) if allowed is None else len(allowed)
        check_query_results(self.options, len(queries), min(n_results, candidates))

        def fetch(keys: np.ndarray) -> np.ndarray:
            return records.vectors_by_keys(self._conn, keys, col.dimension)

        all_keys: list[list[int]] = []
        all_dists: list[list[float]] = []
        for q in queries:
            deadline.check()
            keys_found, dists = index.search(q, n_results, allowed, fetch)
            if index.uses_graph:
                same = records.keys_with_vector(self._conn, col.cid, q)
                if same and allowed is not None:
                    same = [k for k in same if np.isin(k, allowed)]
                keys_found, dists = index.with_exact_matches(
                    q, n_results, (keys_found, dists), same, fetch
                )
            all_keys.append([int(k) for k in keys_found])
            all_dists.append([float(d) for d in dists])
        wanted = sorted({k for ks in all_keys for k in ks})
        rows = records.fetch_by_keys(self._conn, col.cid, wanted, with_vectors) if wanted else {}
        return QueryHits(all_keys, all_dists, rows)

    # -- maintenance -------------------------------------------------------------------

    def collections(self) -> list[CollectionRow]:
        """Every collection of every tenant and database."""
        with self._lock, read_transaction(self._conn):
            uuids = store_admin.collection_uuids(self._conn)
            return [catalog.collection_by_uuid(self._conn, u) for u in uuids]

    def integrity_problems(self) -> list[str]:
        """SQLite's integrity check plus huedb's own cross-table invariants."""
        with self._lock, read_transaction(self._conn):
            return store_admin.integrity_problems(self._conn)

    def check_index(self, collection_uuid: str, sample: int = 1000) -> IndexCheck:
        """Compare the collection's index (snapshot + catch-up) with SQLite."""
        with self._lock, read_transaction(self._conn):
            col = catalog.collection_by_uuid(self._conn, collection_uuid)
            self._indexes.forget(col.cid)
            snap = "none"
            if self._index_dir is not None:
                path = snapshot.snapshot_path(self._index_dir, col.uuid)
                if path.exists():
                    usable = snapshot.read_snapshot(path, self._indexes.owner(col)) is not None
                    snap = "ok" if usable else "unusable"
            index = self._indexes.ready(col)
            self._indexes.forget(col.cid)  # a fresh process's view; not kept, nor built on
            keys = records.collection_keys(self._conn, col.cid)
            indexed = set() if index is None else set(index.keys().tolist())
            stored = set(keys)
            wrong: list[int] = []
            probe = sorted(stored & indexed)[:: max(1, len(stored) // max(sample, 1))]
            if index is not None and probe:
                vectors = records.vectors_by_keys(self._conn, probe, col.dimension)
                wrong = index.mismatched(np.asarray(probe, dtype=np.uint64), vectors)
            return IndexCheck(
                collection=col.uuid,
                name=col.name,
                records=len(stored),
                indexed=len(indexed),
                missing=sorted(stored - indexed),
                extra=sorted(indexed - stored),
                wrong_vectors=wrong,
                snapshot=snap,
            )

    def rebuild_index(self, collection_uuid: str) -> None:
        """Rebuild a collection's index from SQLite and replace its snapshot."""
        with self._lock:
            with read_transaction(self._conn):
                col = catalog.collection_by_uuid(self._conn, collection_uuid)
                self._indexes.rebuild(col)
            if self._index_dir is not None:
                snapshot.remove_snapshot(self._index_dir, col.uuid)
            self._adopt_builds()
            self._maintain(self._indexes.dirty())

    def compact_index(self, collection_uuid: str) -> bool:
        """Rebuild a graph index without the tombstones of deleted vectors; True if done."""
        with self._lock:
            with read_transaction(self._conn):
                index = self._indexes.ready(catalog.collection_by_uuid(self._conn, collection_uuid))
            if index is None or not (index.uses_graph or index.wants_graph):
                return False
            self.rebuild_index(collection_uuid)
            return True

    def reclaim_space(self) -> int:
        """Drop what deletes left behind, then return free pages to the file system.

        Returns the bytes reclaimed.
        """
        with self._lock:
            with write_transaction(self._conn):
                pruned = records.prune_leftovers(self._conn)
            logger.info("removed %d digest and document-index entries of deleted records", pruned)
            return store_admin.free_pages(self._conn, checkpoint=self.path is not None)

    def copy_database_to(self, target: Path) -> None:
        """Write a consistent copy of the database to `target` (SQLite's VACUUM INTO).

        Runs on a connection of its own, so this engine keeps serving while it copies.
        """
        if self.path is None:
            raise InvalidArgumentError("an in-memory store cannot be copied to a file")
        conn = open_connection(self.path, self.options.sync)
        try:
            conn.execute("VACUUM INTO ?", (str(target),))
        finally:
            conn.close()

    def snapshot_pages(self, collection_uuid: str, page_size: int) -> Iterator[list[tuple]]:
        """Every row (key, id, document, uri, metadata_json, vector) of a collection, in pages
        by increasing key, all read from one snapshot of the database.

        A store on disk is read on a connection of its own that holds one read transaction
        for the whole iteration: the engine lock is never taken, so this engine, its other
        threads and other processes keep reading and writing (WAL), and nothing they commit
        meanwhile is seen. While the snapshot is open SQLite cannot checkpoint the WAL past
        it, so the WAL grows by what is written during the iteration. An in-memory store has
        only the engine's connection: its lock is held for the whole iteration. Close the
        iterator (or exhaust it) to end the snapshot.
        """
        if page_size < 1:
            raise InvalidArgumentError(f"page_size must be at least 1, got {page_size}")
        if self.path is None:
            with self._lock, read_transaction(self._conn):
                yield from self._pages(self._conn, collection_uuid, page_size)
            return
        conn = open_connection(self.path, self.options.sync)
        try:
            with read_transaction(conn):
                yield from self._pages(conn, collection_uuid, page_size)
        finally:
            conn.close()

    @staticmethod
    def _pages(
        conn: sqlite3.Connection, collection_uuid: str, page_size: int
    ) -> Iterator[list[tuple]]:
        cid = catalog.collection_by_uuid(conn, collection_uuid).cid
        last = -1
        while rows := records.fetch_after_key(conn, cid, last, page_size):
            yield rows
            last = rows[-1][0]
            if len(rows) < page_size:
                return

    def settings_in_force(self) -> dict[str, Any]:
        """The options this engine was opened with, and SQLite's sync level as read back."""
        with self._lock:
            level = store_admin.synchronous_level(self._conn)
        return {**self.options.to_dict(), "sqlite_synchronous": level}

    def storage_figures(self) -> dict[str, Any]:
        """Database-level sizes: pages, free pages, file sizes."""
        with self._lock:
            return store_admin.storage_figures(self._conn)

    def collection_figures(self, col: CollectionRow) -> dict[str, Any]:
        """Per-collection sizes: rows, bytes of vectors, documents and metadata, oplog rows."""
        with self._lock, read_transaction(self._conn):
            count, doc_bytes, meta_bytes, oplog_rows = store_admin.collection_sizes(
                self._conn, col.cid
            )
        index = self._indexes.loaded(col.cid)
        return {
            "count": count,
            "vector_bytes": count * 4 * (col.dimension or 0),
            "document_bytes": doc_bytes,
            "metadata_bytes": meta_bytes,
            "oplog_rows": oplog_rows,
            "index_loaded": index is not None,
            "index_kind": None if index is None else ("hnsw" if index.uses_graph else "exact"),
        }

    def _budget(self) -> contextlib.AbstractContextManager[Deadline]:
        """The time budget of one read, inside its transaction (`engine/budget.py`)."""
        return time_budget(self._conn, self.options.query_timeout)

    def _maintain(self, cols: list[CollectionRow]) -> None:
        """Snapshot indexes and prune the oplog entries they cover (outside reads)."""
        for col in cols:
            prunable, snapshotted = self._indexes.checkpoint(col)
            if not prunable:
                continue
            with write_transaction(self._conn):
                store_admin.prune_oplog(self._conn, col.cid, prunable, snapshotted)

    def _refresh_index(self, collection_uuid: str) -> None:
        """Apply this process's own write to its index, if it holds one for the collection.

        A process that queries a collection keeps its index warm this way, so the next
        query has nothing to catch up. A process that only writes builds no index at all.
        """
        with read_transaction(self._conn):
            col = catalog.collection_by_uuid(self._conn, collection_uuid)
            if self._indexes.loaded(col.cid) is None:
                return
            self._indexes.ready(col)
        self._maintain(self._indexes.pending_maintenance())


@dataclass
class IndexCheck:
    """How a collection's index agrees with SQLite."""

    collection: str
    name: str
    records: int
    indexed: int
    missing: list[int]
    extra: list[int]
    wrong_vectors: list[int]
    snapshot: str

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.wrong_vectors)
