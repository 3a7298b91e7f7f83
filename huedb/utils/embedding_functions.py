"""``chromadb.utils.embedding_functions`` for huedb: the embedding functions huedb ships, and
the sparse ones known by name (a collection's schema records a sparse function by ``name()``
and ``get_config()``; it is rebuilt with ``build_from_config`` of the class found here)."""

from typing import Any

from huedb.embedding_functions import ChromaBm25EmbeddingFunction, DefaultEmbeddingFunction

__all__ = [
    "ChromaBm25EmbeddingFunction",
    "DefaultEmbeddingFunction",
    "sparse_known_embedding_functions",
]

sparse_known_embedding_functions: dict[str, Any] = {
    ChromaBm25EmbeddingFunction.name(): ChromaBm25EmbeddingFunction,
}
"""Sparse embedding function classes by their ``name()``, as in chromadb."""
