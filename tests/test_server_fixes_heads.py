"""A request head (request line and headers) is bounded in size: `max_header_bytes`.

httptools joins a header value that arrives in pieces with `bytes +=` on the event loop, so
one anonymous client sending a header of megabytes moved every other client's heartbeat
from 3 ms to seconds. Past the limit (64 KiB, or `max_header_bytes` in --config) the server
answers `431` (`414` for a request line that long) with Chroma's JSON error body and closes
the connection; bodies do not count, and the server goes on serving. Without httptools,
h11 gets the same limit.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import httpx

from tests.cli import run_cli
from tests.http_checks import ADMIN, DB, TOKENS_ENV
from tests.servers import RunningServer, huedb_server

DEFAULT_LIMIT = 64 * 1024
HEARTBEAT = b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: "


def head_of(size: int, complete: bool) -> bytes:
    """A heartbeat request head of `size` bytes (with its final CRLFs when `complete`)."""
    end = b"\r\n\r\n" if complete else b""
    return HEARTBEAT + b"A" * (size - len(HEARTBEAT) - len(end)) + end


def exchange(server: RunningServer, data: bytes) -> bytes:
    """Send `data` on a new connection and read until the server closes it (or 10 s pass)."""
    out = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            out += b"<still open>"
    return out


def assert_refused(answer: bytes, limit: int) -> None:
    """A 431 with Chroma's error body, then the connection closed."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:300]
    assert b"connection: close" in head.lower()
    error = json.loads(body)
    assert error["error"] == "ChromaError"
    assert f"the limit is {limit} bytes (max_header_bytes)" in error["message"]


def test_a_head_over_the_limit_gets_431_and_is_closed(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        # Exactly one byte over, never completed: refused at once, not after the timeout.
        assert_refused(exchange(server, head_of(DEFAULT_LIMIT + 1, complete=False)), DEFAULT_LIMIT)
        # A head of megabytes, sent in pieces: refused too (the client may see a reset).
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            try:
                sock.sendall(HEARTBEAT)
                for _ in range(8):
                    sock.sendall(b"A" * (1 << 20))
                answer = sock.recv(65536)
            except OSError:
                answer = b""
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        # A request line alone over the limit (a URL that long) gets 414.
        long_url = b"GET /" + b"x" * DEFAULT_LIMIT + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
        answer = exchange(server, long_url[: DEFAULT_LIMIT + 1])
        assert answer.startswith(b"HTTP/1.1 414 "), answer[:300]
        assert "Request line too long" in json.loads(answer.partition(b"\r\n\r\n")[2])["message"]
        # A head just under the limit is served, and the server answers as before.
        answer = exchange(server, head_of(DEFAULT_LIMIT - 100, complete=True))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        assert httpx.get(f"{server.url}/api/v2/heartbeat", timeout=10).status_code == 200


def test_bodies_do_not_count_toward_the_head_limit(tmp_path: Path) -> None:
    """A 1.2 MiB body and a request after it on the same connection are served."""
    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            made = client.post(f"{DB}/collections", json={"name": "big-bodies"})
            assert made.status_code == 200, made.text
            ids = [f"id-{n}" for n in range(1000)]
            records = {"ids": ids, "embeddings": [[0.123456789] * 100] * 1000}
            assert len(json.dumps(records)) > 1 << 20
            added = client.post(f"{DB}/collections/{made.json()['id']}/add", json=records)
            assert added.status_code == 201, added.text
            assert client.get("/api/v2/heartbeat").status_code == 200
            counted = client.get(f"{DB}/collections/{made.json()['id']}/count")
            assert counted.json() == 1000


def _chunked_tenant_post(token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        "POST /api/v2/tenants HTTP/1.1\r\nHost: localhost\r\n"
        f"{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


def _closed_while_sending(server: RunningServer, start: bytes, endless: bytes) -> bool:
    """Send `start`, then `endless` up to 16 MiB (more than the sockets' buffers hold):
    whether the server closed the connection before taking it all."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(start)
            for _ in range(16 * 16):
                sock.sendall(endless)
        except OSError:
            return True
    return False


def test_chunk_framing_and_trailers_are_bounded_like_a_head(tmp_path: Path) -> None:
    """A chunked body's trailer (or a chunk-size line) of megabytes, sent after the 401 to
    a request without a token, was parsed unbounded: 96 MiB taken in 14 s, the worker at
    242 MiB and another client's heartbeat at 15 s. The connection is now closed after
    `max_header_bytes` of such bytes; a chunked body of many small chunks is still served."""
    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        piece = b"a" * 65536
        started = time.monotonic()
        trailer = _chunked_tenant_post(None) + b"2\r\n{}\r\n0\r\nX-Trailer: "
        assert _closed_while_sending(server, trailer, piece)
        extension = _chunked_tenant_post(None) + b"2;x="
        assert _closed_while_sending(server, extension, piece)
        assert time.monotonic() - started < 10
        beat = httpx.get(f"{server.url}/api/v2/heartbeat", timeout=10)
        assert beat.status_code == 200

        body = json.dumps({"name": "chunked-tenant"}).encode()
        chunks = b"".join(b"1\r\n" + bytes([c]) + b"\r\n" for c in body)
        request = _chunked_tenant_post(ADMIN) + chunks + b"0\r\nX-Small: 1\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        listed = httpx.get(
            f"{server.url}/api/v2/tenants/chunked-tenant",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        )
        assert listed.status_code == 200, listed.text


def test_the_limit_is_a_setting(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text("max_header_bytes = 2048\n")
    with huedb_server(tmp_path / "data", "--config", str(config)) as server:
        assert_refused(exchange(server, head_of(3000, complete=True)), 2048)
        answer = exchange(server, head_of(1500, complete=True))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    config.write_text("max_header_bytes = 100\n")
    res = run_cli("run", "--path", str(tmp_path / "data"), "--config", str(config), timeout=60)
    assert res.returncode == 2, res.stderr
    assert "max_header_bytes must be at least 1024" in res.stderr


def test_h11_takes_the_same_limit(tmp_path: Path) -> None:
    """Without httptools uvicorn parses with h11, whose own limit on a head still incomplete
    is set to the setting (uvicorn answers 400 past it; h11 is not quadratic)."""
    hidden = tmp_path / "hide-httptools"
    (hidden / "httptools").mkdir(parents=True)
    (hidden / "httptools" / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    path = os.pathsep.join(p for p in (str(hidden), os.environ.get("PYTHONPATH")) if p)
    config = tmp_path / "server.toml"
    config.write_text("max_header_bytes = 4096\n")
    with huedb_server(
        tmp_path / "data", "--config", str(config), env={"PYTHONPATH": path}
    ) as server:
        assert "(HTTP parser: h11)" in server.log()
        answer = exchange(server, head_of(6000, complete=False))
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
        answer = exchange(server, head_of(3000, complete=True))
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
