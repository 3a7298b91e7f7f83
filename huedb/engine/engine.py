"""The engine: SQLite as the truth, plus per-process indexes caught up from the oplog.

All public methods take the engine lock (one SQLite connection per engine), run in one
transaction, and raise huedb.errors on bad state (missing collection, wrong dimension).
Argument shapes are checked by the API layer before they get here.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from huedb.engine import catalog, records, snapshot
from huedb.engine.catalog import CollectionRow
from huedb.engine.filters import FilterCompiler
from huedb.engine.index import Thresholds
from huedb.engine.indexes import IndexCache
from huedb.engine.store import open_connection, read_transaction, write_transaction
from huedb.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

INDEX_DIRNAME = "index"


@dataclass
class QueryHits:
    """Per query: the matching keys and distances, best first; plus the rows by key."""

    keys: list[list[int]]
    distances: list[list[float]]
    rows: dict[int, tuple]


class Engine:
    """One huedb store (a directory, or memory) opened by this process."""

    def __init__(
        self,
        path: Path | None,
        sync: str = "full",
        thresholds: Thresholds | None = None,
        snapshot_every: int = 1000,
    ) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = open_connection(path, sync)
        self._index_dir = None if path is None else path / INDEX_DIRNAME
        self._indexes = IndexCache(
            self._conn, self._index_dir, thresholds or Thresholds(), snapshot_every
        )
        self._closed = False
        with self._lock, write_transaction(self._conn):
            catalog.ensure_defaults(self._conn, DEFAULT_TENANT, DEFAULT_DATABASE)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Snapshot dirty indexes, prune the oplog and close the connection."""
        with self._lock:
            if self._closed:
                return
            try:
                self._maintain(self._indexes.dirty())
            except (sqlite3.Error, OSError) as exc:
                logger.warning("could not snapshot indexes at close: %s", exc)
            self._conn.close()
            self._closed = True

    def reset(self) -> None:
        """Delete every tenant, database, collection and record."""
        with self._lock:
            with write_transaction(self._conn):
                uuids = [r[0] for r in self._conn.execute("SELECT uuid FROM collections")]
                for table in (
                    "records",
                    "embeddings",
                    "record_meta",
                    "oplog",
                    "collections",
                    "databases",
                    "tenants",
                ):
                    self._conn.execute(f"DELETE FROM {table}")
                catalog.ensure_defaults(self._conn, DEFAULT_TENANT, DEFAULT_DATABASE)
            self._indexes = IndexCache(
                self._conn,
                self._index_dir,
                self._indexes._thresholds,
                self._indexes._snapshot_every,
            )
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
                except catalog.NotFoundError:
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
            row = self._conn.execute(
                "SELECT tenant, name FROM databases WHERE id = ?", (col.database_id,)
            ).fetchone()
        return (row[0], row[1]) if row else (DEFAULT_TENANT, DEFAULT_DATABASE)

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
                col = catalog.collection_by_name(self._conn, db_id, name)
                records.delete_collection_records(self._conn, col.cid)
                catalog.delete_collection_row(self._conn, col.cid)
            self._drop_index(col)

    def _drop_index(self, col: CollectionRow) -> None:
        self._indexes.forget(col.cid)
        if self._index_dir is not None:
            snapshot.remove_snapshot(self._index_dir, col.uuid)

    # -- records ---------------------------------------------------------------------

    def add(
        self,
        collection_uuid: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any] | None],
        documents: Sequence[str | None],
        uris: Sequence[str | None],
    ) -> None:
        """Insert records whose ids are new; ids that exist are left unchanged."""
        with self._lock, write_transaction(self._conn):
            col = self._writable(collection_uuid, vectors)
            existing = records.existing_keys(self._conn, col.cid, ids)
            fresh = [i for i, rid in enumerate(ids) if rid not in existing]
            if len(fresh) != len(ids):
                ids = [ids[i] for i in fresh]
                vectors = vectors[fresh]
                metadatas = [metadatas[i] for i in fresh]
                documents = [documents[i] for i in fresh]
                uris = [uris[i] for i in fresh]
            records.insert_records(self._conn, col.cid, ids, vectors, metadatas, documents, uris)
            self._fix_dimension(col, vectors, len(ids))

    def update(
        self,
        collection_uuid: str,
        ids: Sequence[str],
        vectors: np.ndarray | None,
        metadatas: Sequence[dict[str, Any] | None] | None,
        documents: Sequence[str | None] | None,
        uris: Sequence[str | None] | None,
    ) -> None:
        """Update records that exist; missing ids are ignored."""
        with self._lock, write_transaction(self._conn):
            col = self._writable(collection_uuid, vectors)
            existing = records.existing_keys(self._conn, col.cid, ids)
            pick = [i for i, rid in enumerate(ids) if rid in existing]
            records.update_records(
                self._conn,
                col.cid,
                [existing[ids[i]] for i in pick],
                None if vectors is None else vectors[pick],
                _take(metadatas, pick),
                _take(documents, pick),
                _take(uris, pick),
            )
            self._fix_dimension(col, vectors, len(pick))

    def upsert(
        self,
        collection_uuid: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any] | None],
        documents: Sequence[str | None],
        uris: Sequence[str | None],
    ) -> None:
        """Update the ids that exist and insert the others, in one transaction."""
        with self._lock, write_transaction(self._conn):
            col = self._writable(collection_uuid, vectors)
            existing = records.existing_keys(self._conn, col.cid, ids)
            old = [i for i, rid in enumerate(ids) if rid in existing]
            new = [i for i, rid in enumerate(ids) if rid not in existing]
            records.update_records(
                self._conn,
                col.cid,
                [existing[ids[i]] for i in old],
                vectors[old],
                _take(metadatas, old),
                _take(documents, old),
                _take(uris, old),
            )
            records.insert_records(
                self._conn,
                col.cid,
                [ids[i] for i in new],
                vectors[new],
                [records.clean_metadata(_drop_nones(metadatas[i])) for i in new],
                [documents[i] for i in new],
                [uris[i] for i in new],
            )
            self._fix_dimension(col, vectors, len(ids))

    def delete(
        self,
        collection_uuid: str,
        ids: Sequence[str] | None,
        where: Any,
        where_document: Any,
        limit: int | None,
    ) -> int:
        """Delete matching records; returns how many were deleted."""
        with self._lock, write_transaction(self._conn):
            col = catalog.collection_by_uuid(self._conn, collection_uuid)
            sql, params = FilterCompiler(col.cid).compile(where, where_document)
            keys = records.select_keys(self._conn, col.cid, ids, sql, params, limit)
            records.delete_keys(self._conn, col.cid, keys)
            return len(keys)

    def _writable(self, collection_uuid: str, vectors: np.ndarray | None) -> CollectionRow:
        """The collection, after checking the batch's dimension against the fixed one."""
        col = catalog.collection_by_uuid(self._conn, collection_uuid)
        if vectors is None or len(vectors) == 0 or col.dimension is None:
            return col
        dim = int(vectors.shape[1])
        if col.dimension != dim:
            raise InvalidArgumentError(
                f"Collection expecting embedding with dimension of {col.dimension}, got {dim}"
            )
        return col

    def _fix_dimension(self, col: CollectionRow, vectors: np.ndarray | None, written: int) -> None:
        """The first write that stores vectors fixes the collection's dimension."""
        if col.dimension is None and vectors is not None and written > 0:
            catalog.set_dimension(self._conn, col.cid, int(vectors.shape[1]))

    # -- reads -----------------------------------------------------------------------

    def count(self, collection_uuid: str) -> int:
        with self._lock, read_transaction(self._conn):
            col = catalog.collection_by_uuid(self._conn, collection_uuid)
            return records.count_records(self._conn, col.cid)

    def get(
        self,
        collection_uuid: str,
        ids: Sequence[str] | None,
        where: Any,
        where_document: Any,
        limit: int | None,
        offset: int | None,
        with_vectors: bool,
    ) -> tuple[CollectionRow, list[tuple]]:
        """Matching rows (key, id, document, uri, metadata_json[, vector]) in storage order."""
        with self._lock, read_transaction(self._conn):
            col = catalog.collection_by_uuid(self._conn, collection_uuid)
            sql, params = FilterCompiler(col.cid).compile(where, where_document)
            rows = records.fetch_rows(
                self._conn, col.cid, ids, sql, params, limit, offset, with_vectors
            )
            return col, rows

    def query(
        self,
        collection_uuid: str,
        queries: np.ndarray,
        n_results: int,
        ids: Sequence[str] | None,
        where: Any,
        where_document: Any,
        with_vectors: bool,
    ) -> QueryHits:
        """Nearest records to each query vector among those matching the filters."""
        with self._lock:
            with read_transaction(self._conn):
                hits = self._query_in_snapshot(
                    collection_uuid, queries, n_results, ids, where, where_document, with_vectors
                )
            self._maintain(self._indexes.pending_maintenance())
            return hits

    def _query_in_snapshot(
        self,
        collection_uuid: str,
        queries: np.ndarray,
        n_results: int,
        ids: Sequence[str] | None,
        where: Any,
        where_document: Any,
        with_vectors: bool,
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
        sql, params = FilterCompiler(col.cid).compile(where, where_document)
        allowed = None
        if ids is not None or sql != "1":
            keys = records.select_keys(self._conn, col.cid, ids, sql, params)
            allowed = np.asarray(keys, dtype=np.uint64)
        index = self._indexes.ready(col)
        if index is None:
            return empty
        all_keys: list[list[int]] = []
        all_dists: list[list[float]] = []
        for q in queries:
            keys_found, dists = index.search(q, n_results, allowed)
            all_keys.append([int(k) for k in keys_found])
            all_dists.append([float(d) for d in dists])
        wanted = sorted({k for ks in all_keys for k in ks})
        rows = records.fetch_by_keys(self._conn, wanted, with_vectors) if wanted else {}
        return QueryHits(all_keys, all_dists, rows)

    def _maintain(self, cols: list[CollectionRow]) -> None:
        """Snapshot indexes and prune the oplog entries they cover (outside reads)."""
        for col in cols:
            prunable = self._indexes.checkpoint(col)
            if not prunable:
                continue
            with write_transaction(self._conn):
                self._conn.execute(
                    "DELETE FROM oplog WHERE cid = ? AND seq <= ?", (col.cid, prunable)
                )
                self._conn.execute(
                    "UPDATE collections SET pruned_seq = max(pruned_seq, ?) WHERE cid = ?",
                    (prunable, col.cid),
                )


def _take(values: Sequence[Any] | None, pick: list[int]) -> list[Any] | None:
    return None if values is None else [values[i] for i in pick]


def _drop_nones(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    if metadata is None:
        return None
    return {k: v for k, v in metadata.items() if v is not None}
