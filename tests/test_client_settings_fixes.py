"""Client settings that pick where data goes, as in chromadb 1.5.9.

- `chroma_api_impl` (or CHROMA_API_IMPL) `chromadb.api.fastapi.FastAPI` makes
  `huedb.Client(settings)` (and the embedded factories, as chromadb's) a client of the
  server at chroma_server_host:chroma_server_http_port, with the settings' TLS, headers and
  token; writes land on the server. Other names: a clear error, never a silent in-memory
  store (chromadb's embedded names still mean huedb's engine).
- `ssl=True` / `chroma_server_ssl_enabled` means https even when `host` is an http:// URL,
  with chromadb's `resolve_url` rules for hosts, ports and paths.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chromadb.api.base_http_client import BaseHTTPClient
from chromadb.config import Settings as ChromaSettings

import huedb
from huedb.api.client import resolve_url
from huedb.api.local import LocalAPI
from huedb.errors import ConfigError
from tests.http_checks import ADMIN, TOKENS_ENV
from tests.servers import RunningServer, huedb_server

FASTAPI = "chromadb.api.fastapi.FastAPI"
ASYNC_FASTAPI = "chromadb.api.async_fastapi.AsyncFastAPI"
TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A huedb server with token auth (ADMIN may write)."""
    data = tmp_path_factory.mktemp("client-settings") / "data"
    with huedb_server(data, env=TOKENS_ENV) as running:
        yield running


def server_collections(server: RunningServer) -> dict[str, int]:
    """Each collection on the server and its record count, read by a separate client."""
    reader = huedb.HttpClient(
        host=server.host,
        port=server.port,
        settings=huedb.Settings(chroma_client_auth_credentials=ADMIN),
    )
    try:
        return {c.name: c.count() for c in reader.list_collections()}
    finally:
        reader.close()


class Listener:
    """A loopback TCP listener recording the first bytes each connection sends."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.received.append(conn.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    running = Listener()
    yield running
    running.close()


def first_request(listener: Listener, connect: Callable[[], Any]) -> bytes:
    """What `connect()` sent first to the listener (which answers nothing, so it fails)."""
    with pytest.raises((ValueError, httpx.TransportError)):
        connect()
    assert listener.received, "the client never reached the listener"
    return listener.received[0]


# ----------------------------------------------------------- chroma_api_impl: a server


def fastapi_settings(server: RunningServer, chroma: bool) -> Any:
    fields = {
        "chroma_api_impl": FASTAPI,
        "chroma_server_host": server.host,
        "chroma_server_http_port": server.port,
        "chroma_client_auth_provider": "chromadb.auth.token_authn.TokenAuthClientProvider",
        "chroma_client_auth_credentials": ADMIN,
    }
    return (
        ChromaSettings(anonymized_telemetry=False, **fields) if chroma else huedb.Settings(**fields)
    )


@pytest.mark.parametrize("chroma", [False, True], ids=["huedb-settings", "chromadb-settings"])
def test_client_with_fastapi_settings_writes_to_the_server(
    server: RunningServer, chroma: bool
) -> None:
    name = f"via-settings-{chroma}"
    client = huedb.Client(fastapi_settings(server, chroma))
    client.get_or_create_collection(name).add(ids=["a", "b"], embeddings=[[1.0], [2.0]])
    client.close()
    assert server_collections(server)[name] == 2


def test_client_with_the_environment_writes_to_the_server(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHROMA_API_IMPL", FASTAPI)
    monkeypatch.setenv("CHROMA_SERVER_HOST", server.host)
    monkeypatch.setenv("CHROMA_SERVER_HTTP_PORT", str(server.port))
    monkeypatch.setenv("CHROMA_CLIENT_AUTH_CREDENTIALS", ADMIN)
    client = huedb.Client()
    client.get_or_create_collection("via-env").add(ids=["a"], embeddings=[[1.0]])
    client.close()
    assert server_collections(server)["via-env"] == 1


def test_embedded_factories_follow_the_impl_as_chromadb_does(
    server: RunningServer, tmp_path: Path
) -> None:
    """chromadb's PersistentClient / EphemeralClient keep `chroma_api_impl` too: a server."""
    for name, make in (
        ("persistent", lambda s: huedb.PersistentClient(tmp_path / "unused", settings=s)),
        ("ephemeral", lambda s: huedb.EphemeralClient(s)),
    ):
        client = make(fastapi_settings(server, chroma=True))
        client.get_or_create_collection(f"via-{name}").add(ids=["a"], embeddings=[[1.0]])
        client.close()
        assert server_collections(server)[f"via-{name}"] == 1
    assert not (tmp_path / "unused").exists()


def test_settings_headers_token_and_tls_reach_the_wire(listener: Listener) -> None:
    def settings(**more: Any) -> huedb.Settings:
        return huedb.Settings(
            chroma_api_impl=FASTAPI,
            chroma_server_host="127.0.0.1",
            chroma_server_http_port=listener.port,
            chroma_server_headers={"X-Team": "search"},
            chroma_client_auth_credentials="tok-12345678",
            **more,
        )

    plain = first_request(listener, lambda: huedb.Client(settings()))
    assert plain.startswith(b"GET /api/v2/")
    assert b"\r\nx-team: search\r\n" in plain.lower()
    assert b"\r\nauthorization: bearer tok-12345678\r\n" in plain.lower()

    listener.received.clear()
    tls = first_request(listener, lambda: huedb.Client(settings(chroma_server_ssl_enabled=True)))
    assert tls[0] == TLS_HANDSHAKE and b"tok-12345678" not in tls


# ------------------------------------------------- chroma_api_impl: errors and local names


