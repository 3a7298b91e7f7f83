"""Tenant-scoped tokens (issue 13, acceptance 3): a route x place x token-scope matrix.

Every route of the app's route table (read from the app itself, so a new route fails
`test_the_matrix_covers_every_route` until it is added here) is called with five tokens
(global admin, global read-only, tenant_a admin, tenant_a read-only, tenant_a admin limited
to two databases) on four places (tenant_a/db_x, tenant_a/db_y, tenant_b/db_x, a tenant that
does not exist). Each cell has an expected status; every refused cell (403, 404) is made
first, with everything it could change prepared, and a full snapshot of all tenants,
databases, collections, aliases and records must be unchanged after them. Then every
allowed cell is made and must succeed, and the scoped tokens' calls must leave tenant_b
untouched. The real `chromadb.HttpClient` works with a scoped token in its tenant and is
refused in another.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from huedb.engine.registry import release_engine
from huedb.errors import ConfigError
from huedb.server.app import create_app
from huedb.server.server_config import (
    ServerConfig,
    check_token_conflicts,
    load_config_file,
    parse_token_file,
    parse_token_list,
)
from tests.cli import run_cli
from tests.http_checks import assert_error, auth_headers, chroma_client, ok, token_settings
from tests.servers import RunningServer, free_port, huedb_server

# --------------------------------------------------------------------------- tokens and places

TOKENS = {  # key: (token, role, tenant, databases)
    "ga": ("global-admin-tok-1", "admin", None, None),
    "gr": ("global-read-tok-1", "read-only", None, None),
    "ta": ("tenant-a-admin-tok", "admin", "tenant_a", None),
    "tr": ("tenant-a-read-tok", "read-only", "tenant_a", None),
    "da": ("tenant-a-dbs-tok-1", "admin", "tenant_a", ("db_x", "db_del_daa")),
}
PLACES = {  # key: (tenant, database)
    "a": ("tenant_a", "db_x"),
    "ay": ("tenant_a", "db_y"),
    "b": ("tenant_b", "db_x"),
    "m": ("no_such_tenant", "db_x"),
}
SEEDED = [(t, d) for t in ("tenant_a", "tenant_b") for d in ("db_x", "db_y")]
GLOBAL = "n"  # the place key of routes that name no tenant


def token_sources(tmp: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """The five tokens spread over every source: env list, tokens file, TOML config."""
    tokens_file = tmp / "tokens.txt"
    tokens_file.write_text(f"# scoped\n{TOKENS['ta'][0]} admin@tenant_a\n")
    config = tmp / "server.toml"
    config.write_text(
        "[auth]\ntokens = [\n"
        f'  {{token = "{TOKENS["da"][0]}", tenant = "tenant_a", '
        'databases = ["db_x", "db_del_daa"], name = "subset"},\n]\n'
    )
    env = {
        "HUEDB_AUTH_TOKENS": f"{TOKENS['ga'][0]}:admin,{TOKENS['gr'][0]}:read-only,"
        f"{TOKENS['tr'][0]}:read-only@tenant_a"
    }
    return env, ("--auth-tokens-file", str(tokens_file), "--config", str(config))


STYLES = {"ga": "bearer", "gr": "x-chroma-token", "ta": "bearer", "tr": "x-chroma-token"}


def headers(key: str) -> dict[str, str]:
    """The token of `key`, in both header styles across the tokens."""
    return auth_headers(TOKENS[key][0], STYLES.get(key, "bearer"))


# --------------------------------------------------------------------------- the route table


def base(tenant: str, database: str) -> str:
    return f"/api/v2/tenants/{tenant}/databases/{database}"


@dataclass
class Call:
    """One cell's request, before the token: where it goes and what it acts on."""

    tenant: str | None
    database: str | None
    tag: str
    cid: str


Prepare = Callable[[httpx.Client, Call], None]


