"""Record rows in SQLite: writes (add, update, delete) and reads (get, fetch by key).

Every function runs inside the caller's transaction. A record's integer `key` is allocated
once and never reused; every change to a record's vector (insert, replace, delete) appends
`(cid, key)` to the oplog in the same transaction, which is all an index needs to catch up.
The (key, value type) pairs of the metadata written are added to the collection's schema in
the same transaction (`schema_keys`), as Chroma does.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from huedb.engine import schema_keys
from huedb.engine.filters import RecordFilter, sql_value, value_kind
from huedb.record_batch import RecordBatch

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# `digests_recent` size that triggers a merge into `digests`: about sqrt(1000 n) at n = 1M,
# which balances the random page writes in the small table against the merge passes.
DIGEST_MERGE_AT = 32_768


def vector_digest(blob: bytes) -> int:
    """A 64-bit digest of a stored vector's bytes, indexed to find exact duplicates."""
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little", signed=True)


def _blob_and_digest(vector: np.ndarray) -> tuple[bytes, int]:
    blob = vector.tobytes()
    return blob, vector_digest(blob)


def keys_with_vector(conn: sqlite3.Connection, cid: int, vector: np.ndarray) -> list[int]:
    """Keys of the collection's records whose stored vector equals `vector` bit for bit."""
    blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
    digest = vector_digest(blob)
    rows = conn.execute(
        "SELECT e.key FROM embeddings e WHERE e.key IN "
        "(SELECT key FROM digests WHERE digest = ? "
        "UNION ALL SELECT key FROM digests_recent WHERE digest = ?) "
        "AND e.vector = ? AND EXISTS (SELECT 1 FROM records r WHERE r.key = e.key AND r.cid = ?)",
        (digest, digest, blob, cid),
    )
    return [r[0] for r in rows]


def add_digests(conn: sqlite3.Connection, rows: Sequence[tuple[int, int]]) -> None:
    """Record (digest, key) pairs of newly written vectors (inside the write transaction).

    They go to the small `digests_recent`; when it reaches DIGEST_MERGE_AT entries, all of
    them move to `digests` in one pass sorted by digest, so the big table is written a page
    at a time instead of one random page per vector.
    """
    conn.executemany("INSERT OR IGNORE INTO digests_recent (digest, key) VALUES (?, ?)", rows)
    pending = conn.execute("SELECT count(*) FROM digests_recent").fetchone()[0]
    if pending >= DIGEST_MERGE_AT:
        conn.execute(
            "INSERT OR IGNORE INTO digests (digest, key) "
            "SELECT digest, key FROM digests_recent ORDER BY digest, key"
        )
        conn.execute("DELETE FROM digests_recent")


def prune_leftovers(conn: sqlite3.Connection) -> int:
    """Remove what deletes leave behind: digest entries whose record is gone or holds
    another vector now, and document-index rows of deleted records. Returns the count."""
    removed = 0
    for table in ("digests", "digests_recent"):
        removed += conn.execute(
            f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
            f"WHERE e.key = {table}.key AND e.digest = {table}.digest)"
        ).rowcount
    removed += conn.execute(
        "DELETE FROM documents_fts WHERE rowid NOT IN (SELECT key FROM records)"
    ).rowcount
    return removed


def vectors_by_keys(
    conn: sqlite3.Connection, keys: Sequence[int] | np.ndarray, dim: int
) -> np.ndarray:
    """The stored float32 vectors of the given keys, as rows in the order given.

    Raises KeyError if a key has no vector (the caller asks only for keys it knows exist).
    """
    wanted = [int(k) for k in keys]
    found = dict(
        conn.execute(
            "SELECT key, vector FROM embeddings WHERE key IN (SELECT value FROM json_each(?))",
            (json_list(wanted),),
        ).fetchall()
    )
    blob = b"".join(found[k] for k in wanted)
    return np.frombuffer(blob, dtype=np.float32).reshape(len(wanted), dim)


