"""`ServerAPI`: the one interface every mode implements (in-process engine or HTTP).

`Client` and `Collection` only talk to a `ServerAPI`, so embedded, persistent and HTTP
clients behave the same by construction. Collections are addressed by UUID here, by name
only where Chroma's wire protocol does so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from huedb.api.requests import (
    CreateCollectionRequest,
    DeleteRequest,
    GetRequest,
    ModifyCollectionRequest,
    QueryRequest,
)
from huedb.api.types import CollectionModel, GetResult, QueryResult, UserIdentity
from huedb.record_batch import RecordBatch
from huedb.search.plan import SearchRequest


class ServerAPI(ABC):
    """Operations of a huedb store, addressed by tenant, database and collection id."""

    # The keys of get / query results in the order chromadb's client of the same kind
    # holds them (a DataFrame's columns, a printout): its in-process client builds both
    # kinds in one order; its HTTP client in others (`HttpServerAPI`).
    get_result_keys: tuple[str, ...] = (
        "ids", "embeddings", "documents", "uris", "included", "data", "metadatas",
    )  # fmt: skip
    query_result_keys: tuple[str, ...] = (*get_result_keys, "distances")

    @abstractmethod
    def heartbeat(self) -> int: ...

    @abstractmethod
    def get_version(self) -> str: ...

    @abstractmethod
    def get_user_identity(self) -> UserIdentity: ...

    @abstractmethod
    def reset(self) -> bool: ...

    @abstractmethod
    def get_max_batch_size(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def create_tenant(self, name: str) -> None: ...

    @abstractmethod
    def get_tenant(self, name: str) -> dict[str, Any]: ...

    @abstractmethod
    def create_database(self, name: str, tenant: str) -> None: ...

    @abstractmethod
    def get_database(self, name: str, tenant: str) -> dict[str, Any]: ...

    @abstractmethod
    def delete_database(self, name: str, tenant: str) -> None: ...

    @abstractmethod
    def list_databases(
        self, limit: int | None, offset: int | None, tenant: str
    ) -> list[dict[str, Any]]: ...

    @abstractmethod
    def list_collections(
        self, limit: int | None, offset: int | None, tenant: str, database: str
    ) -> list[CollectionModel]: ...

    @abstractmethod
    def count_collections(self, tenant: str, database: str) -> int: ...

    @abstractmethod
    def create_collection(self, request: CreateCollectionRequest) -> CollectionModel: ...

    @abstractmethod
    def get_collection(self, name: str, tenant: str, database: str) -> CollectionModel: ...

    @abstractmethod
    def get_collection_by_id(self, collection_id: str) -> CollectionModel: ...

    @abstractmethod
    def modify_collection(self, collection_id: str, request: ModifyCollectionRequest) -> None: ...

    @abstractmethod
    def fork_collection(self, collection_id: str, new_name: str) -> CollectionModel:
        """A copy of the collection under `new_name` in its database (records included)."""

    @abstractmethod
    def fork_count(self, collection_id: str) -> int:
        """Forks made in the collection's lineage tree."""

    @abstractmethod
    def delete_collection(self, name: str, tenant: str, database: str) -> None: ...

    @abstractmethod
    def set_alias(
        self, alias: str, collection: str, create: bool, tenant: str, database: str
    ) -> None: ...

    @abstractmethod
    def delete_alias(self, alias: str, tenant: str, database: str) -> None: ...

    @abstractmethod
    def list_aliases(self, tenant: str, database: str) -> list[dict[str, str]]: ...

    @abstractmethod
    def add(self, collection_id: str, batch: RecordBatch) -> None: ...

    @abstractmethod
    def update(self, collection_id: str, batch: RecordBatch) -> None: ...

    @abstractmethod
    def upsert(self, collection_id: str, batch: RecordBatch) -> None: ...

    @abstractmethod
    def delete(self, collection_id: str, request: DeleteRequest) -> int: ...

    @abstractmethod
    def count(self, collection_id: str) -> int: ...

    @abstractmethod
    def indexing_status(self, collection_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def get(self, collection_id: str, request: GetRequest) -> GetResult: ...

    @abstractmethod
    def query(self, collection_id: str, request: QueryRequest) -> QueryResult: ...

    @abstractmethod
    def search(self, collection_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run a search request (its JSON body); the response body (Chroma's columns)."""

    def run_search(self, collection_id: str, request: SearchRequest) -> dict[str, Any]:
        """Run a checked search request (`search` of its JSON body, unless a mode runs it
        as it is)."""
        return self.search(collection_id, request.to_wire())
