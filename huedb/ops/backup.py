"""Online backup and restore.

A backup is one uncompressed tar file holding `manifest.json` and `huedb.sqlite3`, a SQLite
database file whatever store it was taken from. The store is copied by
`Engine.copy_database_to` (the store's `copy_to`: `VACUUM INTO` from a read transaction on a
connection of its own for SQLite), so it is one consistent snapshot while readers and writers
keep going, and a serving engine keeps serving. Index snapshots are not included: they are derived
and are rebuilt on first use. Restore checks the SHA-256 in the manifest and the integrity
of the database before anything is put in place, refuses a non-empty target unless forced,
refuses a directory any process has open, and swaps atomically (see `restore`). Into a
PostgreSQL store (`store`), restore loads the checked file into an empty database in one
transaction, so a backup moves a store between SQLite and PostgreSQL either way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import tarfile
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from huedb.engine import fileio
from huedb.engine.engine import Engine
from huedb.engine.node_dir import LOCK_FILENAME, NODE_ID_FILENAME
from huedb.engine.sqlite_store.connection import (
    DB_FILENAME,
    MIGRATION_LOCK_FILENAME,
    lock_directory_exclusively,
)
from huedb.engine.sqlite_store.files import checkpoint, collection_counts, database_problems
from huedb.engine.sqlite_store.schema import FORMAT_VERSION
from huedb.engine.store_factory import open_store as open_bare_store
from huedb.errors import BackupError, StorageFullError, StorageIOError
from huedb.ops.progress import progress
from huedb.ops.store import open_store, refuse_inside_data, require_out_directory, store_url
from huedb.options import masked_url, resolve_options
from huedb.process_ids import process_exists, remove_left_by_dead_processes
from huedb.version import __version__

MANIFEST = "manifest.json"
ADMIN_TEMP_PREFIX = "huedb-backup-"  # the server's backup route's temporary directories
CHUNK = 1 << 20


@dataclass
class Manifest:
    """What a backup holds."""

    huedb_version: str
    format_version: int
    created_at: str
    sqlite_sha256: str
    sqlite_bytes: int
    collections: list[dict[str, Any]] = field(default_factory=list)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _watch_growth(path: Path, total: int, desc: str, show: bool | None) -> tuple[Any, Any]:
    bar = progress(total, desc, unit="B", enabled=show)
    stop = threading.Event()

    def poll() -> None:
        last = 0
        while not stop.wait(0.2):
            with contextlib.suppress(OSError):
                size = path.stat().st_size
                bar.update(max(0, size - last))
                last = size

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()

    def finish() -> None:
        stop.set()
        thread.join()
        bar.close()

    return bar, finish


def backup(
    source: Engine | Path | None,
    out: Path,
    show_progress: bool | None = None,
    store: str | None = None,
) -> Manifest:
    """Write a consistent backup of a store to the tar file `out`.

    `source` is an open engine (a server's, which keeps serving) or a data directory, which
    is opened for the copy and must already hold a database; with a PostgreSQL `store`
    (else HUEDB_STORE), that store, with this node's derived files in `source` if given.
    The directory of `out` must exist: a mistyped one is refused, not created.
    """
    if isinstance(source, Engine):
        return _backup(source, out, show_progress)
    refuse_inside_data(out, source, "backup file")  # before the store is opened
    url = store_url(store)
    if not url and source is not None and not (source / DB_FILENAME).exists():
        raise BackupError(f"{source} holds no huedb database ({DB_FILENAME} is missing)")
    with open_store(source, url) as engine:
        return _backup(engine, out, show_progress)


def admin_backup_dir() -> Path:
    """A new temporary directory for the server's backup route, named after this process."""
    return Path(tempfile.mkdtemp(prefix=f"{ADMIN_TEMP_PREFIX}{os.getpid()}-"))


def remove_stale_admin_backups() -> list[Path]:
    """Remove the temporary directories of admin backups whose server is gone.

    The server's backup route works in `admin_backup_dir()`, named after its process: a
    directory of a process that no longer runs was left by a server killed while copying
    or while sending the file.
    """
    removed = []
    for work_dir in Path(tempfile.gettempdir()).glob(f"{ADMIN_TEMP_PREFIX}*"):
        owner = work_dir.name[len(ADMIN_TEMP_PREFIX) :].split("-", 1)[0]
        pids = [owner] if owner.isdigit() else []
        pids += [p.name.rsplit("-", 1)[-1] for p in work_dir.glob(".*.tmp-*")]
        if pids and not any(process_exists(pid) for pid in pids):
            shutil.rmtree(work_dir, ignore_errors=True)
            removed.append(work_dir)
    return removed


def work_tag() -> str:
    """This process's part of a work directory's name: its host (a directory shared with
    other hosts or containers holds their backups' too, whose processes are not visible
    here) and its process id."""
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c == ".") or "host"
    return f"{host}-{os.getpid()}"