def make_database(admin: httpx.Client, call: Call) -> None:
    ok(admin.post(f"/api/v2/tenants/{call.tenant}/databases", json={"name": f"db_del_{call.tag}"}))


def make_collection(admin: httpx.Client, call: Call) -> None:
    url = f"{base(call.tenant, call.database)}/collections"
    ok(admin.post(url, json={"name": f"col_del_{call.tag}"}))


def make_record(admin: httpx.Client, call: Call) -> None:
    url = f"{base(call.tenant, call.database)}/collections/{call.cid}/add"
    ok(admin.post(url, json={"ids": [f"del_{call.tag}"], "embeddings": [[0, 1, 1]]}), 201)


def make_alias(prefix: str) -> Prepare:
    def prepare(admin: httpx.Client, call: Call) -> None:
        body = {"name": f"{prefix}_{call.tag}", "collection": "main"}
        ok(admin.post(f"{base(call.tenant, call.database)}/aliases", json=body))

    return prepare


@dataclass(frozen=True)
class Route:
    """A (method, path) of the route table and a valid request on it.

    access: who may call it at all: "open" (no token needed), "any-token" (names no tenant
    but reveals none: every valid token), "global" (names no tenant: global tokens only),
    "tenant" (the whole tenant: a token limited to databases may not), "tenant-get" (the
    tenant itself), "db" (a database: its tenant, and the database if the token lists some).
    """

    method: str
    path: str
    access: str = "db"
    read: bool = False  # a read-only token may make it
    ok: int = 200  # its status when allowed and the target exists
    missing: int = 404  # its status for a global token in a tenant that does not exist
    params: dict[str, str] = field(default_factory=dict)  # other path parameters
    body: Any = None
    prepare: Prepare | None = None
    query: dict[str, str] = field(default_factory=dict)  # query string parameters

    def url(self, call: Call) -> str:
        values = {"tenant": call.tenant, "database": call.database, "collection_id": call.cid}
        values |= {k: v.format(tag=call.tag) for k, v in self.params.items()}
        return self.path.replace("{rest:path}", "{rest}").format(**values)

    def database(self, call: Call) -> str | None:
        """The database the request names (None for routes above the database)."""
        if "{database}" not in self.path:
            return None
        return self.params.get("database", "{d}").format(tag=call.tag, d=call.database)

    def json_body(self, call: Call) -> Any:
        if self.body is None:
            return None
        return json.loads(json.dumps(self.body).replace("{tag}", call.tag))


