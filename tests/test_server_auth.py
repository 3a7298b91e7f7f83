"""Security of `huedb run`: token auth and roles.

Every test talks to a real server process started by `tests/servers.py`. Acceptance:
every route x {no token, wrong token, admin token, read-only token} x both header styles
(`Authorization: Bearer` and `X-Chroma-Token`) gives the expected status, and no request
without a valid token reads or changes data; the real `chromadb.HttpClient` works against
the server with token auth, from every token source.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http_checks import (
    ADMIN,
    DB,
    HEADER_STYLES,
    READER,
    TOKENS_ENV,
    WRONG,
    admin_client,
    assert_error,
    auth_headers,
    chroma_client,
    ok,
    raw_http,
    snapshot,
    token_settings,
)
from tests.servers import RunningServer, huedb_server

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
        "HUEDB_AUTH_TOKENS": "list-admin-token:admin,list-reader-token:read-only",
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
