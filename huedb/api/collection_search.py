"""The client side of `Collection.search`: searches into the request body, string Knn queries
embedded first (shared/chroma-search-api.md, 1.7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from huedb.api.collection_schema import rebuilt_sparse_function
from huedb.execution.expression.plan import Search
from huedb.execution.expression.rank import query_to_wire
from huedb.execution.read_level import ReadLevel
from huedb.execution.string_queries import embed_search

DenseEmbed = Callable[[str], list[float]]


def request_body(
    searches: Any, read_level: Any, schema: dict[str, Any] | None, dense: DenseEmbed
) -> dict[str, Any]:
    """The JSON body of a search request: `{"searches": [...], "read_level": ...}`."""
    items = list(searches) if isinstance(searches, list | tuple) else [searches]
    embedder = _Embedder(schema or {}, dense)
    payloads = [_payload(item, embedder) for item in items]
    level = ReadLevel(read_level if read_level is not None else ReadLevel.INDEX_AND_WAL)
    return {"searches": payloads, "read_level": level.value}


def _payload(item: Any, embedder: _Embedder) -> dict[str, Any]:
    """One search's wire form. chromadb's own `Search` objects (code written for chromadb,
    e.g. LangChain's hybrid search) are taken by their `to_dict()`, string Knn queries
    embedded there."""
    if isinstance(item, Search):
        return embed_search(item, embedder).to_dict()
    if type(item).__name__ == "Search" and callable(getattr(item, "to_dict", None)):
        payload = item.to_dict()
        if isinstance(payload, dict):
            return _embed_wire(payload, embedder)
    raise TypeError(f"Expected Search objects, got {type(item).__name__}")


def _embed_wire(node: Any, embedder: _Embedder) -> Any:
    """A search's wire form with the string query of every `$knn` embedded."""
    if isinstance(node, list):
        return [_embed_wire(n, embedder) for n in node]
    if not isinstance(node, dict):
        return node
    knn = node.get("$knn")
    if len(node) == 1 and isinstance(knn, dict) and isinstance(knn.get("query"), str):
        key = knn.get("key", "#embedding")
        return {"$knn": {**knn, "query": query_to_wire(embedder(key, knn["query"]))}}
    return {k: _embed_wire(v, embedder) for k, v in node.items()}


class _Embedder:
    """`embed(key, text)` for `embed_search`: the dense function for `#embedding`, the
    schema's sparse function of `key` otherwise (built once per key)."""

    def __init__(self, schema: dict[str, Any], dense: DenseEmbed) -> None:
        self.schema = schema
        self.dense = dense
        self.sparse: dict[str, Any] = {}

    def __call__(self, key: str, text: str) -> Any:
        if key == "#embedding":
            return self.dense(text)
        if key not in self.sparse:
            self.sparse[key] = self._sparse_function(key)
        return self.sparse[key].embed_query([text])[0]

    def _sparse_function(self, key: str) -> Any:
        types = (self.schema.get("keys") or {}).get(key)
        if not isinstance(types, dict):
            raise ValueError(
                f"Cannot embed string query for key '{key}': key not found in schema. Please "
                "provide an embedded vector or configure an embedding function for this key "
                "in the schema."
            )
        index = (types.get("sparse_vector") or {}).get("sparse_vector_index") or {}
        ef = (index.get("config") or {}).get("embedding_function") or {}
        # as chromadb's client: a function it cannot rebuild is None (with its warning)
        function = (
            rebuilt_sparse_function(ef)
            if index.get("enabled") and ef.get("type") == "known"
            else None
        )
        if function is None:
            raise ValueError(
                f"Cannot embed string query for key '{key}': no embedding function configured "
                "for this key in the schema. Please provide an embedded vector or configure "
                "an embedding function."
            )
        return function
