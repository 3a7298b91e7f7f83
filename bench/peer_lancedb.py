"""LanceDB as a bench peer (`lancedb`, `lancedb-hnsw-sq`), through its public Python API.

One Lance table per collection: `id` (string), `vector` (fixed-size list of float32),
`bucket` (int64) and `document` (string). Queries ask for cosine distance, the bench's
metadata filter as a SQL `where` with `prefilter=True` (filter first, then the k nearest
among the allowed rows: LanceDB's default), and return the id, bucket, document and
distance (what Chroma's default `include` returns). Once ingest is done ("index ready"),
a BTREE scalar index on `bucket` is built, and for `lancedb-hnsw-sq` an IVF_HNSW_SQ vector
index with LanceDB's default parameters (see bench/README.md for why these two).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.system import COLLECTION, SQL_OPS, PeerSystem, contains_token, where_terms

OUTPUT = ["id", "bucket", "document", "_distance"]
# One IVF partition, one HNSW graph: what `lancedb.index.HnswSq`'s documentation recommends
# for most tables (the default, sqrt(rows) partitions, is for tables too big for one graph).
NUM_PARTITIONS = 1


def lance_filter(where: dict[str, Any] | None, where_document: dict[str, Any] | None) -> str:
    """The bench's filters in LanceDB's SQL: `bucket < 10`, `document LIKE '%token%'`."""
    parts = [f"{field} {SQL_OPS[op]} {int(value)}" for field, op, value in where_terms(where)]
    token = contains_token(where_document)
    if token is not None:
        parts.append(f"document LIKE '%{token}%'")
    return " AND ".join(parts)


def id_list(ids: list[str]) -> str:
    """`('id-1', 'id-2')` for an SQL IN list (the bench's ids have no quotes)."""
    return "(" + ", ".join(f"'{i}'" for i in ids) + ")"


class LanceDbSystem(PeerSystem):
    """LanceDB without a vector index: what its docs recommend up to ~100k rows (exact
    scan, recall 1.0); a BTREE index on `bucket` for the filters."""

    name = "lancedb"
    module = "lancedb"
    modules = ("lancedb", "pyarrow")
    distributions = ("lancedb",)
    vector_index: str | None = None

    def open(self, path: Path) -> None:
        if self._lib is None:
            self.load()
        self._client = self._lib.connect(str(path))

    def settings(self) -> dict[str, Any]:
        return {
            "vector_index": self.vector_index or "none (exact scan)",
            "vector_index_params": (
                f"num_partitions={NUM_PARTITIONS}, m=20, ef_construction=300 (defaults)"
                if self.vector_index
                else None
            ),
            "scalar_index": "BTREE on bucket, built after ingest",
            "distance": "cosine",
            "prefilter": True,
            "search_params": "defaults (nprobes auto-tuned, ef default)",
        }

    def _schema(self, dim: int) -> Any:
        import pyarrow as pa

        return pa.schema(
            [
                pa.field("id", pa.string()),
                pa.field("vector", pa.list_(pa.float32(), dim)),
                pa.field("bucket", pa.int64()),
                pa.field("document", pa.string()),
            ]
        )

    def create(self, space: str) -> None:
        if space != "cosine":
            raise ValueError("the lancedb peer is set up for cosine space only")

    def get(self) -> None:
        self._collection = self._client.open_table(COLLECTION)

    def _rows(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str] | None,
    ) -> Any:
        import pyarrow as pa

        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vecs.shape[1]
        columns: dict[str, Any] = {
            "id": pa.array(ids, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim),
            "bucket": pa.array([int(m["bucket"]) for m in metadatas], pa.int64()),
        }
        if documents is not None:
            columns["document"] = pa.array(documents, pa.string())
        return pa.table(columns)

    def add(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str],
    ) -> None:
        rows = self._rows(ids, vectors, metadatas, documents)
        if self._collection is None:
            schema = self._schema(vectors.shape[1])
            self._collection = self._client.create_table(COLLECTION, schema=schema)
        self._collection.add(rows.cast(self._collection.schema))

    def update(self, ids: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        rows = self._rows(ids, vectors, metadatas, None)
        self._collection.merge_insert("id").when_matched_update_all().execute(rows)

    def upsert(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str],
    ) -> None:
        rows = self._rows(ids, vectors, metadatas, documents)
        (
            self._collection.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(rows)
        )

    def delete(self, ids: list[str]) -> None:
        self._collection.delete(f"id IN {id_list(ids)}")

    @staticmethod
    def _records(table: Any) -> dict[str, Any]:
        return {
            "ids": table.column("id").to_pylist(),
            "embeddings": table.column("vector").to_numpy(zero_copy_only=False),
            "metadatas": [{"bucket": b} for b in table.column("bucket").to_pylist()],
            "documents": table.column("document").to_pylist(),
        }

    def get_page(self, offset: int, limit: int) -> dict[str, Any]:
        columns = ["id", "vector", "bucket", "document"]
        table = self._collection.search().offset(offset).limit(limit).select(columns)
        return self._records(table.to_arrow())

    def get_ids(self, ids: list[str]) -> dict[str, Any]:
        columns = ["id", "vector", "bucket", "document"]
        query = self._collection.search().where(f"id IN {id_list(ids)}").limit(len(ids))
        return self._records(query.select(columns).to_arrow())

    def count(self) -> int:
        return int(self._collection.count_rows())

    def query(
        self,
        vector: np.ndarray,
        k: int,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
    ) -> list[str]:
        q = self._collection.search(vector).distance_type("cosine").limit(k).select(OUTPUT)
        condition = lance_filter(where, where_document)
        if condition:
            q = q.where(condition, prefilter=True)
        return list(q.to_arrow().column("id").to_pylist())

    def wait_until_indexed(self) -> None:
        """Build the indexes a user would build once the data is in, and wait for them."""
        from lancedb.index import BTree

        self._collection.create_index("bucket", config=BTree())
        names = ["bucket_idx"]
        if self.vector_index is not None:
            self._create_vector_index()
            names.append("vector_idx")
        self._collection.wait_for_index(names)

    def _create_vector_index(self) -> None:
        from lancedb.index import HnswSq

        config = HnswSq(distance_type="cosine", num_partitions=NUM_PARTITIONS)
        self._collection.create_index("vector", config=config)

    def close(self) -> None:
        self._client = None
        self._collection = None


class LanceDbHnswSqSystem(LanceDbSystem):
    """LanceDB with an IVF_HNSW_SQ index: one partition (see NUM_PARTITIONS), otherwise
    LanceDB's defaults (m=20, ef_construction=300, 8-bit scalar quantisation; search with
    the default ef), the index its docs name for high recall at low latency."""

    name = "lancedb-hnsw-sq"
    vector_index = "IVF_HNSW_SQ"
