"""Record rows in SQLite: writes (add, update, delete) and reads (get, fetch by key).

Calls of a `SQLiteSession`, inside its transaction. A record's integer `key` comes from
the AUTOINCREMENT sequence of `records` and is never reused; every change to a record's
vector (insert, replace, delete) appends `(cid, key)` to the oplog in the same
transaction, which is all an index needs to catch up. The (key, value type) pairs of the
metadata written are added to the collection's schema in the same transaction.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, repeat
from typing import Any

import numpy as np
import orjson

from huedb.engine import schema_keys
from huedb.engine.catalog import CollectionRow
from huedb.engine.filters import RecordFilter
from huedb.engine.record_values import (
    KIND_BOOL,
    KIND_NUMBER,
    KIND_STR,
    clean_metadata,
    is_sparse,
    key_vector_rows,
    merge_metadata,
    metadata_json,
    sql_value,
    stored_json,
    value_kind,
    vector_blob_and_digests,
    vector_digest,
    vectors_in_order,
)
from huedb.engine.sparse_postings import sparse_changed
from huedb.engine.sqlite_store import filters as sql_filters
from huedb.engine.sqlite_store.schema import DIGEST_TABLES
from huedb.engine.sqlite_store.schema_keys import SchemaKeysSQL
from huedb.errors import InvalidArgumentError
from huedb.record_batch import RecordBatch, plain_metadatas

# `digests_recent` size that triggers a merge into `digests_mid`: its pages take random writes
# from every batch, the merges rewrite the level below it; see `mid_limit`.
DIGEST_MERGE_AT = 32_768
DIGEST_MID_MIN = 4 * DIGEST_MERGE_AT  # `digests_mid` never moves into `digests` below this
RELEASE_PAGES = 256  # free pages returned to the file system per oplog prune, at most


def mid_limit(records: int) -> int:
    """Entries at which `digests_mid` moves into `digests`, for a store that has assigned
    `records` keys: sqrt(2 x DIGEST_MERGE_AT x records), where the merges into the middle
    level (rewriting it every DIGEST_MERGE_AT new digests) and those out of it (rewriting
    `digests` every `mid_limit` new digests) cost the same. Per new digest that rewrites
    ~2 sqrt(records / 65,536) entries, 8 at 1M and 25 at 10M, where one merge level rewrote
    records / 32,768: 31 and 305."""
    return max(DIGEST_MID_MIN, math.isqrt(2 * DIGEST_MERGE_AT * records))


# The document index holds a row for each record with a document, and for deleted records
# until `reindex_documents`: FTS5 counts its rows, and deleting one it never held (a record
# without a document) corrupts that count. A delete reads the record's text (external
# content), so it comes before the text changes or goes.
_UNINDEX_KEY = (
    "DELETE FROM documents_fts WHERE rowid = "
    "(SELECT key FROM records WHERE key = ? AND document IS NOT NULL)"
)


def reindex_documents(conn: sqlite3.Connection) -> None:
    """Build the document index again from the records' documents (deleted records'
    postings gone)."""
    conn.execute("INSERT INTO documents_fts (documents_fts) VALUES ('delete-all')")
    conn.execute(
        "INSERT INTO documents_fts (rowid, document) "
        "SELECT key, document FROM records WHERE document IS NOT NULL"
    )


def _keys_assigned(conn: sqlite3.Connection) -> int:
    """The largest record key ever assigned (`records` AUTOINCREMENT), 0 before the first."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    return row[0] if row else 0


def _move_digests(conn: sqlite3.Connection, source: str, target: str) -> None:
    """Every entry of one digest level into the next, in one pass sorted by digest."""
    conn.execute(
        f"INSERT OR IGNORE INTO {target} (digest, key) "
        f"SELECT digest, key FROM {source} ORDER BY digest, key"
    )
    conn.execute(f"DELETE FROM {source}")


def json_list(values: Iterable[Any]) -> str:
    """A JSON array parameter for `json_each(?)`."""
    return json.dumps(list(values), ensure_ascii=False)


# Bound parameters a statement may carry (SQLite's default limit is 32,766).
MAX_BOUND_IDS = 32_000