T = "/api/v2/tenants/{tenant}"
D = T + "/databases/{database}"
C = D + "/collections/{collection_id}"
RECORD = {"ids": ["new_{tag}"], "embeddings": [[0.5, 0.5, 0.0]], "documents": ["{tag}"]}
ROUTES = [
    *(Route(m, p, "open", True) for m in ("GET", "HEAD") for p in ("/docs", "/openapi.json")),
    *(Route(m, "/docs/oauth2-redirect", "open", True) for m in ("GET", "HEAD")),
    *(Route(m, p, "open", True) for m in ("GET", "HEAD") for p in ("/console", "/console/")),
    *(
        Route(m, "/console/{name}", "open", True, params={"name": "app.js"})
        for m in ("GET", "HEAD")
    ),
    Route("GET", "/api/v2/console/tenants", "global", True),
    *(Route(m, "/redoc", "global", True) for m in ("GET", "HEAD")),
    *(
        Route("GET", p, "open", True)
        for p in ("/api/v2", "/api/v2/heartbeat", "/api/v2/version", "/api/v2/healthcheck")
    ),
    Route("GET", "/api/v2/pre-flight-checks", "any-token", True),
    Route("GET", "/api/v2/auth/identity", "any-token", True),
    Route("POST", "/api/v2/reset", "global"),
    Route("POST", "/api/v2/tenants", "global", body={"name": "tenant_new_{tag}"}),
    Route("POST", "/api/v2/admin/backup", "global"),
    Route("GET", "/api/v2/admin/stats", "global"),
    Route("GET", "/metrics", "global", True),
    *(
        Route(m, "/api/v1/{rest:path}", "global", m == "GET", 410, params={"rest": "heartbeat"})
        for m in ("GET", "POST", "PUT", "DELETE")
    ),
    Route("GET", T, "tenant-get", True),
    Route("POST", T + "/databases", "tenant", body={"name": "db_new_{tag}"}),
    Route("GET", T + "/databases", "tenant", True, missing=200),
    Route("GET", D, "db", True),
    Route("DELETE", D, params={"database": "db_del_{tag}"}, prepare=make_database),
    Route("GET", D + "/collections", read=True),
    Route("GET", D + "/collections_count", read=True),
    Route("POST", D + "/collections", body={"name": "col_new_{tag}"}),
    Route("GET", D + "/collections/by-id/{collection_id}", read=True),
    Route("GET", D + "/collections/{name}", read=True, params={"name": "main"}),
    Route(
        "DELETE",
        D + "/collections/{name}",
        params={"name": "col_del_{tag}"},
        prepare=make_collection,
    ),
    Route("GET", D + "/aliases", read=True),
    Route("POST", D + "/aliases", body={"name": "al_new_{tag}", "collection": "main"}),
    Route(
        "PUT",
        D + "/aliases/{alias}",
        params={"alias": "al_up_{tag}"},
        body={"collection": "second"},
        prepare=make_alias("al_up"),
    ),
    Route(
        "DELETE",
        D + "/aliases/{alias}",
        params={"alias": "al_del_{tag}"},
        prepare=make_alias("al_del"),
    ),
    Route("PUT", C, body={"new_metadata": {"touched": "{tag}"}}),
    Route("POST", C + "/add", ok=201, body=RECORD),
    Route("POST", C + "/update", body={"ids": ["a"], "documents": ["updated_{tag}"]}),
    Route("POST", C + "/upsert", body={"ids": ["up_{tag}"], "embeddings": [[0, 0.5, 0.5]]}),
    Route("POST", C + "/get", read=True, body={"ids": ["a"], "include": ["documents"]}),
    Route("POST", C + "/query", read=True, body={"query_embeddings": [[1, 0, 0]], "n_results": 2}),
    Route("POST", C + "/delete", body={"ids": ["del_{tag}"]}, prepare=make_record),
    Route("GET", C + "/count", read=True),
    Route("GET", C + "/indexing_status", read=True),
    Route("GET", D + "/stats", read=True),
    # `main` records no embedding function: the server refuses to embed for it (400).
    Route("GET", C + "/embed", read=True, ok=400, query={"text": "hello"}),
    Route("POST", C + "/search", read=True, body={"searches": []}),
    Route("POST", C + "/fork", body={"new_name": "forked_{tag}"}),
    Route("GET", C + "/fork_count", read=True),
]


def expected(route: Route, token: str, call: Call) -> int:
    """The status of one cell, from the rules in docs/deploy.md."""
    _, role, scope_tenant, scope_dbs = TOKENS[token]
    if route.access == "open":
        return route.ok
    if scope_tenant is not None:
        database = route.database(call)
        allowed = {
            "any-token": True,
            "global": False,
            "tenant-get": call.tenant == scope_tenant,
            "tenant": call.tenant == scope_tenant and scope_dbs is None,
            "db": call.tenant == scope_tenant and (scope_dbs is None or database in scope_dbs),
        }[route.access]
        if not allowed:
            return 403
    if role == "read-only" and not route.read:
        return 403
    if call.tenant == PLACES["m"][0]:
        return route.missing
    return route.ok


@dataclass
class Cell:
    route: Route
    token: str
    call: Call
    status: int


