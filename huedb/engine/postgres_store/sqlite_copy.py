"""Between PostgreSQL and the SQLite store's file format: backups and restores.

A backup of any store is a SQLite database file in the SQLite store's format
(`engine/sqlite_store/schema.py`), so it restores into either store:
- `copy_to_sqlite`: one REPEATABLE READ snapshot of the PostgreSQL store, streamed through
  server-side cursors into a new SQLite file. Keys, ids, documents, metadata JSON and
  vector bytes are copied as they are; the derived tables (typed metadata, digests, the
  document index) are rebuilt from them exactly as the SQLite store writes them.
- `load_sqlite`: the reverse, into an empty PostgreSQL store, in one transaction.
The oplog is not copied: it only tells running processes what to catch up, and a restored
store's indexes are rebuilt from its records (its counters start at 0, its key sequence
above every key ever given).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from huedb.engine.fork_lineage import LINEAGE_ROWS
from huedb.engine.postgres_store.records import meta_rows, meta_scalars
from huedb.engine.sqlite_store.schema import FORMAT_VERSION as SQLITE_FORMAT_VERSION
from huedb.engine.sqlite_store.schema import SCHEMA as SQLITE_SCHEMA
from huedb.errors import BackupError

BATCH = 2_000


def _json(metadata_json: str | None) -> dict[str, Any] | None:
    return json.loads(metadata_json) if metadata_json else None


def _batches(cursor: psycopg.Cursor) -> Iterator[list[tuple]]:
    while rows := cursor.fetchmany(BATCH):
        yield rows


def _stream(conn: psycopg.Connection, name: str, sql: str) -> Iterator[list[tuple]]:
    """Rows of a query in batches, through a server-side cursor."""
    with conn.cursor(name=name) as cursor:
        cursor.execute(sql)
        yield from _batches(cursor)


def copy_to_sqlite(conn: psycopg.Connection, target: Path) -> None:
    """Write the store seen by `conn`'s snapshot to a new SQLite store file `target`."""
    if target.exists():
        raise BackupError(f"{target} exists; a copy is written to a new file")
    out = sqlite3.connect(target, isolation_level=None)
    try:
        out.execute("PRAGMA page_size = 8192")
        out.execute("PRAGMA auto_vacuum = INCREMENTAL")
        out.execute("PRAGMA journal_mode = OFF")
        out.execute("PRAGMA synchronous = OFF")
        out.execute("BEGIN")
        _create_sqlite_schema(out)
        _copy_catalog(conn, out)
        _copy_records(conn, out)
        out.execute("COMMIT")
        out.execute("PRAGMA journal_mode = DELETE")
    except BaseException:
        out.close()
        target.unlink(missing_ok=True)
        raise
    out.close()


def _create_sqlite_schema(out: sqlite3.Connection) -> None:
    for statement in SQLITE_SCHEMA.split(";"):
        if statement.strip():
            out.execute(statement)


def _copy_catalog(conn: psycopg.Connection, out: sqlite3.Connection) -> None:
    store_id = conn.execute("SELECT value FROM huedb_meta WHERE key = 'store_id'").fetchone()[0]
    out.executemany(
        "INSERT INTO huedb_meta (key, value) VALUES (?, ?)",
        [("format_version", str(SQLITE_FORMAT_VERSION)), ("store_id", store_id)],
    )
    out.executemany("INSERT INTO huedb_meta (key, value) VALUES (?, ?)", conn.execute(LINEAGE_ROWS))
    out.executemany(
        "INSERT INTO tenants (name) VALUES (?)", conn.execute("SELECT name FROM tenants")
    )
    out.executemany(
        "INSERT INTO databases (id, name, tenant) VALUES (?, ?, ?)",
        conn.execute("SELECT id, name, tenant FROM databases"),
    )
    out.executemany(
        "INSERT INTO collections (cid, uuid, name, database_id, metadata, configuration, "
        "dimension) VALUES (?, ?, ?, ?, ?, ?, ?)",
        conn.execute(
            "SELECT cid, uuid, name, database_id, metadata, configuration, dimension "
            "FROM collections ORDER BY cid"
        ),
    )
    out.executemany(
        "INSERT INTO aliases (database_id, name, cid) VALUES (?, ?, ?)",
        conn.execute("SELECT database_id, name, cid FROM catalog_names WHERE is_alias"),
    )


