"""Attacks on tenant-scoped tokens against a real `huedb run` (issue 13 item 5).

A token `read-only@acme` or `admin@acme/prod+staging` must never read or change anything
outside its tenant (and databases), on any route, by any spelling of the path, any header
combination, any worker. The route x place x scope matrix is `test_tenant_tokens.py`; this
file holds what an attacker would try beyond it: encoded and doubled separators, lookalike
tenants, another tenant's collection id in every spelling the server accepts (through the
fast path too), aliases, two tokens in one request, refusals before the body, `--workers 2`,
and token lists that would silently mint a global admin token.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from huedb.errors import ConfigError
from huedb.server.server_config import (
    check_token_conflicts,
    parse_token_list,
    tokens_from_environment,
)
from tests.http_checks import assert_error, ok, raw_http
from tests.servers import RunningServer, huedb_server

GLOBAL_ADMIN = "global-admin-tok-1"
ACME_READ = "acme-read-tok-1"
ACME_DBS = "acme-dbs-admin-tok"  # admin@acme/prod+staging
ACME_ADMIN = "acme-admin-tok-1"
OTHER_ADMIN = "other-admin-tok1"
TOKENS = (
    f"{GLOBAL_ADMIN}:admin,{ACME_READ}:read-only@acme,{ACME_DBS}:admin@acme/prod+staging,"
    f"{ACME_ADMIN}:admin@acme,{OTHER_ADMIN}:admin@other"
)
SCOPED = (ACME_READ, ACME_DBS, ACME_ADMIN)
FULLWIDTH_ACME = "\uff41\uff43\uff4d\uff45"  # NFKC-normalises to "acme"
TENANTS = ("acme", "other", "ACME", FULLWIDTH_ACME)
DATABASES = ("prod", "staging", "dev")
FULLWIDTH_PATH = "%EF%BD%81%EF%BD%83%EF%BD%8D%EF%BD%85"


def base(tenant: str, database: str) -> str:
    return f"/api/v2/tenants/{tenant}/databases/{database}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("tenant-token-attacks")
    with huedb_server(tmp / "data", env={"HUEDB_AUTH_TOKENS": TOKENS}) as running:
        with httpx.Client(base_url=running.url, headers=bearer(GLOBAL_ADMIN)) as admin:
            seed(admin)
        yield running


def seed(admin: httpx.Client) -> None:
    """Every tenant x database gets `main` (one secret record) and `second`; each database
    gets the alias `shared` -> `main`."""
    for tenant in TENANTS:
        ok(admin.post("/api/v2/tenants", json={"name": tenant}))
        for database in DATABASES:
            ok(admin.post(f"/api/v2/tenants/{tenant}/databases", json={"name": database}))
            url = f"{base(tenant, database)}/collections"
            cid = ok(admin.post(url, json={"name": "main"}))["id"]
            ok(admin.post(url, json={"name": "second"}))
            record = {"ids": ["s"], "embeddings": [[1, 2, 3]], "documents": [f"secret-{cid}"]}
            ok(admin.post(f"{url}/{cid}/add", json=record), 201)
            alias = {"name": "shared", "collection": "main"}
            ok(admin.post(f"{base(tenant, database)}/aliases", json=alias))


def collection_id(server: RunningServer, tenant: str, database: str, name: str = "main") -> str:
    url = f"{server.url}{base(tenant, database)}/collections/{name}"
    return ok(httpx.get(url, headers=bearer(GLOBAL_ADMIN)))["id"]


def snapshot(server: RunningServer) -> dict[str, Any]:
    """Every tenant's databases, collections, aliases and records, in full."""
    state: dict[str, Any] = {}
    with httpx.Client(base_url=server.url, headers=bearer(GLOBAL_ADMIN), timeout=60) as admin:
        for tenant in TENANTS:
            for db in ok(admin.get(f"/api/v2/tenants/{tenant}/databases")):
                prefix = base(tenant, db["name"])
                entry: dict[str, Any] = {"aliases": ok(admin.get(f"{prefix}/aliases"))}
                for col in ok(admin.get(f"{prefix}/collections")):
                    include = {"include": ["embeddings", "metadatas", "documents", "uris"]}
                    got = admin.post(f"{prefix}/collections/{col['id']}/get", json=include)
                    entry[col["name"]] = (col, ok(got))
                state[f"{tenant}/{db['name']}"] = entry
    return state