def cells(cids: dict[str, str]) -> list[Cell]:
    """Every (route, token, place) cell; routes naming no tenant once per token."""
    out = []
    for route in ROUTES:
        places = list(PLACES) if "{tenant}" in route.path else [GLOBAL]
        for token in TOKENS:
            for place in places:
                tenant, database = PLACES.get(place, (None, None))
                call = Call(tenant, database, f"{token}{place}", cids.get(place, ""))
                out.append(Cell(route, token, call, expected(route, token, call)))
    return out


def send(client: httpx.Client, cell: Cell) -> httpx.Response:
    route, call = cell.route, cell.call
    return client.request(
        route.method,
        route.url(call),
        json=route.json_body(call),
        params=route.query,
        headers=headers(cell.token),
    )


# --------------------------------------------------------------------------- data and snapshot


def seed(admin: httpx.Client) -> dict[str, str]:
    """Both tenants, db_x and db_y in each, collections `main` (records) and `second`; the
    place keys' collection ids (the missing tenant gets tenant_a/db_x's)."""
    ids: dict[tuple[str, str], str] = {}
    for tenant in ("tenant_a", "tenant_b"):
        ok(admin.post("/api/v2/tenants", json={"name": tenant}))
    for tenant, database in SEEDED:
        ok(admin.post(f"/api/v2/tenants/{tenant}/databases", json={"name": database}))
        url = f"{base(tenant, database)}/collections"
        cid = ok(admin.post(url, json={"name": "main", "metadata": {"v": 1}}))["id"]
        ok(admin.post(url, json={"name": "second"}))
        records = {
            "ids": ["a", "b", "c"],
            "embeddings": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            "documents": [f"doc {tenant} {database} {i}" for i in "abc"],
            "metadatas": [{"i": n} for n in range(3)],
        }
        ok(admin.post(f"{url}/{cid}/add", json=records), 201)
        ids[(tenant, database)] = cid
    return {key: ids.get(place, ids[("tenant_a", "db_x")]) for key, place in PLACES.items()}


def full_snapshot(admin: httpx.Client, tags: list[str]) -> Any:
    """All tenants' databases, collections (models), aliases and records in full; and
    whether any tenant a cell could have created exists."""
    state: dict[str, Any] = {}
    for tenant in ("tenant_a", "tenant_b", PLACES["m"][0], *(f"tenant_new_{t}" for t in tags)):
        got = admin.get(f"/api/v2/tenants/{tenant}")
        state[tenant] = got.status_code
        if got.status_code != 200:
            continue
        for db in ok(admin.get(f"/api/v2/tenants/{tenant}/databases")):
            prefix = base(tenant, db["name"])
            entry: dict[str, Any] = {
                "db": db,
                "aliases": ok(admin.get(f"{prefix}/aliases")),
                "count": ok(admin.get(f"{prefix}/collections_count")),
            }
            for col in ok(admin.get(f"{prefix}/collections")):
                entry[col["name"]] = {
                    "model": col,
                    "records": ok(
                        admin.post(
                            f"{prefix}/collections/{col['id']}/get",
                            json={"include": ["embeddings", "metadatas", "documents", "uris"]},
                        )
                    ),
                }
            state[f"{tenant}/{db['name']}"] = entry
    return state


# --------------------------------------------------------------------------- the tests


def route_table(data: Path) -> set[tuple[str, str]]:
    """(method, path) of every route of the app, read from the app itself."""
    app = create_app(ServerConfig(path=str(data)))
    try:
        return {(m, path) for path, methods in walk(app.routes) for m in methods}
    finally:
        release_engine(app.state.api.engine)


def walk(routes: list[Any]) -> Iterator[tuple[str, set[str]]]:
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included routers
            yield from walk(route.original_router.routes)
        else:
            yield route.path, set(route.methods)


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("tenant-tokens")
    env, args = token_sources(tmp)
    with huedb_server(tmp / "data", "--allow-reset", *args, env=env) as server:
        yield server


def test_the_matrix_covers_every_route(tmp_path: Path) -> None:
    """The route table of this file is exactly the app's: a new route must be added here."""
    table = {(r.method, r.path) for r in ROUTES}
    assert len(table) == len(ROUTES)
    assert route_table(tmp_path / "data") == table


