"""huedb: a vector database with Chroma's API, safe for many processes on one directory."""

__version__ = "0.1.0"

from huedb import errors  # noqa: E402
from huedb.api.async_client import AsyncHttpClient  # noqa: E402
from huedb.api.client import (  # noqa: E402
    Client,
    EphemeralClient,
    HttpClient,
    PersistentClient,
)
from huedb.api.collection import Collection  # noqa: E402
from huedb.api.types import (  # noqa: E402
    EmbeddingFunction,
    GetResult,
    Include,
    QueryResult,
    Where,
    WhereDocument,
)
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT, Settings  # noqa: E402

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
    "Where",
    "WhereDocument",
    "__version__",
    "errors",
]