def raw_status(server: RunningServer, method: str, target: str, headers: dict[str, str]) -> bytes:
    """The status line and body of one raw request (no client normalises the target)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if method in ("POST", "PUT"):
        lines += ["Content-Type: application/json", "Content-Length: 2"]
    request = "\r\n".join(lines) + "\r\n\r\n" + ("{}" if method in ("POST", "PUT") else "")
    return raw_http(server.port, request.encode("latin-1"))


# --------------------------------------------------------------------------- paths

OUTSIDE = [
    "/api/v2/tenants/acme%252F..%252Fother/databases/prod/collections",  # double encoding
    "/api/v2/tenants/acme/%2E%2E/other/databases/prod/collections",
    "/api/v2/tenants/acme%2F%2E%2E%2Fother/databases/prod/collections",
    "/api/v2/tenants/acme%5C..%5Cother/databases/prod/collections",
    "/api/v2/tenants/acme%0A/databases/prod/collections",
    "/api/v2/tenants/acme;/databases/prod/collections",
    "/api/v2/tenants/ACME/databases/prod/collections",
    "/api/v2/tenants/Acme/databases/prod/collections",
    f"/api/v2/tenants/{FULLWIDTH_PATH}/databases/prod/collections",
    "/api/v2/tenants/a%CC%8Acme/databases/prod/collections",
    "/api/v2/tenants/acme/databases/prod/collections/",
    "/api/v2/tenants/acme//databases/prod/collections",
    "//api/v2/tenants/other/databases/prod/collections",
    "http://127.0.0.1/api/v2/tenants/other/databases/prod/collections",
    "/api/v2/tenants/other/databases/prod/collections?tenant=acme",
    "/api/v2/tenants/other/databases/prod/collections#/../../acme",
    "/api/v2/tenants/%2e%2e/databases/prod/collections",
    "/api/v1/tenants/acme/databases/prod/collections",
    "/api/v2/admin/stats",
    "/api/v2/admin%2Fstats",
    "/redoc",
]
DATABASE_OUTSIDE = [
    "/api/v2/tenants/acme/databases/prod%2F..%2Fdev/collections",
    "/api/v2/tenants/acme/databases/prod%252F..%252Fdev/collections",
    "/api/v2/tenants/acme/databases/Prod/collections",
    "/api/v2/tenants/acme/databases/prod%0A/collections",
    "/api/v2/tenants/acme/databases/dev/collections",
    "/api/v2/tenants/acme/databases",
]


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "POST", "DELETE"])
def test_no_spelling_of_another_place_passes(server: RunningServer, method: str) -> None:
    """Encoded, doubled, dotted, case- and Unicode-variant paths: 403 for every scoped
    token, whatever the method; the token limited to prod+staging also for other databases."""
    failures = []
    for token in SCOPED:
        targets = OUTSIDE + (DATABASE_OUTSIDE if token == ACME_DBS else [])
        for target in targets:
            response = raw_status(server, method, target, bearer(token))
            if not response.startswith(b"HTTP/1.1 403 ") or b"secret-" in response:
                failures.append(f"{method} {target} [{token}]: {response[:200]!r}")
    assert not failures, "\n".join(failures)


def test_percent_encoded_own_tenant_is_still_in_scope(server: RunningServer) -> None:
    """The scope reads the decoded path the router matches: `%61cme` is `acme`."""
    target = "/api/v2/tenants/%61cme/databases/pr%6Fd/collections"
    for token in SCOPED:
        assert raw_status(server, "GET", target, bearer(token)).startswith(b"HTTP/1.1 200 ")


def test_no_websocket_upgrade_reaches_a_route(server: RunningServer) -> None:
    """The auth middleware passes non-HTTP scopes on; huedb has no WebSocket route, so an
    upgrade (uvicorn[standard] speaks WebSocket) is refused on every path, with any token."""
    upgrade = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    cid = collection_id(server, "other", "prod")
    for path in (
        "/api/v2/heartbeat",
        f"{base('other', 'prod')}/collections",
        f"{base('other', 'prod')}/collections/{cid}/get",
    ):
        for token in (None, ACME_READ, GLOBAL_ADMIN):
            auth = f"X-Chroma-Token: {token}\r\n" if token else ""
            request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{upgrade}{auth}\r\n"
            answer = raw_http(server.port, request.encode())
            assert answer.startswith(b"HTTP/1.1 403 "), (path, token, answer[:200])


# --------------------------------------------------------------------------- collection ids


def spellings(cid: str) -> list[str]:
    """Every form of a collection id the server accepts (uuid.UUID parses them all)."""
    return [cid, cid.upper(), "{" + cid + "}", f"urn:uuid:{cid}", cid.replace("-", "")]


ID_ROUTES = [  # (method, path after the collection id, body); the fast path's five first
    ("POST", "/get", {"include": ["documents"]}),
    ("POST", "/query", {"query_embeddings": [[1, 2, 3]], "n_results": 1}),
    ("POST", "/add", {"ids": ["x"], "embeddings": [[1, 1, 1]]}),
    ("POST", "/upsert", {"ids": ["s"], "embeddings": [[1, 1, 1]]}),
    ("POST", "/update", {"ids": ["s"], "documents": ["changed"]}),
    ("POST", "/delete", {"ids": ["s"]}),
    ("GET", "/count", None),
    ("GET", "/indexing_status", None),
    ("PUT", "", {"new_name": "stolen", "new_metadata": {"t": 1}}),
]


def test_collection_ids_of_other_places_are_not_found(server: RunningServer) -> None:
    """Another tenant's (or another database's) collection id, in any spelling, under the
    token's own tenant and database: 404 on every id route (the fast path's included) for
    every token that may call it there; nothing changes."""
    before = snapshot(server)
    foreign = [
        collection_id(server, "other", "prod"),
        collection_id(server, "ACME", "prod"),
        collection_id(server, FULLWIDTH_ACME, "prod"),
        collection_id(server, "acme", "dev"),  # same tenant, a database outside ACME_DBS
    ]
    failures = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for token in (*SCOPED, GLOBAL_ADMIN):
            for cid in foreign:
                for spelled in spellings(cid):
                    for method, tail, body in ID_ROUTES:
                        if token == ACME_READ and not (
                            method == "GET" or tail in ("/get", "/query")
                        ):
                            continue
                        url = f"{base('acme', 'prod')}/collections/{spelled}{tail}"
                        got = client.request(method, url, json=body, headers=bearer(token))
                        if got.status_code != 404 or "secret-" in got.text:
                            failures.append(f"{method} {url} [{token}]: {got.status_code}")
                    by_id = f"{base('acme', 'prod')}/collections/by-id/{spelled}"
                    got = client.get(by_id, headers=bearer(token))
                    if got.status_code != 404:
                        failures.append(f"GET {by_id} [{token}]: {got.status_code}")
    assert not failures, "\n".join(failures)
    assert snapshot(server) == before


# --------------------------------------------------------------------------- aliases


def test_aliases_never_cross_tenants_or_databases(server: RunningServer) -> None:
    """An alias can only name a collection of its own database: a scoped admin cannot
    point one at another tenant's or database's collection (by name, path or id), and
    the same alias name elsewhere resolves to the collection of the path's database."""
    before = snapshot(server)
    prefix = base("acme", "prod")
    other_main = collection_id(server, "other", "prod")
    dev_main = collection_id(server, "acme", "dev")
    with httpx.Client(base_url=server.url, headers=bearer(ACME_DBS), timeout=60) as client:
        for target in (other_main, dev_main, "../../other/prod/main", "other/prod/main"):
            for method, url in (("POST", f"{prefix}/aliases"), ("PUT", f"{prefix}/aliases/shared")):
                body = {"name": "stolen", "collection": target}
                assert client.request(method, url, json=body).status_code in (400, 404)
        assert snapshot(server) == before
        own_main = collection_id(server, "acme", "prod")
        assert ok(client.get(f"{prefix}/collections/shared"))["id"] == own_main
        got = ok(
            client.post(f"{prefix}/collections", json={"name": "shared", "get_or_create": True})
        )
        assert got["id"] == own_main
        assert (got["tenant"], got["database"]) == ("acme", "prod")
        dev = base("acme", "dev")
        assert_error(client.get(f"{dev}/collections/shared"), 403, "AuthError")
    assert snapshot(server) == before


