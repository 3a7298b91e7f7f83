"""Public data types: results, includes, metadata and the embedding-function protocol."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypedDict, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from huedb.api import collection_schema

# Schema, its index configurations and SearchResult live here too in chromadb.api.types.
from huedb.api.cmek import Cmek as Cmek
from huedb.api.index_configs import BoolInvertedIndexConfig as BoolInvertedIndexConfig
from huedb.api.index_configs import FloatInvertedIndexConfig as FloatInvertedIndexConfig
from huedb.api.index_configs import FtsIndexConfig as FtsIndexConfig
from huedb.api.index_configs import HnswIndexConfig as HnswIndexConfig
from huedb.api.index_configs import IntInvertedIndexConfig as IntInvertedIndexConfig
from huedb.api.index_configs import SpannIndexConfig as SpannIndexConfig
from huedb.api.index_configs import SparseVectorIndexConfig as SparseVectorIndexConfig
from huedb.api.index_configs import StringInvertedIndexConfig as StringInvertedIndexConfig
from huedb.api.index_configs import VectorIndexConfig as VectorIndexConfig
from huedb.api.schema_builder import Schema as Schema
from huedb.search.result import SearchResult as SearchResult
from huedb.sparse_vector import SparseVector
from huedb.sparse_vector import SparseVectors as SparseVectors  # as chromadb.api.types has

ID = str
IDs = list[ID]
MetadataValue = (
    str | int | float | bool | SparseVector | list[str] | list[int] | list[float] | list[bool]
)
Metadata = dict[str, MetadataValue]
Document = str
Embedding = NDArray[np.float32]
Embeddings = list[Embedding]
Where = dict[str, Any]
WhereDocument = dict[str, Any]
IncludeItem = Literal["documents", "embeddings", "metadatas", "distances", "uris", "data"]
Include = list[IncludeItem]

INCLUDE_ITEMS: tuple[str, ...] = (
    "documents",
    "embeddings",
    "metadatas",
    "distances",
    "uris",
    "data",
)
DEFAULT_GET_INCLUDE: list[str] = ["metadatas", "documents"]
DEFAULT_QUERY_INCLUDE: list[str] = ["metadatas", "documents", "distances"]
SPACES: tuple[str, ...] = ("l2", "ip", "cosine")


class GetResult(TypedDict):
    ids: list[ID]
    embeddings: Any
    documents: list[Document | None] | None
    uris: list[str | None] | None
    data: Any
    metadatas: list[Metadata | None] | None
    included: list[str]


class QueryResult(TypedDict):
    ids: list[list[ID]]
    embeddings: Any
    documents: list[list[Document | None]] | None
    uris: list[list[str | None]] | None
    data: Any
    metadatas: list[list[Metadata | None]] | None
    distances: list[list[float]] | None
    included: list[str]


class DeleteResult(TypedDict):
    deleted: int


@dataclass(frozen=True)
class IndexingStatus:
    """Chroma's indexing status: how many records the ANN index serves; then huedb's
    recall target, the recall@10 measured on the graph (None until measured), the
    ef_search graph searches use, and its source ("configuration", "recall_target" or
    "default")."""

    num_indexed_ops: int
    num_unindexed_ops: int
    total_ops: int
    op_indexing_progress: float
    recall_target: float | None = None
    recall: float | None = None
    ef_search: int | None = None
    ef_search_source: str | None = None


@dataclass(frozen=True)
class UserIdentity:
    """Chroma's `UserIdentity`: who the client is, and the tenant and databases it may use
    (`["*"]`: all of the tenant's)."""

    user_id: str
    tenant: str | None = None
    databases: list[str] | None = None
    attributes: dict[str, Any] | None = None


@runtime_checkable
class EmbeddingFunction(Protocol):
    """Anything callable on a list of documents that returns one vector per document."""

    def __call__(self, input: list[str]) -> Any: ...


@dataclass
class CollectionModel:
    """A collection as the engine and the wire describe it.

    `configuration_json` is the configuration Chroma echoes; `schema` the collection's
    schema (None: the one Chroma derives from the configuration).
    """

    id: uuid.UUID
    name: str
    tenant: str
    database: str
    metadata: dict[str, Any] | None = None
    configuration_json: dict[str, Any] = field(default_factory=dict)
    dimension: int | None = None
    schema: dict[str, Any] | None = None

    # chromadb's `Collection` model fields huedb has no use for, at the values its local
    # mode shows.
    version: ClassVar[int] = 0
    log_position: ClassVar[int] = 0

    @property
    def serialized_schema(self) -> dict[str, Any]:
        """The schema, as chromadb's model names it."""
        return self.schema or schema_json(self.configuration_json)

    def get_serialized_schema(self) -> dict[str, Any]:
        """chromadb's accessor of `serialized_schema`."""
        return self.serialized_schema

    def get_configuration(self) -> dict[str, Any]:
        """The configuration (as stored: `Collection.configuration` rebuilds its function)."""
        return self.configuration_json

    def __getitem__(self, key: str) -> Any:
        """chromadb's model reads as a mapping too: `model["name"]`, `model["configuration"]`;
        None for a key it does not have."""
        if key == "configuration":
            return self.get_configuration()
        if key in _MODEL_KEYS:
            return getattr(self, key)
        return None

    def to_json(self) -> dict[str, Any]:
        """The collection object of Chroma's v2 HTTP API."""
        return {
            "id": str(self.id),
            "name": self.name,
            "configuration_json": self.configuration_json,
            "schema": self.serialized_schema,
            "metadata": self.metadata,
            "dimension": self.dimension,
            "tenant": self.tenant,
            "database": self.database,
            "log_position": self.log_position,
            "version": self.version,
        }


# The keys `CollectionModel[key]` answers, as chromadb's model fields.
_MODEL_KEYS = frozenset(
    (
        "id",
        "name",
        "configuration_json",
        "serialized_schema",
        "metadata",
        "dimension",
        "tenant",
        "database",
        "version",
        "log_position",
    )
)


def schema_json(configuration: dict[str, Any]) -> dict[str, Any]:
    """The schema Chroma derives from a configuration (for collections stored without one)."""
    return collection_schema.schema_from_configuration(configuration or {})
