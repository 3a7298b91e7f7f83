"""Record rows in PostgreSQL: writes (add, update, delete) and reads (get, fetch by key).

Calls of a `PgSession`, inside its transaction. Keys come from the `record_keys` sequence
(never reused); the session holds its collection's row lock (taken by its first read of
the collection), so `existing_keys` then `insert_records` cannot race another writer, and
keys of one collection grow in commit order. Bulk rows go in with COPY. Every change to a
record's vector appends to the oplog in the same transaction; any other update of a
record row (document, uri, metadata) advances the collection's oplog head by a trigger
(`schema.py`, `oplog.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from huedb.engine import regex_dialect, schema_keys
from huedb.engine.catalog import CollectionRow
from huedb.engine.filters import RecordFilter
from huedb.engine.postgres_store import filters as pg_filters
from huedb.engine.postgres_store.oplog import OplogSQL
from huedb.engine.postgres_store.schema_keys import SchemaKeysSQL
from huedb.engine.record_values import (
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
from huedb.record_batch import RecordBatch

# Rows a Python loop over documents (regex) or vectors reads per round trip.
SCAN_BATCH = 2_000
# Seconds between the statements a write session's long Python scan sends so PostgreSQL
# does not take it for a stopped node (`pg_write_idle_timeout`).
KEEPALIVE_S = 2.0


def meta_scalars(metadata: dict[str, Any] | None) -> Iterator[tuple[str, int, bool, Any]]:
    """(name, kind, is_array, value in SQLite's stored form) of each scalar of a record's
    metadata (the elements of arrays one by one); sparse vectors are not filterable, so
    they have none."""
    for name, value in (metadata or {}).items():
        if is_sparse(value):
            continue
        is_array = isinstance(value, list)
        for v in value if is_array else (value,):
            yield name, value_kind(v), is_array, sql_value(v)


def meta_rows(cid: int, key: int, metadata: dict[str, Any] | None) -> Iterator[tuple]:
    """record_meta rows (key, cid, name, kind, is_array, num, txt) of one record."""
    for name, kind, is_array, value in meta_scalars(metadata):
        if kind == KIND_STR:
            yield key, cid, name, kind, is_array, None, value
        else:
            yield key, cid, name, kind, is_array, pg_filters.number(value), None


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_COPY_TRAILER = b"\xff\xff"


def embedding_copy_data(keys: Sequence[int], vectors: np.ndarray) -> bytes:
    """A whole binary COPY stream of `embeddings (key, vector, digest)` rows, built by numpy
    in one go: per row the field count, then each field's length and big-endian value
    (the vector as its stored float32 bytes). ~10x less Python time than a row at a time."""
    blob, digests = vector_blob_and_digests(vectors)
    width = len(blob) // len(keys)
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("key_len", ">i4"),
            ("key", ">i8"),
            ("vector_len", ">i4"),
            ("vector", f"V{width}"),
            ("digest_len", ">i4"),
            ("digest", ">i8"),
        ]
    )
    rows = np.empty(len(keys), dtype=row)
    rows["fields"], rows["key_len"], rows["vector_len"], rows["digest_len"] = 3, 8, width, 8
    rows["key"] = keys
    rows["vector"] = np.frombuffer(blob, dtype=f"V{width}")
    rows["digest"] = digests
    return _COPY_SIGNATURE + rows.tobytes() + _COPY_TRAILER


class RecordsSQL(OplogSQL, SchemaKeysSQL):
    """The records half of a PostgreSQL session."""

    def _copy(self, table: str, columns: str, rows: Any, types: Sequence[str] = ()) -> None:
        """COPY rows into a table; binary when the column `types` are given (vectors: no
        hex text to encode and parse)."""
        binary = " (FORMAT BINARY)" if types else ""
        with self._conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN{binary}") as copy:
            if types:
                copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)

    def _new_keys(self, n: int) -> list[int]:
        rows = self.run(
            "SELECT nextval('record_keys') FROM generate_series(1, %s)", (n,)
        ).fetchall()
        return sorted(r[0] for r in rows)

    # -- writes ------------------------------------------------------------------------

    def existing_keys(self, cid: int, ids: Sequence[str]) -> dict[str, int]:
        rows = self.run(
            "SELECT id, key FROM records WHERE cid = %s AND id = ANY(%s::text[])",
            (cid, list(ids)),
        )
        return dict(rows.fetchall())

    def insert_records(self, cid: int, batch: RecordBatch) -> None:
        if not batch.ids:
            return
        batch = batch.filled()
        ids, vectors, documents, uris = batch.ids, batch.embeddings, batch.documents, batch.uris
        assert vectors is not None and documents is not None and uris is not None
        metadatas = [clean_metadata(m) for m in batch.metadatas or ()]
        keys = self._new_keys(len(ids))
        rows = [
            (k, i, d, u, metadata_json(m))
            for k, i, d, u, m in zip(keys, ids, documents, uris, metadatas, strict=True)
        ]
        self._copy(
            "records", "key, cid, id, document, uri, metadata", ((r[0], cid, *r[1:]) for r in rows)
        )
        self._written(cid).inserted.extend(rows)
        with self._conn.cursor().copy(
            "COPY embeddings (key, vector, digest) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(embedding_copy_data(keys, vectors))
        self._copy(
            "record_meta",
            "key, cid, name, kind, is_array, num, txt",
            (r for k, m in zip(keys, metadatas, strict=True) for r in meta_rows(cid, k, m)),
        )
        self._log_changes(cid, keys)
        self.record_key_types(cid, schema_keys.key_types(metadatas))
        self.inserted += len(keys)

    def update_records(self, cid: int, keys: Sequence[int], batch: RecordBatch) -> None:
        if not keys:
            return
        keys = list(keys)
        vectors, metadatas, documents, uris = (
            batch.embeddings,
            batch.metadatas,
            batch.documents,
            batch.uris,
        )
        if vectors is not None:
            blobs = [vectors[n].tobytes() for n in range(len(keys))]
            self.run(
                "UPDATE embeddings e SET vector = u.vector, digest = u.digest FROM "
                "unnest(%s::bigint[], %s::bytea[], %s::bigint[]) AS u(key, vector, digest) "
                "WHERE e.key = u.key",
                (keys, blobs, [vector_digest(b) for b in blobs]),
            )
            self._log_changes(cid, keys)
        if documents is not None or uris is not None or metadatas is not None:
            self._written(cid).updated.extend(keys)  # the records trigger moves the head too
        if documents is not None:
            changed = [(k, d) for d, k in zip(documents, keys, strict=True) if d is not None]
            self._update_column("document", changed)
        self._update_column("uri", [(keys[i], uri) for i, uri in batch.uri_changes()])
        if metadatas is not None:
            resparsed = self._merge_metadata(cid, keys, metadatas)
            if vectors is None:  # sparse indexes catch up from the oplog too
                self._log_changes(cid, resparsed)
            written = [clean_metadata(m) for m in metadatas if m]
            self.record_key_types(cid, schema_keys.key_types(written))

    def _update_column(self, column: str, changes: list[tuple[int, str | None]]) -> None:
        if not changes:
            return
        self.run(
            f"UPDATE records r SET {column} = u.value FROM "
            "unnest(%s::bigint[], %s::text[]) AS u(key, value) WHERE r.key = u.key",
            ([k for k, _ in changes], [v for _, v in changes]),
        )

    def _merge_metadata(
        self, cid: int, keys: Sequence[int], metadatas: Sequence[dict[str, Any] | None]
    ) -> list[int]:
        """Merge the patches; returns the keys whose sparse-vector values changed."""
        changes = [(k, m) for k, m in zip(keys, metadatas, strict=True) if m is not None]
        if not changes:
            return []
        changed_keys = [k for k, _ in changes]
        current = dict(
            self.run(
                "SELECT key, metadata FROM records WHERE key = ANY(%s::bigint[])", (changed_keys,)
            ).fetchall()
        )
        before = {k: stored_json(current[k]) if current.get(k) else None for k, _ in changes}
        updates = [(key, merge_metadata(before[key], patch)) for key, patch in changes]
        self._update_column("metadata", [(k, metadata_json(m)) for k, m in updates])
        self.run("DELETE FROM record_meta WHERE key = ANY(%s::bigint[])", (changed_keys,))
        self._copy(
            "record_meta",
            "key, cid, name, kind, is_array, num, txt",
            (r for k, m in updates for r in meta_rows(cid, k, m)),
        )
        return [k for k, m in updates if sparse_changed(before[k], m)]

    def delete_keys(self, cid: int, keys: Sequence[int]) -> None:
        if not keys:
            return
        keys = list(keys)
        for table in ("records", "embeddings", "record_meta"):
            self.run(f"DELETE FROM {table} WHERE key = ANY(%s::bigint[])", (keys,))
        self._written(cid).removed.extend(keys)
        self._log_changes(cid, keys)

    def fork_collection(self, source: CollectionRow, new_name: str) -> CollectionRow:
        """The copy is set-based: a TEMP map of old to new keys (fresh `record_keys` values,
        matched to the source's keys in order), then one INSERT ... SELECT per table. The
        session holds the source's row lock (taken when it read the row), so no writer of
        the source commits between these READ COMMITTED statements."""
        fork = self.insert_collection(  # type: ignore[attr-defined]
            source.database_id, new_name, source.metadata, source.configuration
        )
        if source.dimension is not None:
            self.set_dimension(fork.cid, source.dimension)  # type: ignore[attr-defined]
        self.run("DROP TABLE IF EXISTS pg_temp.fork_keys")
        self.run(
            "CREATE TEMP TABLE fork_keys ON COMMIT DROP AS "
            "SELECT o.key AS old, n.key AS new FROM "
            "(SELECT key, row_number() OVER (ORDER BY key) AS rn FROM records WHERE cid = %s) o "
            "JOIN (SELECT key, row_number() OVER (ORDER BY key) AS rn FROM (SELECT "
            "nextval('record_keys') AS key FROM records WHERE cid = %s) g) n USING (rn)",
            (source.cid, source.cid),
        )
        copied = self.run(
            "INSERT INTO records (key, cid, id, document, uri, metadata) SELECT f.new, %s, "
            "r.id, r.document, r.uri, r.metadata FROM fork_keys f JOIN records r ON r.key = f.old",
            (fork.cid,),
        )
        self.run(
            "INSERT INTO embeddings (key, vector, digest) SELECT f.new, e.vector, e.digest "
            "FROM fork_keys f JOIN embeddings e ON e.key = f.old"
        )
        self.run(
            "INSERT INTO record_meta (key, cid, name, kind, is_array, num, txt) SELECT f.new, "
            "%s, m.name, m.kind, m.is_array, m.num, m.txt FROM fork_keys f "
            "JOIN record_meta m ON m.key = f.old",
            (fork.cid,),
        )
        self.run("DROP TABLE fork_keys")
        self.inserted += copied.rowcount
        self._written(fork.cid).unknown_head = True  # rows copied with no oplog entries
        return self.collection_by_uuid(fork.uuid)  # type: ignore[attr-defined]

    def delete_collection_records(self, cid: int) -> None:
        self._written(cid).unknown_head = True
        self.run(
            "DELETE FROM embeddings e USING records r WHERE r.key = e.key AND r.cid = %s", (cid,)
        )
        for table in ("records", "record_meta", "oplog"):
            self.run(f"DELETE FROM {table} WHERE cid = %s", (cid,))

    def prune_leftovers(self) -> int:
        """Nothing to prune: PostgreSQL's indexes drop the entries of deleted rows."""
        return 0

    # -- reads -------------------------------------------------------------------------

    def _matching(self, cid: int, flt: RecordFilter) -> tuple[str, list[Any]]:
        """The WHERE clause on `r` of a filter, regexes evaluated first (see filters.py)."""
        regex_keys = self._regex_keys(cid, flt) if flt.tree is not None else {}
        return matching_clause(cid, flt, regex_keys)

    def _regex_keys(self, cid: int, flt: RecordFilter) -> pg_filters.RegexKeys:
        """For each $regex pattern of the filter, the keys of the candidate records whose
        document matches it (Chroma's dialect, in Python).

        Candidates are the collection's records with a document that pass the filter's ids
        and its regex-free conjuncts: a record outside them fails the filter whatever its
        regex leaves say. Read in batches through a server-side cursor, the deadline
        checked before each document (one can take seconds); a write session (a delete by
        regex) also tells PostgreSQL it is alive every few seconds, or its
        `pg_write_idle_timeout` would end the transaction during a long scan.
        """
        assert flt.tree is not None
        patterns = sorted(set(pg_filters.regex_patterns(flt.tree)))
        if not patterns:
            return {}
        narrowed = pg_filters.regex_free_conjuncts(flt.tree)
        sql, params = self._matching(cid, RecordFilter(flt.ids, narrowed))
        found: pg_filters.RegexKeys = {p: [] for p in patterns}
        with self._conn.cursor(name="huedb_regex_scan") as cursor:
            cursor.execute(
                f"SELECT r.key, r.document FROM records r WHERE {sql} AND r.document IS NOT NULL",
                params,
            )
            alive_at = time.monotonic()
            while rows := cursor.fetchmany(SCAN_BATCH):
                for key, document in rows:
                    self.check_deadline()
                    for pattern in patterns:
                        if regex_dialect.search(pattern, document):
                            found[pattern].append(key)
                    if self._writable and time.monotonic() - alive_at > KEEPALIVE_S:
                        self._conn.execute("SELECT 1")
                        alive_at = time.monotonic()
        return found

    def select_keys(
        self, cid: int, flt: RecordFilter, limit: int | None = None, offset: int | None = None
    ) -> list[int]:
        sql, params = self._matching(cid, flt)
        sql = f"SELECT r.key FROM records r WHERE {sql} ORDER BY r.key LIMIT %s OFFSET %s"
        return [r[0] for r in self.run(sql, [*params, limit, offset or 0])]

    def allowed_keys(self, cid: int, flt: RecordFilter) -> np.ndarray:
        """Keys a query may return (uint64, each once, any order), as one string parsed
        by numpy: a Python object per row would cost more than the search itself."""
        query = allowed_keys_query(cid, flt)
        if query is None:  # $regex leaves: their keys are found in Python first
            sql, params = self._matching(cid, flt)
            query = (f"SELECT string_agg(r.key::text, ',') FROM records r WHERE {sql}", params)
        return parse_keys(self.run(*query).fetchone()[0])

    def fetch_rows(
        self,
        cid: int,
        flt: RecordFilter,
        limit: int | None,
        offset: int | None,
        with_vectors: bool,
    ) -> list[tuple]:
        where, params = self._matching(cid, flt)
        sql = f"{row_select(with_vectors)} WHERE {where} ORDER BY r.key LIMIT %s OFFSET %s"
        return self.run(sql, [*params, limit, offset or 0], binary=with_vectors).fetchall()

    def fetch_after_key(self, cid: int, after_key: int, limit: int) -> list[tuple]:
        sql = f"{row_select(True)} WHERE r.cid = %s AND r.key > %s ORDER BY r.key LIMIT %s"
        return self.run(sql, (cid, after_key, limit), binary=True).fetchall()

    def fetch_by_keys(self, cid: int, keys: Sequence[int], with_vectors: bool) -> dict[int, tuple]:
        rows = self.run(
            rows_by_keys_sql(with_vectors), ([int(k) for k in keys], cid), binary=with_vectors
        )
        return {row[0]: row for row in rows}

    def collection_keys(self, cid: int) -> list[int]:
        return [r[0] for r in self.run("SELECT key FROM records WHERE cid = %s", (cid,))]

    def count_records(self, cid: int) -> int:
        return self.run("SELECT count(*) FROM records WHERE cid = %s", (cid,)).fetchone()[0]

    def vectors_by_keys(self, keys: Sequence[int] | np.ndarray, dim: int) -> np.ndarray:
        wanted = [int(k) for k in keys]
        found = dict(
            self.run(
                "SELECT key, vector FROM embeddings WHERE key = ANY(%s::bigint[])",
                (wanted,),
                binary=True,
            ).fetchall()
        )
        return vectors_in_order(found, wanted, dim)

    def vector_chunks(
        self, cid: int, dim: int, rows: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with self._conn.cursor(name="huedb_vector_chunks", binary=True) as cursor:
            cursor.execute(
                "SELECT r.key, e.vector FROM records r JOIN embeddings e ON e.key = r.key "
                "WHERE r.cid = %s ORDER BY r.key",
                (cid,),
            )
            while chunk := cursor.fetchmany(rows):
                yield key_vector_rows(chunk, dim)

    def keys_with_vector(self, cid: int, vector: np.ndarray) -> list[int]:
        blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        # The digest index first, whatever the statistics say: right after a bulk ingest
        # the planner had none and walked the whole collection in a nested loop (75 ms at 30k).
        rows = self.run(
            "WITH same AS MATERIALIZED "
            "(SELECT key FROM embeddings WHERE digest = %s AND vector = %s) "
            "SELECT s.key FROM same s JOIN records r ON r.key = s.key WHERE r.cid = %s",
            (vector_digest(blob), blob, cid),
        )
        return [r[0] for r in rows]


def allowed_keys_query(cid: int, flt: RecordFilter) -> tuple[str, list[Any]] | None:
    """One statement answering the keys a filter allows as a comma-joined string (see
    `parse_keys`), or None when it has $regex leaves (evaluated in Python first)."""
    if flt.tree is not None and pg_filters.has_regex(flt.tree):
        return None
    key_set = None
    if flt.ids is None and flt.tree is not None:
        key_set = pg_filters.key_set(flt.tree, cid)
    if key_set is not None:
        sql, params = key_set
        return f"SELECT string_agg(key::text, ',') FROM ({sql}) s", params
    where, params = matching_clause(cid, flt, {})
    return f"SELECT string_agg(r.key::text, ',') FROM records r WHERE {where}", params


def matching_clause(
    cid: int, flt: RecordFilter, regex_keys: pg_filters.RegexKeys
) -> tuple[str, list[Any]]:
    """The WHERE clause on `r` of a filter whose $regex leaves were evaluated into
    `regex_keys` (empty without such leaves), and its parameters."""
    sql = "r.cid = %s"
    params: list[Any] = [cid]
    if flt.ids is not None:
        sql += " AND r.id = ANY(%s::text[])"
        params.append(list(flt.ids))
    if flt.tree is not None:
        filter_sql, filter_params = pg_filters.predicate(flt.tree, cid, regex_keys)
        sql += f" AND {filter_sql}"
        params.extend(filter_params)
    return sql, params


def parse_keys(joined: str | None) -> np.ndarray:
    """The uint64 keys of a comma-joined string (None: none)."""
    if not joined:
        return np.empty(0, dtype=np.uint64)
    return np.fromstring(joined, dtype=np.uint64, sep=",")


def row_select(with_vectors: bool) -> str:
    """SELECT of record rows `(key, id, document, uri, metadata[, vector])` from `records r`."""
    vector = ", (SELECT vector FROM embeddings e WHERE e.key = r.key)" if with_vectors else ""
    return f"SELECT r.key, r.id, r.document, r.uri, r.metadata{vector} FROM records r"


def rows_by_keys_sql(with_vectors: bool) -> str:
    """The rows of a collection's keys: parameters (keys as a list, cid)."""
    return f"{row_select(with_vectors)} WHERE r.key = ANY(%s::bigint[]) AND r.cid = %s"