def json_list(values: Iterable[Any]) -> str:
    """A JSON array parameter for `json_each(?)`."""
    return json.dumps(list(values), ensure_ascii=False)


def clean_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """Normalise one stored metadata dict as Chroma does (the one place this happens).

    Ints beyond int64 become floats; keys whose value is NaN or infinite are dropped (a
    missing value, as pandas writes it); None values (deletions in an update) are dropped;
    an empty result is stored as no metadata.
    """
    if not metadata:
        return None
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            continue
        out[key] = [_fit_int(v) for v in value] if isinstance(value, list) else _fit_int(value)
    return out or None


def _fit_int(value: Any) -> Any:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and not INT64_MIN <= value <= INT64_MAX:
        return float(value)
    return value


def _meta_rows(cid: int, key: int, metadata: dict[str, Any] | None) -> list[tuple]:
    if not metadata:
        return []
    rows = []
    for name, value in metadata.items():
        if isinstance(value, list):
            rows.extend((key, cid, name, value_kind(v), 1, sql_value(v)) for v in value)
        else:
            rows.append((key, cid, name, value_kind(value), 0, sql_value(value)))
    return rows


def existing_keys(conn: sqlite3.Connection, cid: int, ids: Sequence[str]) -> dict[str, int]:
    """Map the given ids that exist in the collection to their keys."""
    rows = conn.execute(
        "SELECT id, key FROM records WHERE cid = ? AND id IN (SELECT value FROM json_each(?))",
        (cid, json_list(ids)),
    )
    return dict(rows)


def insert_records(conn: sqlite3.Connection, cid: int, batch: RecordBatch) -> None:
    """Insert new records (ids known to be absent, vectors given) in the given order."""
    if not batch.ids:
        return
    batch = batch.filled()
    ids, vectors, documents, uris = batch.ids, batch.embeddings, batch.documents, batch.uris
    assert vectors is not None and documents is not None and uris is not None
    metadatas = [clean_metadata(m) for m in batch.metadatas or ()]
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    first = (row[0] if row else 0) + 1
    keys = range(first, first + len(ids))
    conn.executemany(
        "INSERT INTO records (key, cid, id, document, uri, metadata) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (k, cid, i, d, u, _dump(m))
            for k, i, d, u, m in zip(keys, ids, documents, uris, metadatas, strict=True)
        ],
    )
    rows = [(k, *_blob_and_digest(vectors[n])) for n, k in enumerate(keys)]
    conn.executemany("INSERT INTO embeddings (key, vector, digest) VALUES (?, ?, ?)", rows)
    add_digests(conn, [(digest, k) for k, _, digest in rows])
    conn.executemany(
        "INSERT INTO documents_fts (rowid, document) VALUES (?, ?)",
        [(k, d) for k, d in zip(keys, documents, strict=True) if d is not None],
    )
    meta_rows = [r for k, m in zip(keys, metadatas, strict=True) for r in _meta_rows(cid, k, m)]
    if meta_rows:
        conn.executemany(
            "INSERT INTO record_meta (key, cid, name, kind, is_array, value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            meta_rows,
        )
    conn.executemany("INSERT INTO oplog (cid, key) VALUES (?, ?)", [(cid, k) for k in keys])
    schema_keys.record_key_types(conn, cid, schema_keys.key_types(metadatas))


