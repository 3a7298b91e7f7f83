"""Import a Chroma 1.x persistent directory into huedb, without importing chromadb.

A Chroma directory holds `chroma.sqlite3` (collections, record metadata and the write-ahead
log `embeddings_queue`) and one folder per HNSW vector segment. Vectors live in the HNSW files
up to the segment's `max_seq_id` and in the log after it; record metadata lives in SQLite up
to the metadata segment's `max_seq_id` and in the log after it. The reader replays both tails.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import sqlite3
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from huedb.api.collection_config import HNSW_ACCEPTED, HNSW_DEFAULTS, LEGACY_KEYS
from huedb.api.types import SPACES
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT

logger = logging.getLogger(__name__)

SQLITE_FILE = "chroma.sqlite3"
DOCUMENT_KEY = "chroma:document"
URI_KEY = "chroma:uri"
ADD, UPDATE, UPSERT, DELETE = 0, 1, 2, 3
# Keys of the 0.5/0.6 `hnsw_configuration` object that are named differently in 1.x.
OLD_CONFIG_KEYS = {"M": "max_neighbors"}
HEADER_FORMAT = "<iQQQQQQiIQQQdQ"
SQL_CHUNK = 500


# -- public data types ---------------------------------------------------------------------


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

    @property
    def space(self) -> str:
        """The distance space: l2, ip or cosine."""
        return self.configuration["hnsw"]["space"]


@dataclass
class RecordBatch:
    """Records in Chroma's storage order, ready for `Collection.upsert`."""

    ids: list[str]
    embeddings: np.ndarray
    documents: list[str | None]
    metadatas: list[dict[str, Any] | None]
    uris: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class CollectionReport:
    """What `migrate_chroma` did for one collection."""

    name: str
    tenant: str
    database: str
    source_id: str
    records: int
    skipped: int = 0
    created: bool = False


@dataclass
class MigrationReport:
    """Per-collection counts of one `migrate_chroma` run."""

    source: Path
    target: Path
    collections: list[CollectionReport] = field(default_factory=list)

    @property
    def total_records(self) -> int:
        return sum(c.records for c in self.collections)

    def counts(self) -> dict[str, int]:
        """Records written per collection, keyed `tenant/database/name`."""
        return {f"{c.tenant}/{c.database}/{c.name}": c.records for c in self.collections}


# -- SQLite access --------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to `<path>/chroma.sqlite3` (ValueError if it is not there)."""
    db_file = Path(path) / SQLITE_FILE
    if not db_file.is_file():
        raise ValueError(f"{path} is not a Chroma directory: {SQLITE_FILE} not found")
    try:
        conn = sqlite3.connect(f"{db_file.resolve().as_uri()}?mode=ro", uri=True)
        tables = _tables(conn)
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} is not a Chroma directory: {db_file} is unreadable") from exc
    if not {"collections", "segments", "embeddings", "embeddings_queue"} <= tables:
        conn.close()
        raise ValueError(f"{path} is not a Chroma directory: {db_file} has no Chroma tables")
    return conn


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _chunks(items: list[Any], size: int = SQL_CHUNK) -> Iterator[list[Any]]:
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


def _decode_seq_id(value: Any) -> int:
    """A sequence id: an integer, or a big-endian BLOB in very old directories."""
    if value is None:
        return 0
    if isinstance(value, bytes | bytearray | memoryview):
        return int.from_bytes(bytes(value), "big")
    return int(value)


# -- collections and configuration ------------------------------------------------------


def read_chroma_directory(path: Path) -> list[ChromaCollection]:
    """Every collection of the Chroma directory `path`, with metadata and configuration."""
    conn = _connect(Path(path))
    try:
        return _read_collections(conn)
    finally:
        conn.close()


def _read_collections(conn: sqlite3.Connection) -> list[ChromaCollection]:
    columns = _columns(conn, "collections")
    config_col = "config_json_str" if "config_json_str" in columns else "NULL"
    schema_col = "schema_str" if "schema_str" in columns else "NULL"
    databases = _databases(conn)
    segments = _segments(conn)
    db_col = "database_id" if "database_id" in columns else "NULL"
    rows = conn.execute(
        f"SELECT id, name, dimension, {db_col}, {config_col}, {schema_col} FROM collections "
        "ORDER BY rowid"
    ).fetchall()
    result = []
    for cid, name, dimension, db_id, config_str, schema_str in rows:
        tenant, database = databases.get(db_id, (DEFAULT_TENANT, DEFAULT_DATABASE))
        metadata = _collection_metadata(conn, cid)
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
            )
        )
    return result


