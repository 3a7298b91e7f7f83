"""A huedb SQLite database file at rest: a backup's copy, or a store no engine has open.

Backups hold one such file whatever store they were taken from (`Store.copy_to`), so
`huedb backup` and `huedb restore` read it here: its collections, its integrity, and the
checkpoint of a live file about to be replaced.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from huedb.engine.sqlite_store import migrations, store_admin
from huedb.engine.sqlite_store.schema import FORMAT_VERSION


def collection_counts(db_file: Path) -> list[dict[str, Any]]:
    """Each collection of the file: tenant, database, name, id, dimension, record count."""
    conn = sqlite3.connect(f"{db_file.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT d.tenant, d.name, c.name, c.uuid, c.dimension, "
            "(SELECT count(*) FROM records r WHERE r.cid = c.cid) "
            "FROM collections c JOIN databases d ON d.id = c.database_id ORDER BY c.cid"
        ).fetchall()
    finally:
        conn.close()
    keys = ("tenant", "database", "name", "id", "dimension", "count")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def database_problems(db_file: Path) -> list[str]:
    """Integrity problems of a database file not in use (SQLite's check, huedb's invariants)."""
    try:
        conn = sqlite3.connect(f"{db_file.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            if migrations.stored_version(conn) != FORMAT_VERSION:
                rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
                return [] if rows == ["ok"] else [f"sqlite: {r}" for r in rows]
            return store_admin.integrity_problems(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [f"sqlite: {exc}"]


def checkpoint(db_file: Path) -> None:
    """Fold the WAL of a database file no engine has open into the file (best effort)."""
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(db_file)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