def _copy_records(conn: psycopg.Connection, out: sqlite3.Connection) -> None:
    sql = (
        "SELECT r.key, r.cid, r.id, r.document, r.uri, r.metadata, e.vector, e.digest "
        "FROM records r JOIN embeddings e ON e.key = r.key ORDER BY r.key"
    )
    for rows in _stream(conn, "huedb_copy_records", sql):
        out.executemany(
            "INSERT INTO records (key, cid, id, document, uri, metadata) VALUES (?, ?, ?, ?, ?, ?)",
            [r[:6] for r in rows],
        )
        out.executemany(
            "INSERT INTO embeddings (key, vector, digest) VALUES (?, ?, ?)",
            [(r[0], r[6], r[7]) for r in rows],
        )
        out.executemany(
            "INSERT INTO digests (digest, key) VALUES (?, ?)", [(r[7], r[0]) for r in rows]
        )
        out.executemany(
            "INSERT INTO documents_fts (rowid, document) VALUES (?, ?)",
            [(r[0], r[3]) for r in rows if r[3] is not None],
        )
        out.executemany(
            "INSERT INTO record_meta (key, cid, name, kind, is_array, value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (r[0], r[1], name, kind, int(is_array), value)
                for r in rows
                for name, kind, is_array, value in meta_scalars(_json(r[5]))
            ],
        )
    last_key = conn.execute(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM record_keys"
    ).fetchone()[0]
    out.execute(
        "INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('records', "
        "max(?, coalesce((SELECT max(key) FROM records), 0)))",
        (last_key,),
    )


def load_sqlite(conn: psycopg.Connection, source: Path) -> None:
    """Copy a SQLite store file into the (empty) PostgreSQL store of `conn`'s transaction."""
    if conn.execute("SELECT EXISTS (SELECT 1 FROM collections)").fetchone()[0]:
        raise BackupError("the PostgreSQL store is not empty; restore into an empty database")
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = src.execute(
            "SELECT value FROM huedb_meta WHERE key = 'format_version'"
        ).fetchone()
        if version is None or int(version[0]) != SQLITE_FORMAT_VERSION:
            raise BackupError(
                f"{source} has format {version and version[0]}; restore it with a huedb "
                f"that reads it into SQLite first (this one loads format {SQLITE_FORMAT_VERSION})"
            )
        for table in ("catalog_names", "collections", "databases", "tenants"):
            conn.execute(f"DELETE FROM {table}")
        _copy(conn, "tenants", "name", src.execute("SELECT name FROM tenants"))
        _copy(
            conn,
            "databases",
            "id, name, tenant",
            src.execute("SELECT id, name, tenant FROM databases"),
        )
        _copy(
            conn,
            "collections",
            "cid, uuid, name, database_id, metadata, configuration, dimension",
            src.execute(
                "SELECT cid, uuid, name, database_id, metadata, configuration, dimension "
                "FROM collections"
            ),
        )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('collections', 'cid'), "
            "greatest((SELECT max(cid) FROM collections), 1))"
        )
        _copy(
            conn,
            "catalog_names",
            "database_id, name, cid, is_alias",
            (
                *(
                    (d, n, c, False)
                    for d, n, c in src.execute("SELECT database_id, name, cid FROM collections")
                ),
                *(
                    (d, n, c, True)
                    for d, n, c in src.execute("SELECT database_id, name, cid FROM aliases")
                ),
            ),
        )
        conn.execute(f"DELETE FROM huedb_meta WHERE key IN (SELECT key FROM ({LINEAGE_ROWS}) l)")
        _copy(conn, "huedb_meta", "key, value", src.execute(LINEAGE_ROWS))
        _load_records(conn, src)
    finally:
        src.close()


def _copy(conn: psycopg.Connection, table: str, columns: str, rows: Iterable[tuple]) -> None:
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _load_records(conn: psycopg.Connection, src: sqlite3.Connection) -> None:
    cursor = src.execute(
        "SELECT r.key, r.cid, r.id, r.document, r.uri, r.metadata, e.vector, e.digest "
        "FROM records r JOIN embeddings e ON e.key = r.key ORDER BY r.key"
    )
    while rows := cursor.fetchmany(BATCH):
        _copy(conn, "records", "key, cid, id, document, uri, metadata", (r[:6] for r in rows))
        _copy(conn, "embeddings", "key, vector, digest", ((r[0], r[6], r[7]) for r in rows))
        _copy(
            conn,
            "record_meta",
            "key, cid, name, kind, is_array, num, txt",
            (m for r in rows for m in meta_rows(r[1], r[0], _json(r[5]))),
        )
    row = src.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    top = max(
        row[0] if row else 0, src.execute("SELECT coalesce(max(key), 0) FROM records").fetchone()[0]
    )
    if top:
        conn.execute("SELECT setval('record_keys', %s)", (top,))