def _databases(conn: sqlite3.Connection) -> dict[str, tuple[str, str]]:
    """database id -> (tenant, database name)."""
    if "databases" not in _tables(conn):
        return {}
    rows = conn.execute("SELECT id, tenant_id, name FROM databases")
    return {db_id: (tenant, name) for db_id, tenant, name in rows}


def _segments(conn: sqlite3.Connection) -> dict[str, tuple[str | None, str | None]]:
    """collection id -> (vector segment id, metadata segment id)."""
    found: dict[str, dict[str, str]] = {}
    for seg_id, scope, collection in conn.execute("SELECT id, scope, collection FROM segments"):
        found.setdefault(collection, {})[scope] = seg_id
    return {cid: (s.get("VECTOR"), s.get("METADATA")) for cid, s in found.items()}


def _collection_metadata(conn: sqlite3.Connection, collection_id: str) -> dict[str, Any] | None:
    bool_col = "bool_value" if "bool_value" in _columns(conn, "collection_metadata") else "NULL"
    rows = conn.execute(
        f"SELECT key, str_value, int_value, float_value, {bool_col} FROM collection_metadata "
        "WHERE collection_id = ? ORDER BY rowid",
        (collection_id,),
    )
    metadata = {key: _decode_value(s, i, f, b) for key, s, i, f, b in rows}
    return metadata or None


