"""The SQLite connection: opening, pragmas, schema, format version and transactions.

One connection per engine, guarded by the engine's lock. Writes run in `BEGIN IMMEDIATE`
transactions so two processes never deadlock on a lock upgrade; reads run in a deferred
transaction so every read sees one consistent snapshot of the database (WAL mode).

Every engine on a data directory holds a shared advisory lock (`flock`) on its `huedb.lock`
file while it is open; the lock goes with the process, so a killed process never leaves it
behind. An operation that replaces the store (`huedb restore`) takes it exclusively, so it
refuses while any process has the directory open, and an engine opening meanwhile waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from huedb.engine import migrations
from huedb.engine.filters import regexp_match
from huedb.engine.schema import FORMAT_VERSION, SCHEMA
from huedb.errors import FormatVersionError, StorageFullError, StorageIOError

logger = logging.getLogger(__name__)

DB_FILENAME = "huedb.sqlite3"
LOCK_FILENAME = "huedb.lock"
BUSY_TIMEOUT_MS = 120_000


def hold_directory(path: Path) -> int:
    """Take the shared lock of an engine on the data directory `path`; returns its fd.

    Waits (up to the busy timeout) while a restore holds the lock exclusively.
    """
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise StorageIOError(
                    f"{path} stayed locked by a restore for {BUSY_TIMEOUT_MS // 1000} s"
                ) from None
            time.sleep(0.05)


def lock_directory_exclusively(path: Path) -> int | None:
    """The exclusive lock of `path` (fd), or None while any engine has the directory open."""
    fd = os.open(path / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def open_connection(path: Path | None, sync: str) -> sqlite3.Connection:
    """Open (and create if needed) the store; None opens a private in-memory database."""
    target = ":memory:" if path is None else str(path / DB_FILENAME)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=120)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA page_size = 8192")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    if path is not None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"cannot enable WAL mode on {target} (got {mode})")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    conn.execute("PRAGMA cache_size = -16384")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.create_function("huedb_regexp", 2, regexp_match, deterministic=True)
    _upgrade_format(conn, path, target)
    _ensure_schema(conn)
    return conn


def _upgrade_format(conn: sqlite3.Connection, path: Path | None, target: str) -> None:
    """Refuse a newer format; migrate an older one after backing it up."""
    version = migrations.stored_version(conn)
    if version is None or version == FORMAT_VERSION:
        return
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{target} was written by a newer huedb (format {version}); this huedb reads "
            f"format {FORMAT_VERSION} and older. Upgrade huedb to open it."
        )
    if path is not None:
        copy = migrations.backup_before_migration(conn, path, version)
        logger.warning("format %d store backed up to %s before migrating", version, copy)
    with write_transaction(conn):
        current = migrations.stored_version(conn)
        if current is not None and current < FORMAT_VERSION:
            migrations.migrate(conn, current, FORMAT_VERSION)


def _ensure_schema(conn: sqlite3.Connection) -> None:
    with write_transaction(conn):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT value FROM huedb_meta WHERE key = 'format_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO huedb_meta (key, value) VALUES ('format_version', ?)",
                (str(FORMAT_VERSION),),
            )
        conn.execute(
            "INSERT OR IGNORE INTO huedb_meta (key, value) VALUES ('store_id', ?)",
            (str(uuid.uuid4()),),
        )


def store_id(conn: sqlite3.Connection) -> str:
    """The random identity of this store, fixed at creation."""
    return conn.execute("SELECT value FROM huedb_meta WHERE key = 'store_id'").fetchone()[0]


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a block in one IMMEDIATE transaction; commit on success, roll back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except sqlite3.OperationalError as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise _storage_error(exc) from exc
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise _storage_error(exc) from exc


@contextlib.contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a block in one deferred transaction: a consistent snapshot for all its reads."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def _storage_error(exc: sqlite3.OperationalError) -> Exception:
    text = str(exc).lower()
    if "full" in text:
        return StorageFullError(f"Storage is full, the write was not applied: {exc}")
    if "i/o error" in text:
        return StorageIOError(f"Storage I/O error, the write was not applied: {exc}")
    return exc