def update_records(
    conn: sqlite3.Connection, cid: int, keys: Sequence[int], batch: RecordBatch
) -> None:
    """Update the records `keys` (in batch order): replace what is given, merge metadata."""
    if not keys:
        return
    vectors, metadatas, documents, uris = (
        batch.embeddings,
        batch.metadatas,
        batch.documents,
        batch.uris,
    )
    if vectors is not None:
        rows = [(*_blob_and_digest(vectors[n]), k) for n, k in enumerate(keys)]
        conn.executemany("UPDATE embeddings SET vector = ?, digest = ? WHERE key = ?", rows)
        add_digests(conn, [(digest, k) for _, digest, k in rows])
        conn.executemany("INSERT INTO oplog (cid, key) VALUES (?, ?)", [(cid, k) for k in keys])
    if documents is not None:
        changed = [(d, k) for d, k in zip(documents, keys, strict=True) if d is not None]
        conn.executemany("UPDATE records SET document = ? WHERE key = ?", changed)
        conn.executemany("DELETE FROM documents_fts WHERE rowid = ?", [(k,) for _, k in changed])
        conn.executemany(
            "INSERT INTO documents_fts (rowid, document) VALUES (?, ?)",
            [(k, d) for d, k in changed],
        )
    if uris is not None:
        conn.executemany(
            "UPDATE records SET uri = ? WHERE key = ?",
            [(u, k) for u, k in zip(uris, keys, strict=True) if u is not None],
        )
    if metadatas is not None:
        _merge_metadata(conn, cid, keys, metadatas)
        written = [clean_metadata(m) for m in metadatas if m]
        schema_keys.record_key_types(conn, cid, schema_keys.key_types(written))