def test_get_or_create_with_another_tenants_name_stays_home(server: RunningServer) -> None:
    """Creating (or get_or_create) `main` of another tenant makes nothing there: the
    collection is the one of the path's tenant and database."""
    before = snapshot(server)
    prefix = base("acme", "staging")
    own = collection_id(server, "acme", "staging")
    with httpx.Client(base_url=server.url, headers=bearer(ACME_ADMIN), timeout=60) as client:
        got = ok(client.post(f"{prefix}/collections", json={"name": "main", "get_or_create": True}))
        assert got["id"] == own and got["tenant"] == "acme"
        assert_error(client.post(f"{prefix}/collections", json={"name": "main"}), 409)
        records = ok(
            client.post(f"{prefix}/collections/{own}/get", json={"include": ["documents"]})
        )
        assert records["documents"] == [f"secret-{own}"]
    assert snapshot(server) == before


# --------------------------------------------------------------------------- headers


def test_two_different_tokens_are_refused(server: RunningServer) -> None:
    """A request carrying two different tokens is 401 in either header order: which one
    counted used to depend on the order (a proxy checking one header could be shown the
    other). Nothing combines; the same token twice, or a proxy's Basic credentials beside
    X-Chroma-Token, still work."""
    before = snapshot(server)
    other = base("other", "prod")
    cid = collection_id(server, "other", "prod")
    add = f"{other}/collections/{cid}/add"
    pairs = [
        (ACME_READ, GLOBAL_ADMIN),
        (ACME_READ, OTHER_ADMIN),
        (ACME_DBS, OTHER_ADMIN),
        (OTHER_ADMIN, "not-a-configured-token"),
    ]
    for first, second in pairs:
        for auth, chroma in ((first, second), (second, first)):
            headers = {"Authorization": f"Bearer {auth}", "X-Chroma-Token": chroma}
            for method, url, body in (
                ("POST", add, {"ids": ["z"], "embeddings": [[1, 1, 1]]}),
                ("GET", f"{other}/collections", None),
            ):
                got = httpx.request(method, server.url + url, json=body, headers=headers)
                assert_error(got, 401, "AuthorizationError")
                assert "two different tokens" in got.json()["message"]
                assert auth not in got.text and chroma not in got.text
            raw = raw_http(
                server.port,
                (
                    f"GET {other}/collections HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    f"X-Chroma-Token: {chroma}\r\nAuthorization: Bearer {auth}\r\n\r\n"
                ).encode(),
            )
            assert raw.startswith(b"HTTP/1.1 401 "), raw[:200]
        two_bearers = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
        got = httpx.get(f"{server.url}{other}/collections", headers=two_bearers)
        assert_error(got, 401, "AuthorizationError")
    assert snapshot(server) == before
    own = f"{server.url}{base('acme', 'prod')}/collections"
    same = {"Authorization": f"Bearer {ACME_READ}", "X-Chroma-Token": ACME_READ}
    ok(httpx.get(own, headers=same))
    proxied = {"Authorization": "Basic dXNlcjpwYXNz", "X-Chroma-Token": ACME_READ}
    ok(httpx.get(own, headers=proxied))
    assert_error(httpx.get(f"{server.url}{other}/collections", headers=proxied), 403, "AuthError")


