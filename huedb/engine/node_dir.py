"""The shared lock of a node's data directory, which holds its derived files.

Every engine on a data directory holds a shared `flock` on its `huedb.lock` while it is
open: the index snapshots there are this node's, and `huedb restore` into the directory
takes the lock exclusively, so it never replaces files an open engine is using. With the
SQLite store, the store's own lock on the same file also guards the database file; with the
PostgreSQL store the directory holds only derived files, and this lock is the only one.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from pathlib import Path

from huedb.errors import StorageIOError

LOCK_FILENAME = "huedb.lock"  # the file the SQLite store locks too
NODE_ID_FILENAME = "node.id"  # this directory's identity among the nodes of one store
WAIT_S = 120.0  # how long an opener waits while a restore holds the directory


def hold_directory(path: Path) -> int:
    """Take the shared lock of the directory `path` (created if missing); returns its fd.

    Waits up to WAIT_S seconds while a restore holds it exclusively.
    """
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise StorageIOError(
                    f"{path} stayed locked by a restore for {WAIT_S:g} s"
                ) from None
            time.sleep(0.05)


def release_directory(fd: int | None) -> None:
    """Give back a lock taken by `hold_directory` (None: nothing held)."""
    if fd is not None:
        os.close(fd)


def node_id(path: Path) -> str:
    """The identity of the node whose derived files live in `path`: a random id written
    on first use, kept for the directory's life (a PostgreSQL store keeps the oplog its
    snapshots still need, per node: postgres_store/oplog.py)."""
    file = path / NODE_ID_FILENAME
    try:
        return file.read_text().strip()
    except FileNotFoundError:
        pass
    fresh = path / f"{NODE_ID_FILENAME}.{os.getpid()}.tmp"
    fresh.write_text(str(uuid.uuid4()))
    try:
        os.link(fresh, file)  # the first of several openers wins; the others read its id
    except FileExistsError:
        pass
    finally:
        fresh.unlink()
    return file.read_text().strip()
