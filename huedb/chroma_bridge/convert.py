"""Values between chromadb's client types and huedb's `ServerAPI` types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from chromadb.api.types import GetResult, QueryResult, SearchResult
from chromadb.base_types import SparseVector as ChromaSparseVector
from chromadb.types import Collection as ChromaCollectionModel

from huedb.api import types as hue_types
from huedb.errors import InvalidArgumentError
from huedb.record_batch import RecordBatch
from huedb.sparse_vector import SPARSE_VECTOR_TYPE_VALUE, TYPE_KEY, trusted_sparse_vector


def collection_model(model: hue_types.CollectionModel) -> ChromaCollectionModel:
    """chromadb's collection model of a huedb collection (as its HTTP client builds it)."""
    return ChromaCollectionModel.from_json(model.to_json())


def matrix(rows: Sequence[Any] | None) -> np.ndarray | None:
    """An n x d float32 matrix of chromadb's embeddings (None stays None)."""
    if rows is None:
        return None
    if len(rows) == 0:
        return np.empty((0, 0), dtype=np.float32)
    vectors = [np.asarray(r, dtype=np.float32).ravel() for r in rows]
    if len({len(v) for v in vectors}) != 1:
        raise InvalidArgumentError("Inconsistent dimensions in provided embeddings")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(np.vstack(vectors), dtype=np.float32)


def record_batch(
    ids: Sequence[str],
    embeddings: Sequence[Any] | None,
    metadatas: Sequence[Any] | None,
    documents: Sequence[str | None] | None,
    uris: Sequence[str | None] | None,
) -> RecordBatch:
    """The `RecordBatch` of one chromadb write."""
    return RecordBatch(
        ids=list(ids),
        embeddings=matrix(embeddings),
        metadatas=None if metadatas is None else [_huedb_metadata(m) for m in metadatas],
        documents=None if documents is None else list(documents),
        uris=None if uris is None else list(uris),
    )


def _huedb_metadata(metadata: Any) -> Any:
    """A chromadb metadata dict with its `SparseVector` values as huedb's (chromadb checked
    them when it built them, with the same checks)."""
    if not isinstance(metadata, dict) or not any(
        isinstance(v, ChromaSparseVector) for v in metadata.values()
    ):
        return metadata
    return {
        k: trusted_sparse_vector(v.indices, v.values, v.labels)
        if isinstance(v, ChromaSparseVector)
        else v
        for k, v in metadata.items()
    }


def _chroma_metadata(metadata: Any) -> Any:
    """A stored metadata dict with its sparse vectors as chromadb's `SparseVector`."""
    if not isinstance(metadata, dict):
        return metadata
    return {
        k: ChromaSparseVector(v["indices"], v["values"], v.get("tokens"))
        if isinstance(v, dict) and v.get(TYPE_KEY) == SPARSE_VECTOR_TYPE_VALUE
        else v
        for k, v in metadata.items()
    }


def _chroma_metadatas(metadatas: Any) -> Any:
    """A get's (list) or a query's (list of lists) metadatas through `_chroma_metadata`."""
    if not isinstance(metadatas, list):
        return metadatas
    return [_chroma_metadatas(m) if isinstance(m, list) else _chroma_metadata(m) for m in metadatas]


def include_list(include: Sequence[Any]) -> list[str]:
    """chromadb's include items (strings or enum members) as plain strings."""
    return [getattr(item, "value", item) for item in include]


def get_result(result: hue_types.GetResult) -> GetResult:
    """chromadb's `GetResult` of a huedb one."""
    result["metadatas"] = _chroma_metadatas(result["metadatas"])
    return GetResult(**result)  # type: ignore[typeddict-item]


def query_result(result: hue_types.QueryResult) -> QueryResult:
    """chromadb's `QueryResult` of a huedb one."""
    result["metadatas"] = _chroma_metadatas(result["metadatas"])
    return QueryResult(**result)  # type: ignore[typeddict-item]


def search_result(result: dict[str, Any]) -> SearchResult:
    """chromadb's `SearchResult` of a huedb search answer (sparse vectors as chromadb's)."""
    result["metadatas"] = _chroma_metadatas(result.get("metadatas"))
    return SearchResult(result)
