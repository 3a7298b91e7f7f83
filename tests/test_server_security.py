"""Security of `huedb run`: token auth and roles, TLS, bad requests and startup refusals.

Every test talks to a real server process started by `tests/servers.py`. Acceptance:

* every route x {no token, wrong token, admin token, read-only token} x both header styles
  (`Authorization: Bearer` and `X-Chroma-Token`) gives the expected status, and no request
  without a valid token reads or changes data;
* the real `chromadb.HttpClient` works against the server with token auth and over TLS;
* bad requests each get a 4xx JSON error, leave the data unchanged and the server up;
* invalid auth/TLS configuration makes the server refuse to start, and tokens never reach
  the server log.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

try:
    from tests.servers import RunningServer, free_port, huedb_server
except ImportError:  # pragma: no cover - when run from inside tests/
    from servers import RunningServer, free_port, huedb_server  # type: ignore[no-redef]

from huedb.server.server_config import ConfigError, ServerConfig, make_token

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


# --------------------------------------------------------------------------- the route table


@dataclass(frozen=True)
class Route:
    """One v2 route with a valid request; `{cid}` and `{tag}` are filled in per call."""

    name: str
    method: str
    path: str
    body: Any = None
    kind: str = "write"  # "open", "read" or "write"
    status: int = 200  # what the admin gets

    def request(
        self, client: httpx.Client, cid: str, tag: str, headers: dict[str, str]
    ) -> httpx.Response:
        path = self.path.format(cid=cid, tag=tag)
        body = None
        if self.body is not None:
            body = json.loads(json.dumps(self.body).replace("{tag}", tag))
        return client.request(self.method, path, json=body, headers=headers)


COL = DB + "/collections/{cid}"
OPEN_ROUTES = [
    Route("root", "GET", "/api/v2", kind="open"),
    Route("heartbeat", "GET", "/api/v2/heartbeat", kind="open"),
    Route("version", "GET", "/api/v2/version", kind="open"),
    Route("healthcheck", "GET", "/api/v2/healthcheck", kind="open"),
    Route("docs", "GET", "/docs", kind="open"),
    Route("openapi", "GET", "/openapi.json", kind="open"),
]
READ_ROUTES = [
    Route("pre-flight-checks", "GET", "/api/v2/pre-flight-checks", kind="read"),
    Route("identity", "GET", "/api/v2/auth/identity", kind="read"),
    Route("get tenant", "GET", "/api/v2/tenants/default_tenant", kind="read"),
    Route("list databases", "GET", "/api/v2/tenants/default_tenant/databases", kind="read"),
    Route("get database", "GET", "/api/v2/tenants/default_tenant/databases/db_keep", kind="read"),
    Route("list collections", "GET", DB + "/collections", kind="read"),
    Route("count collections", "GET", DB + "/collections_count", kind="read"),
    Route("get collection by name", "GET", DB + "/collections/main", kind="read"),
    Route("get collection by id", "GET", DB + "/collections/by-id/{cid}", kind="read"),
    Route(
        "get records",
        "POST",
        COL + "/get",
        {"ids": ["a"], "include": ["embeddings", "documents", "metadatas"]},
        kind="read",
    ),
    Route(
        "query", "POST", COL + "/query", {"query_embeddings": [[1, 0, 0]], "n_results": 2}, "read"
    ),
    Route("count records", "GET", COL + "/count", kind="read"),
]
WRITE_ROUTES = [
    Route("create tenant", "POST", "/api/v2/tenants", {"name": "tenant_{tag}"}),
    Route(
        "create database",
        "POST",
        "/api/v2/tenants/default_tenant/databases",
        {"name": "db_new_{tag}"},
    ),
    Route("delete database", "DELETE", "/api/v2/tenants/default_tenant/databases/db_del_{tag}"),
    Route("create collection", "POST", DB + "/collections", {"name": "col_new_{tag}"}),
    Route("update collection", "PUT", COL, {"new_metadata": {"touched": "{tag}"}}),
    Route("delete collection", "DELETE", DB + "/collections/col_del_{tag}"),
    Route(
        "add",
        "POST",
        COL + "/add",
        {"ids": ["new_{tag}"], "embeddings": [[0.5, 0.5, 0.0]], "documents": ["{tag}"]},
        status=201,
    ),
    Route("update", "POST", COL + "/update", {"ids": ["a"], "documents": ["updated_{tag}"]}),
    Route("upsert", "POST", COL + "/upsert", {"ids": ["up_{tag}"], "embeddings": [[0, 0.5, 0.5]]}),
    Route("delete records", "POST", COL + "/delete", {"ids": ["del_{tag}"]}),
]
PROTECTED_ROUTES = READ_ROUTES + WRITE_ROUTES
TAGS = {"bearer": "b", "x-chroma-token": "x"}


@dataclass
class AuthServer:
    """A server with admin and read-only tokens and a known data set."""

    server: RunningServer
    cid: str


def seed(client: httpx.Client) -> str:
    """Create the data every route in the table needs; return the main collection's id."""
    for name in ("db_keep", *(f"db_del_{t}" for t in TAGS.values())):
        ok(client.post("/api/v2/tenants/default_tenant/databases", json={"name": name}))
    for name in (f"col_del_{t}" for t in TAGS.values()):
        ok(client.post(DB + "/collections", json={"name": name}))
    cid = ok(client.post(DB + "/collections", json={"name": "main", "metadata": {"v": 1}}))["id"]
    ids = ["a", "b", "c", *(f"del_{t}" for t in TAGS.values())]
    vectors = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]]
    ok(
        client.post(
            f"{DB}/collections/{cid}/add",
            json={
                "ids": ids,
                "embeddings": vectors,
                "documents": [f"doc {i}" for i in ids],
                "metadatas": [{"i": n} for n in range(len(ids))],
            },
        ),
        201,
    )
    return cid


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A token-protected server with --allow-reset and seeded data."""
    data = tmp_path_factory.mktemp("auth") / "data"
    with huedb_server(data, "--allow-reset", env=TOKENS_ENV) as server:
        with admin_client(server) as client:
            cid = seed(client)
        yield AuthServer(server, cid)


def test_open_routes_answer_everyone(auth_server: AuthServer) -> None:
    """Heartbeat, version, healthcheck, docs: 200 with no, wrong, admin or read-only token."""
    with httpx.Client(base_url=auth_server.server.url, timeout=30) as client:
        for route in OPEN_ROUTES:
            for style in HEADER_STYLES:
                for token in (None, WRONG, ADMIN, READER):
                    r = route.request(client, auth_server.cid, "o", auth_headers(token, style))
                    assert r.status_code == 200, (route.name, style, token, r.text[:200])
        heartbeat = client.get("/api/v2/heartbeat").json()
        assert isinstance(heartbeat["nanosecond heartbeat"], int)
        assert "paths" in client.get("/openapi.json").json()


def test_requests_without_valid_token_are_refused_and_change_nothing(
    auth_server: AuthServer,
) -> None:
    """No/wrong token: 401 on every protected route; read-only token: 403 on every write.

    The refused requests are exactly those the admin later makes successfully (see
    `test_admin_token_succeeds_on_every_route`), so a refusal that leaked through would
    show in the snapshot. Error bodies carry no data.
    """
    server, cid = auth_server.server, auth_server.cid
    with admin_client(server) as admin:
        before = snapshot(admin)
    failures: list[str] = []
    attempts = 0
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for style in HEADER_STYLES:
            tag = TAGS[style]
            for route in PROTECTED_ROUTES:
                cases: list[tuple[str | None, int, str]] = [
                    (None, 401, "AuthorizationError"),
                    (WRONG, 401, "AuthorizationError"),
                ]
                if route.kind == "write":
                    cases.append((READER, 403, "AuthError"))
                for token, status, error in cases:
                    attempts += 1
                    r = route.request(client, cid, tag, auth_headers(token, style))
                    try:
                        assert_error(r, status, error)
                        assert "doc " not in r.text and "main" not in r.text
                    except AssertionError as exc:
                        failures.append(f"{route.name} [{style}, token={token}]: {exc}")
    assert attempts == 2 * (2 * len(PROTECTED_ROUTES) + len(WRITE_ROUTES))
    assert not failures, "\n".join(failures)
    with admin_client(server) as admin:
        assert snapshot(admin) == before
        for tag in TAGS.values():
            assert admin.get(f"/api/v2/tenants/tenant_{tag}").status_code == 404
            assert (
                admin.get(f"/api/v2/tenants/default_tenant/databases/db_new_{tag}").status_code
                == 404
            )
            assert admin.get(f"{DB}/collections/col_new_{tag}").status_code == 404


def test_reset_requires_admin(tmp_path: Path) -> None:
    """POST /reset: 401 without/with a wrong token, 403 read-only (data kept), 200 for admin."""
    with (
        huedb_server(tmp_path / "data", "--allow-reset", env=TOKENS_ENV) as server,
        admin_client(server) as admin,
        httpx.Client(base_url=server.url) as other,
    ):
        seed(admin)
        before = snapshot(admin)
        for style in HEADER_STYLES:
            for token, status in ((None, 401), (WRONG, 401), (READER, 403)):
                r = other.post("/api/v2/reset", headers=auth_headers(token, style))
                assert_error(r, status)
        assert snapshot(admin) == before
        assert ok(admin.post("/api/v2/reset")) is True
        assert ok(admin.get(f"{DB}/collections")) == []
        assert admin.get("/api/v2/tenants/default_tenant/databases/db_keep").status_code == 404


def test_read_only_token_reads_everything_the_admin_reads(auth_server: AuthServer) -> None:
    """Every read route gives the read-only token the same 200 answer as the admin."""
    server, cid = auth_server.server, auth_server.cid
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for route in READ_ROUTES:
            for style in HEADER_STYLES:
                as_admin = route.request(client, cid, "r", auth_headers(ADMIN, style))
                as_reader = route.request(client, cid, "r", auth_headers(READER, style))
                assert as_admin.status_code == 200, (route.name, as_admin.text)
                assert as_reader.status_code == 200, (route.name, style, as_reader.text)
                assert as_reader.json() == as_admin.json(), route.name
        got = ok(
            client.post(
                f"{DB}/collections/{cid}/get",
                json={"ids": ["a"], "include": ["documents"]},
                headers=auth_headers(READER, "x-chroma-token"),
            )
        )
        assert got["ids"] == ["a"] and got["documents"] == ["doc a"]


def test_admin_token_succeeds_on_every_route(auth_server: AuthServer) -> None:
    """The admin token, in either header style, succeeds on every route with its effect."""
    server, cid = auth_server.server, auth_server.cid
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for style in HEADER_STYLES:
            tag = TAGS[style]
            headers = auth_headers(ADMIN, style)
            for route in PROTECTED_ROUTES:
                r = route.request(client, cid, tag, headers)
                assert r.status_code == route.status, (route.name, style, r.text)
                if route.name == "delete records":
                    assert r.json() == {"deleted": 1}
    with admin_client(server) as admin:
        for tag in TAGS.values():
            assert ok(admin.get(f"/api/v2/tenants/tenant_{tag}"))["name"] == f"tenant_{tag}"
            ok(admin.get(f"/api/v2/tenants/default_tenant/databases/db_new_{tag}"))
            assert (
                admin.get(f"/api/v2/tenants/default_tenant/databases/db_del_{tag}").status_code
                == 404
            )
            ok(admin.get(f"{DB}/collections/col_new_{tag}"))
            assert admin.get(f"{DB}/collections/col_del_{tag}").status_code == 404
        col = ok(admin.get(f"{DB}/collections/by-id/{cid}"))
        assert col["metadata"]["touched"] == "x"
        got = ok(admin.post(f"{DB}/collections/{cid}/get", json={"include": ["documents"]}))
        docs = dict(zip(got["ids"], got["documents"], strict=True))
        assert docs["a"] == "updated_x"
        assert {"new_b", "new_x", "up_b", "up_x"} <= set(docs)
        assert not {"del_b", "del_x"} & set(docs)


def test_token_lookalikes_are_rejected(auth_server: AuthServer) -> None:
    """Prefixes, suffixes, other case, other schemes and query strings are not tokens."""
    url = auth_server.server.url + "/api/v2/auth/identity"
    variants: list[dict[str, str]] = [
        {"Authorization": f"Bearer {ADMIN[:-1]}"},
        {"Authorization": f"Bearer {ADMIN}x"},
        {"Authorization": f"Bearer {ADMIN.upper()}"},
        {"Authorization": ADMIN},
        {"Authorization": f"Basic {base64.b64encode(f'admin:{ADMIN}'.encode()).decode()}"},
        {"Authorization": f"Token {ADMIN}"},
        {"Authorization": "Bearer"},
        {"X-Chroma-Token": ""},
        {"X-Chroma-Token": f"Bearer {ADMIN}"},
        {"X-Chroma-Token": READER + ADMIN},
        {"Cookie": f"token={ADMIN}"},
    ]
    for headers in variants:
        assert_error(httpx.get(url, headers=headers, timeout=30), 401, "AuthorizationError")
    assert_error(httpx.get(url, params={"token": ADMIN}, timeout=30), 401)
    assert (
        httpx.get(url, headers={"authorization": f"bearer {ADMIN}"}, timeout=30).status_code == 200
    )


def raw_http(port: int, request: bytes) -> bytes:
    """Send raw bytes to the server and return the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_paths_that_mention_open_routes_stay_protected(auth_server: AuthServer) -> None:
    """Dot segments, double slashes and trailing slashes do not reach data without a token."""
    port, cid = auth_server.server.port, auth_server.cid
    targets = [
        "/api/v2/heartbeat/../auth/identity",
        "/api/v2/heartbeat/../tenants/default_tenant/databases",
        "//api/v2/auth/identity",
        "/api/v2/heartbeat/",
        "/api/v2/./auth/identity",
        f"{DB}/collections/{cid}/count",
        "/docs/../api/v2/pre-flight-checks",
    ]
    for target in targets:
        response = raw_http(
            port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        status_line = response.split(b"\r\n", 1)[0]
        assert b" 200 " not in status_line + b" ", (target, response[:300])
        assert b"default_database" not in response and b"max_batch_size" not in response


# --------------------------------------------------------------------------- chromadb client


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


def test_chromadb_client_with_token_auth(tmp_path: Path) -> None:
    """The real client works with either header; a wrong token fails at construction."""
    from chromadb.errors import AuthorizationError, ChromaAuthError

    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        for n, header in enumerate((None, "X-Chroma-Token")):
            client = chroma_client(server.port, settings=token_settings(ADMIN, header))
            col = client.create_collection(f"client_{n}")
            col.add(ids=["p", "q"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["P", "Q"])
            res = col.query(query_embeddings=[[0.9, 0.1]], n_results=1)
            assert res["ids"] == [["p"]] and res["documents"] == [["P"]]
            assert col.count() == 2

            reader = chroma_client(server.port, settings=token_settings(READER, header))
            rcol = reader.get_collection(f"client_{n}")
            assert rcol.get(ids=["q"])["documents"] == ["Q"]
            assert rcol.query(query_embeddings=[[0.0, 1.0]], n_results=1)["ids"] == [["q"]]
            with pytest.raises(ChromaAuthError):
                rcol.add(ids=["r"], embeddings=[[1.0, 1.0]])
            with pytest.raises(ChromaAuthError):
                reader.delete_collection(f"client_{n}")
            assert rcol.count() == 2

            with pytest.raises((AuthorizationError, ValueError)):
                chroma_client(server.port, settings=token_settings(WRONG, header))
        with pytest.raises((AuthorizationError, ValueError)):
            chroma_client(server.port)
        # The client sends its token on heartbeat too; that must not break anything.
        admin = chroma_client(server.port, settings=token_settings(ADMIN))
        assert admin.heartbeat() > 0
        assert sorted(c.name for c in admin.list_collections()) == ["client_0", "client_1"]


def test_every_token_source_is_honoured_with_its_role(tmp_path: Path) -> None:
    """Env list, env file, CHROMA_SERVER_AUTH_CREDENTIALS, --auth-tokens-file and --config."""
    tokens_file = tmp_path / "tokens.txt"
    tokens_file.write_text("# comment\nfile-admin-token-1\nfile-reader-token-1 read-only\n")
    env_file = tmp_path / "env-tokens.txt"
    env_file.write_text("envfile-reader-tok read-only\n")
    config = tmp_path / "server.toml"
    config.write_text(
        '[auth]\ntokens = [{token = "toml-admin-token-1"}, '
        '{token = "toml-reader-token-1", role = "read-only", name = "ci"}]\n'
    )
    env = {
        "HUEDB_AUTH_TOKENS": "list-admin-token,list-reader-token:read-only",
        "HUEDB_AUTH_TOKENS_FILE": str(env_file),
        "CHROMA_SERVER_AUTH_CREDENTIALS": "chroma-admin-token",
    }
    roles = {
        "list-admin-token": 200,
        "list-reader-token": 403,
        "envfile-reader-tok": 403,
        "chroma-admin-token": 200,
        "file-admin-token-1": 200,
        "file-reader-token-1": 403,
        "toml-admin-token-1": 200,
        "toml-reader-token-1": 403,
        WRONG: 401,
    }
    args = ("--auth-tokens-file", str(tokens_file), "--config", str(config))
    with huedb_server(tmp_path / "data", *args, env=env) as server:
        for n, (token, status) in enumerate(roles.items()):
            r = httpx.post(
                f"{server.url}/api/v2/tenants/default_tenant/databases",
                json={"name": f"db_{n}"},
                headers=auth_headers(token, HEADER_STYLES[n % 2]),
                timeout=30,
            )
            assert r.status_code == status, (token, r.text)
            if status != 401:
                r = httpx.get(
                    f"{server.url}/api/v2/auth/identity", headers=auth_headers(token, "bearer")
                )
                assert r.status_code == 200, token


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
    r = httpx.get(f"https://localhost:{tls_server.port}/api/v2/heartbeat", verify=str(tls_files.ca))
    assert r.status_code == 200
    assert tls_server.process.poll() is None


# --------------------------------------------------------------------------- bad requests

BODY_LIMIT = 2_000_000


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server without auth and with a 2 MB body limit."""
    data = tmp_path_factory.mktemp("bad") / "data"
    with huedb_server(data, "--max-body-bytes", str(BODY_LIMIT)) as server:
        yield server


def b64(values: list[float]) -> str:
    """Chroma's base64 encoding of a float32 vector."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def nested_where(depth: int) -> dict[str, Any]:
    """A valid-looking where clause nested `depth` levels of $and deep."""
    where: dict[str, Any] = {"i": 1}
    for _ in range(depth):
        where = {"$and": [where, {"i": {"$gte": 0}}]}
    return where


def bad_requests(cid: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(name, method, path, httpx kwargs) for requests that must get a 4xx error."""
    col = f"{DB}/collections/{cid}"
    js = {"content-type": "application/json"}

    def big_chunks() -> Iterator[bytes]:
        yield b'{"ids": ["big"], "embeddings": [['
        for _ in range(BODY_LIMIT // 50_000 + 10):
            yield b"1.0, " * 10_000
        yield b"1.0]]}"

    return [
        ("malformed JSON", "POST", f"{col}/add", {"content": b'{"ids": ["z"', "headers": js}),
        ("trailing garbage", "POST", f"{col}/get", {"content": b"{} {}", "headers": js}),
        ("not JSON at all", "POST", f"{col}/query", {"content": b"\xff\xfe", "headers": js}),
        ("JSON array body", "POST", f"{col}/add", {"json": [1, 2]}),
        ("ids not a list", "POST", f"{col}/add", {"json": {"ids": 5, "embeddings": [[1, 2, 3]]}}),
        (
            "embedding of strings",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [["a", "b", "c"]]}},
        ),
        ("missing embeddings", "POST", f"{col}/add", {"json": {"ids": ["z"]}}),
        (
            "n_results a string",
            "POST",
            f"{col}/query",
            {"json": {"query_embeddings": [[1, 0, 0]], "n_results": "many"}},
        ),
        (
            "oversized body",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["big"], "embeddings": [[1.0] * (BODY_LIMIT // 3)]}},
        ),
        (
            "wrong dimension add",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [[1, 2, 3, 4]]}},
        ),
        (
            "wrong dimension upsert",
            "POST",
            f"{col}/upsert",
            {"json": {"ids": ["a"], "embeddings": [[1, 2]]}},
        ),
        (
            "wrong dimension update",
            "POST",
            f"{col}/update",
            {"json": {"ids": ["a"], "embeddings": [[1, 2]]}},
        ),
        ("wrong dimension query", "POST", f"{col}/query", {"json": {"query_embeddings": [[1, 2]]}}),
        (
            "NaN literal",
            "POST",
            f"{col}/add",
            {"content": b'{"ids": ["z"], "embeddings": [[NaN, 1, 2]]}', "headers": js},
        ),
        (
            "Infinity literal in upsert",
            "POST",
            f"{col}/upsert",
            {"content": b'{"ids": ["a"], "embeddings": [[Infinity, 1, 2]]}', "headers": js},
        ),
        (
            "NaN in update",
            "POST",
            f"{col}/update",
            {"content": b'{"ids": ["a"], "embeddings": [[1, NaN, 2]]}', "headers": js},
        ),
        (
            "NaN query",
            "POST",
            f"{col}/query",
            {"content": b'{"query_embeddings": [[NaN, 0, 0]]}', "headers": js},
        ),
        (
            "NaN base64",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [b64([float("nan"), 1, 2])]}},
        ),
        (
            "float32 overflow",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [[1e39, 1, 2]]}},
        ),
        (
            "unknown collection add",
            "POST",
            f"{DB}/collections/00000000-0000-4000-8000-000000000001/add",
            {"json": {"ids": ["z"], "embeddings": [[1, 2, 3]]}},
        ),
        (
            "unknown collection get",
            "POST",
            f"{DB}/collections/00000000-0000-4000-8000-000000000001/get",
            {"json": {}},
        ),
        ("unknown collection name", "GET", f"{DB}/collections/no_such_collection", {}),
        ("unknown collection delete", "DELETE", f"{DB}/collections/no_such_collection", {}),
        ("unknown database", "GET", "/api/v2/tenants/default_tenant/databases/nope_db", {}),
        ("unknown tenant", "GET", "/api/v2/tenants/no_such_tenant", {}),
        ("invalid where operator", "POST", f"{col}/get", {"json": {"where": {"$foo": 1}}}),
        (
            "invalid where operand",
            "POST",
            f"{col}/get",
            {"json": {"where": {"i": {"$gt": "x"}}}},
        ),
        (
            "invalid where in delete",
            "POST",
            f"{col}/delete",
            {"json": {"where": {"i": {"$bogus": 1}}}},
        ),
        (
            "invalid where_document",
            "POST",
            f"{col}/query",
            {"json": {"query_embeddings": [[1, 0, 0]], "where_document": {"$bad": "x"}}},
        ),
        ("where depth 100", "POST", f"{col}/get", {"json": {"where": nested_where(100)}}),
        (
            "where depth 100 in delete",
            "POST",
            f"{col}/delete",
            {"json": {"where": nested_where(100)}},
        ),
        (
            "JSON nested 5000 deep",
            "POST",
            f"{col}/get",
            {"content": b'{"where":' + b"[" * 5000 + b"]" * 5000 + b"}", "headers": js},
        ),
        (
            "bad base64",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": ["!!!not-base64"]}},
        ),
        (
            "base64 not whole floats",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": ["AAAA"]}},
        ),
        (
            "non-UUID collection id",
            "POST",
            f"{DB}/collections/not-a-uuid/add",
            {"json": {"ids": ["z"], "embeddings": [[1, 2, 3]]}},
        ),
        ("non-UUID by-id", "GET", f"{DB}/collections/by-id/not-a-uuid", {}),
        ("non-UUID count", "GET", f"{DB}/collections/{cid[:-1]}/count", {}),
        ("negative limit", "POST", f"{col}/get", {"json": {"limit": -1}}),
        ("negative offset", "POST", f"{col}/get", {"json": {"offset": -5}}),
        ("negative list limit", "GET", f"{DB}/collections?limit=-1", {}),
        (
            "zero n_results",
            "POST",
            f"{col}/query",
            {"json": {"query_embeddings": [[1, 0, 0]], "n_results": 0}},
        ),
        ("empty ids add", "POST", f"{col}/add", {"json": {"ids": [], "embeddings": []}}),
        (
            "empty id string",
            "POST",
            f"{col}/add",
            {"json": {"ids": [""], "embeddings": [[1, 2, 3]]}},
        ),
        (
            "duplicate ids",
            "POST",
            f"{col}/upsert",
            {"json": {"ids": ["q", "q"], "embeddings": [[1, 2, 3], [1, 2, 3]]}},
        ),
        (
            "ids and embeddings differ in length",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["q", "r"], "embeddings": [[1, 2, 3]]}},
        ),
        (
            "mixed embedding types",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["q", "r"], "embeddings": [[1, 2, 3], b64([1, 2, 3])]}},
        ),
        ("empty query", "POST", f"{col}/query", {"json": {"query_embeddings": []}}),
        ("unknown include", "POST", f"{col}/get", {"json": {"include": ["passwords"]}}),
        ("distances in get", "POST", f"{col}/get", {"json": {"include": ["distances"]}}),
        (
            "nested metadata",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [[1, 2, 3]], "metadatas": [{"a": {"b": 1}}]}},
        ),
        (
            "nested metadata update",
            "POST",
            f"{col}/update",
            {"json": {"ids": ["a"], "metadatas": [{"a": {"b": 1}}]}},
        ),
        ("nested collection metadata", "PUT", col, {"json": {"new_metadata": {"x": {"y": 1}}}}),
        ("bad collection name", "POST", f"{DB}/collections", {"json": {"name": "a"}}),
        (
            "bad space",
            "POST",
            f"{DB}/collections",
            {"json": {"name": "okname", "configuration": {"hnsw": {"space": "bogus"}}}},
        ),
        ("duplicate collection", "POST", f"{DB}/collections", {"json": {"name": "victim"}}),
        ("delete with no filter", "POST", f"{col}/delete", {"json": {}}),
        ("v1 API", "GET", "/api/v1/heartbeat", {}),
        ("unknown route", "GET", "/api/v2/no/such/route", {}),
        ("method not allowed", "PATCH", f"{col}/add", {"json": {}}),
        (
            "oversized chunked body",
            "POST",
            f"{col}/add",
            {"content": big_chunks(), "headers": js},
        ),
    ]


def test_bad_requests_get_4xx_json_errors_and_change_nothing(plain_server: RunningServer) -> None:
    """Each bad request: 4xx, {"error", "message"} and a trace id; the data stays as it was."""
    with httpx.Client(base_url=plain_server.url, timeout=60) as client:
        cid = ok(client.post(f"{DB}/collections", json={"name": "victim"}))["id"]
        ok(
            client.post(
                f"{DB}/collections/{cid}/add",
                json={
                    "ids": ["a", "b", "c"],
                    "embeddings": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                    "documents": ["A", "B", "C"],
                    "metadatas": [{"i": 1}, {"i": 2}, None],
                },
            ),
            201,
        )
        before = snapshot(client)
        failures = []
        requests = bad_requests(cid)
        for name, method, path, kwargs in requests:
            try:
                r = client.request(method, path, **kwargs)
                assert_error(r, None)
            except (AssertionError, httpx.HTTPError, ValueError) as exc:
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
        assert not failures, "\n".join(failures)
        assert snapshot(client) == before
        assert ok(client.get("/api/v2/heartbeat"))["nanosecond heartbeat"] > 0
    assert plain_server.process.poll() is None
    assert len(requests) > 50


def test_body_limit_gives_413(plain_server: RunningServer) -> None:
    """A body over --max-body-bytes is refused with 413, by Content-Length or not."""
    url = f"{plain_server.url}{DB}/collections"
    body = {"name": "too_big", "metadata": {"blob": "x" * BODY_LIMIT}}
    assert_error(httpx.post(url, json=body, timeout=60), 413)
    # A declared Content-Length over the limit is refused before the body is read.
    head = (
        f"POST {DB}/collections HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {BODY_LIMIT + 1}\r\nConnection: close\r\n\r\n"
    )
    response = raw_http(plain_server.port, head.encode() + b'{"name": "declared"')
    assert response.startswith(b"HTTP/1.1 413 "), response[:300]
    assert b'"error"' in response and b"chroma-trace-id" in response.lower()
    # Just under the limit is fine.
    fits = {"name": "fits", "metadata": {"blob": "x" * (BODY_LIMIT - 200)}}
    assert httpx.post(url, json=fits, timeout=60).status_code == 200


def test_chunked_body_over_limit_gives_413(plain_server: RunningServer) -> None:
    """Without Content-Length the limit applies while streaming, and still answers 413."""

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "chunked", "metadata": {"blob": "'
        for _ in range(BODY_LIMIT // 100_000 + 2):
            yield b"x" * 100_000
        yield b'"}}'

    r = httpx.post(
        f"{plain_server.url}{DB}/collections",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert_error(r, 413)


def test_extreme_but_valid_requests_are_served(plain_server: RunningServer) -> None:
    """Huge n_results is capped to the count; a get with 10^5 ids answers quickly."""
    with httpx.Client(base_url=plain_server.url, timeout=60) as client:
        col = ok(client.post(f"{DB}/collections", json={"name": "extreme"}))
        path = f"{DB}/collections/{col['id']}"
        ok(
            client.post(f"{path}/add", json={"ids": ["a", "b"], "embeddings": [[1, 0], [0, 1]]}),
            201,
        )
        for n in (2**31, 10**12, 10**20):
            res = ok(
                client.post(f"{path}/query", json={"query_embeddings": [[1, 0]], "n_results": n})
            )
            assert res["ids"] == [["a", "b"]], n
        ids = [f"id-{i:06d}" for i in range(10**5)] + ["b"]
        start = time.monotonic()
        got = ok(client.post(f"{path}/get", json={"ids": ids, "include": []}))
        assert got["ids"] == ["b"]
        assert time.monotonic() - start < 20
        assert ok(client.get(f"{path}/count")) == 2


def test_reset_when_disabled_is_refused_and_keeps_data(plain_server: RunningServer) -> None:
    """Without --allow-reset, POST /reset is a 4xx JSON error and deletes nothing."""
    with httpx.Client(base_url=plain_server.url, timeout=60) as client:
        col = ok(client.post(f"{DB}/collections", json={"name": "survivor"}))
        ok(
            client.post(
                f"{DB}/collections/{col['id']}/add", json={"ids": ["s"], "embeddings": [[1.0]]}
            ),
            201,
        )
        before = snapshot(client)
        assert_error(client.post("/api/v2/reset"), None)
        assert snapshot(client) == before


def test_reset_when_disabled_answers_403_like_chroma(plain_server: RunningServer) -> None:
    """chroma-compat.md: reset when not allowed is 403 (a 401 reads as a bad token)."""
    assert_error(httpx.post(f"{plain_server.url}/api/v2/reset", timeout=30), 403)


# --------------------------------------------------------------------------- startup refusals


def run_refused(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `huedb run` expecting it to refuse to start: exit code 2, quickly. Returns its log."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HUEDB_", "CHROMA_"))}
    full_env.update(env or {})
    host_args = () if "--host" in args else ("--host", "127.0.0.1")
    cmd = [sys.executable, "-m", "huedb.cli", "run", "--path", str(tmp_path / "data")]
    cmd += [*host_args, "--port", str(free_port()), *args]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert elapsed < 15, elapsed
    assert "cannot start" in output, output
    return output


SECRET = "s3cret-token-value-42"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("env bad role", "unknown role 'superuser'"),
        ("env short token", "at least 8 characters"),
        ("env token with space", "printable ASCII without spaces"),
        ("chroma short credentials", "invalid token"),
        ("env token file bad role", "unknown role"),
        ("token file missing", "cannot read token file"),
        ("token file too many fields", "expected 'token [role]'"),
        ("token file empty", "holds no token"),
        ("config unknown key", "unknown setting 'listen_address'"),
        ("config bad role", "unknown role 'root'"),
        ("config unknown auth key", "must hold only 'tokens'"),
        ("config short token", "at least 8 characters"),
        ("config not TOML", "cannot parse config file"),
        ("config missing", "cannot read config file"),
        ("TLS cert missing", "TLS file not found"),
        ("TLS key missing", "TLS file not found"),
        ("TLS cert without key", "must be given together"),
        ("non-loopback without tokens", "refusing to serve 0.0.0.0 without authentication"),
        ("tiny body limit", "max_body_bytes"),
        ("zero workers", "--workers must be at least 1"),
    ],
)
def test_invalid_configuration_refuses_to_start(tmp_path: Path, case: str, message: str) -> None:
    """Each invalid setting: exit code 2 within seconds, a clear message, no secret echoed."""
    cfg = tmp_path / "server.toml"
    tokens = tmp_path / "tokens.txt"
    cert = tmp_path / "cert.pem"
    cert.write_text("not really a cert\n")
    args: tuple[str, ...] = ()
    env: dict[str, str] = {}
    if case == "env bad role":
        env = {"HUEDB_AUTH_TOKENS": f"{SECRET}:superuser"}
    elif case == "env short token":
        env = {"HUEDB_AUTH_TOKENS": f"{SECRET},short"}
    elif case == "env token with space":
        env = {"HUEDB_AUTH_TOKENS": "has a space in it"}
    elif case == "chroma short credentials":
        env = {"CHROMA_SERVER_AUTH_CREDENTIALS": "tiny"}
    elif case == "env token file bad role":
        tokens.write_text(f"{SECRET} owner\n")
        env = {"HUEDB_AUTH_TOKENS_FILE": str(tokens)}
    elif case == "token file missing":
        args = ("--auth-tokens-file", str(tmp_path / "nope.txt"))
    elif case == "token file too many fields":
        tokens.write_text(f"{SECRET} admin extra\n")
        args = ("--auth-tokens-file", str(tokens))
    elif case == "token file empty":
        tokens.write_text("# nothing here\n\n")
        args = ("--auth-tokens-file", str(tokens))
    elif case == "config unknown key":
        cfg.write_text('listen_address = "0.0.0.0"\n')
        args = ("--config", str(cfg))
    elif case == "config bad role":
        cfg.write_text(f'[auth]\ntokens = [{{token = "{SECRET}", role = "root"}}]\n')
        args = ("--config", str(cfg))
    elif case == "config unknown auth key":
        cfg.write_text(f'[auth]\ntoken = "{SECRET}"\n')
        args = ("--config", str(cfg))
    elif case == "config short token":
        cfg.write_text('[auth]\ntokens = [{token = "abc"}]\n')
        args = ("--config", str(cfg))
    elif case == "config not TOML":
        cfg.write_text(f"token: {SECRET}\n[[[\n")
        args = ("--config", str(cfg))
    elif case == "config missing":
        args = ("--config", str(tmp_path / "missing.toml"))
    elif case == "TLS cert missing":
        args = ("--ssl-certfile", str(tmp_path / "no-cert.pem"), "--ssl-keyfile", str(cert))
    elif case == "TLS key missing":
        args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "no-key.pem"))
    elif case == "TLS cert without key":
        args = ("--ssl-certfile", str(cert))
    elif case == "non-loopback without tokens":
        args = ("--host", "0.0.0.0")
    elif case == "tiny body limit":
        args = ("--max-body-bytes", "10")
    elif case == "zero workers":
        args = ("--workers", "0")
    output = run_refused(tmp_path, *args, env=env)
    assert message in output, output
    assert SECRET not in output, output


def test_loopback_and_unauthenticated_rules() -> None:
    """ServerConfig.check(): non-loopback needs tokens or --allow-unauthenticated."""
    token = make_token("long-enough-token", "admin")
    ServerConfig(host="127.0.0.1").check()
    ServerConfig(host="::1").check()
    ServerConfig(host="localhost").check()
    ServerConfig(host="0.0.0.0", tokens=[token]).check()
    ServerConfig(host="0.0.0.0", allow_unauthenticated=True).check()
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ConfigError, match="without authentication"):
            ServerConfig(host=host).check()


def test_tokens_never_appear_in_the_log(tmp_path: Path) -> None:
    """After right and wrong tokens in both styles (and a read-only 403), the log is clean."""
    tokens_file = tmp_path / "tokens.txt"
    file_token = "file-only-token-9c1d"
    tokens_file.write_text(f"{file_token} read-only\n")
    env = {**TOKENS_ENV, "CHROMA_SERVER_AUTH_CREDENTIALS": "chroma-env-token-5e6f"}
    secrets = [ADMIN, READER, WRONG, file_token, "chroma-env-token-5e6f", "another-wrong-one"]
    args = ("--log-level", "debug", "--auth-tokens-file", str(tokens_file))
    with huedb_server(tmp_path / "data", *args, env=env) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for token in secrets:
                for style in HEADER_STYLES:
                    headers = auth_headers(token, style)
                    client.get("/api/v2/auth/identity", headers=headers)
                    client.post(f"{DB}/collections", json={"name": "logged"}, headers=headers)
                    client.post(f"{DB}/collections", json={"name": "x"}, headers=headers)
                    client.post(f"{DB}/collections", content=b"{", headers=headers)
            client.get("/api/v2/heartbeat", headers=auth_headers(WRONG, "bearer"))
        time.sleep(0.3)
        log = server.log()
    assert "token auth with 4 token(s)" in log, log
    for secret in secrets:
        assert secret not in log, f"{secret} leaked into the log"
