"""Index snapshots: a cache of a collection's HNSW graph with the oplog watermark it reflects.

One file per collection, `<data>/index/<collection-uuid>.hnsw`: a magic line, a JSON header
(watermark, dimension, space, library version, payload length and XXH3-64 checksum, and the
recall calibration of the graph when one was measured), a line with the CRC-32 of the
header itself, and the payload. Format 2 (read, no longer written) had the payload's
CRC-32: 35 ms per 92 MB of payload where XXH3 takes 7, paid by every cold open.
Files are written to a temporary name, fsynced, renamed over the old one and the directory
fsynced, while holding an inter-process lock, so a reader sees either the old or the new
snapshot. Any file that fails a check is treated as absent: the caller rebuilds from SQLite.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import logging
import mmap
import os
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import xxhash
from usearch import __version__ as library_version

from huedb.engine import fileio

logger = logging.getLogger(__name__)

# Version 2 added the header checksum line (a flipped digit in the watermark went unnoticed);
# version 3 checks the payload with XXH3-64 (`xxh3` in the header) instead of CRC-32 (`crc32`).
MAGIC = b"HUEDB-SNAPSHOT-3\n"
PAYLOAD_CHECKSUM = {MAGIC: "xxh3", b"HUEDB-SNAPSHOT-2\n": "crc32"}  # the formats read
COPY_BLOCK = 2**20  # bytes per read of a streamed payload (4 MiB blocks left ~8 MiB in the heap)


@dataclass(frozen=True)
class Snapshot:
    """A snapshot read from disk."""

    watermark: int
    dim: int
    space: str
    payload: memoryview  # the serialized graph, inside `mapping`
    mapping: mmap.mmap  # the mapped file; must outlive every use of `payload`
    calibration: dict | None = None  # `recall_calibration.Calibration.to_json()`, if measured
    identity: tuple[int, int] = (0, 0)  # the file's (device, inode): a rename replaces it


GRAPH_SUFFIX = ".hnsw"
SPARSE_SUFFIX = ".sparse"  # a sparse index's snapshot (`sparse_index.sparse_snapshot_path`)
LOCK_SUFFIX = ".lock"
BUILD_LEASE_SUFFIX = ".build"  # held while a process builds the collection's graph
WANTED_SUFFIX = ".wanted"  # a process awaiting that build searched the collection


def snapshot_path(directory: Path, collection_uuid: str) -> Path:
    """Where a collection's snapshot lives."""
    return directory / f"{collection_uuid}{GRAPH_SUFFIX}"


def owner_name(store_id: str, collection_uuid: str) -> str:
    """The owner a snapshot's header names: the store and the collection."""
    return f"{store_id}/{collection_uuid}"


@contextlib.contextmanager
def exclusive_lock(directory: Path, collection_uuid: str) -> Iterator[bool]:
    """Try to hold the collection's inter-process snapshot lock; yields False if another has it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"{collection_uuid}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class BuildLease:
    """A collection's graph-build lease: an exclusive `flock` on `<uuid>.build` in the
    snapshot directory, held by the one process (or engine) building the collection's
    graph or passing a bulk change to it. Another that finds it held starts neither and
    adopts the snapshot the holder writes (`IndexCache`): two server workers (or
    processes) on one data directory no longer build the same graph at once, each on the
    cores the other needs. The kernel releases it when its holder exits, however it ends;
    the holder removes the file before letting go, so none is left behind."""

    def __init__(self, path: Path, fd: int) -> None:
        self._path = path
        self._fd: int | None = fd
        _leases_held.add(fd)

    @property
    def wanted_elsewhere(self) -> bool:
        """Whether a process awaiting this job searched the collection (`mark_wanted`):
        its holder then finishes the job at close instead of stopping it."""
        return self._path.with_suffix(WANTED_SUFFIX).exists()

    def release(self) -> None:
        """Let the lease go, and the mark of a process that wanted the job (again:
        nothing)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _leases_held.discard(fd)
        try:
            self._path.with_suffix(WANTED_SUFFIX).unlink(missing_ok=True)
            self._path.unlink(missing_ok=True)  # before the lock goes: see `take_build_lease`
        finally:
            os.close(fd)


_leases_held: set[int] = set()


