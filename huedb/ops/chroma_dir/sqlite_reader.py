"""Read-only access to a Chroma directory's `chroma.sqlite3`.

Collections, segments, record metadata and the write-ahead log `embeddings_queue`. Tables and
columns that older Chroma versions lack are sniffed once and read as NULL.

A `ChromaSqlite` is one read transaction: everything read through it is one snapshot (a Chroma
writer waits until it is closed). The source is never written: a file SQLite would have to
recover first (a hot rollback journal left by a crash, or a write-ahead log) is copied to a
temporary directory, which is recovered and read instead, and removed on close.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from huedb.api.collection_schema import schema_from_configuration
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from huedb.ops.chroma_dir.configuration import load_json_object, parse_configuration

logger = logging.getLogger(__name__)

SQLITE_FILE = "chroma.sqlite3"
# Operation codes of `embeddings_queue` rows.
ADD, UPDATE, UPSERT, DELETE = 0, 1, 2, 3
SQL_CHUNK = 500
CHROMA_TABLES = {"collections", "segments", "embeddings", "embeddings_queue"}
# The files SQLite may need besides the database to read it consistently.
SIDE_FILES = ("-journal", "-wal", "-shm")
MIB = 1024 * 1024
BUSY_TIMEOUT_S = 5.0


class SourceChangedError(ValueError):
    """The Chroma directory changed while it was read: a Chroma process is writing to it."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"{path} changed during the migration ({detail}): stop Chroma (every process "
            "using the directory) and run migrate-chroma again"
        )


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


def _side_file(db_file: Path, suffix: str) -> Path:
    return db_file.with_name(db_file.name + suffix)


def _in_wal_mode(db_file: Path) -> bool:
    """Whether the database is in WAL mode (its header says so, or a `-wal` file exists)."""
    if _side_file(db_file, "-wal").is_file():
        return True
    with open(db_file, "rb") as f:
        header = f.read(20)
    return len(header) == 20 and header[:16] == b"SQLite format 3\x00" and header[18] == 2


def _begin(database: str, uri: bool) -> tuple[sqlite3.Connection, set[str]]:
    """A connection in a read transaction that holds its snapshot until closed, and the
    names of the database's tables (read inside that transaction)."""
    conn = sqlite3.connect(database, uri=uri, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute("BEGIN")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except BaseException:
        conn.close()
        raise
    return conn, tables


def _is_busy(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith("SQLITE_BUSY") or "database is locked" in str(exc)


def _locked(path: Path) -> ValueError:
    return ValueError(
        f"{path}: {SQLITE_FILE} is locked by another process writing to it: stop Chroma "
        "(every process using the directory) and run migrate-chroma again"
    )


def _unreadable(path: Path, db_file: Path, exc: sqlite3.Error) -> ValueError:
    return ValueError(f"{path} is not a Chroma directory: {db_file} is unreadable ({exc})")


class ChromaSqlite:
    """One read transaction on `<path>/chroma.sqlite3` (ValueError if it is not Chroma's).

    The file is opened read-only. When SQLite must first recover it (a hot journal a crashed
    writer left behind: read-only, SQLite cannot roll it back; or a database in WAL mode,
    whose shared-memory index a reader writes), it is copied with those files to a temporary
    directory and the copy is opened read-write, so SQLite recovers the copy; the copy is
    removed by `close`.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        db_file = self.path / SQLITE_FILE
        if not db_file.is_file():
            raise ValueError(f"{path} is not a Chroma directory: {SQLITE_FILE} not found")
        self.copy_dir: Path | None = None
        try:
            self.conn, self.tables = self._connect(db_file)
        except BaseException:
            self._remove_copy()
            raise
        if not self.tables >= CHROMA_TABLES:
            self.close()
            raise ValueError(f"{path} is not a Chroma directory: {db_file} has no Chroma tables")

    def _connect(self, db_file: Path) -> tuple[sqlite3.Connection, set[str]]:
        if _in_wal_mode(db_file):
            return self._open_recovered_copy(db_file, "its write-ahead log")
        try:
            return _begin(f"{db_file.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise _locked(self.path) from None
            journal = _side_file(db_file, "-journal")
            if not (journal.is_file() and journal.stat().st_size > 0):
                raise _unreadable(self.path, db_file, exc) from exc
            return self._open_recovered_copy(db_file, "a hot journal left by a crashed writer")
        except sqlite3.DatabaseError as exc:
            raise _unreadable(self.path, db_file, exc) from exc

    def _open_recovered_copy(self, db_file: Path, why: str) -> tuple[sqlite3.Connection, set[str]]:
        """Copy the database and its side files to a temporary directory and open the copy
        read-write, so SQLite recovers it; the source is not written."""
        self.copy_dir = Path(tempfile.mkdtemp(prefix="huedb-chroma-recovery-"))
        files = [f for f in (db_file, *(_side_file(db_file, s) for s in SIDE_FILES)) if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        logger.info(
            "%s needs recovery (%s): reading a recovered copy in %s (%.1f MiB in the temporary "
            "directory; set TMPDIR to use another); the source is not written",
            db_file,
            why,
            self.copy_dir,
            size / MIB,
        )
        for file in files:
            shutil.copyfile(file, self.copy_dir / (SQLITE_FILE + file.name[len(db_file.name) :]))
        copy = self.copy_dir / SQLITE_FILE
        try:
            return _begin(str(copy), uri=False)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise _locked(self.path) from None
            raise _unreadable(self.path, db_file, exc) from exc
        except sqlite3.DatabaseError as exc:
            raise _unreadable(self.path, db_file, exc) from exc

    def _remove_copy(self) -> None:
        if self.copy_dir is not None:
            shutil.rmtree(self.copy_dir, ignore_errors=True)
            self.copy_dir = None

    def close(self) -> None:
        """End the read transaction, close the connection, remove a recovered copy."""
        try:
            self.conn.close()
        finally:
            self._remove_copy()

    def check_integrity(self) -> None:
        """ValueError if SQLite's `quick_check` finds damaged pages."""
        try:
            problems = [row[0] for row in self.conn.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
            raise ValueError(
                f"{self.path} is damaged: {SQLITE_FILE} fails SQLite's quick_check "
                f"({problems[0]}{more})"
            )

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

    def tenants(self) -> list[str]:
        """Every tenant, in creation order (the default one for directories without tenants)."""
        if "tenants" not in self.tables:
            return [DEFAULT_TENANT]
        return [row[0] for row in self.conn.execute("SELECT id FROM tenants ORDER BY rowid")]

    def databases(self) -> list[tuple[str, str]]:
        """(tenant, database name) of every database, in creation order (the default one for
        directories without databases)."""
        if "databases" not in self.tables:
            return [(DEFAULT_TENANT, DEFAULT_DATABASE)]
        rows = self.conn.execute("SELECT tenant_id, name FROM databases ORDER BY rowid")
        return [(tenant, name) for tenant, name in rows]

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
