"""`LocalAPI`: the `ServerAPI` over an in-process engine; also what the HTTP server calls.

It re-checks everything a request can carry (a server gets raw JSON from any client), then
calls the engine and shapes the results as Chroma does.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import numpy as np

from huedb.api import collection_config as config_rules
from huedb.api.base import ServerAPI
from huedb.api.checks import (
    MAX_BATCH_SIZE,
    FilterPolicy,
    check_collection_metadata,
    checked_batch,
    checked_filter,
    compares_document_key,
)
from huedb.api.json_shape import check_json_depth
from huedb.api.requests import (
    CreateCollectionRequest,
    DeleteRequest,
    GetRequest,
    ModifyCollectionRequest,
    QueryRequest,
)
from huedb.api.types import CollectionModel, GetResult, QueryResult, UserIdentity
from huedb.api.validation import finite_or_error, not_a_string, validate_limit_offset
from huedb.bounded_cache import BoundedCache
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT, Settings
from huedb.engine.catalog import CollectionRow, validate_name
from huedb.engine.engine import Engine
from huedb.engine.filters import RecordFilter
from huedb.engine.hnsw_config import collection_space
from huedb.engine.record_values import stored_json
from huedb.engine.registry import engine_for_this_process
from huedb.errors import (
    InvalidArgumentError,
    NotFoundError,
    ResetDisabledError,
    StorageIOError,
    StorageUnavailableError,
)
from huedb.record_batch import DOCUMENT_META_KEY, RESERVED_PREFIX, URI_META_KEY, RecordBatch
from huedb.search.bounds import check_bounds
from huedb.search.evaluate import SearchRun
from huedb.search.parse import parse_search_request
from huedb.search.plan import SearchRequest
from huedb.search.schema_rules import check_schema
from huedb.version import CHROMA_VERSION

# Collections whose schema facts a process keeps (a few hundred bytes each).
COLLECTIONS_KEPT = 4096

_reopen_lock = threading.Lock()


def _new_reopen_lock() -> None:
    global _reopen_lock
    _reopen_lock = threading.Lock()  # the parent may have held it while forking


os.register_at_fork(after_in_child=_new_reopen_lock)


class LocalAPI(ServerAPI):
    """All operations against one engine, validated as a server would."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._engine_pid = os.getpid()
        self.settings = settings
        if engine.options.store:
            # Other nodes delete collections without this one: its snapshots of them are
            # removed when a client opens the store (as when `huedb run` starts).
            engine.remove_orphan_snapshots()
        # Which filters each collection's schema refuses (a schema's indexes never change,
        # and a collection id is never reused, so this is never stale).
        self._filter_policies: BoundedCache[str, FilterPolicy] = BoundedCache(COLLECTIONS_KEPT)
        # The schema of each searched collection (read once: what a search uses of it, the
        # sparse, inverted and full-text indexes, never changes).
        self._search_schemas: BoundedCache[str, dict[str, Any]] = BoundedCache(COLLECTIONS_KEPT)

    @property
    def engine(self) -> Engine:
        """The engine; in a process forked after it was opened, the store opened afresh (the
        parent's connections must not be used there)."""
        if self._engine_pid != os.getpid():
            with _reopen_lock:
                if self._engine_pid != os.getpid():
                    self._engine = engine_for_this_process(self._engine)
                    self._engine_pid = os.getpid()
        return self._engine

    # -- system ------------------------------------------------------------------------

    def heartbeat(self) -> int:
        return time.time_ns()

    def get_version(self) -> str:
        """The chromadb version whose API this implements (`CHROMA_VERSION`), as chromadb's
        in-process client answers its own; `huedb --version` gives huedb's."""
        return CHROMA_VERSION

    def get_user_identity(self) -> UserIdentity:
        """In-process: no user, the default tenant and database (as chromadb's)."""
        return UserIdentity(user_id="", tenant=DEFAULT_TENANT, databases=[DEFAULT_DATABASE])

    def reset(self) -> bool:
        if not self.settings.allow_reset:
            raise ResetDisabledError(
                "Reset is disabled by config. Set allow_reset=True in Settings to enable it."
            )
        self.engine.reset()
        return True

    def get_max_batch_size(self) -> int:
        return MAX_BATCH_SIZE

    def close(self) -> None:
        self.engine.close()

    # -- tenants and databases ---------------------------------------------------------

    def create_tenant(self, name: str) -> None:
        self.engine.create_tenant(name)

    def get_tenant(self, name: str) -> dict[str, Any]:
        return self.engine.get_tenant(name)

    def create_database(self, name: str, tenant: str) -> None:
        self.engine.create_database(name, tenant)

    def get_database(self, name: str, tenant: str) -> dict[str, Any]:
        return self.engine.get_database(name, tenant)

    def delete_database(self, name: str, tenant: str) -> None:
        self.engine.delete_database(name, tenant)

    def list_databases(
        self, limit: int | None, offset: int | None, tenant: str
    ) -> list[dict[str, Any]]:
        limit, offset = (
            validate_limit_offset(limit, "limit"),
            validate_limit_offset(offset, "offset"),
        )
        return self.engine.list_databases(tenant, limit, offset)

    # -- collections -------------------------------------------------------------------

    def _model(self, row: CollectionRow) -> CollectionModel:
        tenant, database = self.engine.database_of(row)
        configuration, schema = config_rules.split_stored(row.configuration)
        return CollectionModel(
            id=uuid.UUID(row.uuid),
            name=row.name,
            tenant=tenant,
            database=database,
            metadata=row.metadata,
            configuration_json=configuration,
            dimension=row.dimension,
            schema=schema,
        )

    def owner_of(self, collection_id: str) -> tuple[str, str]:
        """(tenant, database) of a collection (NotFoundError if it does not exist, also
        when its database was deleted meanwhile: never the default database's names, which
        a token of that database would be allowed)."""
        owner = self.engine.owner_of(self.engine.get_collection_by_uuid(collection_id))
        if owner is None:
            raise NotFoundError(f"Collection [{collection_id}] does not exist.")
        return owner

    def list_collections(
        self, limit: int | None, offset: int | None, tenant: str, database: str
    ) -> list[CollectionModel]:
        limit, offset = (
            validate_limit_offset(limit, "limit"),
            validate_limit_offset(offset, "offset"),
        )
        rows = self.engine.list_collections(tenant, database, limit, offset)
        return [self._model(r) for r in rows]

    def count_collections(self, tenant: str, database: str) -> int:
        return self.engine.count_collections(tenant, database)

    def create_collection(self, request: CreateCollectionRequest) -> CollectionModel:
        """Create (or get) a collection; its configuration and schema JSON are reconciled
        with the legacy `hnsw:*` metadata keys as Chroma does."""
        metadata = request.metadata
        if isinstance(metadata, dict) and any(
            v is None or not isinstance(v, str | int | float | bool) for v in metadata.values()
        ):
            check_collection_metadata(metadata)  # raises the TypeError, before the name check
        validate_name(request.name)
        check_collection_metadata(metadata)
        check_json_depth(request.configuration, "configuration")
        check_json_depth(request.schema, "schema")
        if metadata is not None:
            metadata = _without_nan(metadata) or None
        config = config_rules.create_configuration(request.configuration, metadata, request.schema)
        row = self.engine.create_collection(
            request.name, metadata, config, request.get_or_create, request.tenant, request.database
        )
        return self._model(row)

    def get_collection(self, name: str, tenant: str, database: str) -> CollectionModel:
        return self._model(self.engine.get_collection(name, tenant, database))

    def get_collection_by_id(self, collection_id: str) -> CollectionModel:
        return self._model(self.engine.get_collection_by_uuid(collection_id))

    def modify_collection(self, collection_id: str, request: ModifyCollectionRequest) -> None:
        new_name, new_metadata = request.new_name, request.new_metadata
        if new_name is not None:
            if not isinstance(new_name, str):  # in-process only: the wire types it
                raise not_a_string("new_name", new_name)
            validate_name(new_name, "new_name")
        if new_metadata is not None:
            if "hnsw:space" in new_metadata:
                self._check_space_kept(collection_id, new_metadata["hnsw:space"])
            check_collection_metadata(new_metadata, allow_none=True, what="new_metadata")
            # As in Chroma, None values drop keys; {} (all dropped) clears the metadata.
            new_metadata = _without_nan({k: v for k, v in new_metadata.items() if v is not None})
        # Applied by the engine to the configuration it reads in its write transaction.
        update = request.new_configuration
        check_json_depth(update, "new_configuration")
        configure = (
            None if update is None else lambda current: config_rules.apply_update(current, update)
        )
        self.engine.update_collection(collection_id, new_name, new_metadata, configure)

    def _check_space_kept(self, collection_id: str, given: Any) -> None:
        """`hnsw:space` in a modify's new metadata: accepted when it names the space the
        collection has (JS code spreads the old metadata into the new: Chroma's server
        accepts that), refused otherwise (the space of a built collection never changes)."""
        row = self.engine.get_collection_by_uuid(collection_id)
        current = collection_space(row.configuration, row.metadata)
        if given != current:
            raise InvalidArgumentError(
                "Changing the distance function of a collection once it is created is not "
                f"supported currently (the collection's is {current!r}, new_metadata gives "
                f"{given!r})."
            )

    def fork_collection(self, collection_id: str, new_name: str) -> CollectionModel:
        return self._model(self.engine.fork_collection(collection_id, new_name))

    def fork_count(self, collection_id: str) -> int:
        return self.engine.fork_count(collection_id)

    def delete_collection(self, name: str, tenant: str, database: str) -> None:
        self.engine.delete_collection(name, tenant, database)

    def set_alias(
        self, alias: str, collection: str, create: bool, tenant: str, database: str
    ) -> None:
        self.engine.set_alias(alias, collection, create, tenant, database)

    def delete_alias(self, alias: str, tenant: str, database: str) -> None:
        self.engine.delete_alias(alias, tenant, database)

    def list_aliases(self, tenant: str, database: str) -> list[dict[str, str]]:
        return self.engine.list_aliases(tenant, database)

    # -- records -----------------------------------------------------------------------

    def add(self, collection_id: str, batch: RecordBatch) -> None:
        self.engine.add(collection_id, checked_batch(batch, "add"))

    def update(self, collection_id: str, batch: RecordBatch) -> None:
        self.engine.update(collection_id, checked_batch(batch, "update"))

    def upsert(self, collection_id: str, batch: RecordBatch) -> None:
        self.engine.upsert(collection_id, checked_batch(batch, "upsert"))

    def _checked_filter(
        self, collection_id: str, request: GetRequest | QueryRequest | DeleteRequest
    ) -> RecordFilter:
        """The request's ids and filters, checked, compiled, and allowed by the schema."""
        where, where_document = request.where, request.where_document
        try:
            flt = checked_filter(request.ids, where, where_document)
        except InvalidArgumentError:
            # The engine reads a `#document` condition of a `where` with a string operand as
            # a document filter (it compiles a number or bool compared with `#document` as
            # a metadata term); Chroma reads a string compared with `#document` as a
            # metadata filter, which the schema refuses (in order, after any earlier refused
            # condition).
            if compares_document_key(where):
                self._filter_policy(collection_id).check_where(where)
            raise
        if where or where_document:
            self._filter_policy(collection_id).check(where, where_document)
        return flt

    def _filter_policy(self, collection_id: str) -> FilterPolicy:
        """Which filters the collection's schema refuses, as Chroma does (cached)."""
        policy = self._filter_policies.get(collection_id)
        if policy is None:
            row = self.engine.get_collection_by_uuid(collection_id)
            policy = FilterPolicy.of(config_rules.split_stored(row.configuration)[1])
            self._filter_policies.put(collection_id, policy)
        return policy

    def delete(self, collection_id: str, request: DeleteRequest) -> int:
        flt = self._checked_filter(collection_id, request)
        deleted = self.engine.delete(collection_id, flt, request.limit)
        if request.ids is not None and request.where is None and request.where_document is None:
            return len(request.ids)
        return deleted

    def count(self, collection_id: str) -> int:
        return self.engine.count(collection_id)

    def indexing_status(self, collection_id: str) -> dict[str, Any]:
        return self.engine.indexing_status(collection_id)

    def get(self, collection_id: str, request: GetRequest) -> GetResult:
        validate_limit_offset(request.limit, "limit")  # in-process: the wire types them
        validate_limit_offset(request.offset, "offset")
        include = request.include
        flt = self._checked_filter(collection_id, request)
        rows = self.engine.get(
            collection_id,
            flt,
            request.limit,
            request.offset,
            with_vectors="embeddings" in include,
        )
        fields = _fields(rows, include)
        return GetResult(
            ids=[r[1] for r in rows],
            embeddings=fields["embeddings"],
            documents=fields["documents"],
            uris=fields["uris"],
            data=None,
            metadatas=fields["metadatas"],
            included=list(include),
        )

    def query(self, collection_id: str, request: QueryRequest) -> QueryResult:
        include = request.include
        flt = self._checked_filter(collection_id, request)
        finite_or_error(request.embeddings)
        hits = self.engine.query(
            collection_id,
            request.embeddings,
            request.n_results,
            flt,
            with_vectors="embeddings" in include,
        )
        per_query = [[hits.rows[k] for k in keys if k in hits.rows] for keys in hits.keys]
        distances = [
            [d for k, d in zip(keys, dists, strict=True) if k in hits.rows]
            for keys, dists in zip(hits.keys, hits.distances, strict=True)
        ]
        fields = [_fields(rows, include) for rows in per_query]

        def column(name: str) -> list[Any] | None:
            return [f[name] for f in fields] if _wanted(name, include) else None

        return QueryResult(
            ids=[[r[1] for r in rows] for rows in per_query],
            embeddings=column("embeddings"),
            documents=column("documents"),
            uris=column("uris"),
            data=None,
            metadatas=column("metadatas"),
            distances=distances if "distances" in include else None,
            included=list(include),
        )

    def search(self, collection_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Parse and check a search request (shared/chroma-search-api.md, 2.5), then run it."""
        return self.run_search(collection_id, parse_search_request(body))

    def run_search(self, collection_id: str, request: SearchRequest) -> dict[str, Any]:
        """Run a parsed search request: bounds, the collection (404), its schema, then the
        searches. Once its schema is cached, the collection is read only in the engine's
        snapshot; a search that fails, or never reads it, checks it exists (the 404 first)."""
        check_bounds(request)
        schema = self._search_schemas.get(collection_id)
        cached = schema is not None
        if schema is None:
            row = self.engine.get_collection_by_uuid(collection_id)
            schema = config_rules.split_stored(row.configuration)[1] or {}
            self._search_schemas.put(collection_id, schema)
        run = SearchRun(self.engine, collection_id, schema)
        try:
            check_schema(request, schema)
            answer = run.run(request)
        except NotFoundError:
            self._search_schemas.pop(collection_id)
            raise
        except (StorageUnavailableError, StorageIOError):
            raise  # the store failed: asking it again would wait as long once more
        except Exception:
            if cached:
                self.engine.get_collection_by_uuid(collection_id)
            raise
        if cached and not run.read_collection:
            self.engine.get_collection_by_uuid(collection_id)
        return answer


def _wanted(field: str, include: list[str]) -> bool:
    """Whether a result field is read: Chroma's engine reads metadatas for "data" too (its
    IncludeList maps the item so)."""
    return field in include or (field == "metadatas" and "data" in include)


def _fields(rows: list[tuple], include: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"embeddings": None, "documents": None, "uris": None, "metadatas": None}
    # Rows whose stored metadata holds a `chroma:` key (rare: the JSON text is searched) are
    # read as Chroma reads them (`_reserved_view`); the others as they are stored.
    reserved = {
        n: _reserved_view(r) for n, r in enumerate(rows) if r[4] and RESERVED_PREFIX in r[4]
    }
    if "documents" in include:
        out["documents"] = [r[2] for r in rows]
    if "uris" in include:
        out["uris"] = [r[3] for r in rows]
    if _wanted("metadatas", include):
        # Chroma returns {} rather than None for a record that has a uri but no metadata.
        out["metadatas"] = [
            stored_json(r[4]) if r[4] else ({} if r[3] is not None else None) for r in rows
        ]
    for n, view in reserved.items():
        for name, value in zip(("documents", "uris", "metadatas"), view, strict=True):
            if out[name] is not None:
                out[name][n] = value
    if "embeddings" in include:
        if rows:
            blob = b"".join(r[5] for r in rows)
            # float64 and writable, as chromadb returns them (the float32 values, exactly)
            stored = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), -1)
            out["embeddings"] = stored.astype(np.float64)
        else:
            out["embeddings"] = np.array([])
    return out


def _reserved_view(row: tuple) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """(document, uri, metadata) of a row whose stored metadata holds `chroma:` keys, as
    Chroma returns them: no `chroma:` key in metadata, which is None when it held nothing
    but `chroma:document` and the record has no uri ({} when only `chroma:` keys).

    Writes move a string `chroma:document` / `chroma:uri` to the document / uri
    (`checks._move_reserved_keys`); one stored as metadata before they did is read as the
    document / uri when the record has none, so no value written then is hidden now.
    """
    stored = stored_json(row[4])
    document, uri = row[2], row[3]
    kept_document, kept_uri = stored.get(DOCUMENT_META_KEY), stored.get(URI_META_KEY)
    if document is None and isinstance(kept_document, str):
        document = kept_document
    if uri is None and isinstance(kept_uri, str):
        uri = kept_uri
    if uri is None and all(key == DOCUMENT_META_KEY for key in stored):
        return document, uri, None
    metadata = {k: v for k, v in stored.items() if not k.startswith(RESERVED_PREFIX)}
    return document, uri, metadata


def _without_nan(metadata: dict[str, Any]) -> dict[str, Any]:
    """Collection metadata without its NaN values: Chroma stores none (a NaN key is gone
    when the collection is read back; infinities are kept)."""
    return {k: v for k, v in metadata.items() if not (isinstance(v, float) and v != v)}
