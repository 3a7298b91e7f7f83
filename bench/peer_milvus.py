"""Milvus Lite as a bench peer (`milvus-lite`), through `pymilvus.MilvusClient` on a local
`.db` path, which starts Milvus Lite in the process (its documented quick start).

Schema: `id` VARCHAR primary key, `vector` FLOAT_VECTOR, `bucket` INT64, `document` VARCHAR.
Indexes as the Milvus docs recommend: AUTOINDEX with metric COSINE on the vector (Milvus
Lite 3 maps it to a FAISS HNSW graph, M=16, efConstruction=200, search ef=64, built per
flushed segment) and an INVERTED scalar index on `bucket`. Filters are Milvus boolean
expressions (`bucket < 10`, `bucket == 7`, `document like "%token%"`); results return the id,
distance, bucket and document (what Chroma's default `include` returns).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.system import COLLECTION, PeerSystem, contains_token, where_terms

DB_FILE = "milvus.db"
MILVUS_OPS = {"$eq": "==", "$ne": "!=", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
OUTPUT = ["bucket", "document"]
RECORD_FIELDS = ["id", "vector", "bucket", "document"]
MAX_DOCUMENT = 1024


def milvus_filter(where: dict[str, Any] | None, where_document: dict[str, Any] | None) -> str:
    """The bench's filters as a Milvus boolean expression."""
    parts = [f"{f} {MILVUS_OPS[op]} {int(v)}" for f, op, v in where_terms(where)]
    token = contains_token(where_document)
    if token is not None:
        parts.append(f'document like "%{token}%"')
    return " and ".join(parts)


class MilvusLiteSystem(PeerSystem):
    name = "milvus-lite"
    module = "pymilvus"
    modules = ("pymilvus", "milvus_lite")
    distributions = ("pymilvus", "milvus-lite")

    def __init__(self) -> None:
        super().__init__()
        self._uri = ""

    def open(self, path: Path) -> None:
        if self._lib is None:
            self.load()
        self._uri = str(path / DB_FILE)
        self._client = self._lib.MilvusClient(self._uri)

    def settings(self) -> dict[str, Any]:
        return {
            "vector_index": "AUTOINDEX, metric COSINE (Milvus Lite 3: FAISS HNSW per segment)",
            "vector_index_params": "defaults (M=16, efConstruction=200, search ef=64)",
            "scalar_index": "INVERTED on bucket",
            "consistency": "default",
        }

    def create(self, space: str) -> None:
        if space != "cosine":
            raise ValueError("the milvus-lite peer is set up for cosine space only")
        self._collection = COLLECTION
        self._pending_schema = True

    def _create_collection(self, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("bucket", DataType.INT64)
        schema.add_field("document", DataType.VARCHAR, max_length=MAX_DOCUMENT)
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="COSINE")
        index.add_index(field_name="bucket", index_type="INVERTED")
        self._client.create_collection(COLLECTION, schema=schema, index_params=index)
        self._pending_schema = False

    def get(self) -> None:
        self._client.load_collection(COLLECTION)
        self._collection = COLLECTION
        self._pending_schema = False

    @staticmethod
    def _rows(
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str] | None,
    ) -> list[dict[str, Any]]:
        vecs = np.asarray(vectors, dtype=np.float32)
        rows = [
            {"id": i, "vector": v, "bucket": int(m["bucket"])}
            for i, v, m in zip(ids, vecs, metadatas, strict=True)
        ]
        if documents is not None:
            for row, doc in zip(rows, documents, strict=True):
                row["document"] = doc
        return rows

    def add(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str],
    ) -> None:
        if self._pending_schema:
            self._create_collection(vectors.shape[1])
        self._client.insert(COLLECTION, self._rows(ids, vectors, metadatas, documents))

    def update(self, ids: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        rows = self._rows(ids, vectors, metadatas, None)
        self._client.upsert(COLLECTION, rows, partial_update=True)

    def upsert(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str],
    ) -> None:
        self._client.upsert(COLLECTION, self._rows(ids, vectors, metadatas, documents))

    def delete(self, ids: list[str]) -> None:
        self._client.delete(COLLECTION, ids=ids)

    @staticmethod
    def _records(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "ids": [r["id"] for r in rows],
            "embeddings": [np.asarray(r["vector"], dtype=np.float32) for r in rows],
            "metadatas": [{"bucket": r["bucket"]} for r in rows],
            "documents": [r["document"] for r in rows],
        }

    def get_page(self, offset: int, limit: int) -> dict[str, Any]:
        rows = self._client.query(
            COLLECTION, filter="", limit=limit, offset=offset, output_fields=RECORD_FIELDS
        )
        return self._records(list(rows))

    def get_ids(self, ids: list[str]) -> dict[str, Any]:
        return self._records(
            list(self._client.get(COLLECTION, ids=ids, output_fields=RECORD_FIELDS))
        )

    def count(self) -> int:
        rows = self._client.query(COLLECTION, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def query(
        self,
        vector: np.ndarray,
        k: int,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
    ) -> list[str]:
        hits = self._client.search(
            COLLECTION,
            data=[np.asarray(vector, dtype=np.float32)],
            limit=k,
            filter=milvus_filter(where, where_document),
            output_fields=OUTPUT,
        )
        return [str(h["id"]) for h in hits[0]]

    def wait_until_indexed(self) -> None:
        """Flush the memtable into a segment and wait until every row is in the index."""
        self._client.flush(COLLECTION)
        while True:
            info = self._client.describe_index(COLLECTION, index_name="vector")
            if info.get("pending_index_rows", 0) == 0 and info.get("indexed_rows", 0) >= info.get(
                "total_rows", 0
            ):
                return
            time.sleep(0.05)

    def close(self) -> None:
        """Close the client and stop the in-process Milvus Lite server of this path (it
        holds the directory's lock; a client's `close` alone does not stop it)."""
        if self._client is not None:
            self._client.close()
            from milvus_lite import server_manager_instance

            server_manager_instance.release_server(self._uri)
        self._client = None
        self._collection = None
