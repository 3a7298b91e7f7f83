"""The client side of `Collection.search`: searches into the request body, string Knn queries
embedded first (shared/chroma-search-api.md, 1.7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from huedb.execution.expression.plan import Search
from huedb.execution.read_level import ReadLevel
from huedb.execution.string_queries import embed_search
from huedb.utils.embedding_functions import sparse_known_embedding_functions

DenseEmbed = Callable[[str], list[float]]


def request_body(
    searches: Any, read_level: Any, schema: dict[str, Any] | None, dense: DenseEmbed
) -> dict[str, Any]:
    """The JSON body of a search request: `{"searches": [...], "read_level": ...}`."""
    items = list(searches) if isinstance(searches, list | tuple) else [searches]
    for item in items:
        if not isinstance(item, Search):
            raise TypeError(f"Expected Search objects, got {type(item).__name__}")
    embedder = _Embedder(schema or {}, dense)
    payloads = [embed_search(s, embedder).to_dict() for s in items]
    level = ReadLevel(read_level if read_level is not None else ReadLevel.INDEX_AND_WAL)
    return {"searches": payloads, "read_level": level.value}


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
        known = sparse_known_embedding_functions.get(ef.get("name"))
        if not index.get("enabled") or ef.get("type") != "known" or known is None:
            raise ValueError(
                f"Cannot embed string query for key '{key}': no embedding function configured "
                "for this key in the schema. Please provide an embedded vector or configure "
                "an embedding function for this key in the schema."
            )
        return known.build_from_config(ef.get("config") or {})
