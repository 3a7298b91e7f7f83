"""`HuedbServerAPI`: chromadb's `ServerAPI` on huedb's engine, in this process.

chromadb's `System` builds it from `Settings(chroma_api_impl=API_IMPL)`; the real chromadb
client classes then run on huedb's store (shared per process and path through
`huedb.engine.registry`, safe for many processes on one directory). Every call goes to a
`huedb.api.local.LocalAPI`, so the server-side checks are huedb's; huedb's errors come
back as chromadb's classes.

chromadb's `SharedSystemClient.clear_system_cache()` forgets its cached systems; the bridge
then gives their engines back (`identifier.py`), and a client or collection made before the
clear takes its directory's engine again at its next call, as chromadb's old handles keep
working on their directory (an in-memory store is gone with its engine: an old handle of
one raises chromadb's `InternalError` saying so). Every later clear gives those engines
back again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import chromadb.errors as chroma_errors
from chromadb.api import ServerAPI
from chromadb.api.collection_configuration import (
    create_collection_configuration_to_json,
    update_collection_configuration_to_json,
)
from chromadb.api.models.AttachedFunction import AttachedFunction
from chromadb.api.types import (
    DeleteResult,
    GetResult,
    IncludeMetadataDocuments,
    IncludeMetadataDocumentsDistances,
    IncludeMetadataDocumentsEmbeddings,
    IndexingStatus,
    QueryResult,
    ReadLevel,
    SearchResult,
)
from chromadb.auth import UserIdentity
from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT, System
from chromadb.config import Settings as ChromaSettings
from chromadb.types import Collection as ChromaCollectionModel
from chromadb.types import Database, Tenant
from overrides import override

from huedb.api.local import LocalAPI
from huedb.api.requests import (
    CreateCollectionRequest,
    DeleteRequest,
    GetRequest,
    ModifyCollectionRequest,
    QueryRequest,
)
from huedb.chroma_bridge import convert
from huedb.chroma_bridge.errors import as_chroma_errors
from huedb.config import Settings
from huedb.engine.registry import acquire_engine, release_engine
from huedb.search.parse import as_json

# chromadb's IndexingStatus fields (huedb's status adds its recall figures after them).
CHROMA_INDEXING_FIELDS = (
    "num_indexed_ops",
    "num_unindexed_ops",
    "total_ops",
    "op_indexing_progress",
)

_ATTACHED_FUNCTIONS = (
    "Attached functions are only supported when connecting to a Chroma server via HttpClient. "
    "The Rust bindings (embedded mode) do not support attached function operations."
)

_CLEARED_IN_MEMORY = (
    "This client's in-memory store was discarded by SharedSystemClient.clear_system_cache(): "
    "create a new client (it starts with an empty store)"
)


def huedb_settings(settings: ChromaSettings) -> Settings:
    """huedb's settings for chromadb's: the data path, persistence and `allow_reset`."""
    return Settings(
        is_persistent=bool(settings.is_persistent),
        persist_directory=str(settings.persist_directory),
        allow_reset=bool(settings.allow_reset),
    )


class HuedbServerAPI(ServerAPI):
    """chromadb's server API over huedb's `LocalAPI` (an engine opened on `start`)."""

    # The APIs of systems a cache clear dropped that took their engine again (given back
    # at the next clear).
    _reopened: ClassVar[set[HuedbServerAPI]] = set()
    _reopened_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, system: System) -> None:
        super().__init__(system)
        self._local: LocalAPI | None = None
        self._lock = threading.Lock()
        self._stopped = False  # by chromadb (the last client's close): not reopened
        self._cleared = False  # dropped by a cache clear: reopened at the next call
        # The directory the first open resolved `persist_directory` to: a reopen after a
        # cache clear takes that one, whatever the working directory is by then.
        self._directory: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @override
    def start(self) -> None:
        with self._lock:
            self._stopped = False
            if self._local is None:
                self._local = self._open()
        super().start()

    @override
    def stop(self) -> None:
        super().stop()
        with self._lock:
            self._stopped = True
            self._give_back()

    def cache_cleared(self) -> None:
        """chromadb's cache dropped this API's system (stopped first, or dropped before and
        reopened since): give the engine back and take it again at the next call."""
        with self._lock:
            self._stopped = False
            self._cleared = True
            self._give_back()

    @property
    def local(self) -> LocalAPI:
        """The huedb API every call goes to; after a cache clear, the directory's engine
        taken again."""
        local = self._local
        if local is not None:
            return local
        with self._lock:
            if self._local is None:
                if self._stopped:
                    raise RuntimeError("The huedb bridge is not started")
                if self._cleared and not self._system.settings.is_persistent:
                    raise chroma_errors.InternalError(_CLEARED_IN_MEMORY)
                self._local = self._open()
                if self._cleared:
                    with HuedbServerAPI._reopened_lock:
                        HuedbServerAPI._reopened.add(self)
            return self._local

    def _open(self) -> LocalAPI:
        """A `LocalAPI` on the engine of this system's settings (acquired)."""
        settings = huedb_settings(self._system.settings)
        path = None
        if settings.is_persistent:
            if self._directory is None:
                self._directory = Path(settings.persist_directory).absolute()
            path = self._directory
        with as_chroma_errors():
            engine = acquire_engine(path, settings.engine_options(), owner=settings.allow_reset)
        return LocalAPI(engine, settings)

    def _give_back(self) -> None:
        """Release the engine, if held (under `self._lock`)."""
        local, self._local = self._local, None
        if local is not None:
            release_engine(local.engine)

    @classmethod
    def reopened_since_last_clear(cls) -> list[HuedbServerAPI]:
        """The APIs a cache clear dropped that took their engine again (and forgets them)."""
        with cls._reopened_lock:
            apis = list(cls._reopened)
            cls._reopened.clear()
        return apis

    # -- system ------------------------------------------------------------------------

    @override
    def heartbeat(self) -> int:
        return self.local.heartbeat()

    @override
    def get_version(self) -> str:
        return self.local.get_version()

    @override
    def reset(self) -> bool:
        with as_chroma_errors():
            return self.local.reset()

    @override
    def get_settings(self) -> ChromaSettings:
        return self._system.settings

    @override
    def get_max_batch_size(self) -> int:
        return self.local.get_max_batch_size()

    @override
    def get_user_identity(self) -> UserIdentity:
        return UserIdentity(user_id="", tenant=DEFAULT_TENANT, databases=[DEFAULT_DATABASE])

    # -- tenants and databases ---------------------------------------------------------

    @override
    def create_tenant(self, name: str) -> None:
        with as_chroma_errors():
            self.local.create_tenant(name)

    @override
    def get_tenant(self, name: str) -> Tenant:
        with as_chroma_errors():
            return Tenant(name=self.local.get_tenant(name)["name"])

    @override
    def create_database(self, name: str, tenant: str = DEFAULT_TENANT) -> None:
        with as_chroma_errors():
            self.local.create_database(name, tenant)

    @override
    def get_database(self, name: str, tenant: str = DEFAULT_TENANT) -> Database:
        with as_chroma_errors():
            return _database(self.local.get_database(name, tenant))

    @override
    def delete_database(self, name: str, tenant: str = DEFAULT_TENANT) -> None:
        with as_chroma_errors():
            self.local.delete_database(name, tenant)

    @override
    def list_databases(
        self, limit: int | None = None, offset: int | None = None, tenant: str = DEFAULT_TENANT
    ) -> Sequence[Database]:
        with as_chroma_errors():
            return [_database(d) for d in self.local.list_databases(limit, offset, tenant)]

    # -- collections -------------------------------------------------------------------

    @override
    def count_collections(
        self, tenant: str = DEFAULT_TENANT, database: str = DEFAULT_DATABASE
    ) -> int:
        with as_chroma_errors():
            return self.local.count_collections(tenant, database)

    @override
    def list_collections(
        self,
        limit: int | None = None,
        offset: int | None = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> Sequence[ChromaCollectionModel]:
        with as_chroma_errors():
            models = self.local.list_collections(limit, offset, tenant, database)
        return [convert.collection_model(m) for m in models]

    @override
    def create_collection(
        self,
        name: str,
        schema: Any = None,
        configuration: Any = None,
        metadata: Any = None,
        get_or_create: bool = False,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> ChromaCollectionModel:
        # As chromadb's HTTP client sends them: configuration and schema as JSON.
        config = (
            create_collection_configuration_to_json(configuration, metadata)
            if configuration
            else None
        )
        schema_json = schema.serialize_to_json() if schema is not None else None
        request = CreateCollectionRequest(
            name, metadata, config, get_or_create, tenant, database, schema_json
        )
        with as_chroma_errors():
            model = self.local.create_collection(request)
        return convert.collection_model(model)

    @override
    def get_or_create_collection(
        self,
        name: str,
        schema: Any = None,
        configuration: Any = None,
        metadata: Any = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> ChromaCollectionModel:
        return self.create_collection(name, schema, configuration, metadata, True, tenant, database)

    @override
    def get_collection(
        self, name: str, tenant: str = DEFAULT_TENANT, database: str = DEFAULT_DATABASE
    ) -> ChromaCollectionModel:
        with as_chroma_errors():
            return convert.collection_model(self.local.get_collection(name, tenant, database))

    @override
    def get_collection_by_id(
        self,
        collection_id: UUID,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> ChromaCollectionModel:
        with as_chroma_errors():
            return convert.collection_model(self.local.get_collection_by_id(str(collection_id)))

    @override
    def delete_collection(
        self, name: str, tenant: str = DEFAULT_TENANT, database: str = DEFAULT_DATABASE
    ) -> None:
        with as_chroma_errors():
            self.local.delete_collection(name, tenant, database)

    @override
    def _modify(
        self,
        id: UUID,
        new_name: str | None = None,
        new_metadata: Any = None,
        new_configuration: Any = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> None:
        config = (
            update_collection_configuration_to_json(new_configuration)
            if new_configuration
            else None
        )
        with as_chroma_errors():
            self.local.modify_collection(
                str(id), ModifyCollectionRequest(new_name, new_metadata, config)
            )

    @override
    def _fork(
        self,
        collection_id: UUID,
        new_name: str,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> ChromaCollectionModel:
        with as_chroma_errors():
            return convert.collection_model(
                self.local.fork_collection(str(collection_id), new_name)
            )

    @override
    def _fork_count(
        self, collection_id: UUID, tenant: str = DEFAULT_TENANT, database: str = DEFAULT_DATABASE
    ) -> int:
        with as_chroma_errors():
            return self.local.fork_count(str(collection_id))

    @override
    def _get_indexing_status(
        self, collection_id: UUID, tenant: str = DEFAULT_TENANT, database: str = DEFAULT_DATABASE
    ) -> IndexingStatus:
        with as_chroma_errors():
            status = self.local.indexing_status(str(collection_id))
            return IndexingStatus(**{f: status[f] for f in CHROMA_INDEXING_FIELDS})

    @override
    def _search(
        self,
        collection_id: UUID,
        searches: list[Any],
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
        read_level: ReadLevel = ReadLevel.INDEX_AND_WAL,
    ) -> SearchResult:
        # As chromadb's HTTP client sends it (orjson: numpy values as numbers, tuples as
        # lists, non-finite floats as null), so the bridge answers what a server would.
        payload = as_json(
            {
                "searches": [search.to_dict() for search in searches],
                "read_level": getattr(read_level, "value", read_level),
            }
        )
        with as_chroma_errors():
            return convert.search_result(self.local.search(str(collection_id), payload))

    # -- records -----------------------------------------------------------------------

    @override
    def _count(
        self,
        collection_id: UUID,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
        read_level: ReadLevel = ReadLevel.INDEX_AND_WAL,
    ) -> int:
        with as_chroma_errors():
            return self.local.count(str(collection_id))

    @override
    def _peek(
        self,
        collection_id: UUID,
        n: int = 10,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> GetResult:
        return self._get(
            collection_id,
            limit=n,
            include=IncludeMetadataDocumentsEmbeddings,
            tenant=tenant,
            database=database,
        )

    @override
    def _get(
        self,
        collection_id: UUID,
        ids: Any = None,
        where: Any = None,
        limit: int | None = None,
        offset: int | None = None,
        where_document: Any = None,
        include: Any = IncludeMetadataDocuments,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> GetResult:
        request = GetRequest(
            ids=None if ids is None else list(ids),
            where=where,
            where_document=where_document,
            limit=limit,
            offset=offset,
            include=convert.include_list(include),
        )
        with as_chroma_errors():
            return convert.get_result(self.local.get(str(collection_id), request))

    @override
    def _add(
        self,
        ids: Any,
        collection_id: UUID,
        embeddings: Any,
        metadatas: Any = None,
        documents: Any = None,
        uris: Any = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> bool:
        with as_chroma_errors():
            batch = convert.record_batch(ids, embeddings, metadatas, documents, uris)
            self.local.add(str(collection_id), batch)
        return True

    @override
    def _update(
        self,
        collection_id: UUID,
        ids: Any,
        embeddings: Any = None,
        metadatas: Any = None,
        documents: Any = None,
        uris: Any = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> bool:
        with as_chroma_errors():
            batch = convert.record_batch(ids, embeddings, metadatas, documents, uris)
            self.local.update(str(collection_id), batch)
        return True

    @override
    def _upsert(
        self,
        collection_id: UUID,
        ids: Any,
        embeddings: Any,
        metadatas: Any = None,
        documents: Any = None,
        uris: Any = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> bool:
        with as_chroma_errors():
            batch = convert.record_batch(ids, embeddings, metadatas, documents, uris)
            self.local.upsert(str(collection_id), batch)
        return True

    @override
    def _query(
        self,
        collection_id: UUID,
        query_embeddings: Any,
        ids: Any = None,
        n_results: int = 10,
        where: Any = None,
        where_document: Any = None,
        include: Any = IncludeMetadataDocumentsDistances,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> QueryResult:
        with as_chroma_errors():
            request = QueryRequest(
                embeddings=convert.matrix(query_embeddings),
                n_results=n_results,
                ids=None if ids is None else list(ids),
                where=where,
                where_document=where_document,
                include=convert.include_list(include),
            )
            return convert.query_result(self.local.query(str(collection_id), request))

    @override
    def _delete(
        self,
        collection_id: UUID,
        ids: Any = None,
        where: Any = None,
        where_document: Any = None,
        limit: int | None = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> DeleteResult:
        request = DeleteRequest(
            ids=None if ids is None else list(ids),
            where=where,
            where_document=where_document,
            limit=limit,
        )
        with as_chroma_errors():
            return DeleteResult(deleted=self.local.delete(str(collection_id), request))

    # -- attached functions (Chroma's distributed mode only) ---------------------------

    @override
    def attach_function(
        self,
        function_id: str,
        name: str,
        input_collection_id: UUID,
        output_collection: str,
        params: dict[str, Any] | None = None,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> tuple[AttachedFunction, bool]:
        raise NotImplementedError(_ATTACHED_FUNCTIONS)

    @override
    def get_attached_function(
        self,
        name: str,
        input_collection_id: UUID,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> AttachedFunction:
        raise NotImplementedError(_ATTACHED_FUNCTIONS)

    @override
    def detach_function(
        self,
        name: str,
        input_collection_id: UUID,
        delete_output: bool = False,
        tenant: str = DEFAULT_TENANT,
        database: str = DEFAULT_DATABASE,
    ) -> bool:
        raise NotImplementedError(_ATTACHED_FUNCTIONS)


def _database(row: dict[str, Any]) -> Database:
    return Database(id=row["id"], name=row["name"], tenant=row["tenant"])
