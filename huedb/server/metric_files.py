"""The workers' metric files, with their disk blocks allocated before they are written.

In multi-process mode prometheus_client keeps each worker's values in files it maps into
memory (`prometheus_client.mmap_dict.MmapedDict`) and sizes with `truncate`: a sparse
file, whose pages get their blocks only when first written through the mapping. On a
full file system such a write cannot fail with an error: the kernel kills the process
with SIGBUS. A `huedb run` worker died so when its temporary directory filled up, at
the first request of a new route and status. `AllocatedMmapedDict` allocates every block
of a size (`posix_fallocate`) before the library maps it, so a full disk becomes an
`OSError` from the metric update, which `huedb.server.metrics` logs and skips.

A file that cannot be given its first blocks (the disk is already full when a worker
opens it, at import for the metrics without labels) is kept in memory instead (a
`memfd`): the worker starts and counts, but those values are its own, missing from the
merged scrape, and a warning says so.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import mmap_dict, values

logger = logging.getLogger(__name__)

# The size prometheus_client gives a new file (64 KiB in 0.2x), doubled as it fills.
INITIAL_BYTES = getattr(mmap_dict, "_INITIAL_MMAP_SIZE", 1 << 16)
# An entry is a 4-byte length, the key padded to 8-byte alignment and two doubles.
ENTRY_OVERHEAD = 4 + 8 + 16


class AllocatedMmapedDict(mmap_dict.MmapedDict):
    """prometheus_client's file of one worker's values, never sparse: its blocks are
    allocated when it is opened and before it grows (OSError when the disk is full)."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        self._memory_fd: int | None = None
        if not read_mode:
            try:
                allocate(filename, INITIAL_BYTES)
            except OSError as exc:
                logger.warning(
                    "metric file %s cannot be created (%s): this worker keeps those metrics "
                    "in memory, missing from /metrics, until it restarts",
                    filename,
                    exc,
                )
                self._memory_fd = os.memfd_create(os.path.basename(filename))
                filename = f"/proc/self/fd/{self._memory_fd}"
                allocate(filename, INITIAL_BYTES)
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        capacity = self._capacity
        while self._used + len(key.encode()) + ENTRY_OVERHEAD > capacity:
            capacity *= 2
        if capacity != self._capacity:
            allocate(self._fname, capacity)  # not through `_f`: glibc's fallback refuses O_APPEND
        super()._init_value(key)

    def close(self) -> None:
        super().close()
        if self._memory_fd is not None:
            os.close(self._memory_fd)
            self._memory_fd = None


def allocate(filename: str, size: int) -> None:
    """Give the file (created if missing) blocks for its first `size` bytes or all of it,
    whichever is longer; OSError (ENOSPC) when the file system cannot, and then a file
    this call created is removed (an empty one would break every scrape's merge)."""
    try:
        fd, created = os.open(filename, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        fd, created = os.open(filename, os.O_RDWR), False
    try:
        os.posix_fallocate(fd, 0, max(size, os.fstat(fd).st_size))
    except OSError:
        if created:
            os.unlink(filename)
        raise
    finally:
        os.close(fd)


def install() -> None:
    """Have prometheus_client's multi-process values use `AllocatedMmapedDict` for the
    files it opens from now on: called before a module creates its metrics (idempotent)."""
    values.MmapedDict = AllocatedMmapedDict  # type: ignore[misc]