def _is_backup_work(path: Path, out: Path) -> bool:
    """Whether `path` is a work directory this host's backups make (`.<name>.tmp-<host>-
    <pid>`; from older versions `.<out's name>.tmp-<pid>`) holding the database copy, and
    maybe the archive being written, or nothing yet: not something else named alike."""
    if not path.is_dir() or path.is_symlink():
        return False
    archive, _, tag = path.name[1:].rpartition(".tmp-")
    ours = tag.rsplit("-", 1)[0] == work_tag().rsplit("-", 1)[0]
    if not ours and not (tag.isdigit() and archive == out.name):
        return False
    with contextlib.suppress(OSError):
        names = [entry.name for entry in path.iterdir()]
        copied = not names or any(name.startswith(DB_FILENAME) for name in names)
        return copied and all(name.startswith((DB_FILENAME, archive)) for name in names)
    return False


def _backup(engine: Engine, out: Path, show_progress: bool | None) -> Manifest:
    refuse_inside_data(out, engine.path, "backup file")
    require_out_directory(out)
    out = out.resolve()
    # left by a backup that was killed (to any file name: backups are often dated)
    left = [p for p in out.parent.glob(".*.tmp-*") if _is_backup_work(p, out)]
    remove_left_by_dead_processes(left, _pid_after_dash)
    with contextlib.suppress(OSError):
        remove_stale_admin_backups()
    work = out.parent / f".{out.name}.tmp-{work_tag()}"
    work.mkdir(exist_ok=True)
    copy = work / DB_FILENAME
    try:
        _, finish = _watch_growth(copy, engine.storage_figures()["bytes"], "backup", show_progress)
        try:
            engine.copy_database_to(copy)
        finally:
            finish()
        manifest = Manifest(
            huedb_version=__version__,
            format_version=FORMAT_VERSION,
            created_at=datetime.now(UTC).isoformat(),
            sqlite_sha256=_sha256(copy),
            sqlite_bytes=copy.stat().st_size,
            collections=collection_counts(copy),
        )
        with (
            fileio.atomic_writer(out, work / out.name) as raw,
            tarfile.open(fileobj=raw, mode="w") as tar,
        ):
            body = json.dumps(asdict(manifest), indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(body)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(body))
            tar.add(copy, arcname=DB_FILENAME)
        return manifest
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"backup to {out} failed, nothing was written: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def storage_error(exc: BaseException) -> StorageFullError | StorageIOError | None:
    """The storage error behind a failed backup (full disk: 507, I/O error: 503), if any."""
    for cause in (exc, exc.__cause__):
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageFullError(f"Storage is full: {exc}")
        if isinstance(cause, OSError) and cause.errno == errno.EIO:
            return StorageIOError(f"Storage I/O error: {exc}")
        if isinstance(cause, sqlite3.OperationalError):
            text = str(cause).lower()
            if "full" in text:
                return StorageFullError(f"Storage is full: {exc}")
            if "i/o error" in text:
                return StorageIOError(f"Storage I/O error: {exc}")
    return None


