"""On-disk format versions and the migrations between them.

Format 1: the first release layout. Format 2 adds `embeddings.digest` (exact-duplicate
lookups), `collections.snapshot_seq` (warnings for lost snapshots) and the `aliases` table.
Format 3 adds `documents_fts`, a trigram index of documents for `$contains`. Format 4
replaces the metadata index by a covering one on `record_meta` and moves the digest index
into the two-level `digests` / `digests_recent` tables. Format 5 adds `digests_mid`, a
middle level between them, and rebuilds `documents_fts` over `records.document` without
positions (`schema.DOCUMENT_INDEX`).
Before migrating, a copy of the database is written to `<data>/backups/`, so an upgrade can
always be rolled back by putting that file back as `huedb.sqlite3` (with the old huedb).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from huedb.engine.record_values import vector_digest
from huedb.engine.sqlite_store.records import reindex_documents
from huedb.engine.sqlite_store.schema import DOCUMENT_INDEX

logger = logging.getLogger(__name__)

BACKUP_DIRNAME = "backups"


def stored_version(conn: sqlite3.Connection) -> int | None:
    """The format version of an existing store, or None for a new, empty one."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'huedb_meta'"
    ).fetchone()
    if not has_meta:
        return None
    row = conn.execute("SELECT value FROM huedb_meta WHERE key = 'format_version'").fetchone()
    return None if row is None else int(row[0])


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    if "snapshot_seq" not in _columns(conn, "collections"):
        conn.execute("ALTER TABLE collections ADD COLUMN snapshot_seq INTEGER NOT NULL DEFAULT 0")
    if "digest" not in _columns(conn, "embeddings"):
        conn.execute("ALTER TABLE embeddings ADD COLUMN digest INTEGER NOT NULL DEFAULT 0")
        cursor = conn.execute("SELECT key, vector FROM embeddings")
        while rows := cursor.fetchmany(10_000):
            conn.executemany(
                "UPDATE embeddings SET digest = ? WHERE key = ?",
                [(vector_digest(blob), key) for key, blob in rows],
            )


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS documents_fts USING fts5 "
        "(document, tokenize = 'trigram case_sensitive 1')"
    )
    conn.execute("DELETE FROM documents_fts")
    conn.execute(
        "INSERT INTO documents_fts (rowid, document) "
        "SELECT key, document FROM records WHERE document IS NOT NULL"
    )


def _v3_to_v4(conn: sqlite3.Connection) -> None:
    # A covering index: metadata filters read matching keys without visiting the table.
    conn.execute("DROP INDEX IF EXISTS record_meta_lookup")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS record_meta_keys "
        "ON record_meta (cid, name, kind, is_array, value, key)"
    )
    # Digests move from an index on `embeddings` to the two-level `digests` tables.
    for table in ("digests", "digests_recent"):
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (digest INTEGER NOT NULL, key INTEGER NOT "
            "NULL, PRIMARY KEY (digest, key)) WITHOUT ROWID"
        )
    conn.execute(
        "INSERT OR IGNORE INTO digests (digest, key) "
        "SELECT digest, key FROM embeddings ORDER BY digest, key"
    )
    conn.execute("DROP INDEX IF EXISTS embeddings_by_digest")


def _v4_to_v5(conn: sqlite3.Connection) -> None:
    # An empty middle level: the digests already stored stay where they are.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS digests_mid (digest INTEGER NOT NULL, key INTEGER NOT "
        "NULL, PRIMARY KEY (digest, key)) WITHOUT ROWID"
    )
    # The document index over `records.document`, built again from it.
    conn.execute("DROP TABLE IF EXISTS documents_fts")
    conn.execute(DOCUMENT_INDEX)
    reindex_documents(conn)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
}


def backup_before_migration(conn: sqlite3.Connection, data: Path, version: int) -> Path:
    """A consistent copy of the database, taken before its format changes.

    Written under a temporary name and renamed once complete, so a migration killed while
    copying never leaves a partial file that looks like a backup.
    """
    folder = data / BACKUP_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"huedb-format-{version}-{time.strftime('%Y%m%d-%H%M%S')}.sqlite3"
    partial = folder / f".{target.name}.tmp-{os.getpid()}"
    partial.unlink(missing_ok=True)
    try:
        conn.execute("VACUUM INTO ?", (str(partial),))
        _fsync(partial)
        os.replace(partial, target)
        _fsync(folder)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def migrate(conn: sqlite3.Connection, version: int, target_version: int) -> None:
    """Apply every migration from `version` to `target_version` (caller holds a write lock)."""
    for step in range(version, target_version):
        logger.warning("migrating the store from format %d to %d", step, step + 1)
        MIGRATIONS[step](conn)
    conn.execute(
        "UPDATE huedb_meta SET value = ? WHERE key = 'format_version'", (str(target_version),)
    )
