"""Small compatibility items: chromadb's environment variables in `huedb.Settings`, and a
server that starts without deprecation warnings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import huedb
from tests.http_checks import ADMIN, TOKENS_ENV
from tests.servers import huedb_server

ENV_VALUES = {
    "CHROMA_CLIENT_AUTH_PROVIDER": "chromadb.auth.token_authn.TokenAuthClientProvider",
    "CHROMA_CLIENT_AUTH_CREDENTIALS": "some-token",
    "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": "X-Chroma-Token",
    "CHROMA_SERVER_HOST": "db.example",
    "CHROMA_SERVER_HTTP_PORT": "8123",
    "CHROMA_SERVER_SSL_ENABLED": "true",
    "CHROMA_SERVER_SSL_VERIFY": "/etc/ca.pem",
    "CHROMA_SERVER_HEADERS": '{"x-team": "a"}',
    "CHROMA_HTTP_KEEPALIVE_SECS": "12.5",
    "CHROMA_HTTP_MAX_CONNECTIONS": "7",
    "allow_reset": "yes",
    "IS_PERSISTENT": "1",
    "PERSIST_DIRECTORY": "/tmp/x",
}


def chroma_settings() -> Any:
    from chromadb.config import Settings

    return Settings()


@pytest.mark.parametrize("ssl_verify", ["/etc/ca.pem", "false", "True"])
def test_settings_read_the_environment_as_chromadb(
    monkeypatch: pytest.MonkeyPatch, ssl_verify: str
) -> None:
    """Every chromadb field huedb has takes the same value from the same environment."""
    for name, value in {**ENV_VALUES, "CHROMA_SERVER_SSL_VERIFY": ssl_verify}.items():
        monkeypatch.setenv(name, value)
    ours, theirs = huedb.Settings(), chroma_settings()
    names = [n.lower() for n in ENV_VALUES]
    assert {n: getattr(ours, n) for n in names} == {n: getattr(theirs, n) for n in names}
    assert huedb.Settings(chroma_server_http_port=9).chroma_server_http_port == 9


def test_http_client_takes_the_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CHROMA_CLIENT_AUTH_*` as a chromadb user sets them: no 401."""
    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        with pytest.raises(huedb.errors.AuthorizationError):
            huedb.HttpClient(host=server.host, port=server.port).list_collections()
        for header in ("Authorization", "X-Chroma-Token"):
            monkeypatch.setenv(
                "CHROMA_CLIENT_AUTH_PROVIDER", ENV_VALUES["CHROMA_CLIENT_AUTH_PROVIDER"]
            )
            monkeypatch.setenv("CHROMA_CLIENT_AUTH_CREDENTIALS", ADMIN)
            monkeypatch.setenv("CHROMA_AUTH_TOKEN_TRANSPORT_HEADER", header)
            client = huedb.HttpClient(host=server.host, port=server.port)
            client.get_or_create_collection("env-token")
            assert [c.name for c in client.list_collections()] == ["env-token"]


def test_server_starts_without_deprecation_warnings(tmp_path: Path) -> None:
    """No FastAPI deprecation warning in the log (get and query answered with
    `ORJSONResponse`, deprecated); JSON answers and /openapi.json unchanged."""
    with huedb_server(tmp_path / "data") as server:
        with httpx.Client(base_url=server.url) as http:
            spec = http.get("/openapi.json")
            assert spec.status_code == 200
            assert "/api/v2/heartbeat" in spec.json()["paths"]
            ident = http.get("/api/v2/auth/identity")
            assert ident.headers["content-type"] == "application/json"
            assert ident.json()["tenant"] == "default_tenant"
        col = huedb.HttpClient(host=server.host, port=server.port).create_collection("col")
        col.add(ids=["a"], embeddings=[[1.0, 2.0]], metadatas=[{"k": 1}])
        assert col.get(include=["metadatas"])["metadatas"] == [{"k": 1}]
        assert col.query(query_embeddings=[[1.0, 2.0]], n_results=1)["ids"] == [["a"]]
        log = server.log()
    assert "Deprecat" not in log and "ORJSONResponse" not in log, log
