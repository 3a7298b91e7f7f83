"""``chromadb.utils.embedding_functions`` for huedb: the embedding functions huedb ships, and
those known by name (a collection records its function by ``name()`` and ``get_config()``;
opened without one, it is rebuilt with ``build_from_config`` of the class found here)."""

import logging
import sys
from typing import Any

from huedb.embedding_functions import ChromaBm25EmbeddingFunction, DefaultEmbeddingFunction
from huedb.utils.chroma_names import chromadb_name

__all__ = [
    "ChromaBm25EmbeddingFunction",
    "DefaultEmbeddingFunction",
    "known_embedding_functions",
    "register_embedding_function",
    "register_sparse_embedding_function",
    "sparse_known_embedding_functions",
]

logger = logging.getLogger(__name__)


class _SparseRegistry(dict):
    """Sparse embedding function classes by their ``name()``: huedb's own, and for a name
    not registered here, chromadb's (``chromadb.utils.embedding_functions
    .sparse_known_embedding_functions``) when the program loaded chromadb — code written
    for chromadb registers its sparse functions there. Looking a name up (``[name]``,
    ``get``, ``in``) consults both; iterating lists huedb's own."""

    def __missing__(self, name: str) -> Any:
        cls = _chroma_sparse_class(name)
        if cls is None:
            raise KeyError(name)
        return cls

    def get(self, name: Any, default: Any = None) -> Any:  # type: ignore[override]
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        cls = _chroma_sparse_class(name)
        return default if cls is None else cls

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or _chroma_sparse_class(name) is not None


def _chroma_sparse_class(name: Any) -> Any:
    """chromadb's sparse class of that name, only if the program loaded chromadb's registry
    (huedb never imports chromadb: a function registered there was, since registering
    imports it)."""
    chroma_registry = sys.modules.get("chromadb.utils.embedding_functions")
    if chroma_registry is None:
        return None
    found = getattr(chroma_registry, "sparse_known_embedding_functions", None)
    return found.get(name) if isinstance(found, dict) else None


sparse_known_embedding_functions: dict[str, Any] = _SparseRegistry(
    {ChromaBm25EmbeddingFunction.name(): ChromaBm25EmbeddingFunction}
)
"""Sparse embedding function classes by their ``name()``, as in chromadb (then chromadb's
own registry for a name huedb has not: `_SparseRegistry`)."""

known_embedding_functions: dict[str, Any] = {
    DefaultEmbeddingFunction.name(): DefaultEmbeddingFunction,
}
"""Dense embedding function classes by their ``name()``, as in chromadb."""


def register_embedding_function(cls: Any) -> Any:
    """Class decorator (chromadb's): know a dense embedding function class by its ``name()``,
    so a collection built with it is opened without passing it again."""
    name = cls.name()
    if name in known_embedding_functions and known_embedding_functions[name] is not cls:
        raise ValueError(f"Embedding function {name} is already registered")
    known_embedding_functions[name] = cls
    return cls


def register_sparse_embedding_function(cls: Any) -> Any:
    """Class decorator (chromadb's): know a sparse embedding function class by its
    ``name()``, so a collection whose schema names it (a sparse-vector index with this
    function and a ``source_key``) embeds records on add/update/upsert and string ``Knn``
    queries with it, as chromadb's client does with its own registry."""
    name = cls.name()
    registered = dict.get(sparse_known_embedding_functions, name)  # huedb's own only
    if registered is not None and registered is not cls:
        raise ValueError(f"Sparse embedding function {name} is already registered")
    sparse_known_embedding_functions[name] = cls
    return cls


def rebuild_embedding_function(recorded: dict[str, Any]) -> Any | None:
    """The dense embedding function a collection recorded (``{"type": "known", "name",
    "config"}``), rebuilt by its registered class: huedb's registry, then chromadb's when
    the program has loaded it (code written for chromadb registers its functions there). None
    when no class of that name is known; an error of ``build_from_config`` is raised."""
    name = recorded.get("name")
    cls = known_embedding_functions.get(name)  # type: ignore[arg-type]
    # chromadb's registry only if the program loaded it (huedb never imports chromadb):
    # a function registered there was, since registering imports it.
    chroma_registry = sys.modules.get("chromadb.utils.embedding_functions")
    if cls is None and chroma_registry is not None:
        cls = getattr(chroma_registry, "known_embedding_functions", {}).get(name)
    if cls is None:
        return None
    logger.debug("rebuilding embedding function %s from its recorded configuration", name)
    return cls.build_from_config(recorded.get("config") or {})


def __getattr__(name: str) -> Any:
    """chromadb's other embedding functions (``OpenAIEmbeddingFunction``,
    ``SentenceTransformerEmbeddingFunction``, ...) from chromadb when it is installed
    (`chroma_names`), so code importing them from this module runs unchanged (huedb's own
    ``EmbeddingFunction`` protocol is ``huedb.EmbeddingFunction``)."""
    return chromadb_name(
        "chromadb.utils.embedding_functions",
        name,
        __name__,
        "DefaultEmbeddingFunction and ChromaBm25EmbeddingFunction",
    )