def read_manifest(archive: Path) -> Manifest:
    """The manifest of a backup file."""
    try:
        with tarfile.open(archive, "r") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise BackupError(f"{archive} has no {MANIFEST}")
            return Manifest(**json.loads(member.read()))
    except (tarfile.TarError, KeyError, ValueError, TypeError, OSError) as exc:
        raise BackupError(f"{archive} is not a huedb backup: {exc}") from None


def check_archive(archive: Path) -> Manifest:
    """The manifest of a backup file whose database matches the manifest's size and SHA-256
    (what restore checks before extracting anything); BackupError otherwise."""
    manifest = read_manifest(archive)
    digest = hashlib.sha256()
    size = 0
    try:
        with tarfile.open(archive, "r") as tar:
            member = tar.extractfile(DB_FILENAME)
            if member is None:
                raise BackupError(f"{archive} has no {DB_FILENAME}")
            while chunk := member.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except (tarfile.TarError, KeyError, EOFError) as exc:
        raise BackupError(f"{archive} is not a huedb backup: {exc}") from None
    if size != manifest.sqlite_bytes or digest.hexdigest() != manifest.sqlite_sha256:
        raise BackupError(f"{archive} is corrupt: checksum mismatch")
    return manifest


def restore(
    archive: Path,
    data: Path | None,
    force: bool = False,
    show_progress: bool | None = None,
    store: str | None = None,
) -> Manifest:
    """Restore a backup into `data`: checked, then swapped in atomically; or, with a
    PostgreSQL `store` (else HUEDB_STORE), into that store (`_restore_into_postgres`).

    Refused while any engine (a server, a command) has `data` open: engines hold a shared lock
    on the directory and restore takes it exclusively for its whole run. The database is
    extracted next to the live one, its SHA-256 checked against the manifest, and its
    integrity checked (SQLite's and huedb's invariants); only then is the old store
    checkpointed (its WAL folded in), its derived index files removed, and the new file
    renamed over the old one. A kill at any moment leaves the old store or the new one.
    """
    manifest = read_manifest(archive)
    if manifest.format_version > FORMAT_VERSION:
        raise BackupError(
            f"{archive} has format {manifest.format_version}; this huedb reads up to "
            f"{FORMAT_VERSION}. Upgrade huedb to restore it."
        )
    _refuse_file_in_the_way(data)
    url = store_url(store)
    if url:
        return _restore_into_postgres(archive, manifest, url, data, force, show_progress)
    if data is None:
        raise BackupError("give the data directory (--path) or a PostgreSQL store (--store)")
    bookkeeping = (LOCK_FILENAME, MIGRATION_LOCK_FILENAME, NODE_ID_FILENAME)
    if data.exists() and any(p.name not in bookkeeping for p in data.iterdir()) and not force:
        raise BackupError(f"{data} is not empty; pass --force to replace its contents")
    data.mkdir(parents=True, exist_ok=True)
    lock = lock_directory_exclusively(data)
    if lock is None:
        raise BackupError(
            f"{data} is in use by a running huedb (a server or another command); stop it, "
            "then restore. Nothing was changed."
        )
    try:
        _remove_stale_restores(data)
        staged = data / f".restore-{os.getpid()}.sqlite3"
        try:
            _extract_checked(archive, manifest, staged, show_progress)
            _forget_snapshots(staged)
            _swap_in(staged, data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
    finally:
        os.close(lock)
    return manifest


def _restore_into_postgres(
    archive: Path,
    manifest: Manifest,
    url: str,
    data: Path | None,
    force: bool,
    show_progress: bool | None,
) -> Manifest:
    """Load a checked backup into the empty PostgreSQL store of `url`, in one transaction.

    `data`, if given, is this node's directory of derived files: it must not be open (the
    directory lock is taken exclusively) and its index snapshots are removed.
    """
    from huedb.engine.postgres_store import PostgresStore  # psycopg: only for this store

    if force:
        raise BackupError(
            "--force does not apply to a PostgreSQL store: restore into an empty database "
            "(create a new one, or drop and recreate it). Nothing was changed."
        )
    lock = None
    if data is not None:
        data.mkdir(parents=True, exist_ok=True)
        lock = lock_directory_exclusively(data)
        if lock is None:
            raise BackupError(
                f"{data} is in use by a running huedb (a server or another command); stop "
                "it, then restore. Nothing was changed."
            )
    try:
        with tempfile.TemporaryDirectory(prefix="huedb-restore-", dir=data) as work:
            staged = Path(work) / DB_FILENAME
            _extract_checked(archive, manifest, staged, show_progress)
            target = open_bare_store(None, resolve_options(env=os.environ, args={"store": url}))
            try:
                if not isinstance(target, PostgresStore):
                    raise BackupError(f"{masked_url(url)} is not a PostgreSQL store")
                target.load_from_sqlite(staged)
            finally:
                target.close()
        if data is not None:
            shutil.rmtree(data / "index", ignore_errors=True)
    finally:
        if lock is not None:
            os.close(lock)
    return manifest


def _refuse_file_in_the_way(data: Path | None) -> None:
    """Refuse a restore target that is, or lies under, something other than a directory."""
    if data is None:
        return
    for path in (data, *data.parents):
        if path.exists():
            if not path.is_dir():
                raise BackupError(f"{path} is not a directory; nothing was restored")
            return


def _remove_stale_restores(data: Path) -> None:
    """Staged files of restores that were killed (`.restore-<pid>.sqlite3*`)."""
    remove_left_by_dead_processes(
        data.glob(".restore-*.sqlite3*"), lambda p: p.name.split("-", 1)[1].split(".", 1)[0]
    )


def _pid_after_dash(path: Path) -> str:
    """The process id ending a temporary's name (`.<name>.tmp-[<host>-]<pid>`)."""
    return path.name.rsplit("-", 1)[-1]


def _extract_checked(
    archive: Path, manifest: Manifest, staged: Path, show_progress: bool | None
) -> None:
    digest = hashlib.sha256()
    bar = progress(manifest.sqlite_bytes, "restore", unit="B", enabled=show_progress)
    try:
        with tarfile.open(archive, "r") as tar:
            member = tar.extractfile(DB_FILENAME)
            if member is None:
                raise BackupError(f"{archive} has no {DB_FILENAME}")
            with open(staged, "wb") as f:
                while chunk := member.read(CHUNK):
                    digest.update(chunk)
                    f.write(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
    except (tarfile.TarError, KeyError) as exc:
        raise BackupError(f"{archive} is not a huedb backup: {exc}") from None
    finally:
        bar.close()
    if digest.hexdigest() != manifest.sqlite_sha256:
        raise BackupError(f"{archive} is corrupt: checksum mismatch; nothing was restored")
    problems = database_problems(staged)
    if problems:
        raise BackupError(
            f"{archive} holds a damaged database ({'; '.join(problems[:3])}); nothing was restored"
        )


def _forget_snapshots(staged: Path) -> None:
    """Mark the restored collections as having no index snapshot: a backup holds none (the
    indexes are rebuilt from the store), so their first load is not taken for a missing
    or damaged file (a WARNING per collection)."""
    with contextlib.closing(sqlite3.connect(staged, isolation_level=None)) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(collections)")}
        if "snapshot_seq" in columns:
            conn.execute("UPDATE collections SET snapshot_seq = 0")


def _swap_in(staged: Path, data: Path) -> None:
    """Replace the store in `data` by `staged` (the caller holds the exclusive lock)."""
    live = data / DB_FILENAME
    if live.exists():
        checkpoint(live)
    for name in (f"{DB_FILENAME}-wal", f"{DB_FILENAME}-shm"):
        with contextlib.suppress(FileNotFoundError):
            (data / name).unlink()
    shutil.rmtree(data / "index", ignore_errors=True)
    os.replace(staged, live)
    fd = os.open(data, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