def test_route_scope_matrix(matrix_server: RunningServer) -> None:
    """Refused cells change nothing (full snapshot); allowed cells succeed; scoped tokens
    leave tenant_b untouched."""
    with httpx.Client(base_url=matrix_server.url, headers=headers("ga"), timeout=60) as admin:
        cids = seed(admin)
        matrix = cells(cids)
        for cell in matrix:
            if cell.route.prepare and cell.call.tenant != PLACES["m"][0]:
                cell.route.prepare(admin, cell.call)
        tags = sorted({cell.call.tag for cell in matrix})
        before = full_snapshot(admin, tags)
    refused = [c for c in matrix if not 200 <= c.status < 300]
    allowed = [c for c in matrix if 200 <= c.status < 300 and c.route.path != "/api/v2/reset"]
    assert {c.status for c in refused} == {400, 403, 404, 410}
    assert sum(c.status == 403 for c in refused) > 300
    failures: list[str] = []
    with httpx.Client(base_url=matrix_server.url, timeout=60) as client:
        for cell in refused:
            response = send(client, cell)
            where = f"{cell.route.method} {cell.route.url(cell.call)} [{cell.token}]"
            if response.status_code != cell.status:
                failures.append(f"{where}: {response.status_code}, expected {cell.status}")
            elif cell.status == 403 and cell.route.method != "HEAD":
                assert_error(response, 403, "AuthError")
                assert response.json()["message"].startswith("Forbidden"), where
                assert "doc " not in response.text, where
        assert not failures, "\n".join(failures)
        with httpx.Client(base_url=matrix_server.url, headers=headers("ga"), timeout=60) as admin:
            assert full_snapshot(admin, tags) == before

            tenant_b = {k: v for k, v in before.items() if k.startswith("tenant_b")}
            for scoped in (True, False):
                for cell in allowed:
                    if (TOKENS[cell.token][2] is not None) != scoped:
                        continue
                    response = send(client, cell)
                    where = f"{cell.route.method} {cell.route.url(cell.call)} [{cell.token}]"
                    if response.status_code != cell.status:
                        failures.append(f"{where}: {response.status_code}: {response.text[:200]}")
                if scoped:
                    after = full_snapshot(admin, tags)
                    assert {k: v for k, v in after.items() if k.startswith("tenant_b")} == tenant_b
            assert not failures, "\n".join(failures)
            effects(admin)
            ok(admin.post("/api/v2/reset"))
            assert admin.get("/api/v2/tenants/tenant_a").status_code == 404


def effects(admin: httpx.Client) -> None:
    """A few allowed scoped calls had their effect where they were aimed."""
    prefix = base("tenant_a", "db_x")
    names = {c["name"] for c in ok(admin.get(f"{prefix}/collections"))}
    assert {"col_new_taa", "col_new_daa", "col_new_gaa"} <= names
    assert not {"col_del_taa", "col_del_daa"} & names
    assert "col_del_tab" in {
        c["name"] for c in ok(admin.get(f"{base('tenant_b', 'db_x')}/collections"))
    }
    dbs = {d["name"] for d in ok(admin.get("/api/v2/tenants/tenant_a/databases"))}
    assert {"db_new_taa", "db_new_taay"} <= dbs and "db_del_daa" not in dbs
    assert "db_del_daay" in dbs and "db_new_daa" not in dbs


def test_identity_names_the_tokens_scope(matrix_server: RunningServer) -> None:
    """GET /api/v2/auth/identity: a scoped token's tenant and databases (["*"]: all)."""
    expected_identity = {
        "ga": ("default_tenant", ["default_database"]),
        "gr": ("default_tenant", ["default_database"]),
        "ta": ("tenant_a", ["*"]),
        "tr": ("tenant_a", ["*"]),
        "da": ("tenant_a", ["db_x", "db_del_daa"]),
    }
    for key, (tenant, databases) in expected_identity.items():
        got = ok(httpx.get(f"{matrix_server.url}/api/v2/auth/identity", headers=headers(key)))
        assert got == {"user_id": "", "tenant": tenant, "databases": databases}, key