@pytest.mark.parametrize(
    ("impl", "message"),
    [
        ("foo.Bar", "Unsupported Chroma API implementation 'foo.Bar'"),
        ("chromadb.api.local.LocalAPI", "Unsupported Chroma API implementation"),
        (ASYNC_FASTAPI, "AsyncHttpClient"),
    ],
)
def test_other_impls_are_refused(impl: str, message: str) -> None:
    """chromadb refuses unknown names (ValueError) and builds a client whose every method
    returns an unawaited coroutine for AsyncFastAPI; huedb says what to use instead."""
    settings = dict(chroma_api_impl=impl, chroma_server_host="127.0.0.1", chroma_server_http_port=1)
    with pytest.raises(ConfigError, match=message):
        huedb.Client(huedb.Settings(**settings))
    with pytest.raises(ConfigError, match=message):
        huedb.Client(ChromaSettings(**settings))


@pytest.mark.parametrize("missing", ["chroma_server_host", "chroma_server_http_port"])
def test_fastapi_without_host_or_port_is_refused(missing: str) -> None:
    fields: dict[str, Any] = dict(chroma_server_host="127.0.0.1", chroma_server_http_port=8000)
    del fields[missing]
    with pytest.raises(ConfigError, match=f"Missing required config value '{missing}'"):
        huedb.Client(huedb.Settings(chroma_api_impl=FASTAPI, **fields))


@pytest.mark.parametrize(
    "impl",
    [
        "chromadb.api.rust.RustBindingsAPI",
        "chromadb.api.segment.SegmentAPI",
        "huedb.api.local.LocalAPI",
    ],
)
def test_embedded_impl_names_run_huedbs_engine(impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHROMA_API_IMPL", impl)
    client = huedb.Client()
    assert isinstance(client._server, LocalAPI)
    client.close()


def test_http_client_ignores_the_impl_setting(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chromadb's HttpClient sets the impl itself, whatever the environment says."""
    monkeypatch.setenv("CHROMA_API_IMPL", "foo.Bar")
    client = huedb.HttpClient(
        host=server.host,
        port=server.port,
        settings=huedb.Settings(chroma_client_auth_credentials=ADMIN),
    )
    assert client.heartbeat() > 0
    client.close()


# ------------------------------------------------------------------ ssl and resolve_url


@pytest.mark.parametrize("host", ["http://127.0.0.1:{port}", "127.0.0.1"])
def test_http_client_ssl_speaks_tls(listener: Listener, host: str) -> None:
    """ssl=True: TLS from the first byte, even for an http:// URL (chromadb's rule), so
    the token never travels in clear."""
    settings = huedb.Settings(chroma_client_auth_credentials="secret-token-42")
    sent = first_request(
        listener,
        lambda: huedb.HttpClient(
            host=host.format(port=listener.port), port=listener.port, ssl=True, settings=settings
        ),
    )
    assert sent[0] == TLS_HANDSHAKE and b"secret-token-42" not in sent


RESOLVED = [
    ("127.0.0.1", False, "/api/v2", 8000),
    ("127.0.0.1", True, "/api/v2", 8000),
    ("localhost", True, "/api/v2", 443),
    ("[::1]", False, "/api/v2", 9000),
    ("http://h:9000", True, "/api/v2", 1),
    ("http://h", True, "/api/v2", 1),
    ("https://h", False, "/api/v2", 1),
    ("http://h/", False, "/api/v2", 1),
    ("http://h/prefix", False, "/api/v2", 1),
    ("http://h:9/prefix/", True, "/api/v2", 1),
    ("http://h/api/v2", False, "/api/v2", 1),
    ("http://h/a b", False, "/api/v2", 1),
    ("h", False, "/proxy/api/v2", 5),
    ("http://h/p", False, "/proxy/api/v2", 5),
]


@pytest.mark.parametrize(("host", "ssl", "path", "port"), RESOLVED)
def test_resolve_url_matches_chromadb(host: str, ssl: bool, path: str, port: int) -> None:
    assert resolve_url(host, ssl, path, port) == BaseHTTPClient.resolve_url(host, ssl, path, port)


@pytest.mark.parametrize("host", ["h/x", "ftp://h/x"])
def test_resolve_url_refuses_what_chromadb_refuses(host: str) -> None:
    with pytest.raises(ValueError, match="Invalid URL"):
        BaseHTTPClient.resolve_url(host, False, "/api/v2", 8000)
    with pytest.raises(ConfigError, match="Invalid URL"):
        resolve_url(host, False, "/api/v2", 8000)


def test_host_with_a_port_but_no_scheme_is_refused() -> None:
    """chromadb makes `localhost://localhost:8000:8000/8000/api/v2` of it."""
    with pytest.raises(ConfigError, match="give the port as the port"):
        huedb.HttpClient(host="localhost:8000")


def test_api_path_must_be_chromas_v2() -> None:
    with pytest.raises(ConfigError, match="must end in /api/v2"):
        huedb.HttpClient(settings=huedb.Settings(chroma_server_api_default_path="/api/v1"))


def test_operations_use_their_store_whatever_chroma_api_impl_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`huedb export`/`import`/`stats` name their store by --path / --store: a
    CHROMA_API_IMPL of chromadb's HTTP client in the environment does not send them to a
    server (here one that does not exist)."""
    from huedb.ops.store import store_client

    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    client.create_collection("local").add(ids=["a"], embeddings=[[1.0, 2.0]])
    client.close()
    monkeypatch.setenv("CHROMA_API_IMPL", "chromadb.api.fastapi.FastAPI")
    monkeypatch.setenv("CHROMA_SERVER_HOST", "127.0.0.1")
    monkeypatch.setenv("CHROMA_SERVER_HTTP_PORT", "1")
    ops_client = store_client(tmp_path / "data")
    try:
        assert ops_client.get_collection("local").count() == 1
    finally:
        ops_client.close()
