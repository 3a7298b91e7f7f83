"""sqlite-vec as a bench peer (`sqlite-vec`): one `vec0` virtual table in a SQLite file.

`vec0(id text primary key, embedding float[dim] distance_metric=cosine, bucket integer,
+document text)`: `bucket` is a metadata column (usable in the KNN query's WHERE), the
document an auxiliary column (stored, returned, not filterable inside the KNN query).
sqlite-vec 0.1 has no ANN index: `vec0` scans its float32 chunks exactly, so recall is 1.0
and "index ready" is the end of ingest. KNN queries as its docs write them:
`WHERE embedding MATCH ? AND k = 10 [AND bucket < 10]`; `$contains` restricts the KNN query
to `id IN (SELECT id FROM t WHERE document LIKE '%token%')`.

The interpreter's `sqlite3` module here is built without extension loading, so the
extension is loaded into an `apsw` connection (its own SQLite, extension loading enabled),
one of the bindings sqlite-vec's docs list for that case. SQLite defaults otherwise
(rollback journal, synchronous=FULL); each batch is one transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.system import COLLECTION, SQL_OPS, PeerSystem, contains_token, where_terms

DB_FILE = "vec.db"
RECORD_COLUMNS = "id, embedding, bucket, document"


def knn_filter(where: dict[str, Any] | None, where_document: dict[str, Any] | None) -> str:
    """The bench's filters as extra conditions of a vec0 KNN query (` AND ...`)."""
    parts = [f"bucket {SQL_OPS[op]} {int(v)}" for f, op, v in where_terms(where) if f == "bucket"]
    if len(parts) != len(where_terms(where)):
        raise ValueError(f"filter {where} is not translated for sqlite-vec")
    token = contains_token(where_document)
    if token is not None:
        parts.append(f"id IN (SELECT id FROM {COLLECTION} WHERE document LIKE '%{token}%')")
    return "".join(f" AND {p}" for p in parts)


def placeholders(n: int) -> str:
    return "(" + ", ".join("?" * n) + ")"


class SqliteVecSystem(PeerSystem):
    name = "sqlite-vec"
    module = "sqlite_vec"
    modules = ("sqlite_vec", "apsw")
    distributions = ("sqlite-vec", "apsw")

    def open(self, path: Path) -> None:
        if self._lib is None:
            self.load()
        import apsw

        conn = apsw.Connection(str(path / DB_FILE))
        conn.enable_load_extension(True)
        conn.load_extension(self._lib.loadable_path())
        conn.enable_load_extension(False)
        self._client = conn

    def settings(self) -> dict[str, Any]:
        return {
            "vector_index": "none: vec0 exact scan (sqlite-vec 0.1 has no ANN index)",
            "distance": "cosine (distance_metric=cosine)",
            "metadata_column": "bucket integer (filters inside the KNN query)",
            "auxiliary_column": "+document text",
            "binding": "apsw",
        }

    def create(self, space: str) -> None:
        if space != "cosine":
            raise ValueError("the sqlite-vec peer is set up for cosine space only")
        self._collection = None  # created at the first add, when the dimension is known

    def get(self) -> None:
        self._collection = COLLECTION

    def add(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str],
    ) -> None:
        conn = self._client
        if self._collection is None:
            conn.execute(
                f"CREATE VIRTUAL TABLE {COLLECTION} USING vec0(id text primary key, "
                f"embedding float[{vectors.shape[1]}] distance_metric=cosine, "
                "bucket integer, +document text)"
            )
            self._collection = COLLECTION
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [
            (i, v.tobytes(), int(m["bucket"]), d)
            for i, v, m, d in zip(ids, vecs, metadatas, documents, strict=True)
        ]
        with conn:
            conn.executemany(
                f"INSERT INTO {COLLECTION}(id, embedding, bucket, document) VALUES (?, ?, ?, ?)",
                rows,
            )

    def update(self, ids: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]]) -> None:
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [
            (v.tobytes(), int(m["bucket"]), i) for i, v, m in zip(ids, vecs, metadatas, strict=True)
        ]
        with self._client:
            self._client.executemany(
                f"UPDATE {COLLECTION} SET embedding = ?, bucket = ? WHERE id = ?", rows
            )

    def upsert(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str],
    ) -> None:
        """vec0 has no ON CONFLICT: delete the ids, then insert them, in one transaction."""
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [
            (i, v.tobytes(), int(m["bucket"]), d)
            for i, v, m, d in zip(ids, vecs, metadatas, documents, strict=True)
        ]
        with self._client:
            self._client.executemany(f"DELETE FROM {COLLECTION} WHERE id = ?", [(i,) for i in ids])
            self._client.executemany(
                f"INSERT INTO {COLLECTION}(id, embedding, bucket, document) VALUES (?, ?, ?, ?)",
                rows,
            )

    def delete(self, ids: list[str]) -> None:
        with self._client:
            self._client.executemany(f"DELETE FROM {COLLECTION} WHERE id = ?", [(i,) for i in ids])

    @staticmethod
    def _records(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
        return {
            "ids": [r[0] for r in rows],
            "embeddings": [np.frombuffer(r[1], dtype=np.float32) for r in rows],
            "metadatas": [{"bucket": r[2]} for r in rows],
            "documents": [r[3] for r in rows],
        }

    def get_page(self, offset: int, limit: int) -> dict[str, Any]:
        sql = f"SELECT {RECORD_COLUMNS} FROM {COLLECTION} LIMIT ? OFFSET ?"
        return self._records(self._client.execute(sql, (limit, offset)).fetchall())

    def get_ids(self, ids: list[str]) -> dict[str, Any]:
        sql = f"SELECT {RECORD_COLUMNS} FROM {COLLECTION} WHERE id IN {placeholders(len(ids))}"
        return self._records(self._client.execute(sql, ids).fetchall())

    def count(self) -> int:
        return int(self._client.execute(f"SELECT count(*) FROM {COLLECTION}").fetchone()[0])

    def query(
        self,
        vector: np.ndarray,
        k: int,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
    ) -> list[str]:
        sql = (
            f"SELECT id, distance, bucket, document FROM {COLLECTION} "
            f"WHERE embedding MATCH ? AND k = ?{knn_filter(where, where_document)} "
            "ORDER BY distance"
        )
        q = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        return [row[0] for row in self._client.execute(sql, (q, k)).fetchall()]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._collection = None