# --------------------------------------------------------------------------- body


def headers_only(server: RunningServer, target: str, token_headers: str) -> bytes:
    """A POST announcing 30 MB whose body never comes: the first bytes of the answer."""
    request = (
        f"POST {target} HTTP/1.1\r\nHost: x\r\n{token_headers}"
        "Content-Type: application/json\r\nContent-Length: 30000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(request.encode())
        return sock.recv(4096)


def test_scope_refusals_come_before_the_body(server: RunningServer) -> None:
    """403 (scope) and 401 (two tokens) are answered from the headers, without waiting for
    a body; the refused body is then skipped, never read as a request of its own."""
    other = collection_id(server, "other", "prod")
    dev = collection_id(server, "acme", "dev")
    cases = [
        (f"{base('other', 'prod')}/collections/{other}/add", ACME_READ, 403),
        (f"{base('other', 'prod')}/collections/{other}/query", ACME_READ, 403),
        (f"{base('other', 'prod')}/collections/{other}/upsert", ACME_ADMIN, 403),
        (f"{base('acme', 'dev')}/collections/{dev}/add", ACME_DBS, 403),
        ("/api/v2/tenants", ACME_ADMIN, 403),
        ("/api/v2/admin/backup", ACME_ADMIN, 403),
        (f"{base('acme', 'prod')}/collections", ACME_READ, 403),
    ]
    for target, token, status in cases:
        started = time.monotonic()
        answer = headers_only(server, target, f"X-Chroma-Token: {token}\r\n")
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (target, answer[:200])
        assert time.monotonic() - started < 10
    two = f"X-Chroma-Token: {ACME_READ}\r\nAuthorization: Bearer {GLOBAL_ADMIN}\r\n"
    answer = headers_only(server, f"{base('other', 'prod')}/collections/{other}/add", two)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]

    smuggled = f"DELETE {base('other', 'prod')}/collections/second HTTP/1.1\r\nHost: x\r\n"
    smuggled += f"Authorization: Bearer {GLOBAL_ADMIN}\r\n\r\n"
    request = (
        f"POST {base('other', 'prod')}/collections HTTP/1.1\r\nHost: x\r\n"
        f"X-Chroma-Token: {ACME_ADMIN}\r\nContent-Length: {len(smuggled)}\r\n\r\n{smuggled}"
        "GET /api/v2/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answers = raw_http(server.port, request.encode())
    assert answers.count(b"HTTP/1.1 ") == 2 and answers.startswith(b"HTTP/1.1 403 "), answers
    second = collection_id(server, "other", "prod", "second")
    assert second  # the smuggled DELETE never ran


# --------------------------------------------------------------------------- identity, workers


def test_identity_is_the_presented_tokens_own(server: RunningServer) -> None:
    url = f"{server.url}/api/v2/auth/identity"
    assert ok(httpx.get(url, headers=bearer(ACME_DBS)))["databases"] == ["prod", "staging"]
    assert ok(httpx.get(url, headers={"X-Chroma-Token": ACME_READ}))["tenant"] == "acme"
    both = {"X-Chroma-Token": ACME_READ, "Authorization": f"Bearer {GLOBAL_ADMIN}"}
    assert_error(httpx.get(url, headers=both), 401, "AuthorizationError")


def test_scopes_hold_in_every_worker(tmp_path: Path) -> None:
    """`--workers 2`: each worker gets the scopes (they travel in the config JSON); 40 fresh
    connections are all refused outside the scope and all served inside it."""
    env = {"HUEDB_AUTH_TOKENS": TOKENS}
    with huedb_server(tmp_path / "data", "--workers", "2", env=env) as running:
        running.worker_pids(2)
        with httpx.Client(base_url=running.url, headers=bearer(GLOBAL_ADMIN)) as admin:
            for tenant in ("acme", "other"):
                ok(admin.post("/api/v2/tenants", json={"name": tenant}))
                ok(admin.post(f"/api/v2/tenants/{tenant}/databases", json={"name": "prod"}))
        statuses = []
        for n in range(40):
            tenant = ("acme", "other")[n % 2]
            url = f"{running.url}{base(tenant, 'prod')}/collections"
            headers = {"X-Chroma-Token": ACME_READ, "Connection": "close"}
            statuses.append((tenant, httpx.get(url, headers=headers).status_code))
        assert {s for t, s in statuses if t == "acme"} == {200}
        assert {s for t, s in statuses if t == "other"} == {403}


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "raw",
    [
        "acme-reader-1:read-only@acme,other-tenant",
        "acme-reader-1:read-only@acme, tenant-two",
        "acme-reader-1:read-only@acme,,tenant-two",
        "acme-reader-1:admin@acme/prod+staging,development",
    ],
)
def test_a_roleless_item_after_a_scoped_token_is_refused(raw: str) -> None:
    """`tok:read-only@acme,other-tenant` reads as a second tenant; it used to make
    `other-tenant` a global admin token (its secret: a tenant's name)."""
    with pytest.raises(ConfigError, match="no role right after") as info:
        parse_token_list(raw, "HUEDB_AUTH_TOKENS")
    assert "acme-reader-1" not in str(info.value)