@pytest.mark.parametrize(
    "target",
    [
        "/api/v2/tenants/tenant_a%2F..%2Ftenant_b/databases/db_x/collections",
        "/api/v2/tenants/tenant_a/../tenant_b/databases/db_x/collections",
        "/api/v2/tenants/tenant_a/databases/db_x/../../../tenant_b/databases/db_x/collections",
        "/api/v2/tenants//tenant_b/databases/db_x/collections",
        "/api/v2/tenants/Tenant_A/databases/db_x/collections",
        "/api/v2/tenants/tenant_a%00/databases/db_x/collections",
        "/api/v2//tenants/tenant_a/databases/db_x/collections",
        "/api/v2/tenants/tenant_a/databases/db_x%2F..%2Fdb_y/collections",
    ],
)
def test_path_tricks_stay_outside_the_scope(matrix_server: RunningServer, target: str) -> None:
    """Encoded slashes, dot and empty segments, other case: 403 for scoped tokens (raw
    request line, so no client normalises the path)."""
    from tests.http_checks import raw_http

    for key in ("ta", "da"):
        token = TOKENS[key][0]
        request = f"GET {target} HTTP/1.1\r\nHost: x\r\nX-Chroma-Token: {token}\r\n"
        response = raw_http(matrix_server.port, (request + "Connection: close\r\n\r\n").encode())
        assert response.startswith(b"HTTP/1.1 403 "), (key, target, response[:300])


def test_own_tenant_percent_encoded_is_the_same_tenant(matrix_server: RunningServer) -> None:
    """The scope compares the decoded path, as the router matches it."""
    with httpx.Client(base_url=matrix_server.url, headers=headers("ga"), timeout=60) as admin:
        admin.post("/api/v2/tenants", json={"name": "tenant_a"})  # 200, or 409 if seeded
        admin.post("/api/v2/tenants/tenant_a/databases", json={"name": "db_x"})
        ok(admin.get(base("tenant_a", "db_x")))
    url = f"{matrix_server.url}/api/v2/tenants/tenant%5Fa/databases/db%5Fx"
    assert ok(httpx.get(url, headers=headers("da")))["name"] == "db_x"
    url = f"{matrix_server.url}/api/v2/tenants/tenant%5Fb/databases/db%5Fx"
    assert_error(httpx.get(url, headers=headers("da")), 403, "AuthError")


# --------------------------------------------------------------------------- chromadb client


