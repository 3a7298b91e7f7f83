"""`huedb backup` / `export` never write over the store, and `backup --url` never replaces a
good backup by a broken transfer."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from tests.cli import check_cli, run_cli
from tests.servers import free_port, huedb_server


def _populate(data: Path, n: int = 500) -> None:
    client = huedb.PersistentClient(path=data)
    vectors = np.random.default_rng(3).standard_normal((n, 32)).astype(np.float32)
    client.create_collection("docs").add(ids=[f"i{i}" for i in range(n)], embeddings=vectors)
    client.close()
    clear_system_cache()


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@pytest.mark.parametrize("command", ["backup", "export"])
@pytest.mark.parametrize("target", ["huedb.sqlite3", "sub/out.file", "."])
def test_out_inside_the_data_directory_is_refused(
    tmp_path: Path, command: str, target: str
) -> None:
    data = tmp_path / "data"
    _populate(data)
    before = _files(data)
    out = data / target
    args = ["--path", str(data), "--out", str(out)]
    if command == "export":
        args += ["--collection", "docs"]
    r = run_cli(command, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "inside the data directory" in r.stderr and "Traceback" not in r.stderr
    assert _files(data) == before
    assert not (data / "sub").exists()
    check_cli("verify", "--path", str(data))


def test_out_inside_the_data_directory_through_a_symlink_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _populate(data)
    (tmp_path / "link").symlink_to(data)
    before = _files(data)
    r = run_cli("backup", "--path", str(data), "--out", str(tmp_path / "link" / "huedb.sqlite3"))
    assert r.returncode == 2 and "inside the data directory" in r.stderr, r.stderr
    assert _files(data) == before


@contextmanager
def _serving(body: bytes, length: int) -> Iterator[str]:
    """A server answering one request with `length` announced and `body` sent, then the
    connection closed (a worker killed mid-transfer when `body` is shorter)."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\n"
            conn.sendall(head + b"content-length: %d\r\n\r\n" % length + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        thread.join(10)
        listener.close()


def test_backup_over_url_keeps_the_previous_file_when_the_transfer_fails(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _populate(data, 3000)
    out = tmp_path / "backups" / "nightly.tar"
    out.parent.mkdir()
    with huedb_server(data) as server:
        r = check_cli("backup", "--url", server.url, "--out", str(out))
    assert "backup written" in r.stdout
    good = out.read_bytes()
    check_cli("restore", str(out), "--path", str(tmp_path / "r1"))

    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF  # inside the database: the manifest's SHA-256 catches it
    cases = {
        "broken off": (good[: len(good) // 2], len(good)),
        "damaged": (bytes(damaged), len(good)),
        "short but complete": (good[: len(good) // 2], len(good) // 2),
    }
    for case, (body, length) in cases.items():
        with _serving(body, length) as url:
            r = run_cli("backup", "--url", url, "--out", str(out))
        assert r.returncode == 2, (case, r.stdout, r.stderr)
        assert "left unchanged" in r.stderr and "Traceback" not in r.stderr, (case, r.stderr)
        assert out.read_bytes() == good, case
        assert sorted(p.name for p in out.parent.iterdir()) == ["nightly.tar"], case
    check_cli("restore", str(out), "--path", str(tmp_path / "r2"))


def test_backup_over_url_removes_the_partial_file_of_a_killed_download(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _populate(data)
    out = tmp_path / "nightly.tar"
    stale = tmp_path / ".nightly.tar.download-999999999"  # no such process
    stale.write_bytes(b"partial")
    with huedb_server(data) as server:
        check_cli("backup", "--url", server.url, "--out", str(out))
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    check_cli("restore", str(out), "--path", str(tmp_path / "restored"))
