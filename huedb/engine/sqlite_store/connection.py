"""The SQLite connection: opening, pragmas, schema, format version and transactions.

One connection per store, guarded by the engine's lock. Writes run in `BEGIN IMMEDIATE`
transactions so two processes never deadlock on a lock upgrade; reads run in a deferred
transaction so every read sees one consistent snapshot of the database (WAL mode).

Every engine on a data directory holds a shared advisory lock (`flock`) on its `huedb.lock`
file while it is open; the lock goes with the process, so a killed process never leaves it
behind. An operation that replaces the store (`huedb restore`) takes it exclusively, so it
refuses while any process has the directory open, and an engine opening meanwhile waits.
A format migration also runs under the exclusive lock (see `hold_directory`), so it never
changes the tables under another process that has the store open.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from huedb.engine.node_dir import LOCK_FILENAME
from huedb.engine.sqlite_store import migrations
from huedb.engine.sqlite_store.filters import regexp_match
from huedb.engine.sqlite_store.schema import FORMAT_VERSION, SCHEMA
from huedb.errors import FormatVersionError, StorageFullError, StorageIOError

logger = logging.getLogger(__name__)

DB_FILENAME = "huedb.sqlite3"
MIGRATION_LOCK_FILENAME = "huedb.migrate.lock"
BUSY_TIMEOUT_MS = 120_000
CACHE_KIB = 8_192  # page cache of the connection (see docs/ARCHITECTURE.md, "Memory")
MIGRATION_WAIT_S = 5.0  # how long a migrator waits for other processes to close the store


def hold_directory(path: Path) -> int:
    """Take the shared lock of an engine on the data directory `path`; returns its fd.

    Waits (up to the busy timeout) while a restore or a format migration holds the lock
    exclusively. A store in an older format is migrated first, under the exclusive lock:
    one process migrates while the others opening it wait for their turn and then find it
    migrated. A store another process has open (an older huedb) is refused, untouched.
    """
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _take_shared(fd, path)
        if not _needs_migration(path):
            return fd
        fcntl.flock(fd, fcntl.LOCK_UN)
        with _migration_turn(path):
            while True:  # re-check after every lock change: flock converts non-atomically
                _take_shared(fd, path)
                if not _needs_migration(path):
                    return fd
                _take_exclusive_to_migrate(fd, path)
                _migrate_store(path)
    except BaseException:
        os.close(fd)
        raise


def lock_directory_exclusively(path: Path) -> int | None:
    """The exclusive lock of `path` (fd), or None while any engine has the directory open."""
    fd = os.open(path / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _pause() -> None:
    """A short, jittered wait between lock attempts, so contenders do not move in step."""
    time.sleep(0.02 + random.random() * 0.03)


def _take_shared(fd: int, path: Path) -> None:
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise StorageIOError(
                    f"{path} stayed locked by a restore or a format migration for "
                    f"{BUSY_TIMEOUT_MS // 1000} s"
                ) from None
            _pause()


@contextlib.contextmanager
def _migration_turn(path: Path) -> Iterator[None]:
    """One process at a time tries to migrate a store; the others wait here, holding nothing
    on the directory lock (so the one whose turn it is can get it exclusively)."""
    fd = os.open(path / MIGRATION_LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _take_exclusive_to_migrate(fd: int, path: Path) -> None:
    """Convert the shared lock to the exclusive one; refuse if other processes keep it open.

    Only processes that are not waiting for their migration turn can hold the lock: huedb
    versions that hold it while serving, and openers in the instant they check the format.
    """
    deadline = time.monotonic() + MIGRATION_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                break
            _pause()
    holders = _lock_holders(fd)
    version = _stored_version(path)
    who = f"process {', '.join(map(str, holders))}" if holders else "another process"
    raise FormatVersionError(
        f"{path / DB_FILENAME} has format {version}, which this huedb migrates to format "
        f"{FORMAT_VERSION}, but {who} has it open (an older huedb server or command?). "
        "Nothing was changed. Stop that process, then open the store again with this huedb "
        f"(e.g. `huedb verify --path {path}`) to migrate it."
    )


def _lock_holders(fd: int) -> list[int]:
    """Other processes holding a flock on the file of `fd` (from Linux's /proc/locks)."""
    info = os.fstat(fd)
    file_id = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = set()
    for line in lines:
        # "1: FLOCK  ADVISORY  READ  1234 08:01:5678 0 EOF" (waiters have "->" in field 1)
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == file_id:
            pid = int(fields[4])
            if pid not in (os.getpid(), 0, -1):
                pids.add(pid)
    return sorted(pids)


def _stored_version(path: Path) -> int | None:
    """The format version of the store in `path` (None: no store yet)."""
    if not (path / DB_FILENAME).is_file():
        return None
    conn = sqlite3.connect(path / DB_FILENAME, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        return migrations.stored_version(conn)
    finally:
        conn.close()


def _needs_migration(path: Path) -> bool:
    version = _stored_version(path)
    return version is not None and version < FORMAT_VERSION


def _migrate_store(path: Path) -> None:
    """Back up, then migrate, an older store (the caller holds the directory exclusively)."""
    conn = _connect(path, "full")
    try:
        version = migrations.stored_version(conn)
        if version is None or version >= FORMAT_VERSION:
            return
        copy = migrations.backup_before_migration(conn, path, version)
        logger.warning("format %d store backed up to %s before migrating", version, copy)
        with write_transaction(conn):
            migrations.migrate(conn, version, FORMAT_VERSION)
    finally:
        conn.close()


def open_connection(path: Path | None, sync: str) -> sqlite3.Connection:
    """Open (and create if needed) the store; None opens a private in-memory database.

    A store in another format is refused: an older one is migrated by `hold_directory`,
    which every engine takes before opening its connection.
    """
    conn = _connect(path, sync)
    try:
        _check_format(conn, path)
        _ensure_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _connect(path: Path | None, sync: str) -> sqlite3.Connection:
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
            conn.close()
            raise RuntimeError(f"cannot enable WAL mode on {target} (got {mode})")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.create_function("huedb_regexp", 2, regexp_match, deterministic=True)
    return conn


def _check_format(conn: sqlite3.Connection, path: Path | None) -> None:
    """Refuse a newer format, and an older one not yet migrated (see `hold_directory`)."""
    version = migrations.stored_version(conn)
    if version is None or version == FORMAT_VERSION:
        return
    where = "the store" if path is None else path / DB_FILENAME
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{where} was written by a newer huedb "
            f"(format {version}); this huedb reads format {FORMAT_VERSION} and older. "
            "Upgrade huedb to open it."
        )
    raise FormatVersionError(
        f"{where} has format {version}: it is migrated "
        "by the first engine that opens it (under the directory's exclusive lock)"
    )


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