def test_chromadb_client_with_scoped_tokens(tmp_path: Path) -> None:
    """chromadb.HttpClient with a scoped token works in its tenant, is refused in another;
    with Chroma's "overwrite singleton tenant/database from auth" client setting it takes
    tenant and database from /auth/identity."""
    from chromadb.errors import ChromaAuthError

    admin_tok, writer, reader = "e2e-global-admin", "e2e-tenant-writer", "e2e-tenant-reader"
    env = {
        "HUEDB_AUTH_TOKENS": f"{admin_tok}:admin,{writer}:admin@tenant_e/db_one,"
        f"{reader}:read-only@tenant_e"
    }
    elsewhere = base("tenant_f", "db_one")
    with huedb_server(tmp_path / "data", env=env) as server:
        with httpx.Client(base_url=server.url, headers=auth_headers(admin_tok, "bearer")) as admin:
            for tenant in ("tenant_e", "tenant_f"):
                ok(admin.post("/api/v2/tenants", json={"name": tenant}))
                ok(admin.post(f"/api/v2/tenants/{tenant}/databases", json={"name": "db_one"}))
            other = ok(admin.post(f"{elsewhere}/collections", json={"name": "fff"}))

        mine = chroma_client(
            server.port, tenant="tenant_e", database="db_one", settings=token_settings(writer)
        )
        col = mine.create_collection("docs")
        col.add(ids=["1", "2"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["one", "two"])
        assert col.query(query_embeddings=[[0.0, 1.0]], n_results=1)["ids"] == [["2"]]
        assert [c.name for c in mine.list_collections()] == ["docs"]

        auto = chroma_client(
            server.port,
            settings={
                **token_settings(writer, "X-Chroma-Token"),
                "chroma_overwrite_singleton_tenant_database_access_from_auth": True,
            },
        )
        assert (auto.tenant, auto.database) == ("tenant_e", "db_one")
        assert auto.get_collection("docs").count() == 2

        read = chroma_client(
            server.port, tenant="tenant_e", database="db_one", settings=token_settings(reader)
        )
        assert read.get_collection("docs").get(ids=["1"])["documents"] == ["one"]
        with pytest.raises(ChromaAuthError):
            read.get_collection("docs").add(ids=["3"], embeddings=[[1.0, 1.0]])

        for token in (writer, reader):
            for tenant, database in (
                ("tenant_f", "db_one"),
                ("default_tenant", "default_database"),
            ):
                with pytest.raises(ChromaAuthError):
                    chroma_client(
                        server.port,
                        tenant=tenant,
                        database=database,
                        settings=token_settings(token),
                    )
        with httpx.Client(base_url=server.url, headers=auth_headers(admin_tok, "bearer")) as admin:
            assert ok(admin.get(f"{elsewhere}/collections")) == [other]


# --------------------------------------------------------------------------- configuration


def test_every_config_form_gives_the_same_scope(tmp_path: Path) -> None:
    """Env list, tokens file, TOML and JSON config: one token limited to tenant_a/db_x+db_y."""
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[auth]\ntokens = [{token = "scoped-token-1", role = "read-only", '
        'tenant = "tenant_a", databases = ["db_x", "db_y"]}]\n'
    )
    as_json = tmp_path / "c.json"
    as_json.write_text(
        json.dumps(
            {
                "auth": {
                    "tokens": [
                        {
                            "token": "scoped-token-1",
                            "role": "read-only",
                            "tenant": "tenant_a",
                            "databases": ["db_x", "db_y"],
                        }
                    ]
                }
            }
        )
    )
    lines = tmp_path / "tokens.txt"
    lines.write_text("scoped-token-1 read-only@tenant_a/db_x+db_y  # a comment\n")
    forms = [
        parse_token_list("scoped-token-1:read-only@tenant_a/db_x+db_y", "HUEDB_AUTH_TOKENS"),
        parse_token_file(str(lines)),
        load_config_file(str(toml))["tokens"],
        load_config_file(str(as_json))["tokens"],
    ]
    for entries in forms:
        assert [e.scope() for e in entries] == [("read-only", "tenant_a", ("db_x", "db_y"))]
    (tenant_wide,) = parse_token_list("scoped-token-1:admin@tenant_a", "env")
    assert tenant_wide.scope() == ("admin", "tenant_a", None)
    round_trip = ServerConfig.from_json(ServerConfig(tokens=forms[0]).to_json())
    assert round_trip.tokens == forms[0]


BAD_LISTS = [
    ("scoped-token-1@tenant_a", "contains '@'"),
    ("scoped-token-1:read-only@", "at least 3 characters"),
    ("scoped-token-1:read-only@ab", "at least 3 characters"),
    ("scoped-token-1:read-only@/db_x", "at least 3 characters"),
    ("scoped-token-1:read-only@tenant_a/", "empty database name"),
    ("scoped-token-1:read-only@tenant_a/db_x+", "empty database name"),
    ("scoped-token-1:read-only@tenant_a/db_x+db_x", "listed twice"),
    ("scoped-token-1:read-only@tenant_a/*", "not a database name"),
    ("scoped-token-1:read-only@tenant_a/db x", "not a database name"),
    ("scoped-token-1:read-only@*", "at least 3 characters"),
    ("scoped-token-1:read-only@***", "no wildcards"),
    ("scoped-token-1:read-only@ten ant", "cannot be a token's scope"),
    ("scoped-token-1:read-only@ten@ant", "cannot be a token's scope"),
    ("scoped-token-1:read-only@tenant_a/db_x,database_two", "separate databases with '+'"),
    ("scoped-token-1:superuser@tenant_a", "unknown role"),
    ("scoped-token-1:read-only:tenant_a", "unknown role"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_LISTS)
def test_malformed_scopes_are_refused(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("+", r"\+")) as info:
        parse_token_list(raw, "HUEDB_AUTH_TOKENS")
    assert "scoped-token-1" not in str(info.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("scoped-token-1:read-only", "'token role'"),
        ("scoped-token-1@tenant_a admin", "contains '@'"),
        ("scoped-token-1 admin@tenant_a/db_x,db_y", "not a database name"),
        ("scoped-token-1 admin @tenant_a", "expected 'token [role]'"),
    ],
)
def test_malformed_token_file_lines_are_refused(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as info:
        parse_token_file(str(path))
    assert "scoped-token-1" not in str(info.value)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ('databases = ["db_x"]', "without a tenant"),
        ('tenant = "tenant_a", databases = []', "non-empty list"),
        ('tenant = "tenant_a", databases = "db_x"', "non-empty list"),
        ('tenant = "tenant_a", databases = ["db_x", 3]', "not a database name"),
        ("tenant = 12345", "at least 3 characters"),
        ('tenant = "a/b"', "cannot be a token's scope"),
        ('tenant = "tenant_a", database = "db_x"', "must be {token, role"),
    ],
)
def test_malformed_config_scopes_are_refused(tmp_path: Path, item: str, message: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f'[auth]\ntokens = [{{token = "scoped-token-1", {item}}}]\n')
    with pytest.raises(ConfigError, match=message.replace("{", r"\{")) as info:
        load_config_file(str(path))
    assert "scoped-token-1" not in str(info.value)


def test_one_token_with_two_scopes_is_refused() -> None:
    entries = parse_token_list("scoped-token-1:admin@tenant_a", "HUEDB_AUTH_TOKENS")
    entries += parse_token_list("scoped-token-1:admin@tenant_b", "other")
    with pytest.raises(ConfigError, match="another role or scope") as info:
        check_token_conflicts(entries)
    assert "scoped-token-1" not in str(info.value)
    same = parse_token_list("scoped-token-1:admin@tenant_a,scoped-token-1:admin@tenant_a", "env")
    check_token_conflicts(same)


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"HUEDB_AUTH_TOKENS": "scoped-token-1:read-only@tenant_a/db_x,db_yyy"}, (), "'+'"),
        ({"HUEDB_AUTH_TOKENS": "scoped-token-1@tenant_a"}, (), "contains '@'"),
        (
            {"HUEDB_AUTH_TOKENS": "scoped-token-1:admin,scoped-token-1:admin@tenant_a"},
            (),
            "another role or scope",
        ),
        ({}, ("--auth-tokens-file", "{tokens}"), "not a database name"),
        ({}, ("--config", "{config}"), "without a tenant"),
    ],
)
def test_huedb_run_refuses_a_malformed_scope(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    """`huedb run` exits 2 with the message, never echoing the token."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("scoped-token-1 read-only@tenant_a/*\n")
    config = tmp_path / "server.toml"
    config.write_text('[auth]\ntokens = [{token = "scoped-token-1", databases = ["db_x"]}]\n')
    args = tuple(a.format(tokens=tokens, config=config) for a in args)
    proc = run_cli(
        "run",
        "--path",
        str(tmp_path / "data"),
        "--port",
        str(free_port()),
        *args,
        env=env,
        timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "cannot start" in output and message in output, output
    assert "scoped-token-1" not in output, output