def _close_inherited_leases() -> None:
    """In a forked child: the parent's leases are the parent's (a copy of the descriptor
    would hold the lock until the child exits)."""
    for fd in list(_leases_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _leases_held.clear()


os.register_at_fork(after_in_child=_close_inherited_leases)


def take_build_lease(directory: Path, collection_uuid: str) -> BuildLease | None:
    """The collection's build lease, or None while another process (or another engine of
    this one) holds it. A file its holder removed while this one opened it is opened
    again: a lock on a file no longer at the path would exclude no one."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{collection_uuid}{BUILD_LEASE_SUFFIX}"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.fstat(fd)
            now = os.stat(path)
        except (BlockingIOError, FileNotFoundError) as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                return None
            continue  # removed by the holder that just let go: open it again
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            return BuildLease(path, fd)
        os.close(fd)


def mark_wanted(directory: Path, collection_uuid: str) -> None:
    """Note that a process awaiting another's build or pass of the collection searched it
    (`BuildLease.wanted_elsewhere`; a file, removed when the lease goes). A mark left by a
    process that died costs one close the wait for its job."""
    path = directory / f"{collection_uuid}{WANTED_SUFFIX}"
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """What tells the file at `path` from the next one renamed there (None: no file)."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def _checked_header(header_line: bytes, checksum_line: bytes) -> dict:
    """The header, if its checksum line matches it (ValueError otherwise)."""
    if checksum_line.rstrip(b"\n") != b"%08x" % zlib.crc32(header_line):
        raise ValueError("header checksum mismatch")
    header = json.loads(header_line)
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return header


def read_header(path: Path) -> dict | None:
    """The checked header of a snapshot file, or None when missing, unreadable or damaged."""
    try:
        with open(path, "rb") as f:
            if f.readline() not in PAYLOAD_CHECKSUM:
                return None
            header_line = f.readline().rstrip(b"\n")
            return _checked_header(header_line, f.readline())
    except (OSError, ValueError):
        return None


def read_snapshot(
    path: Path, owner: str, check_payload: bool = True, warn: bool = True
) -> Snapshot | None:
    """Map and check a snapshot; None (with a warning) when missing, torn or foreign.

    The file is memory-mapped, not read: the graph is served from the page cache (shared by
    every process on the data directory) until a change needs a private copy. `owner` names
    the store and collection the snapshot must belong to: a file copied from another
    collection or another data directory is refused, never used. Without `check_payload`
    the payload's checksum is not computed (the header and length still are): for a
    snapshot the caller has just written or found at the watermark it wrote for, whole since
    it was renamed into place (the check read 1 GB again at 1M before a build's graph served).
    `warn=False` for a caller that only asks whether the file is usable.
    """
    try:
        with open(path, "rb") as f:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            stat = os.fstat(f.fileno())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
        if warn:
            logger.warning("cannot read index snapshot %s (%s); rebuilding from SQLite", path, exc)
        return None
    problem = None
    try:
        magic_end = mapping.find(b"\n", 0, len(MAGIC)) + 1  # both formats' magics are as long
        kind = PAYLOAD_CHECKSUM.get(mapping[:magic_end])
        if kind is None:
            raise ValueError("bad magic or an older snapshot format")
        header_end = mapping.find(b"\n", magic_end)
        checksum_end = mapping.find(b"\n", header_end + 1) if header_end >= 0 else -1
        if checksum_end < 0:
            raise ValueError("no header")
        header = _checked_header(
            mapping[magic_end:header_end], mapping[header_end + 1 : checksum_end + 1]
        )
        payload = memoryview(mapping)[checksum_end + 1 :]
        if len(payload) != header["length"]:
            raise ValueError("truncated payload")
        if check_payload and not _payload_matches(payload, kind, header[kind]):
            raise ValueError("checksum mismatch")
        if header.get("library") != library_version:
            raise ValueError(f"written by usearch {header.get('library')}")
        if header.get("owner") != owner:
            raise ValueError(f"it belongs to {header.get('owner')}, not {owner}")
        return Snapshot(
            int(header["watermark"]),
            int(header["dim"]),
            header["space"],
            payload,
            mapping,
            header.get("calibration"),
            (stat.st_dev, stat.st_ino),
        )
    except (ValueError, KeyError, TypeError) as exc:
        problem = str(exc)
    if warn:
        logger.warning("index snapshot %s is unusable (%s); rebuilding from SQLite", path, problem)
    return None


def covers(path: Path, owner: str, watermark: int, dim: int, space: str) -> bool:
    """Whether the file at `path` is a usable snapshot (checked in full, as `read_snapshot`
    does) at `watermark` or later, of `dim` and `space`: a writer skips its own
    snapshot only then, so a damaged, foreign or outdated file at the same watermark (one
    a reader has just refused) is replaced instead of being kept, or served, again."""
    header = read_header(path)
    if header is None or not isinstance(header.get("watermark"), int):
        return False
    if header["watermark"] < watermark:
        return False
    snap = read_snapshot(path, owner, warn=False)
    if snap is None:
        return False
    try:
        return (snap.dim, snap.space) == (dim, space)
    finally:
        snap.payload.release()
        snap.mapping.close()


def _payload_matches(payload: memoryview, kind: str, recorded: int) -> bool:
    """Whether the payload has the checksum its header records: XXH3-64 (`xxh3`), or a
    format-2 file's CRC-32 (`crc32`)."""
    if kind == "xxh3":
        return xxhash.xxh3_64_intdigest(payload) == recorded
    return zlib.crc32(payload) == recorded


def _header_lines(
    owner: str,
    watermark: int,
    dim: int,
    space: str,
    length: int,
    checksum: int,
    calibration: dict | None,
) -> tuple[bytes, bytes]:
    """The header line and its checksum line. The header's JSON is padded with spaces to
    its length with the widest payload checksum, so that a header written before the
    payload's checksum is known (`write_snapshot_from_file`) can be written again in
    place."""
    fields = {
        "owner": owner,
        "watermark": watermark,
        "dim": dim,
        "space": space,
        "library": library_version,
        "length": length,
        "xxh3": checksum,
    }
    if calibration is not None:
        fields["calibration"] = calibration
    widest = len(json.dumps({**fields, "xxh3": 2**64 - 1}))
    header = json.dumps(fields).encode().ljust(widest)
    return header + b"\n", b"%08x\n" % zlib.crc32(header)


def write_snapshot(
    path: Path,
    owner: str,
    watermark: int,
    dim: int,
    space: str,
    payload: bytes | bytearray,
    calibration: dict | None = None,
) -> None:
    """Atomically replace the snapshot at `path` (caller holds the lock)."""
    header, checksum = _header_lines(
        owner, watermark, dim, space, len(payload), xxhash.xxh3_64_intdigest(payload), calibration
    )
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    remove_stale_temporaries(path.parent, path.stem)
    fileio.write_atomically(path, (MAGIC, header, checksum, memoryview(payload)), tmp)


def write_snapshot_streamed(
    path: Path,
    owner: str,
    watermark: int,
    dim: int,
    space: str,
    save: Callable[[Path], None],
    calibration: dict | None = None,
) -> int:
    """`write_snapshot` for a payload that `save` writes to a file (a graph streamed out
    by usearch), so that it is never held in memory whole: it goes to a staging file next
    to `path` and is then copied behind the header (`write_snapshot_from_file`). Returns
    the payload's length. (A graph serialized in memory was a transient copy of it: +87 MiB
    at 100k x 384.)"""
    remove_stale_temporaries(path.parent, path.stem)
    staging = staging_path(path)
    try:
        save(staging)
        return write_snapshot_from_file(path, owner, watermark, dim, space, staging, calibration)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def staging_path(path: Path) -> Path:
    """Where this process stages the payload of the snapshot at `path` (a temporary that
    `remove_stale_temporaries` removes once this process is gone)."""
    return path.parent / f"{path.stem}.tmp{os.getpid()}.payload"


def write_snapshot_from_file(
    path: Path,
    owner: str,
    watermark: int,
    dim: int,
    space: str,
    payload_file: Path,
    calibration: dict | None = None,
) -> int:
    """`write_snapshot` for a payload already in a file (a graph usearch saved, such as a
    graph process's output), read once: it is copied behind a header whose checksum is a
    placeholder (`_header_lines` pads it to one length), its XXH3-64 computed on the way,
    and the header written again over the first one before the file is made durable and renamed
    (caller holds the lock). Only file I/O: a thread doing this leaves the GIL to the
    others. Returns the payload's length."""
    with open(payload_file, "rb") as f:
        length = os.fstat(f.fileno()).st_size

        def header(checksum: int) -> tuple[bytes, bytes]:
            return _header_lines(owner, watermark, dim, space, length, checksum, calibration)

        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with fileio.atomic_writer(path, tmp) as out:
            out.write(MAGIC + b"".join(header(0)))
            copied, hasher = 0, xxhash.xxh3_64()
            while block := f.read(COPY_BLOCK):
                copied += len(block)
                hasher.update(block)
                out.write(block)
            if copied != length:
                raise OSError(f"{payload_file} changed while it was copied")
            out.rewind()
            out.write(MAGIC + b"".join(header(hasher.intdigest())))
    return length


def discard(path: Path, directory: Path, collection_uuid: str, refused: Snapshot) -> None:
    """Remove the snapshot at `path` that a reader refused although its checksums matched
    (its payload is not an index it can load), so the next snapshot written replaces it;
    unless another process has renamed a new one into place since, or holds the lock. A
    snapshot is a cache: failing to remove it is logged, never raised."""
    try:
        with exclusive_lock(directory, collection_uuid) as locked:
            if not locked:
                return
            stat = os.stat(path)
            if (stat.st_dev, stat.st_ino) == refused.identity:
                path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.warning("could not remove the refused snapshot %s: %s", path, exc)


def remove_stale_temporaries(directory: Path, collection_uuid: str) -> list[str]:
    """Delete temporary files left by writers killed mid-snapshot (caller holds the lock);
    their names."""
    removed = []
    for tmp in directory.glob(f"{collection_uuid}.tmp*"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp.name)
    return removed


def remove_snapshot(directory: Path, collection_uuid: str) -> None:
    """Delete a collection's graph snapshot and lock files, if any (before a rebuild that
    replaces a suspect one: `huedb verify --repair`)."""
    for suffix in (GRAPH_SUFFIX, LOCK_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            (directory / f"{collection_uuid}{suffix}").unlink()


def remove_graph_snapshot(directory: Path, collection_uuid: str) -> None:
    """Delete a collection's graph snapshot, left stale by a rebuild that made no graph,
    unless another process holds the lock (it is writing a newer one)."""
    path = snapshot_path(directory, collection_uuid)
    if not path.exists():
        return
    with exclusive_lock(directory, collection_uuid) as locked:
        if locked:
            path.unlink(missing_ok=True)


def remove_collection_files(directory: Path, collection_uuid: str) -> None:
    """Delete the files of a collection just deleted from the store (its graph and sparse
    snapshots, temporaries and lock file) once no writer holds its lock. Writers check
    under that lock that the collection still exists (`unlink_collection_files`), so no
    snapshot of it lands after this."""
    try:
        fd = os.open(directory / f"{collection_uuid}{LOCK_SUFFIX}", os.O_RDWR)
    except FileNotFoundError:  # a writer creating it now finds the collection gone
        unlink_collection_files(directory, collection_uuid)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for a snapshot being written
        unlink_collection_files(directory, collection_uuid)
    finally:
        os.close(fd)


def unlink_collection_files(directory: Path, collection_uuid: str) -> None:
    """Delete every file of a collection the store no longer has (the caller holds its
    lock, or no writer can take it)."""
    for suffix in (GRAPH_SUFFIX, SPARSE_SUFFIX):
        (directory / f"{collection_uuid}{suffix}").unlink(missing_ok=True)
    remove_stale_temporaries(directory, collection_uuid)
    (directory / f"{collection_uuid}{BUILD_LEASE_SUFFIX}").unlink(missing_ok=True)
    (directory / f"{collection_uuid}{WANTED_SUFFIX}").unlink(missing_ok=True)
    (directory / f"{collection_uuid}{LOCK_SUFFIX}").unlink(missing_ok=True)


def collection_uuids_in(directory: Path) -> set[str]:
    """The collection uuids that name files in a snapshot directory."""
    if not directory.is_dir():
        return set()
    return {u for f in directory.iterdir() if _is_uuid(u := f.name.split(".", 1)[0])}


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def orphan_files(directory: Path, collection_uuid: str, owner: str) -> tuple[list[str], list[str]]:
    """The files of a collection the store no longer has, as `remove_orphan_files` sorts
    them: those it removes, and the snapshots of another store sharing the directory (their
    header names another owner), which it keeps with their lock file."""
    kept = [
        path.name
        for suffix in (GRAPH_SUFFIX, SPARSE_SUFFIX)
        if (path := directory / f"{collection_uuid}{suffix}").exists() and _foreign(path, owner)
    ]
    lock = f"{collection_uuid}{LOCK_SUFFIX}"
    names = sorted(f.name for f in directory.glob(f"{glob.escape(collection_uuid)}.*"))
    return [n for n in names if n not in kept and not (kept and n == lock)], kept


def _foreign(path: Path, owner: str) -> bool:
    """Whether a snapshot's header names another owner (an unreadable one is no one's)."""
    header = read_header(path)
    return header is not None and header.get("owner") != owner


def remove_orphan_files(directory: Path, collection_uuid: str, owner: str) -> list[str]:
    """Remove the files of a collection the store no longer has: the snapshots `owner`
    wrote and those whose header cannot be read (another store's sharing the directory are
    kept), temporaries, and the lock file unless a kept snapshot needs it.
    Nothing is removed while a writer holds the lock. Returns the names removed."""
    lock = directory / f"{collection_uuid}{LOCK_SUFFIX}"
    had_lock = lock.exists()
    removed: list[str] = []
    with exclusive_lock(directory, collection_uuid) as locked:
        if not locked:
            return removed
        kept = False
        for suffix in (GRAPH_SUFFIX, SPARSE_SUFFIX):
            path = directory / f"{collection_uuid}{suffix}"
            if not path.exists():
                continue
            if _foreign(path, owner):
                kept = True
                continue
            path.unlink(missing_ok=True)
            removed.append(path.name)
        removed += remove_stale_temporaries(directory, collection_uuid)
        for suffix in (BUILD_LEASE_SUFFIX, WANTED_SUFFIX):  # left by processes that died
            left = directory / f"{collection_uuid}{suffix}"
            if left.exists():
                left.unlink(missing_ok=True)
                removed.append(left.name)
        if not kept:
            lock.unlink(missing_ok=True)
            if had_lock:
                removed.append(lock.name)
    return removed
