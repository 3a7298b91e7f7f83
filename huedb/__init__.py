"""huedb: a vector database with Chroma's API, safe for many processes on one directory."""

from huedb import errors, utils
from huedb.api.async_client import AsyncHttpClient
from huedb.api.client import (
    Client,
    EphemeralClient,
    HttpClient,
    PersistentClient,
)
from huedb.api.collection import Collection
from huedb.api.types import (
    BoolInvertedIndexConfig,
    Cmek,
    EmbeddingFunction,
    FloatInvertedIndexConfig,
    FtsIndexConfig,
    GetResult,
    HnswIndexConfig,
    Include,
    IntInvertedIndexConfig,
    QueryResult,
    Schema,
    SpannIndexConfig,
    SparseVectorIndexConfig,
    StringInvertedIndexConfig,
    VectorIndexConfig,
    Where,
    WhereDocument,
)
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT, Settings
from huedb.execution.expression import (
    GroupBy,
    K,
    Key,
    Knn,
    Limit,
    MaxK,
    MinK,
    Rrf,
    Search,
    Select,
    Val,
)
from huedb.execution.read_level import ReadLevel
from huedb.sparse_vector import SparseVector, SparseVectors
from huedb.version import __version__

__all__ = [
    "VectorIndexConfig",
    "StringInvertedIndexConfig",
    "SparseVectorIndexConfig",
    "SpannIndexConfig",
    "Schema",
    "IntInvertedIndexConfig",
    "HnswIndexConfig",
    "FtsIndexConfig",
    "FloatInvertedIndexConfig",
    "BoolInvertedIndexConfig",
    "AsyncHttpClient",
    "DEFAULT_DATABASE",
    "DEFAULT_TENANT",
    "Client",
    "Cmek",
    "Collection",
    "EmbeddingFunction",
    "EphemeralClient",
    "GetResult",
    "GroupBy",
    "HttpClient",
    "Include",
    "K",
    "Key",
    "Knn",
    "Limit",
    "MaxK",
    "MinK",
    "PersistentClient",
    "QueryResult",
    "ReadLevel",
    "Rrf",
    "Search",
    "Select",
    "Settings",
    "SparseVector",
    "SparseVectors",
    "Val",
    "Where",
    "WhereDocument",
    "__version__",
    "errors",
    "utils",
]
