"""Auth before the body, a deadline on the whole body, and what bounds slow headers.

A request without a valid token (or a read-only token on a write) is answered 401/403 as
soon as its headers arrive: its body is never waited for nor buffered, so big bodies from
anonymous clients do not grow the server. `--request-timeout` bounds the whole body from
its first byte (a client dripping one byte at a time gets 408). uvicorn has no timeout on
the request line and headers: the last test shows the limit `docs/deploy.md` documents.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http_checks import ADMIN, DB, READER, TOKENS_ENV
from tests.proc_stats import status_kb
from tests.servers import RunningServer, huedb_server

COLLECTION_ID = "00000000-0000-4000-8000-000000000000"
ADD = f"{DB}/collections/{COLLECTION_ID}/add"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One worker with tokens and a 60 s request timeout (the default)."""
    with huedb_server(tmp_path_factory.mktemp("auth") / "data", env=TOKENS_ENV) as server:
        yield server


def head(path: str, length: int, *extra: str) -> bytes:
    """Request line and headers of a POST with a JSON body of `length` bytes."""
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    lines += [f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(sock: socket.socket) -> int:
    """The status code of the response read from `sock` (its first line)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ((), 401),
        (("Authorization: Bearer wrong-token-0d4e5f",), 401),
        ((f"X-Chroma-Token: {READER}",), 403),
        (("Expect: 100-continue",), 401),
    ],
    ids=["no token", "wrong token", "read-only write", "expect 100-continue"],
)
def test_refused_at_once_without_the_body(
    token_server: RunningServer, extra: tuple[str, ...], status: int
) -> None:
    """Headers announcing 1 MiB, no body sent: the refusal comes within seconds."""
    with socket.create_connection(("127.0.0.1", token_server.port), timeout=5) as sock:
        sock.sendall(head(ADD, 1 << 20, *extra))
        assert status_of(sock) == status


def test_anonymous_big_bodies_are_not_buffered(token_server: RunningServer) -> None:
    """16 concurrent 32 MiB bodies without a token: 401 each, server RSS grows < 64 MiB."""
    size, clients = 32 << 20, 16
    body = b"[" + b"0," * (size // 2 - 1) + b"0]"
    pid = token_server.process.pid
    baseline = status_kb(pid, "VmRSS")
    peak = baseline
    statuses: list[int] = []
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, status_kb(pid, "VmRSS"))
            time.sleep(0.02)

    def client() -> None:
        with socket.create_connection(("127.0.0.1", token_server.port), timeout=60) as sock:
            sock.sendall(head(ADD, len(body)) + body)
            statuses.append(status_of(sock))

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    assert statuses == [401] * clients
    grown_mib = (peak - baseline) / 1024
    assert grown_mib < 64, f"RSS {baseline / 1024:.0f} -> {peak / 1024:.0f} MiB"


def drip(port: int, path: str, length: int, every_s: float, extra: tuple[str, ...]) -> int:
    """Send a body of `length` bytes one byte every `every_s`; the status once answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(head(path, length, *extra))
        deadline = time.monotonic() + 20
        sent = 0
        while time.monotonic() < deadline:
            if sent < length:
                sock.sendall(b" ")
                sent += 1
            try:
                sock.settimeout(every_s)
                return status_of(sock)
            except TimeoutError:
                continue
        raise AssertionError("no answer within 20 s")


def test_request_timeout_bounds_the_whole_body(tmp_path: Path) -> None:
    """`--request-timeout 2`: one byte every 0.5 s gets 408 about 2 s after the first byte."""
    env = TOKENS_ENV
    with huedb_server(tmp_path / "data", "--request-timeout", "2", env=env) as server:
        start = time.monotonic()
        status = drip(server.port, ADD, 100, 0.5, (f"Authorization: Bearer {ADMIN}",))
        elapsed = time.monotonic() - start
        assert status == 408
        assert elapsed < 5, elapsed


def test_headers_are_not_bounded_by_uvicorn(tmp_path: Path) -> None:
    """What docs/deploy.md states: neither `--request-timeout` nor uvicorn bounds the time
    to send the request line and headers, nor a connection that sends nothing at all.
    (A proxy in front must: nginx `client_header_timeout`, HAProxy `timeout http-request`.)"""
    with (
        huedb_server(tmp_path / "data", "--request-timeout", "1") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow,
    ):
        slow.sendall(b"GET /api/v2/heartbeat HTTP/1.1\r\n")
        for _ in range(4):
            time.sleep(1)
            slow.sendall(b"X-Slow: 1\r\n")
        for sock in (silent, slow):  # both still open after 4x the request timeout
            request = b"Host: x\r\n\r\n"
            if sock is silent:
                request = b"GET /api/v2/heartbeat HTTP/1.1\r\n" + request
            sock.sendall(request)
            assert status_of(sock) == 200
