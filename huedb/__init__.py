"""huedb: a vector database with Chroma's API, safe for many processes on one directory.

The public names load on first use (PEP 562): `import huedb` itself imports only the version,
so a process that needs one part of huedb (a graph or recall child, the CLI, the server) does
not pay for the rest. `huedb.<name>` and `from huedb import <name>` work as if imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from huedb.version import __version__

# Where each public name lives.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "huedb.api.async_client": (
        "AsyncClientAPI",
        "AsyncHttpClient",
    ),
    "huedb.api.client": (
        "AdminAPI",
        "AdminClient",
        "Client",
        "ClientAPI",
        "CloudClient",
        "EphemeralClient",
        "HttpClient",
        "PersistentClient",
    ),
    "huedb.api.collection": ("Collection",),
    "huedb.api.types": (
        "URI",
        "BoolInvertedIndexConfig",
        "Cmek",
        "CollectionMetadata",
        "Documents",
        "EmbeddingFunction",
        "Embeddings",
        "FloatInvertedIndexConfig",
        "FtsIndexConfig",
        "GetResult",
        "HnswIndexConfig",
        "IDs",
        "Include",
        "IntInvertedIndexConfig",
        "Metadata",
        "Metadatas",
        "QueryResult",
        "Schema",
        "SpannIndexConfig",
        "SparseEmbeddingFunction",
        "SparseVectorIndexConfig",
        "StringInvertedIndexConfig",
        "UpdateCollectionMetadata",
        "UpdateMetadata",
        "URIs",
        "VectorIndexConfig",
        "Where",
        "WhereDocument",
    ),
    "huedb.config": (
        "DEFAULT_DATABASE",
        "DEFAULT_TENANT",
        "Settings",
        "TokenTransportHeader",
        "configure",
        "get_settings",
    ),
    "huedb.execution.expression": (
        "GroupBy",
        "K",
        "Key",
        "Knn",
        "Limit",
        "MaxK",
        "MinK",
        "Rrf",
        "Search",
        "Select",
        "Val",
    ),
    "huedb.execution.read_level": ("ReadLevel",),
    "huedb.sparse_vector": (
        "SparseVector",
        "SparseVectors",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = ["__version__", "errors", "utils", *_MODULE_OF]


def __getattr__(name: str) -> Any:
    """A public name's value, its module imported on first use; or a submodule (`huedb.errors`,
    `huedb.utils`) by its name."""
    module = _MODULE_OF.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # the same names, for type checkers and editors
    from huedb import errors, utils
    from huedb.api.async_client import (
        AsyncClientAPI,
        AsyncHttpClient,
    )
    from huedb.api.client import (
        AdminAPI,
        AdminClient,
        Client,
        ClientAPI,
        CloudClient,
        EphemeralClient,
        HttpClient,
        PersistentClient,
    )
    from huedb.api.collection import Collection
    from huedb.api.types import (
        URI,
        BoolInvertedIndexConfig,
        Cmek,
        CollectionMetadata,
        Documents,
        EmbeddingFunction,
        Embeddings,
        FloatInvertedIndexConfig,
        FtsIndexConfig,
        GetResult,
        HnswIndexConfig,
        IDs,
        Include,
        IntInvertedIndexConfig,
        Metadata,
        Metadatas,
        QueryResult,
        Schema,
        SpannIndexConfig,
        SparseEmbeddingFunction,
        SparseVectorIndexConfig,
        StringInvertedIndexConfig,
        UpdateCollectionMetadata,
        UpdateMetadata,
        URIs,
        VectorIndexConfig,
        Where,
        WhereDocument,
    )
    from huedb.config import (
        DEFAULT_DATABASE,
        DEFAULT_TENANT,
        Settings,
        TokenTransportHeader,
        configure,
        get_settings,
    )
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
