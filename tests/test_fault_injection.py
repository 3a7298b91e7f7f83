"""Injected I/O faults (EIO, ENOSPC) in huedb's own writes, and a real full disk."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine import fileio
from huedb.errors import BackupError, ChromaError, StorageFullError
from huedb.ops.backup import backup
from huedb.ops.verify import verify
from tests.servers import huedb_server
from tests.small_disk import small_tmpfs

GRAPH = huedb.Settings(huedb_exact_max_floats=8 * 100, huedb_snapshot_every=50)


class FaultyStorage(fileio.FileStorage):
    """Fails the Nth call of one operation with the given errno."""

    def __init__(self, operation: str, nth: int, code: int) -> None:
        self.operation, self.nth, self.code, self.calls = operation, nth, code, 0

    def _maybe_fail(self, operation: str) -> None:
        if operation == self.operation:
            self.calls += 1
            if self.calls == self.nth:
                raise OSError(self.code, os.strerror(self.code))

    def write(self, fd: int, data: bytes | memoryview) -> None:
        self._maybe_fail("write")
        super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync")
        super().fsync(fd)

    def replace(self, source: Path, target: Path) -> None:
        self._maybe_fail("replace")
        super().replace(source, target)


@contextlib.contextmanager
def faulty(monkeypatch: pytest.MonkeyPatch, operation: str, nth: int, code: int) -> Iterator[None]:
    monkeypatch.setattr(fileio, "storage", FaultyStorage(operation, nth, code))
    try:
        yield
    finally:
        monkeypatch.setattr(fileio, "storage", fileio.FileStorage())


FAULTS = [
    (op, n, code)
    for op in ("write", "fsync", "replace")
    for n in (1, 2, 3)
    for code in (errno.EIO, errno.ENOSPC)
]


@pytest.mark.parametrize(("operation", "nth", "code"), FAULTS)
def test_snapshot_write_faults_never_fail_queries_or_tear_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    operation: str,
    nth: int,
    code: int,
) -> None:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data, settings=GRAPH)
    col = client.create_collection("graph")
    vectors = np.random.default_rng(nth).standard_normal((600, 8)).astype(np.float32)
    col.add(ids=[f"r{i}" for i in range(600)], embeddings=vectors)
    with faulty(monkeypatch, operation, nth, code), caplog.at_level(logging.WARNING):
        for _ in range(3):
            got = col.query(query_embeddings=vectors[:30], n_results=1)
            assert got["ids"] == [[f"r{i}"] for i in range(30)]
        col.add(ids=[f"s{i}" for i in range(200)], embeddings=vectors[:200] + 1)
        client.close()
        clear_system_cache()
    index_dir = data / "index"
    assert not list(index_dir.glob("*.tmp*")), "a failed snapshot left a temporary file"
    reopened = huedb.PersistentClient(path=data, settings=GRAPH)
    col = reopened.get_collection("graph")
    assert col.count() == 800
    got = col.query(query_embeddings=vectors[:30], n_results=1)
    assert got["ids"] == [[f"r{i}"] for i in range(30)]
    reopened.close()
    clear_system_cache()
    assert verify(data).ok


BACKUP_FAULTS = [
    (op, n, code)
    for op, calls in (("write", 3), ("fsync", 2), ("replace", 1))
    for n in range(1, calls + 1)
    for code in (errno.EIO, errno.ENOSPC)
]


@pytest.mark.parametrize(("operation", "nth", "code"), BACKUP_FAULTS)
def test_backup_faults_raise_a_clear_error_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str, nth: int, code: int
) -> None:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    client.create_collection("kept").add(
        ids=[f"k{i}" for i in range(300)], embeddings=np.ones((300, 16))
    )
    client.close()
    clear_system_cache()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with faulty(monkeypatch, operation, nth, code), pytest.raises(BackupError, match="failed"):
        backup(data, out_dir / "b.tar", show_progress=False)
    assert list(out_dir.iterdir()) == [], "a failed backup left files behind"
    backup(data, out_dir / "b.tar", show_progress=False)
    assert verify(data).ok


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MB tmpfs: a real full disk (needs root; skipped with the reason otherwise)."""
    with small_tmpfs(tmp_path, 12) as mount:
        yield mount


def _fill(col: huedb.Collection, rng: np.random.Generator) -> list[str]:
    acked: list[str] = []
    for batch in range(10_000):
        ids = [f"b{batch}-{i}" for i in range(200)]
        try:
            col.add(ids=ids, embeddings=rng.standard_normal((200, 64)).astype(np.float32))
        except StorageFullError:
            return acked
        except ChromaError as exc:  # over HTTP the client sees the wire name, ChromaError
            assert "Storage is full" in str(exc)
            return acked
        acked += ids
    raise AssertionError("the disk never filled")


def test_full_disk_refuses_writes_keeps_reads_and_recovers(tiny_disk: Path) -> None:
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (3 << 20))
    client = huedb.PersistentClient(path=tiny_disk / "data")
    col = client.create_collection("full")
    acked = _fill(col, np.random.default_rng(0))
    assert col.count() == len(acked) > 0
    assert col.get(ids=acked[:5], include=[])["ids"] == acked[:5]
    assert len(col.query(query_embeddings=np.ones((1, 64)), n_results=3)["ids"][0]) == 3
    filler.unlink()
    col.add(ids=["after"], embeddings=np.ones((1, 64)))
    assert col.count() == len(acked) + 1
    client.close()


def test_server_answers_507_on_a_full_disk_and_keeps_serving_reads(tiny_disk: Path) -> None:
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (3 << 20))
    with huedb_server(tiny_disk / "data") as server:
        client = huedb.HttpClient(host="127.0.0.1", port=server.port)
        col = client.create_collection("full")
        acked = _fill(col, np.random.default_rng(1))
        base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database"
        # A write may still fit where a checkpoint has since freed WAL space; the disk is
        # full again within a few batches, and then the answer is 507.
        for attempt in range(50):
            ids = [f"x{attempt}-{i}" for i in range(200)]
            r = httpx.post(
                f"{base}/collections/{col.id}/add",
                json={"ids": ids, "embeddings": [[0.5] * 64] * 200},
            )
            if r.status_code != 201:
                break
            acked += ids
        assert r.status_code == 507 and r.json()["error"] == "ChromaError"
        assert col.count() == len(acked)
        assert httpx.get(f"{server.url}/api/v2/heartbeat").status_code == 200
        filler.unlink()
        col.add(ids=["after"], embeddings=np.ones((1, 64)))
        assert col.count() == len(acked) + 1
        client.close()