def parse_configuration(
    schema_str: str | None, config_str: str | None, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """`{"hnsw": {...}, "embedding_function": ...}` from whichever form the directory has.

    1.x keeps the vector index config in `schema_str`; 1.0 dirs keep `{"hnsw": ...}` in
    `config_json_str`; 0.5/0.6 dirs keep a `_type`-tagged object there whose HNSW values the
    legacy `hnsw:*` metadata keys override; without either, the metadata keys decide.
    """
    hnsw = dict(HNSW_DEFAULTS)
    legacy = _legacy_hnsw(metadata)
    found, ef, metadata_wins = _stored_config(schema_str, config_str)
    if metadata_wins:
        hnsw.update(found)
        hnsw.update(legacy)
    else:
        hnsw.update(legacy)
        hnsw.update(found)
    if hnsw["space"] not in SPACES:
        logger.warning("unknown space %r, using l2", hnsw["space"])
        hnsw["space"] = "l2"
    return {"hnsw": hnsw, "embedding_function": ef}


def _legacy_hnsw(metadata: dict[str, Any] | None) -> dict[str, Any]:
    if not metadata:
        return {}
    return {key: metadata[old] for old, key in LEGACY_KEYS.items() if old in metadata}


def _stored_config(
    schema_str: str | None, config_str: str | None
) -> tuple[dict[str, Any], Any, bool]:
    """(hnsw values, embedding function config, whether metadata keys override them)."""
    schema = _load_json(schema_str)
    if schema:
        config = _schema_vector_config(schema)
        if config is not None:
            index = config.get("hnsw") or config.get("spann") or {}
            values = {k: v for k, v in index.items() if k in HNSW_ACCEPTED and v is not None}
            if config.get("space"):
                values["space"] = config["space"]
            return values, config.get("embedding_function"), False
    config = _load_json(config_str)
    if not config:
        return {}, None, False
    if "hnsw_configuration" in config:  # 0.5/0.6 internal form
        old = config.get("hnsw_configuration") or {}
        values = {OLD_CONFIG_KEYS.get(k, k): v for k, v in old.items() if not k.startswith("_")}
        values = {k: v for k, v in values.items() if k in HNSW_ACCEPTED and v is not None}
        return values, config.get("embedding_function"), True
    index = config.get("hnsw") or config.get("spann") or {}
    values = {k: v for k, v in index.items() if k in HNSW_ACCEPTED and v is not None}
    return values, config.get("embedding_function"), False


def _schema_vector_config(schema: dict[str, Any]) -> dict[str, Any] | None:
    for scope in (schema.get("keys", {}).get("#embedding"), schema.get("defaults")):
        try:
            return scope["float_list"]["vector_index"]["config"]
        except (KeyError, TypeError):
            continue
    return None


def _load_json(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        logger.warning("ignoring unreadable configuration JSON")
        return None
    return value if isinstance(value, dict) else None


# -- HNSW files -------------------------------------------------------------------------------


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers only (and numpy scalars, which old files may hold)."""

    ALLOWED = {
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "str"),
        ("builtins", "int"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _load_index_metadata(file: Path) -> dict[str, Any]:
    """The `index_metadata.pickle` dict, with `id_to_label` as str -> int."""
    try:
        data = _SafeUnpickler(io.BytesIO(file.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ValueError(f"{file}: unreadable HNSW metadata ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("id_to_label"), dict):
        raise ValueError(f"{file}: unexpected HNSW metadata layout")
    data["id_to_label"] = {str(k): int(v) for k, v in data["id_to_label"].items()}
    return data


@dataclass(frozen=True)
class _Header:
    offset_level0: int
    max_elements: int
    count: int
    element_size: int
    label_offset: int
    data_offset: int

    @property
    def dimension(self) -> int:
        return (self.label_offset - self.data_offset) // 4


def _read_header(file: Path) -> _Header:
    raw = file.read_bytes()
    size = struct.calcsize(HEADER_FORMAT)
    if len(raw) < size:
        raise ValueError(f"{file}: truncated HNSW header")
    fields = struct.unpack(HEADER_FORMAT, raw[:size])
    return _Header(*fields[1:7])


class _HnswSegment:
    """Vectors of a persisted HNSW segment, read through a memory map."""

    def __init__(self, folder: Path, cosine: bool) -> None:
        self.folder = folder
        self.index_of: dict[str, int] = {}
        self.count = 0
        self.dimension: int | None = None
        self.max_seq_id = 0  # only set in index_metadata by Chroma before 1.0
        pickle_file = folder / "index_metadata.pickle"
        header_file = folder / "header.bin"
        if not header_file.is_file():
            return
        header = _read_header(header_file)
        if header.count == 0:
            return
        if not pickle_file.is_file():
            raise ValueError(f"{folder}: {header.count} HNSW elements but no index_metadata")
        meta = _load_index_metadata(pickle_file)
        self.max_seq_id = _decode_seq_id(meta.get("max_seq_id"))
        self._open(header, meta, cosine)

    def _open(self, header: _Header, meta: dict[str, Any], cosine: bool) -> None:
        data_file = self.folder / "data_level0.bin"
        if data_file.stat().st_size < header.count * header.element_size:
            raise ValueError(f"{data_file}: shorter than its {header.count} elements")
        self.header = header
        self.count = header.count
        self.dimension = header.dimension
        self.data = np.memmap(
            data_file, np.uint8, mode="r", shape=(header.count, header.element_size)
        )
        self.lengths = self._lengths() if cosine else None
        lo = header.label_offset
        labels = np.ascontiguousarray(self.data[:, lo : lo + 8]).view("<u8").ravel()
        deleted = (self.data[:, header.offset_level0 + 2] & 1).astype(bool)
        index_of_label = {int(label): i for i, label in enumerate(labels) if not deleted[i]}
        for user_id, label in meta["id_to_label"].items():
            index = index_of_label.get(label)
            if index is not None:
                self.index_of[user_id] = index
        logger.debug(
            "%s: %d elements, %d deleted, %d live ids",
            self.folder,
            header.count,
            int(deleted.sum()),
            len(self.index_of),
        )

    def _lengths(self) -> np.ndarray:
        file = self.folder / "length.bin"
        lengths = np.memmap(file, "<f4", mode="r") if file.stat().st_size else np.zeros(0)
        if len(lengths) < self.count:
            raise ValueError(f"{file}: shorter than its {self.count} elements")
        return lengths

    def vectors(self, indices: np.ndarray) -> np.ndarray:
        """The original vectors at these element positions (cosine ones de-normalised)."""
        start = self.header.data_offset
        rows = self.data[indices, start : start + self.header.dimension * 4]
        vectors = np.ascontiguousarray(rows).view("<f4").astype(np.float32)
        if self.lengths is not None:
            vectors *= np.asarray(self.lengths[indices], dtype=np.float32)[:, None]
        return vectors


# -- write-ahead log ------------------------------------------------------------------------


@dataclass(frozen=True)
class _LogEntry:
    seq_id: int
    operation: int
    id: str
    has_vector: bool
    metadata: dict[str, Any] | None


def _max_seq_id(conn: sqlite3.Connection, segment_id: str | None) -> int:
    if segment_id is None:
        return 0
    row = conn.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment_id,))
    found = row.fetchone()
    return _decode_seq_id(found[0]) if found else 0


def _log_tail(
    conn: sqlite3.Connection, collection_id: str, after: int, with_metadata: bool = True
) -> Iterator[_LogEntry]:
    """Log entries of this collection after sequence id `after`, in order."""
    metadata_col = "metadata" if with_metadata else "NULL"
    rows = conn.execute(
        f"SELECT seq_id, operation, id, vector IS NOT NULL, {metadata_col} FROM embeddings_queue "
        "WHERE seq_id > ? AND topic LIKE ? ORDER BY seq_id",
        (after, f"%/{collection_id}"),
    )
    for seq_id, operation, record_id, has_vector, metadata in rows:
        parsed = json.loads(metadata) if metadata else None
        yield _LogEntry(int(seq_id), int(operation), record_id, bool(has_vector), parsed)


def _log_vectors(conn: sqlite3.Connection, seq_ids: list[int]) -> dict[int, np.ndarray]:
    """Vectors of these log entries, as float32."""
    found = {}
    for chunk in _chunks(seq_ids):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT seq_id, vector, encoding FROM embeddings_queue WHERE seq_id IN ({marks})",
            chunk,
        )
        for seq_id, blob, encoding in rows:
            dtype = "<i4" if (encoding or "").upper() == "INT32" else "<f4"
            found[seq_id] = np.frombuffer(blob, dtype=dtype).astype(np.float32)
    return found


def _clean_metadata(record_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """Metadata without values huedb cannot store (e.g. sparse vectors), or None if empty."""
    kept = {}
    for key, value in fields.items():
        if isinstance(value, str | int | float | bool) or (
            isinstance(value, list) and value and all(_is_scalar(v) for v in value)
        ):
            kept[key] = value
        else:
            logger.warning("record %r: dropping metadata %r (%s)", record_id, key, type(value))
    return kept or None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _merge(current: dict[str, Any], update: dict[str, Any] | None) -> dict[str, Any]:
    """Chroma's update merge: keys set, `None` deletes a key."""
    merged = dict(current)
    for key, value in (update or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


# -- record streaming -----------------------------------------------------------------------


class _MetadataTail:
    """Record metadata after replaying the log tail on top of the metadata segment."""

    def __init__(self, entries: list[_LogEntry], base: dict[str, dict[str, Any]]) -> None:
        self.touched = {e.id for e in entries}
        self.stored = set(base)
        self.state = dict(base)
        self.appended: dict[str, int] = {}  # ids (re)added by the tail -> seq of that add
        for entry in entries:
            self._apply(entry)

    def _apply(self, entry: _LogEntry) -> None:
        present = entry.id in self.state
        if entry.operation == DELETE:
            self.state.pop(entry.id, None)
            self.appended.pop(entry.id, None)
        elif present and entry.operation in (UPDATE, UPSERT):
            self.state[entry.id] = _merge(self.state[entry.id], entry.metadata)
        elif not present and entry.operation in (ADD, UPSERT):
            self.state[entry.id] = _merge({}, entry.metadata)
            self.appended[entry.id] = entry.seq_id

    def in_place(self, record_id: str) -> dict[str, Any] | None:
        """The final metadata of a stored record that keeps its position, else None."""
        if record_id in self.appended:
            return None
        return self.state.get(record_id)

    def tail_records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Records added by the tail, in the order they were added."""
        for record_id in sorted(self.appended, key=self.appended.__getitem__):
            yield record_id, self.state[record_id]


class _VectorTail:
    """Where each record's vector is: an HNSW element, a log entry, or nowhere."""

    def __init__(self, entries: Iterable[_LogEntry], hnsw: _HnswSegment) -> None:
        self.hnsw = hnsw
        self.location: dict[str, tuple[str, int] | None] = {}
        for entry in entries:
            self._apply(entry)

    def _current(self, record_id: str) -> tuple[str, int] | None:
        if record_id in self.location:
            return self.location[record_id]
        index = self.hnsw.index_of.get(record_id)
        return ("hnsw", index) if index is not None else None

    def _apply(self, entry: _LogEntry) -> None:
        current = self._current(entry.id)
        new_vector = ("log", entry.seq_id) if entry.has_vector else None
        if entry.operation == DELETE:
            self.location[entry.id] = None
            return
        adds = current is None and entry.operation in (ADD, UPSERT)
        replaces = current is not None and entry.operation in (UPDATE, UPSERT)
        if adds or (replaces and new_vector is not None):
            self.location[entry.id] = new_vector

    def find(self, record_id: str) -> tuple[str, int] | None:
        return self._current(record_id)


class _CollectionReader:
    """Streams one collection's records: metadata segment + tail, joined with vectors."""

    def __init__(self, conn: sqlite3.Connection, root: Path, collection: ChromaCollection):
        self.conn = conn
        self.collection = collection
        self.has_arrays = "embedding_metadata_array" in _tables(conn)
        has_bool = "bool_value" in _columns(conn, "embedding_metadata")
        self.bool_col = "bool_value" if has_bool else "NULL"
        segment = collection.vector_segment
        folder = root / (segment or "__no_vector_segment__")
        self.hnsw = _HnswSegment(folder, collection.space == "cosine")
        vector_after = _max_seq_id(conn, segment)
        if vector_after and not (folder / "header.bin").is_file():
            logger.warning("%s: HNSW files missing; vectors come from the log only", folder)
        vector_after = max(vector_after, self.hnsw.max_seq_id)
        vector_tail = _log_tail(conn, collection.id, vector_after, with_metadata=False)
        self.vectors = _VectorTail(vector_tail, self.hnsw)
        metadata_after = _max_seq_id(conn, collection.metadata_segment)
        tail = list(_log_tail(conn, collection.id, metadata_after))
        self.metadata = _MetadataTail(tail, self._stored_metadata({e.id for e in tail}))
        self.dimension = collection.dimension or self.hnsw.dimension

    # metadata segment

    def _stored_rows(self, batch_size: int) -> Iterator[list[tuple[int, str]]]:
        """(rowid, user id) of the metadata segment's records, in storage order."""
        if self.collection.metadata_segment is None:
            return
        last = -1
        while True:
            rows = self.conn.execute(
                "SELECT id, embedding_id FROM embeddings WHERE segment_id = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (self.collection.metadata_segment, last, batch_size),
            ).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def _metadata_for(self, rowids: list[int]) -> dict[int, dict[str, Any]]:
        """Scalar and list metadata of these rows (documents and uris included)."""
        found: dict[int, dict[str, Any]] = {r: {} for r in rowids}
        for chunk in _chunks(rowids):
            marks = ",".join("?" * len(chunk))
            query = (
                f"SELECT id, key, string_value, int_value, float_value, {self.bool_col} "
                f"FROM embedding_metadata WHERE id IN ({marks})"
            )
            for rowid, key, s, i, f, b in self.conn.execute(query, chunk):
                found[rowid][key] = _decode_value(s, i, f, b)
            if self.has_arrays:
                query = (
                    "SELECT id, key, string_value, int_value, float_value, bool_value "
                    f"FROM embedding_metadata_array WHERE id IN ({marks}) ORDER BY rowid"
                )
                for rowid, key, s, i, f, b in self.conn.execute(query, chunk):
                    value = found[rowid].setdefault(key, [])
                    if isinstance(value, list):
                        value.append(_decode_value(s, i, f, b))
        return found

    def _stored_metadata(self, record_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Stored metadata of these user ids (those in the metadata segment)."""
        if not record_ids or self.collection.metadata_segment is None:
            return {}
        rows: list[tuple[int, str]] = []
        for chunk in _chunks(sorted(record_ids)):
            marks = ",".join("?" * len(chunk))
            rows += self.conn.execute(
                f"SELECT id, embedding_id FROM embeddings WHERE segment_id = ? "
                f"AND embedding_id IN ({marks})",
                (self.collection.metadata_segment, *chunk),
            ).fetchall()
        result = {}
        for chunk in _chunks(rows):
            metadata = self._metadata_for([r for r, _ in chunk])
            result.update({record_id: metadata[r] for r, record_id in chunk})
        return result

    # joined stream

    def count(self) -> int:
        """How many records the collection holds after the log tail."""
        stored = 0
        if self.collection.metadata_segment is not None:
            stored = self.conn.execute(
                "SELECT count(*) FROM embeddings WHERE segment_id = ?",
                (self.collection.metadata_segment,),
            ).fetchone()[0]
        gone = sum(1 for r in self.metadata.stored if self.metadata.in_place(r) is None)
        return stored - gone + len(self.metadata.appended)

    def _records(self, batch_size: int) -> Iterator[tuple[str, dict[str, Any]]]:
        touched = self.metadata.touched
        for rows in self._stored_rows(batch_size):
            stored = self._metadata_for([r for r, record_id in rows if record_id not in touched])
            for rowid, record_id in rows:
                if record_id not in touched:
                    yield record_id, stored[rowid]
                else:
                    final = self.metadata.in_place(record_id)
                    if final is not None:
                        yield record_id, final
        yield from self.metadata.tail_records()

    def batches(self, batch_size: int) -> Iterator[RecordBatch]:
        """Records in batches of at most `batch_size` (records without a vector skipped)."""
        pending: list[tuple[str, dict[str, Any]]] = []
        for record in self._records(batch_size):
            pending.append(record)
            if len(pending) >= batch_size:
                yield self._batch(pending)
                pending = []
        if pending:
            yield self._batch(pending)

    def _batch(self, records: list[tuple[str, dict[str, Any]]]) -> RecordBatch:
        places = [self.vectors.find(record_id) for record_id, _ in records]
        missing = [r for (r, _), place in zip(records, places, strict=True) if place is None]
        if missing:
            logger.warning(
                "%s: %d records have no vector and are skipped (e.g. %r)",
                self.collection.name,
                len(missing),
                missing[0],
            )
        kept = [(rec, p) for rec, p in zip(records, places, strict=True) if p is not None]
        embeddings = self._vectors([p for _, p in kept])
        batch = RecordBatch([], embeddings, [], [], [])
        for (record_id, metadata), _ in kept:
            fields = dict(metadata)
            batch.ids.append(record_id)
            batch.documents.append(fields.pop(DOCUMENT_KEY, None))
            batch.uris.append(fields.pop(URI_KEY, None))
            batch.metadatas.append(_clean_metadata(record_id, fields))
        return batch

    def _vectors(self, places: list[tuple[str, int]]) -> np.ndarray:
        log = _log_vectors(self.conn, [n for kind, n in places if kind == "log"])
        positions = [i for i, (kind, _) in enumerate(places) if kind == "hnsw"]
        dim = self.dimension or (len(next(iter(log.values()))) if log else 0)
        out = np.empty((len(places), dim), dtype=np.float32)
        if positions:
            indices = np.array([places[i][1] for i in positions], dtype=np.int64)
            out[positions] = self.hnsw.vectors(indices)
        for i, (kind, n) in enumerate(places):
            if kind == "log":
                if len(log[n]) != dim:
                    raise ValueError(
                        f"{self.collection.name}: log entry {n} has dimension {len(log[n])}, "
                        f"expected {dim}"
                    )
                out[i] = log[n]
        return out


def iter_chroma_records(
    path: Path, collection: ChromaCollection, batch_size: int = 1000
) -> Iterator[RecordBatch]:
    """Stream a collection's records in Chroma's storage order, `batch_size` at a time."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    with _open_reader(Path(path), collection) as reader:
        yield from reader.batches(batch_size)


def count_chroma_records(path: Path, collection: ChromaCollection) -> int:
    """How many records `iter_chroma_records` will yield at most."""
    with _open_reader(Path(path), collection) as reader:
        return reader.count()


@contextmanager
def _open_reader(path: Path, collection: ChromaCollection) -> Iterator[_CollectionReader]:
    conn = _connect(path)
    try:
        yield _CollectionReader(conn, path, collection)
    finally:
        conn.close()


# -- migration ------------------------------------------------------------------------------


def migrate_chroma(
    source: Path, target: Path, show_progress: bool | None = None, batch_size: int = 1000
) -> MigrationReport:
    """Copy every collection of the Chroma directory `source` into a huedb store at `target`.

    Collections keep their name, tenant, database, metadata and HNSW configuration; records
    are upserted (a rerun mirrors the source again without duplicates). Raises ValueError
    before writing anything if `source` is not a Chroma directory or a target collection
    exists with another dimension or space.
    """
    import huedb

    source, target = Path(source), Path(target)
    collections = read_chroma_directory(source)
    report = MigrationReport(source, target)
    admin = huedb.PersistentClient(path=target)
    try:
        for collection in collections:
            _check_target(admin, target, collection)
        batch_size = max(1, min(batch_size, admin.get_max_batch_size()))
        for collection in collections:
            report.collections.append(
                _migrate_collection(admin, source, collection, show_progress, batch_size)
            )
    finally:
        admin.close()
    logger.info(
        "migrated %d records in %d collections from %s to %s",
        report.total_records,
        len(report.collections),
        source,
        target,
    )
    return report


def _existing_collection(client: Any, collection: ChromaCollection) -> Any | None:
    """The target collection with this name, tenant and database, or None."""
    from huedb.errors import NotFoundError

    try:
        client.set_tenant(collection.tenant, collection.database)
        return client.get_collection(collection.name)
    except NotFoundError:
        return None


def _check_target(client: Any, target: Path, collection: ChromaCollection) -> None:
    """ValueError if the target already has this collection with another dimension or space."""
    existing = _existing_collection(client, collection)
    if existing is None:
        return
    model = existing.get_model()
    space = (model.configuration_json.get("hnsw") or {}).get("space", "l2")
    where = f"collection {collection.name!r} in {target}"
    if space != collection.space:
        raise ValueError(f"{where} exists with space {space!r}, source has {collection.space!r}")
    dims = (model.dimension, collection.dimension)
    if None not in dims and dims[0] != dims[1]:
        raise ValueError(f"{where} exists with dimension {dims[0]}, source has {dims[1]}")


def _ensure_database(client: Any, tenant: str, database: str) -> None:
    from huedb.errors import NotFoundError

    try:
        client.get_tenant(tenant)
    except NotFoundError:
        client.create_tenant(tenant)
    try:
        client.get_database(database, tenant=tenant)
    except NotFoundError:
        client.create_database(database, tenant=tenant)


def _migrate_collection(
    client: Any,
    source: Path,
    collection: ChromaCollection,
    show_progress: bool | None,
    batch_size: int,
) -> CollectionReport:
    from huedb.ops.progress import progress

    _ensure_database(client, collection.tenant, collection.database)
    existing = _existing_collection(client, collection)
    target = existing or client.create_collection(
        collection.name,
        metadata=collection.metadata,
        configuration={
            "hnsw": collection.configuration["hnsw"],
            "embedding_function": collection.configuration.get("embedding_function"),
        },
    )
    result = CollectionReport(
        collection.name,
        collection.tenant,
        collection.database,
        collection.id,
        records=0,
        created=existing is None,
    )
    with _open_reader(source, collection) as reader:
        total = reader.count()
        bar = progress(total, f"{collection.database}/{collection.name}", enabled=show_progress)
        try:
            for batch in reader.batches(batch_size):
                _write_batch(target, batch, mirror=existing is not None)
                result.records += len(batch)
                bar.update(len(batch))
        finally:
            bar.close()
    result.skipped = max(0, total - result.records)
    logger.info(
        "%s/%s/%s: %d records (%d skipped)",
        collection.tenant,
        collection.database,
        collection.name,
        result.records,
        result.skipped,
    )
    return result


def _write_batch(target: Any, batch: RecordBatch, mirror: bool) -> None:
    """Upsert a batch; into an existing collection, also clear fields the source lacks."""
    metadatas = list(batch.metadatas)
    if mirror:
        metadatas = _clear_stale_fields(target, batch, metadatas)
    target.upsert(
        ids=batch.ids,
        embeddings=batch.embeddings,
        metadatas=metadatas if any(m is not None for m in metadatas) else None,
        documents=batch.documents if _any_set(batch.documents) else None,
        uris=batch.uris if _any_set(batch.uris) else None,
    )


def _any_set(values: Iterable[Any]) -> bool:
    return any(v is not None for v in values)


def _clear_stale_fields(
    target: Any, batch: RecordBatch, metadatas: list[dict[str, Any] | None]
) -> list[dict[str, Any] | None]:
    """Metadata that also deletes keys the target has and the source no longer has.

    Records whose document or uri must become empty are deleted first (upsert cannot clear
    them), so the upsert re-adds them.
    """
    current = target.get(ids=batch.ids, include=["metadatas", "documents", "uris"])
    position = {record_id: i for i, record_id in enumerate(batch.ids)}
    to_delete = []
    for j, record_id in enumerate(current["ids"]):
        i = position[record_id]
        if (batch.documents[i] is None and current["documents"][j] is not None) or (
            batch.uris[i] is None and current["uris"][j] is not None
        ):
            to_delete.append(record_id)
            continue
        stale = set(current["metadatas"][j] or {}) - set(metadatas[i] or {})
        if stale:
            metadatas[i] = {**(metadatas[i] or {}), **dict.fromkeys(stale)}
    if to_delete:
        target.delete(ids=to_delete)
    return metadatas