def id_list(ids: Sequence[str]) -> tuple[str, list[Any]]:
    """A subquery yielding `ids` and its parameters: one JSON array for `json_each`, or
    bound one by one when an id holds a NUL (`json_each` cuts a string there, so the id
    `"a\\0b"` would match the record `"a"`)."""
    if "\0" not in "".join(ids):
        return "SELECT value FROM json_each(?)", [json_list(ids)]
    if len(ids) > MAX_BOUND_IDS:
        raise InvalidArgumentError(
            f"At most {MAX_BOUND_IDS} ids a request when an id holds a NUL character, "
            f"got {len(ids)}"
        )
    return "VALUES " + ", ".join(["(?)"] * len(ids)), list(ids)


def _blob_and_digest(vector: np.ndarray) -> tuple[bytes, int]:
    blob = vector.tobytes()
    return blob, vector_digest(blob)


def _meta_rows(cid: int, key: int, metadata: dict[str, Any] | None) -> list[tuple]:
    if not metadata:
        return []
    rows = []
    for name, value in metadata.items():
        if is_sparse(value):
            continue  # not filterable: kept in the metadata JSON only
        if isinstance(value, list):
            rows.extend((key, cid, name, value_kind(v), 1, sql_value(v)) for v in value)
        else:
            rows.append((key, cid, name, value_kind(value), 0, sql_value(value)))
    return rows


# The kind of each plain scalar type (`record_values.value_kind`).
_PLAIN_KINDS = {str: KIND_STR, int: KIND_NUMBER, float: KIND_NUMBER, bool: KIND_BOOL}


# Typed metadata rows of the records with keys between two parameters, from their stored
# metadata JSON: the members of the JSON types listed (`types`), in key then member order.
_PLAIN_META_SQL = (
    "INSERT INTO record_meta (key, cid, name, kind, is_array, value) "
    f"SELECT r.key, ?, j.key, CASE j.type WHEN 'integer' THEN {KIND_NUMBER} "
    f"WHEN 'text' THEN {KIND_STR} ELSE {KIND_BOOL} END, 0, j.value "
    "FROM records r, json_each(r.metadata) j WHERE r.key BETWEEN ? AND ? "
    "AND j.type IN ({types})"
)


def _dump_rows(rows: Sequence[Any]) -> str:
    """A JSON array of numbers or arrays of numbers and strings (`json_each(?)`'s rows)."""
    return orjson.dumps(rows).decode()


def _matching(cid: int, flt: RecordFilter) -> tuple[str, list[Any]]:
    sql = "r.cid = ?"
    params: list[Any] = [cid]
    if flt.ids is not None:
        # Keys looked up through `records_by_id` first: written as `r.id IN (...)`, the
        # planner walks the whole collection in key order through `records_by_collection`
        # to skip a sort (19 ms instead of 1 ms for 1,000 ids at 100k records).
        ids_sql, ids_params = id_list(flt.ids)
        sql += f" AND r.key IN (SELECT key FROM records WHERE cid = ? AND id IN ({ids_sql}))"
        params += [cid, *ids_params]
    if flt.tree is not None:
        filter_sql, filter_params = sql_filters.predicate(flt.tree, cid)
        sql += f" AND {filter_sql}"
        params.extend(filter_params)
    return sql, params


def allowed_keys_query(cid: int, flt: RecordFilter) -> tuple[str, list[Any]]:
    """The SELECT of the keys a filter allows (`RecordsSQL.allowed_keys`): the filter's
    key-set SELECT over the covering metadata index when it has one, else its predicate
    over `records`."""
    if flt.ids is None and flt.tree is not None:
        key_set = sql_filters.key_set(flt.tree, cid)
        if key_set is not None:
            return key_set
    sql, params = _matching(cid, flt)
    return f"SELECT r.key FROM records r WHERE {sql}", params


