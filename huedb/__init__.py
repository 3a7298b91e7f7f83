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
    EmbeddingFunction,
    GetResult,
    Include,
    QueryResult,
    Where,
    WhereDocument,
)
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT, Settings
from huedb.sparse_vector import SparseVector, SparseVectors
from huedb.version import __version__

__all__ = [
    "AsyncHttpClient",
    "DEFAULT_DATABASE",
    "DEFAULT_TENANT",
    "Client",
    "Collection",
    "EmbeddingFunction",
    "EphemeralClient",
    "GetResult",
    "HttpClient",
    "Include",
    "PersistentClient",
    "QueryResult",
    "Settings",
    "SparseVector",
    "SparseVectors",
    "Where",
    "WhereDocument",
    "__version__",
    "errors",
    "utils",
]