def test_a_roleless_item_among_several_tokens_is_refused() -> None:
    """A ',' inside a token splits it: `part1,part2:read-only`, meant as one read-only
    token, made `part1` a global admin token. With several tokens each names its role."""
    for listed in (
        "plain-token-1,reader-token-1:read-only",
        "reader-token-1:read-only,plain-token-2",
        "plain-token-1,acme-reader-1:read-only@acme",
    ):
        with pytest.raises(ConfigError, match="has no role"):
            parse_token_list(listed, "env")
    entries = parse_token_list("admin-token-1:admin,acme-reader-1:read-only@acme", "env")
    assert [e.scope() for e in entries] == [("admin", None, None), ("read-only", "acme", None)]


def test_a_token_twice_across_sources_must_have_one_scope() -> None:
    """Chroma's one-token variable makes a global admin: the same token scoped elsewhere is
    refused, never widened or narrowed by whichever entry is checked last."""
    env = {
        "CHROMA_SERVER_AUTHN_CREDENTIALS": "shared-token-1",
        "HUEDB_AUTH_TOKENS": "shared-token-1:read-only@acme",
    }
    with pytest.raises(ConfigError, match="another role or scope"):
        check_token_conflicts(tokens_from_environment(env))
    same = {"HUEDB_AUTH_TOKENS": "shared-token-1:read-only@acme,shared-token-1:read-only@acme"}
    check_token_conflicts(tokens_from_environment(same))