class RecordsSQL(SchemaKeysSQL):
    """The records half of a SQLite session."""

    _conn: sqlite3.Connection

    # -- writes ------------------------------------------------------------------------

    def existing_keys(self, cid: int, ids: Sequence[str]) -> dict[str, int]:
        ids_sql, ids_params = id_list(ids)
        rows = self._conn.execute(
            f"SELECT id, key FROM records WHERE cid = ? AND id IN ({ids_sql})", (cid, *ids_params)
        )
        return dict(rows)

    def insert_records(self, cid: int, batch: RecordBatch) -> None:
        """Insert new records under fresh keys: one statement per table, its rows built in
        SQLite from one parameter (`json_each`, `substr` of one blob) or from the rows just
        written (digests from `embeddings`, plain integer and bool metadata from `records`)
        rather than bound row by row, but for floats (bound: exact doubles), documents for
        the full-text index, and strings holding a NUL (JSON text would cut them there)."""
        if not batch.ids:
            return
        conn = self._conn
        batch = batch.filled()
        ids, vectors, documents, uris = batch.ids, batch.embeddings, batch.documents, batch.uris
        assert vectors is not None and documents is not None and uris is not None
        plain = plain_metadatas(batch.metadatas or ())
        metadatas = list(batch.metadatas or ())
        if not plain:
            metadatas = [clean_metadata(m) for m in metadatas]
        first = _keys_assigned(conn) + 1
        keys = range(first, first + len(ids))
        metadata_texts = list(map(metadata_json, metadatas))
        self._insert_record_rows(cid, first, ids, documents, uris, metadata_texts)
        blob, digests = vector_blob_and_digests(vectors)
        width = len(blob) // len(ids)
        # `json_each`'s `key` is the position in the array: row i gets key first + i.
        conn.execute(
            "INSERT INTO embeddings (key, vector, digest) "
            "SELECT ? + key, substr(?, key * ? + 1, ?), value FROM json_each(?)",
            (first, blob, width, width, _dump_rows(digests)),
        )
        # The digests just written, read back rather than sent again as a second parameter.
        conn.execute(
            "INSERT OR IGNORE INTO digests_recent (digest, key) "
            "SELECT digest, key FROM embeddings WHERE key BETWEEN ? AND ?",
            (first, keys[-1]),
        )
        self._merge_digests()
        conn.executemany(
            "INSERT INTO documents_fts (rowid, document) VALUES (?, ?)",
            [(k, d) for k, d in zip(keys, documents, strict=True) if d is not None],
        )
        self._insert_meta_rows(cid, keys, metadatas, plain)
        conn.execute(
            "INSERT INTO oplog (cid, key) SELECT ?, key FROM records WHERE key BETWEEN ? AND ?",
            (cid, first, keys[-1]),
        )
        self.record_key_types(cid, schema_keys.key_types(metadatas))

    def _insert_record_rows(
        self,
        cid: int,
        first: int,
        ids: list[str],
        documents: list[str | None],
        uris: list[str | None],
        metadatas: list[str | None],
    ) -> None:
        """The `records` rows, keys from `first` on: one JSON array of (id, document, uri,
        metadata JSON) when no id, document or uri holds a NUL (the JSON text would end
        there) and the strings are valid UTF-8, else bound row by row."""
        texts = "".join([*ids, *filter(None, documents), *filter(None, uris)])
        payload = None
        if "\0" not in texts:
            try:
                payload = _dump_rows(list(zip(ids, documents, uris, metadatas, strict=True)))
            except TypeError:  # a lone surrogate: refused by the binding below as well
                payload = None
        if payload is not None:
            self._conn.execute(
                "INSERT INTO records (key, cid, id, document, uri, metadata) SELECT "
                "? + key, ?, value->>0, value->>1, value->>2, value->>3 FROM json_each(?)",
                (first, cid, payload),
            )
            return
        self._conn.executemany(
            "INSERT INTO records (key, cid, id, document, uri, metadata) VALUES (?, ?, ?, ?, ?, ?)",
            zip(range(first, first + len(ids)), repeat(cid), ids, documents, uris, metadatas),
        )

    def _insert_meta_rows(
        self,
        cid: int,
        keys: Sequence[int],
        metadatas: Sequence[dict[str, Any] | None],
        plain: bool,
    ) -> None:
        """The typed rows of new records' metadata (`plain`: of scalars only, see
        `plain_metadatas`). Integer and bool values (the common filter keys) go as one JSON
        array of rows when their name holds no NUL (the JSON text would end there); strings
        and floats are bound (exact doubles, whole strings)."""
        if plain:
            names = set(chain.from_iterable(filter(None, metadatas)))
            if not names:
                return
            if not any("\0" in name for name in names):
                self._insert_plain_meta_rows(cid, keys, metadatas)
                return
        numbers: list[tuple] = []
        bound: list[tuple] = []
        for k, m in zip(keys, metadatas, strict=True):
            if not m:
                continue
            if plain:
                rows: Iterable[tuple] = (
                    (k, cid, name, _PLAIN_KINDS[type(v)], 0, v) for name, v in m.items()
                )
            else:
                rows = _meta_rows(cid, k, m)
            for r in rows:
                if (type(r[5]) is int or type(r[5]) is bool) and "\0" not in r[2]:
                    numbers.append((*r[:5], int(r[5])))
                else:
                    bound.append(r)
        try:
            payload = _dump_rows(numbers) if numbers else None
        except TypeError:  # a name with a lone surrogate
            payload, bound = None, bound + numbers
        if payload is not None:
            self._conn.execute(
                "INSERT INTO record_meta (key, cid, name, kind, is_array, value) SELECT "
                "value->>0, value->>1, value->>2, value->>3, value->>4, value->>5 "
                "FROM json_each(?)",
                (payload,),
            )
        if bound:
            self._conn.executemany(
                "INSERT INTO record_meta (key, cid, name, kind, is_array, value) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                bound,
            )

    def _insert_plain_meta_rows(
        self, cid: int, keys: Sequence[int], metadatas: Sequence[dict[str, Any] | None]
    ) -> None:
        """`_insert_meta_rows` of plain metadata whose names hold no NUL, in the same rows
        and order: integer and bool rows read from the metadata JSON just stored in
        `records` (its integers are exact int64s, `true`/`false` 1/0; nothing sent twice or
        built in Python row by row), then string and float rows. The strings are read there
        too when the batch has no float (floats are bound for exact doubles, and bound with
        the strings to keep the rows' order) and no string holding a NUL (the JSON holds it
        as an escape that SQLite's `json_each` cuts the string at)."""
        self._conn.execute(
            _PLAIN_META_SQL.format(types="'integer', 'true', 'false'"), (cid, keys[0], keys[-1])
        )
        bound = [
            (k, cid, name, _PLAIN_KINDS[type(v)], 0, v)
            for k, m in zip(keys, metadatas, strict=True)
            if m
            for name, v in m.items()
            if type(v) is str or type(v) is float
        ]
        if not bound:
            return
        if all(type(r[5]) is str and "\0" not in r[5] for r in bound):
            self._conn.execute(_PLAIN_META_SQL.format(types="'text'"), (cid, keys[0], keys[-1]))
            return
        self._conn.executemany(
            "INSERT INTO record_meta (key, cid, name, kind, is_array, value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            bound,
        )

    def _add_digests(self, rows: Sequence[tuple[int, int]]) -> None:
        """Record (digest, key) pairs of newly written vectors.

        They go to the small `digests_recent`, and move down the levels in sorted passes
        (`_merge_digests`), so the big tables are written a page at a time instead of one
        random page per vector.
        """
        self._conn.execute(
            "INSERT OR IGNORE INTO digests_recent (digest, key) "
            "SELECT value->>0, value->>1 FROM json_each(?)",
            (_dump_rows(rows),),
        )
        self._merge_digests()

    def _merge_digests(self) -> None:
        """Move `digests_recent` into `digests_mid` once it holds DIGEST_MERGE_AT entries,
        and then `digests_mid` into `digests` once it holds `mid_limit` entries."""
        conn = self._conn
        if conn.execute("SELECT count(*) FROM digests_recent").fetchone()[0] < DIGEST_MERGE_AT:
            return
        _move_digests(conn, "digests_recent", "digests_mid")
        middle = conn.execute("SELECT count(*) FROM digests_mid").fetchone()[0]
        if middle >= mid_limit(_keys_assigned(conn)):
            _move_digests(conn, "digests_mid", "digests")

    def update_records(self, cid: int, keys: Sequence[int], batch: RecordBatch) -> None:
        if not keys:
            return
        conn = self._conn
        vectors, metadatas, documents = batch.embeddings, batch.metadatas, batch.documents
        if vectors is not None:
            rows = [(*_blob_and_digest(vectors[n]), k) for n, k in enumerate(keys)]
            conn.executemany("UPDATE embeddings SET vector = ?, digest = ? WHERE key = ?", rows)
            self._add_digests([(digest, k) for _, digest, k in rows])
            conn.executemany("INSERT INTO oplog (cid, key) VALUES (?, ?)", [(cid, k) for k in keys])
        if documents is not None:
            changed = [(d, k) for d, k in zip(documents, keys, strict=True) if d is not None]
            # Before the text changes: the document index reads it to drop its postings.
            conn.executemany(_UNINDEX_KEY, [(k,) for _, k in changed])
            conn.executemany("UPDATE records SET document = ? WHERE key = ?", changed)
            conn.executemany(
                "INSERT INTO documents_fts (rowid, document) VALUES (?, ?)",
                [(k, d) for d, k in changed],
            )
        conn.executemany(
            "UPDATE records SET uri = ? WHERE key = ?",
            [(uri, keys[i]) for i, uri in batch.uri_changes()],
        )
        if metadatas is not None:
            resparsed = self._merge_metadata(cid, keys, metadatas)
            if vectors is None and resparsed:  # sparse indexes catch up from the oplog too
                conn.executemany(
                    "INSERT INTO oplog (cid, key) VALUES (?, ?)", [(cid, k) for k in resparsed]
                )
            written = [clean_metadata(m) for m in metadatas if m]
            self.record_key_types(cid, schema_keys.key_types(written))

    def _merge_metadata(
        self, cid: int, keys: Sequence[int], metadatas: Sequence[dict[str, Any] | None]
    ) -> list[int]:
        """Merge the patches; returns the keys whose sparse-vector values changed."""
        changes = [(k, m) for k, m in zip(keys, metadatas, strict=True) if m is not None]
        if not changes:
            return []
        conn = self._conn
        current = dict(
            conn.execute(
                "SELECT key, metadata FROM records WHERE key IN (SELECT value FROM json_each(?))",
                (json_list(k for k, _ in changes),),
            )
        )
        before = {k: stored_json(current[k]) if current.get(k) else None for k, _ in changes}
        updates = [(key, merge_metadata(before[key], patch)) for key, patch in changes]
        conn.executemany(
            "UPDATE records SET metadata = ? WHERE key = ?",
            [(metadata_json(m), k) for k, m in updates],
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
        return [k for k, m in updates if sparse_changed(before[k], m)]

    def delete_keys(self, cid: int, keys: Sequence[int]) -> None:
        if not keys:
            return
        param = json_list(keys)
        # The document index keeps its postings (deleting them reads and splits each text
        # again: 36 us a record at 100k, where a whole delete takes ~63): keys are never
        # reused and every match is confirmed against `records`, so they never match again;
        # `huedb compact` rebuilds the index (`prune_leftovers`).
        for table in ("records", "embeddings", "record_meta"):
            self._conn.execute(
                f"DELETE FROM {table} WHERE key IN (SELECT value FROM json_each(?))", (param,)
            )
        self._conn.execute(
            "INSERT INTO oplog (cid, key) SELECT ?, value FROM json_each(?)", (cid, param)
        )

    def fork_collection(self, source: CollectionRow, new_name: str) -> CollectionRow:
        """The copy is set-based: a TEMP map of old to new keys (new keys continue the
        `records` sequence in the source's key order), then one INSERT ... SELECT per table."""
        conn = self._conn
        fork = self.insert_collection(  # type: ignore[attr-defined]
            source.database_id, new_name, source.metadata, source.configuration
        )
        if source.dimension is not None:
            self.set_dimension(fork.cid, source.dimension)  # type: ignore[attr-defined]
        assigned = _keys_assigned(conn)
        conn.execute("DROP TABLE IF EXISTS temp.fork_keys")
        conn.execute("CREATE TEMP TABLE fork_keys (old INTEGER PRIMARY KEY, new INTEGER)")
        conn.execute(
            "INSERT INTO temp.fork_keys (old, new) "
            "SELECT key, ? + row_number() OVER (ORDER BY key) FROM records WHERE cid = ?",
            (assigned, source.cid),
        )
        copies = {
            "records (key, cid, id, document, uri, metadata)": "f.new, ?, r.id, r.document, "
            "r.uri, r.metadata FROM fork_keys f JOIN records r ON r.key = f.old ORDER BY f.new",
            "embeddings (key, vector, digest)": "f.new, e.vector, e.digest "
            "FROM fork_keys f JOIN embeddings e ON e.key = f.old",
            "digests (digest, key)": "e.digest, f.new FROM fork_keys f "
            "JOIN embeddings e ON e.key = f.old ORDER BY e.digest, f.new",
            "documents_fts (rowid, document)": "f.new, r.document FROM fork_keys f "
            "JOIN records r ON r.key = f.old WHERE r.document IS NOT NULL",
            "record_meta (key, cid, name, kind, is_array, value)": "f.new, ?, m.name, m.kind, "
            "m.is_array, m.value FROM fork_keys f JOIN record_meta m ON m.key = f.old",
        }
        for target, select in copies.items():
            params = (fork.cid,) if "?" in select else ()
            conn.execute(f"INSERT INTO {target} SELECT {select}", params)
        conn.execute("DROP TABLE temp.fork_keys")
        return self.collection_by_uuid(fork.uuid)  # type: ignore[attr-defined]

    def delete_collection_records(self, cid: int) -> None:
        self._conn.execute(
            "DELETE FROM documents_fts WHERE rowid IN "
            "(SELECT key FROM records WHERE cid = ? AND document IS NOT NULL)",
            (cid,),
        )
        for table in (*DIGEST_TABLES, "embeddings"):
            self._conn.execute(
                f"DELETE FROM {table} WHERE key IN (SELECT key FROM records WHERE cid = ?)", (cid,)
            )
        for table in ("records", "record_meta", "oplog"):
            self._conn.execute(f"DELETE FROM {table} WHERE cid = ?", (cid,))

    def prune_leftovers(self) -> int:
        """Drop the digests of deleted or re-vectored records and build the document index
        again from `records` (its deleted records' postings cannot be deleted one by one:
        their text is gone); returns the digests dropped."""
        removed = 0
        for table in DIGEST_TABLES:
            removed += self._conn.execute(
                f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
                f"WHERE e.key = {table}.key AND e.digest = {table}.digest)"
            ).rowcount
        reindex_documents(self._conn)
        return removed

    # -- reads -------------------------------------------------------------------------

    def select_keys(
        self, cid: int, flt: RecordFilter, limit: int | None = None, offset: int | None = None
    ) -> list[int]:
        sql, params = _matching(cid, flt)
        sql = f"SELECT r.key FROM records r WHERE {sql} ORDER BY r.key LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset or 0]
        return [r[0] for r in self._conn.execute(sql, params)]

    def allowed_keys(self, cid: int, flt: RecordFilter) -> np.ndarray:
        """Keys of the records a query may return (uint64, each once, in no particular order)."""
        return self.keys_selected(*allowed_keys_query(cid, flt))

    def keys_selected(self, sql: str, params: list[Any]) -> np.ndarray:
        """The keys a SELECT of one `key` column returns (uint64), as one comma-separated
        string: a Python object per row would cost more than the search itself for broad
        filters."""
        joined = self._conn.execute(f"SELECT group_concat(key) FROM ({sql})", params).fetchone()[0]
        if not joined:
            return np.empty(0, dtype=np.uint64)
        return np.fromstring(joined, dtype=np.uint64, sep=",")

    def fetch_rows(
        self,
        cid: int,
        flt: RecordFilter,
        limit: int | None,
        offset: int | None,
        with_vectors: bool,
    ) -> list[tuple]:
        where, params = _matching(cid, flt)
        vector_col = (
            ", (SELECT vector FROM embeddings e WHERE e.key = r.key)" if with_vectors else ""
        )
        sql = (
            f"SELECT r.key, r.id, r.document, r.uri, r.metadata{vector_col} FROM records r "
            f"WHERE {where} ORDER BY r.key LIMIT ? OFFSET ?"
        )
        params += [-1 if limit is None else limit, offset or 0]
        return self._conn.execute(sql, params).fetchall()

    def fetch_after_key(self, cid: int, after_key: int, limit: int) -> list[tuple]:
        sql = (
            "SELECT r.key, r.id, r.document, r.uri, r.metadata, "
            "(SELECT vector FROM embeddings e WHERE e.key = r.key) FROM records r "
            "WHERE r.cid = ? AND r.key > ? ORDER BY r.key LIMIT ?"
        )
        return self._conn.execute(sql, (cid, after_key, limit)).fetchall()

    def fetch_by_keys(self, cid: int, keys: Sequence[int], with_vectors: bool) -> dict[int, tuple]:
        vector_col = (
            ", (SELECT vector FROM embeddings e WHERE e.key = r.key)" if with_vectors else ""
        )
        # `+r.cid`: each key is looked up by the primary key, then its collection checked
        # (through records_by_collection it cost ~20% more per row; a search reads its hits so).
        sql = (
            f"SELECT r.key, r.id, r.document, r.uri, r.metadata{vector_col} FROM records r "
            "WHERE r.key IN (SELECT value FROM json_each(?)) AND +r.cid = ?"
        )
        return {row[0]: row for row in self._conn.execute(sql, (json_list(keys), cid))}

    def collection_keys(self, cid: int) -> list[int]:
        return [r[0] for r in self._conn.execute("SELECT key FROM records WHERE cid = ?", (cid,))]

    def count_records(self, cid: int) -> int:
        return self._conn.execute("SELECT count(*) FROM records WHERE cid = ?", (cid,)).fetchone()[
            0
        ]

    def vectors_by_keys(self, keys: Sequence[int] | np.ndarray, dim: int) -> np.ndarray:
        wanted = [int(k) for k in keys]
        found = dict(
            self._conn.execute(
                "SELECT key, vector FROM embeddings WHERE key IN (SELECT value FROM json_each(?))",
                (json_list(wanted),),
            ).fetchall()
        )
        return vectors_in_order(found, wanted, dim)

    def vector_chunks(
        self, cid: int, dim: int, rows: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        cursor = self._conn.execute(
            "SELECT r.key, e.vector FROM records r JOIN embeddings e ON e.key = r.key "
            "WHERE r.cid = ? ORDER BY r.key",
            (cid,),
        )
        while chunk := cursor.fetchmany(rows):
            yield key_vector_rows(chunk, dim)

    def keys_with_vector(self, cid: int, vector: np.ndarray) -> list[int]:
        blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        digest = vector_digest(blob)
        rows = self._conn.execute(
            "SELECT e.key FROM embeddings e WHERE e.key IN ("
            + " UNION ALL ".join(f"SELECT key FROM {t} WHERE digest = ?" for t in DIGEST_TABLES)
            + ") AND e.vector = ? AND EXISTS "
            "(SELECT 1 FROM records r WHERE r.key = e.key AND r.cid = ?)",
            (*[digest] * len(DIGEST_TABLES), blob, cid),
        )
        return [r[0] for r in rows]

    # -- oplog -------------------------------------------------------------------------

    def oplog_head(self, cid: int) -> int:
        """The highest oplog sequence number ever assigned, of any collection.

        One sequence serves every collection and SQLite commits one writer at a time, so a
        change committed after this snapshot always gets a higher number.
        """
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'oplog'").fetchone()
        return row[0] if row else 0

    def oplog_changes(self, cid: int, after_seq: int) -> sqlite3.Cursor:
        return self._conn.execute(
            "SELECT o.seq, o.key, e.vector FROM oplog o LEFT JOIN embeddings e ON e.key = o.key "
            "WHERE o.cid = ? AND o.seq > ? ORDER BY o.seq",
            (cid, after_seq),
        )

    def changed_keys(self, cid: int, after_seq: int) -> list[int]:
        rows = self._conn.execute(
            "SELECT DISTINCT key FROM oplog WHERE cid = ? AND seq > ? ORDER BY key",
            (cid, after_seq),
        )
        return [row[0] for row in rows]

    def count_changes(self, cid: int, after_seq: int) -> int:
        return self._conn.execute(
            "SELECT count(*) FROM oplog WHERE cid = ? AND seq > ?", (cid, after_seq)
        ).fetchone()[0]

    def prune_oplog(self, cid: int, upto: int, snapshotted: bool, node: str) -> None:
        # Every process of a SQLite store shares its directory, hence its snapshots: the
        # newest covers the others, so `node` changes nothing here.
        self._conn.execute("DELETE FROM oplog WHERE cid = ? AND seq <= ?", (cid, upto))
        self._conn.execute(
            "UPDATE collections SET pruned_seq = max(pruned_seq, ?), "
            "snapshot_seq = CASE WHEN ? THEN max(snapshot_seq, ?) ELSE snapshot_seq END "
            "WHERE cid = ?",
            (upto, snapshotted, upto, cid),
        )
        self._release_free_pages()

    def _release_free_pages(self) -> None:
        """Return free pages (those the pruned oplog rows and merged digests held) to the
        file system, at most `RELEASE_PAGES` per call: without it they stayed in the file
        (27 B per vector after a 100k x 384 ingest). A no-op in a file created without
        `auto_vacuum = INCREMENTAL` (`connection.py` sets it before the first table)."""
        conn = self._conn
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        # Python's sqlite3 steps the pragma once: one call frees one page (~50 us).
        for _ in range(min(free, RELEASE_PAGES)):
            conn.execute("PRAGMA incremental_vacuum")
