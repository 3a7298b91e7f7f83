"""Security of `huedb run`: TLS (the real `chromadb.HttpClient` over TLS; plain HTTP and
unknown CAs refused).
"""

from __future__ import annotations

import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import huedb
from huedb.api.http import tls_verification
from tests.http_checks import (
    ADMIN,
    TOKENS_ENV,
    chroma_client,
    token_settings,
)
from tests.servers import RunningServer, huedb_server, start_server

# --------------------------------------------------------------------------- TLS


@dataclass
class TlsFiles:
    """PEM files for a server certificate issued by a throwaway CA."""

    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1 and localhost, written as PEM files."""
    import trustme

    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(root / "ca.pem", root / "cert.pem", root / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.private_key_pem.write_to_path(str(files.key))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return files


@pytest.fixture(scope="module")
def tls_server(
    tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server on HTTPS only, with token auth."""
    data = tmp_path_factory.mktemp("tls-data") / "data"
    args = ("--ssl-certfile", str(tls_files.cert), "--ssl-keyfile", str(tls_files.key))
    with huedb_server(data, *args, env=TOKENS_ENV, tls=True) as server:
        yield server


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_chromadb_client_over_tls(
    tls_server: RunningServer, tls_files: TlsFiles, host: str
) -> None:
    """The real client verifies the certificate against the CA and does add/query."""
    settings = {"chroma_server_ssl_verify": str(tls_files.ca), **token_settings(ADMIN)}
    client = chroma_client(tls_server.port, host=host, ssl=True, settings=settings)
    col = client.get_or_create_collection(f"tls_{host.replace('.', '_')}")
    col.add(
        ids=["x", "y", "z"],
        embeddings=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        metadatas=[{"n": 1}, {"n": 2}, {"n": 3}],
    )
    res = col.query(query_embeddings=[[0.0, 0.9, 0.1]], n_results=2, where={"n": {"$gte": 2}})
    assert res["ids"] == [["y", "z"]]
    assert col.count() == 3


def test_huedb_client_trusts_a_ca_file(tls_server: RunningServer, tls_files: TlsFiles) -> None:
    """huedb's own HttpClient with `chroma_server_ssl_verify` = a CA file: verified, and
    handed to httpx as an SSL context (a path is deprecated there), not a path."""
    settings = huedb.Settings(
        chroma_server_ssl_verify=str(tls_files.ca), chroma_client_auth_credentials=ADMIN
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        client = huedb.HttpClient(
            host="localhost", port=tls_server.port, ssl=True, settings=settings
        )
        col = client.get_or_create_collection("tls_huedb_client")
        col.upsert(ids=["a"], embeddings=[[0.5, 0.5, 0.0]])
        assert col.query(query_embeddings=[[0.5, 0.5, 0.0]], n_results=1)["ids"] == [["a"]]
    untrusting = huedb.Settings(chroma_client_auth_credentials=ADMIN)
    with pytest.raises(Exception, match="(?i)certificate|connect"):
        huedb.HttpClient(host="localhost", port=tls_server.port, ssl=True, settings=untrusting)


def test_clients_share_the_default_context_and_honour_ssl_cert_file(
    tls_server: RunningServer, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`verify=True` clients share one default SSL context per process (made once: loading
    the CA bundle is ~26 ms a client); SSL_CERT_FILE set later gets a context of its own
    that trusts that file, as httpx's default does, and restoring it returns to the first."""
    default = tls_verification(True)
    assert isinstance(default, ssl.SSLContext) and tls_verification(True) is default
    settings = huedb.Settings(chroma_client_auth_credentials=ADMIN)
    with pytest.raises(Exception, match="(?i)certificate|connect"):
        huedb.HttpClient(host="localhost", port=tls_server.port, ssl=True, settings=settings)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.ca))
    trusting = tls_verification(True)
    assert trusting is not default and tls_verification(True) is trusting
    client = huedb.HttpClient(host="localhost", port=tls_server.port, ssl=True, settings=settings)
    assert client.heartbeat() > 0
    monkeypatch.undo()  # SSL_CERT_FILE as it was (this machine's bundle, or unset)
    assert tls_verification(True) is default
    assert tls_verification(False) is False


