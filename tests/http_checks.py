"""What the server security tests share: tokens, auth headers, error-body checks and a
snapshot of all data reachable over HTTP (to assert a refused request changed nothing).
"""

from __future__ import annotations

import socket
from typing import Any

import httpx

from tests.servers import RunningServer

ADMIN = "admin-token-3f9a1c"
READER = "reader-token-77b2e0"
WRONG = "wrong-token-0d4e5f"
TOKENS_ENV = {"HUEDB_AUTH_TOKENS": f"{ADMIN}:admin,{READER}:read-only"}
HEADER_STYLES = ("bearer", "x-chroma-token")
DB = "/api/v2/tenants/default_tenant/databases/default_database"
TRACE = "chroma-trace-id"


def auth_headers(token: str | None, style: str) -> dict[str, str]:
    """The headers that present `token` in one of the two accepted styles."""
    if token is None:
        return {}
    if style == "bearer":
        return {"Authorization": f"Bearer {token}"}
    return {"X-Chroma-Token": token}


def admin_client(server: RunningServer, **kwargs: Any) -> httpx.Client:
    """An httpx client presenting the admin token."""
    return httpx.Client(
        base_url=server.url, headers=auth_headers(ADMIN, "bearer"), timeout=60, **kwargs
    )


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have `status`."""
    assert response.status_code == status, (response.request.url, response.text)
    return response.json()


def assert_error(response: httpx.Response, status: int | None, error: str | None = None) -> None:
    """A Chroma-shaped JSON error: the status (any 4xx if None), error+message and trace id."""
    where = f"{response.request.method} {response.request.url.path}: {response.text[:300]}"
    if status is None:
        assert 400 <= response.status_code < 500, where
    else:
        assert response.status_code == status, where
    assert response.headers.get("content-type", "").startswith("application/json"), where
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "message"}, where
    assert isinstance(body["error"], str) and body["error"], where
    assert isinstance(body["message"], str) and body["message"], where
    if error is not None:
        assert body["error"] == error, where
    assert response.headers.get(TRACE), where


def snapshot(client: httpx.Client, tenants: tuple[str, ...] = ("default_tenant",)) -> Any:
    """Everything an admin can see: databases, collections, and every record in full."""
    state: dict[str, Any] = {}
    for tenant in tenants:
        dbs = ok(client.get(f"/api/v2/tenants/{tenant}/databases"))
        for db in sorted(dbs, key=lambda d: d["name"]):
            base = f"/api/v2/tenants/{tenant}/databases/{db['name']}"
            cols = ok(client.get(f"{base}/collections"))
            entry: dict[str, Any] = {
                "db": db,
                "count": ok(client.get(f"{base}/collections_count")),
            }
            for col in sorted(cols, key=lambda c: c["name"]):
                records = ok(
                    client.post(
                        f"{base}/collections/{col['id']}/get",
                        json={"include": ["embeddings", "metadatas", "documents", "uris"]},
                    )
                )
                entry[col["name"]] = {
                    "id": col["id"],
                    "metadata": col["metadata"],
                    "count": ok(client.get(f"{base}/collections/{col['id']}/count")),
                    "records": records,
                }
            state[f"{tenant}/{db['name']}"] = entry
    return state


def raw_http(port: int, request: bytes) -> bytes:
    """Send raw bytes to the server and return the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def chroma_client(port: int, **kwargs: Any) -> Any:
    """A fresh `chromadb.HttpClient` on 127.0.0.1 (no shared-system cache between calls)."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings

    SharedSystemClient.clear_system_cache()
    settings = Settings(anonymized_telemetry=False, **kwargs.pop("settings", {}))
    host = kwargs.pop("host", "127.0.0.1")
    return chromadb.HttpClient(host=host, port=port, settings=settings, **kwargs)


def token_settings(token: str, header: str | None = None) -> dict[str, Any]:
    """chromadb Settings for token auth, optionally through X-Chroma-Token."""
    settings: dict[str, Any] = {
        "chroma_client_auth_provider": "chromadb.auth.token_authn.TokenAuthClientProvider",
        "chroma_client_auth_credentials": token,
    }
    if header:
        settings["chroma_auth_token_transport_header"] = header
    return settings
