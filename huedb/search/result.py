"""`SearchResult`: what `Collection.search` returns (chromadb's shape, shared/chroma-search-api.md
1.6).

A dict of the response columns (`ids`, `documents`, `embeddings`, `metadatas`, `scores`,
`select`), one entry per search, with sparse-vector metadata values as `SparseVector`.
"""

from __future__ import annotations

from typing import Any

from huedb.sparse_vector import SPARSE_VECTOR_TYPE_VALUE, TYPE_KEY, trusted_sparse_vector


class SearchResult(dict):
    """Column-major search results; `rows()` gives them per search, record by record."""

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> SearchResult:
        """The result of a response body (sparse vectors in metadata become `SparseVector`)."""
        result = cls(body)
        metadatas = result.get("metadatas")
        if metadatas:
            result["metadatas"] = [
                None if column is None else [_decoded(m) for m in column] for column in metadatas
            ]
        return result

    def rows(self) -> list[list[dict[str, Any]]]:
        """Per search, one dict per record: `id`, plus `document`, `embedding`, `metadata`
        and `score` when not None."""
        ids = self.get("ids") or []
        columns = [
            (name, self.get(plural) or [None] * len(ids))
            for name, plural in (
                ("document", "documents"),
                ("embedding", "embeddings"),
                ("metadata", "metadatas"),
                ("score", "scores"),
            )
        ]
        out = []
        for i, search_ids in enumerate(ids):
            rows = []
            for j, record_id in enumerate(search_ids):
                row: dict[str, Any] = {"id": record_id}
                for name, column in columns:
                    values = column[i]
                    if values is not None and values[j] is not None:
                        row[name] = values[j]
                rows.append(row)
            out.append(rows)
        return out


def _decoded(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    if not metadata:
        return metadata
    return {
        k: _sparse(v) if isinstance(v, dict) and v.get(TYPE_KEY) == SPARSE_VECTOR_TYPE_VALUE else v
        for k, v in metadata.items()
    }


def _sparse(value: dict[str, Any]) -> Any:
    return trusted_sparse_vector(value["indices"], value["values"], value.get("tokens"))
