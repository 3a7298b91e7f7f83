"""Read-only access to a Chroma directory's `chroma.sqlite3`.

Collections, segments, record metadata and the write-ahead log `embeddings_queue`. Tables and
columns that older Chroma versions lack are sniffed once and read as NULL.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from huedb.api.collection_schema import schema_from_configuration
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from huedb.ops.chroma_dir.configuration import load_json_object, parse_configuration

SQLITE_FILE = "chroma.sqlite3"
# Operation codes of `embeddings_queue` rows.
ADD, UPDATE, UPSERT, DELETE = 0, 1, 2, 3
SQL_CHUNK = 500
CHROMA_TABLES = {"collections", "segments", "embeddings", "embeddings_queue"}


@dataclass(frozen=True)
class ChromaCollection:
    """One collection of a Chroma directory, as its SQLite tables describe it."""

    id: str
    name: str
    tenant: str
    database: str
    metadata: dict[str, Any] | None
    configuration: dict[str, Any]
    dimension: int | None
    vector_segment: str | None = None
    metadata_segment: str | None = None
    schema: dict[str, Any] | None = None

    @property
    def space(self) -> str:
        """The distance space: l2, ip or cosine."""
        return self.configuration["hnsw"]["space"]

    def definition(self) -> dict[str, Any]:
        """The collection's schema: the stored one (Chroma 1.5+), else the one Chroma
        derives from the configuration (older directories)."""
        if self.schema is not None:
            return self.schema
        return schema_from_configuration(self.configuration)


@dataclass(frozen=True)
class LogEntry:
    """One `embeddings_queue` row, without its vector."""

    seq_id: int
    operation: int
    id: str
    has_vector: bool
    metadata: dict[str, Any] | None


def read_chroma_directory(path: Path) -> list[ChromaCollection]:
    """Every collection of the Chroma directory `path`, with metadata and configuration."""
    with ChromaSqlite(Path(path)) as db:
        return db.collections()


def decode_seq_id(value: Any) -> int:
    """A sequence id: an integer, or a big-endian BLOB in very old directories."""
    if value is None:
        return 0
    if isinstance(value, bytes | bytearray | memoryview):
        return int.from_bytes(bytes(value), "big")
    return int(value)


def chunks(items: list[Any], size: int = SQL_CHUNK) -> Iterator[list[Any]]:
    """`items` in slices of at most `size` (SQLite's bound-parameter limit)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _decode_value(string: Any, integer: Any, real: Any, boolean: Any) -> Any:
    """The metadata value of a row with one non-null column out of four."""
    if string is not None:
        return string
    if boolean is not None:
        return bool(boolean)
    if integer is not None:
        return int(integer)
    if real is not None:
        return float(real)
    return None


class ChromaSqlite:
    """A read-only connection to `<path>/chroma.sqlite3` (ValueError if it is not Chroma's)."""

    def __init__(self, path: Path) -> None:
        db_file = Path(path) / SQLITE_FILE
        if not db_file.is_file():
            raise ValueError(f"{path} is not a Chroma directory: {SQLITE_FILE} not found")
        try:
            self.conn = sqlite3.connect(f"{db_file.resolve().as_uri()}?mode=ro", uri=True)
            self.tables = {
                row[0]
                for row in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{path} is not a Chroma directory: {db_file} is unreadable") from exc
        if not self.tables >= CHROMA_TABLES:
            self.conn.close()
            raise ValueError(f"{path} is not a Chroma directory: {db_file} has no Chroma tables")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> ChromaSqlite:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}

    def _column_or_null(self, table: str, column: str) -> str:
        return column if column in self._columns(table) else "NULL"

    # -- collections --------------------------------------------------------------------

    def collections(self) -> list[ChromaCollection]:
        """Every collection, in creation order."""
        config_col = self._column_or_null("collections", "config_json_str")
        schema_col = self._column_or_null("collections", "schema_str")
        db_col = self._column_or_null("collections", "database_id")
        databases = self._databases()
        segments = self._segments()
        rows = self.conn.execute(
            f"SELECT id, name, dimension, {db_col}, {config_col}, {schema_col} FROM collections "
            "ORDER BY rowid"
        ).fetchall()
        result = []
        for cid, name, dimension, db_id, config_str, schema_str in rows:
            tenant, database = databases.get(db_id, (DEFAULT_TENANT, DEFAULT_DATABASE))
            metadata = self._collection_metadata(cid)
            vector_seg, metadata_seg = segments.get(cid, (None, None))
            result.append(
                ChromaCollection(
                    id=cid,
                    name=name,
                    tenant=tenant,
                    database=database,
                    metadata=metadata,
                    configuration=parse_configuration(schema_str, config_str, metadata),
                    dimension=int(dimension) if dimension is not None else None,
                    vector_segment=vector_seg,
                    metadata_segment=metadata_seg,
                    schema=load_json_object(schema_str) or None,
                )
            )
        return result

    def _databases(self) -> dict[str, tuple[str, str]]:
        """database id -> (tenant, database name)."""
        if "databases" not in self.tables:
            return {}
        rows = self.conn.execute("SELECT id, tenant_id, name FROM databases")
        return {db_id: (tenant, name) for db_id, tenant, name in rows}

    def _segments(self) -> dict[str, tuple[str | None, str | None]]:
        """collection id -> (vector segment id, metadata segment id)."""
        found: dict[str, dict[str, str]] = {}
        rows = self.conn.execute("SELECT id, scope, collection FROM segments")
        for seg_id, scope, collection in rows:
            found.setdefault(collection, {})[scope] = seg_id
        return {cid: (s.get("VECTOR"), s.get("METADATA")) for cid, s in found.items()}

    def _collection_metadata(self, collection_id: str) -> dict[str, Any] | None:
        bool_col = self._column_or_null("collection_metadata", "bool_value")
        rows = self.conn.execute(
            f"SELECT key, str_value, int_value, float_value, {bool_col} FROM collection_metadata "
            "WHERE collection_id = ? ORDER BY rowid",
            (collection_id,),
        )
        metadata = {key: _decode_value(s, i, f, b) for key, s, i, f, b in rows}
        return metadata or None

    # -- metadata segment ---------------------------------------------------------------

    def max_seq_id(self, segment_id: str | None) -> int:
        """The last log sequence id a segment has applied (0 if none or no segment)."""
        if segment_id is None:
            return 0
        row = self.conn.execute(
            "SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment_id,)
        ).fetchone()
        return decode_seq_id(row[0]) if row else 0

    def segment_size(self, segment_id: str) -> int:
        """How many records a metadata segment stores."""
        return self.conn.execute(
            "SELECT count(*) FROM embeddings WHERE segment_id = ?", (segment_id,)
        ).fetchone()[0]

    def segment_rows(self, segment_id: str, batch_size: int) -> Iterator[list[tuple[int, str]]]:
        """(rowid, user id) of a metadata segment's records in storage order, in batches."""
        last = -1
        while True:
            rows = self.conn.execute(
                "SELECT id, embedding_id FROM embeddings WHERE segment_id = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (segment_id, last, batch_size),
            ).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def rows_of(self, segment_id: str, record_ids: set[str]) -> list[tuple[int, str]]:
        """(rowid, user id) of those of these user ids that a metadata segment stores."""
        rows: list[tuple[int, str]] = []
        for chunk in chunks(sorted(record_ids)):
            marks = ",".join("?" * len(chunk))
            rows += self.conn.execute(
                f"SELECT id, embedding_id FROM embeddings WHERE segment_id = ? "
                f"AND embedding_id IN ({marks})",
                (segment_id, *chunk),
            ).fetchall()
        return rows

    @cached_property
    def _has_arrays(self) -> bool:
        return "embedding_metadata_array" in self.tables

    @cached_property
    def _bool_col(self) -> str:
        return self._column_or_null("embedding_metadata", "bool_value")

    def record_metadata(self, rowids: list[int]) -> dict[int, dict[str, Any]]:
        """Scalar and list metadata of these rows (documents and uris included)."""
        found: dict[int, dict[str, Any]] = {r: {} for r in rowids}
        for chunk in chunks(rowids):
            marks = ",".join("?" * len(chunk))
            query = (
                f"SELECT id, key, string_value, int_value, float_value, {self._bool_col} "
                f"FROM embedding_metadata WHERE id IN ({marks})"
            )
            for rowid, key, s, i, f, b in self.conn.execute(query, chunk):
                found[rowid][key] = _decode_value(s, i, f, b)
            if self._has_arrays:
                query = (
                    "SELECT id, key, string_value, int_value, float_value, bool_value "
                    f"FROM embedding_metadata_array WHERE id IN ({marks}) ORDER BY rowid"
                )
                for rowid, key, s, i, f, b in self.conn.execute(query, chunk):
                    value = found[rowid].setdefault(key, [])
                    if isinstance(value, list):
                        value.append(_decode_value(s, i, f, b))
        return found

    # -- write-ahead log ----------------------------------------------------------------

    def log_tail(
        self, collection_id: str, after: int, with_metadata: bool = True
    ) -> Iterator[LogEntry]:
        """Log entries of this collection after sequence id `after`, in order."""
        metadata_col = "metadata" if with_metadata else "NULL"
        rows = self.conn.execute(
            f"SELECT seq_id, operation, id, vector IS NOT NULL, {metadata_col} "
            "FROM embeddings_queue WHERE seq_id > ? AND topic LIKE ? ORDER BY seq_id",
            (after, f"%/{collection_id}"),
        )
        for seq_id, operation, record_id, has_vector, metadata in rows:
            parsed = json.loads(metadata) if metadata else None
            yield LogEntry(int(seq_id), int(operation), record_id, bool(has_vector), parsed)

    def log_vectors(self, seq_ids: list[int]) -> dict[int, np.ndarray]:
        """Vectors of these log entries, as float32."""
        found = {}
        for chunk in chunks(seq_ids):
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT seq_id, vector, encoding FROM embeddings_queue WHERE seq_id IN ({marks})",
                chunk,
            )
            for seq_id, blob, encoding in rows:
                dtype = "<i4" if (encoding or "").upper() == "INT32" else "<f4"
                found[seq_id] = np.frombuffer(blob, dtype=dtype).astype(np.float32)
        return found