def _merge_metadata(
    conn: sqlite3.Connection,
    cid: int,
    keys: Sequence[int],
    metadatas: Sequence[dict[str, Any] | None],
) -> None:
    changes = [(k, m) for k, m in zip(keys, metadatas, strict=True) if m is not None]
    if not changes:
        return
    current = dict(
        conn.execute(
            "SELECT key, metadata FROM records WHERE key IN (SELECT value FROM json_each(?))",
            (json_list(k for k, _ in changes),),
        )
    )
    updates = []
    for key, patch in changes:
        merged = json.loads(current[key]) if current.get(key) else {}
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        updates.append((key, clean_metadata(merged)))
    conn.executemany(
        "UPDATE records SET metadata = ? WHERE key = ?", [(_dump(m), k) for k, m in updates]
    )
    conn.execute(
        "DELETE FROM record_meta WHERE key IN (SELECT value FROM json_each(?))",
        (json_list(k for k, _ in updates),),
    )
    rows = [r for k, m in updates for r in _meta_rows(cid, k, m)]
    if rows:
        conn.executemany(
            "INSERT INTO record_meta (key, cid, name, kind, is_array, value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def delete_keys(conn: sqlite3.Connection, cid: int, keys: Sequence[int]) -> None:
    """Delete records by key, with their vectors and metadata rows."""
    if not keys:
        return
    param = json_list(keys)
    # The document index keeps its rows (a quarter of a delete's time): keys are never
    # reused and every match is confirmed against `records`, so they never match again;
    # `huedb compact` removes them (`prune_leftovers`).
    for table in ("records", "embeddings", "record_meta"):
        conn.execute(f"DELETE FROM {table} WHERE key IN (SELECT value FROM json_each(?))", (param,))
    conn.executemany("INSERT INTO oplog (cid, key) VALUES (?, ?)", [(cid, k) for k in keys])


def delete_collection_records(conn: sqlite3.Connection, cid: int) -> None:
    """Remove every record of a collection and its oplog entries."""
    for table in ("digests", "digests_recent", "embeddings", "documents_fts"):
        key = "rowid" if table == "documents_fts" else "key"
        conn.execute(
            f"DELETE FROM {table} WHERE {key} IN (SELECT key FROM records WHERE cid = ?)", (cid,)
        )
    for table in ("records", "record_meta", "oplog"):
        conn.execute(f"DELETE FROM {table} WHERE cid = ?", (cid,))


def select_keys(
    conn: sqlite3.Connection,
    cid: int,
    flt: RecordFilter,
    limit: int | None = None,
    offset: int | None = None,
) -> list[int]:
    """Keys of matching records in storage order."""
    sql, params = _matching(cid, flt)
    sql = f"SELECT r.key FROM records r WHERE {sql} ORDER BY r.key LIMIT ? OFFSET ?"
    params += [-1 if limit is None else limit, offset or 0]
    return [r[0] for r in conn.execute(sql, params)]


def allowed_keys(conn: sqlite3.Connection, cid: int, flt: RecordFilter) -> np.ndarray:
    """Keys of the records a query may return (uint64, each once, in no particular order).

    The filter's key-set SELECT (over the covering metadata index) is used when it has
    one. Keys come back as one comma-separated string: a Python object per row would cost
    more than the search itself for broad filters.
    """
    key_set = flt.bind_key_set(cid)
    if key_set is not None:
        sql, params = key_set
    else:
        sql, params = _matching(cid, flt)
        sql = f"SELECT r.key FROM records r WHERE {sql}"
    joined = conn.execute(f"SELECT group_concat(key) FROM ({sql})", params).fetchone()[0]
    if not joined:
        return np.empty(0, dtype=np.uint64)
    return np.fromstring(joined, dtype=np.uint64, sep=",")


def _matching(cid: int, flt: RecordFilter) -> tuple[str, list[Any]]:
    sql = "r.cid = ?"
    params: list[Any] = [cid]
    if flt.ids is not None:
        sql += " AND r.id IN (SELECT value FROM json_each(?))"
        params.append(json_list(flt.ids))
    filter_sql, filter_params = flt.bind(cid)
    if filter_sql != "1":
        sql += f" AND {filter_sql}"
        params.extend(filter_params)
    return sql, params


def fetch_rows(
    conn: sqlite3.Connection,
    cid: int,
    flt: RecordFilter,
    limit: int | None,
    offset: int | None,
    with_vectors: bool,
) -> list[tuple]:
    """Rows (key, id, document, uri, metadata_json[, vector]) in storage order."""
    where, params = _matching(cid, flt)
    vector_col = ", (SELECT vector FROM embeddings e WHERE e.key = r.key)" if with_vectors else ""
    sql = (
        f"SELECT r.key, r.id, r.document, r.uri, r.metadata{vector_col} FROM records r "
        f"WHERE {where} ORDER BY r.key LIMIT ? OFFSET ?"
    )
    params += [-1 if limit is None else limit, offset or 0]
    return conn.execute(sql, params).fetchall()


def fetch_after_key(conn: sqlite3.Connection, cid: int, after_key: int, limit: int) -> list[tuple]:
    """Up to `limit` rows (key, id, document, uri, metadata_json, vector) with a key above
    `after_key`, by increasing key (keys are never reused, so this pages without gaps)."""
    sql = (
        "SELECT r.key, r.id, r.document, r.uri, r.metadata, "
        "(SELECT vector FROM embeddings e WHERE e.key = r.key) FROM records r "
        "WHERE r.cid = ? AND r.key > ? ORDER BY r.key LIMIT ?"
    )
    return conn.execute(sql, (cid, after_key, limit)).fetchall()


def fetch_by_keys(
    conn: sqlite3.Connection, cid: int, keys: Sequence[int], with_vectors: bool
) -> dict[int, tuple]:
    """Rows (key, id, document, uri, metadata_json[, vector]) of the collection's given keys."""
    vector_col = ", (SELECT vector FROM embeddings e WHERE e.key = r.key)" if with_vectors else ""
    sql = (
        f"SELECT r.key, r.id, r.document, r.uri, r.metadata{vector_col} FROM records r "
        "WHERE r.key IN (SELECT value FROM json_each(?)) AND r.cid = ?"
    )
    return {row[0]: row for row in conn.execute(sql, (json_list(keys), cid))}


def collection_keys(conn: sqlite3.Connection, cid: int) -> list[int]:
    """Every record key of a collection."""
    return [r[0] for r in conn.execute("SELECT key FROM records WHERE cid = ?", (cid,))]


def count_records(conn: sqlite3.Connection, cid: int) -> int:
    return conn.execute("SELECT count(*) FROM records WHERE cid = ?", (cid,)).fetchone()[0]


def _dump(metadata: dict[str, Any] | None) -> str | None:
    return None if not metadata else json.dumps(metadata, ensure_ascii=False)