def test_tls_server_refuses_plain_http_and_unknown_ca(
    tls_server: RunningServer, tls_files: TlsFiles
) -> None:
    """Plain HTTP to the TLS port gets no answer; a client not trusting the CA fails."""
    plain = f"http://127.0.0.1:{tls_server.port}/api/v2/heartbeat"
    try:
        r = httpx.get(plain, timeout=10)
    except httpx.HTTPError:
        pass
    else:
        assert r.status_code != 200, r.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{tls_server.port}/api/v2/heartbeat", timeout=10)
    with pytest.raises(ValueError, match="Could not connect"):
        chroma_client(tls_server.port, ssl=True, settings=token_settings(ADMIN))
    r = httpx.get(
        f"https://localhost:{tls_server.port}/api/v2/heartbeat",
        verify=tls_verification(str(tls_files.ca)),
    )
    assert r.status_code == 200
    assert tls_server.process.poll() is None


def test_sigterm_does_not_wait_for_idle_tls_clients(tls_files: TlsFiles, tmp_path: Path) -> None:
    """An idle keep-alive TLS connection (a client's pool) does not hold SIGTERM: closing it
    waited up to 30 s for the client's close_notify (asyncio's ssl_shutdown_timeout)."""
    args = ("--ssl-certfile", str(tls_files.cert), "--ssl-keyfile", str(tls_files.key))
    server = start_server(tmp_path / "data", *args, tls=True)
    try:
        server.wait_up(30)
        with httpx.Client(verify=tls_verification(str(tls_files.ca))) as pool:
            assert pool.get(f"https://localhost:{server.port}/api/v2/heartbeat").status_code == 200
            started = time.monotonic()
            server.process.terminate()
            server.process.wait(timeout=20)
            assert time.monotonic() - started < 5
    finally:
        server.stop()


def test_sigterm_lets_a_slow_tls_client_read_its_whole_answer(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    """A 20 MB answer handed to the connection (uvicorn then counts it complete) but not yet
    read by the client when SIGTERM comes: the client still reads all of it (dropping idle
    TLS connections at shutdown waits for their write buffer)."""
    args = ("--ssl-certfile", str(tls_files.cert), "--ssl-keyfile", str(tls_files.key))
    server = start_server(tmp_path / "data", *args, tls=True)
    try:
        server.wait_up(30)
        verify = tls_verification(str(tls_files.ca))
        base = f"https://localhost:{server.port}/api/v2/tenants/default_tenant/databases/"
        base += "default_database/collections"
        with httpx.Client(verify=verify, timeout=60) as http:
            cid = http.post(base, json={"name": "big"}).json()["id"]
            for start in range(0, 200, 50):
                body = {
                    "ids": [str(i) for i in range(start, start + 50)],
                    "embeddings": [[1.0, 2.0]] * 50,
                    "documents": ["x" * 100_000] * 50,
                }
                assert http.post(f"{base}/{cid}/add", json=body).status_code == 201
        context = ssl.create_default_context(cafile=str(tls_files.ca))
        raw = socket.create_connection(("127.0.0.1", server.port))
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            request = b'{"include": ["documents"]}'
            tls.sendall(
                f"POST {base.split(str(server.port), 1)[1]}/{cid}/get HTTP/1.1\r\n"
                f"Host: localhost\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(request)}\r\n\r\n".encode()
                + request
            )
            time.sleep(1.0)  # the answer is in the server's buffers, unread
            server.process.terminate()
            received = b""
            while chunk := tls.recv(1 << 20):
                received += chunk
        head, _, body_bytes = received.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        assert len(body_bytes) == length > 20_000_000
        server.process.wait(timeout=20)
    finally:
        server.stop()
