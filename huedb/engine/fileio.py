"""The one seam for huedb's own file writes (snapshots, backups): write, fsync, rename.

SQLite does its own I/O; everything huedb writes itself goes through `storage`, an object
that tests replace with a fault-injecting one (fail the Nth write or fsync with EIO or
ENOSPC) to prove that a failed write is reported clearly and never leaves a torn file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


class FileStorage:
    """Plain POSIX file operations."""

    def write(self, fd: int, data: bytes | memoryview) -> None:
        """Write all of `data` to an open file descriptor."""
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def replace(self, source: Path, target: Path) -> None:
        os.replace(source, target)


storage = FileStorage()


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        storage.fsync(fd)
    finally:
        os.close(fd)


class _SeamWriter:
    """A minimal binary file object whose writes go through the seam."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0

    def write(self, data: bytes | memoryview) -> int:
        storage.write(self.fd, data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def rewind(self) -> None:
        """Write from the start of the file again (over what is there)."""
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.position = 0

    def flush(self) -> None:
        """Writes are unbuffered; durability comes from the fsync at the end."""


@contextlib.contextmanager
def atomic_writer(target: Path, tmp: Path) -> Iterator[_SeamWriter]:
    """A file object for `tmp`; on success fsync, rename over `target`, fsync the directory.

    On any error the temporary file is removed and `target` is left as it was.
    """
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            yield _SeamWriter(fd)
            storage.fsync(fd)
        finally:
            os.close(fd)
        storage.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    try:
        fsync_directory(target.parent)
    except OSError:
        # The rename may not survive a crash: report failure and leave no file behind.
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        raise


def write_atomically(target: Path, chunks: Iterable[bytes | memoryview], tmp: Path) -> None:
    """Write `chunks` to `target` atomically and durably (see `atomic_writer`)."""
    with atomic_writer(target, tmp) as f:
        for chunk in chunks:
            f.write(chunk)
