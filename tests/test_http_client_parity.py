"""huedb's HTTP clients (`huedb.HttpClient`, `huedb.AsyncHttpClient`) and chromadb's 1.5.9
clients making the same calls, against a real `huedb run` or, where only the wire matters
(auth headers, odd answers, a server that goes away), a small fake server on loopback.

- get_collection_by_id looks in the client's tenant and database;
- chromadb's client types (`ClientAPI`, `AsyncClientAPI`, `AdminAPI`) and `CloudClient`;
- `chroma_client_auth_provider` picks the auth header (token, basic) with chromadb's errors;
- `chroma_overwrite_singleton_tenant_database_access_from_auth` takes the token's scope;
- no read timeout; `get_settings()` describes the server (and reaches it again);
- a refused connection is a ValueError only while the client is built;
- the client and its collections keep working after `close()`;
- embeddings read back as float64 arrays;
- chromadb's argument conversions and checks; odd answers (a redirect, an empty body, an
  error body without "message") raise what chromadb raises.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import chromadb
import httpx
import numpy as np
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings

import huedb
from huedb.config import Settings
from tests.http_checks import chroma_client
from tests.servers import RunningServer, huedb_server
from tests.test_api_semantics import result_key_orders

TOKEN_PROVIDER = "chromadb.auth.token_authn.TokenAuthClientProvider"
BASIC_PROVIDER = "chromadb.auth.basic_authn.BasicAuthClientProvider"
FASTAPI = "chromadb.api.fastapi.FastAPI"
OVERWRITE = "chroma_overwrite_singleton_tenant_database_access_from_auth"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with huedb_server(tmp_path_factory.mktemp("http-parity") / "data") as running:
        yield running


def ours(port: int, **kwargs: Any) -> huedb.Client:
    """huedb's HttpClient on 127.0.0.1 (settings given as a dict of fields)."""
    settings = Settings(**kwargs.pop("settings", {}))
    return huedb.HttpClient(
        host=kwargs.pop("host", "127.0.0.1"), port=port, settings=settings, **kwargs
    )


def theirs(port: int, **kwargs: Any) -> Any:
    """chromadb's HttpClient on 127.0.0.1 (no shared-system cache between calls)."""
    return chroma_client(port, **kwargs)


def outcome(call: Callable[[], Any]) -> tuple[str, str]:
    """("OK", repr of the result) or (the error's class name, its message)."""
    try:
        return "OK", repr(call())
    except Exception as exc:
        return type(exc).__name__, str(exc)


# ------------------------------------------------------------------- a fake server


class FakeServer:
    """A Chroma server on 127.0.0.1 that answers identity, tenant and database checks, and
    `/heartbeat` with whatever `answer` says; it records every request's headers."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes, dict[str, str]] = (200, b'{"nanosecond heartbeat": 1}', {})
        self.headers: list[dict[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                path = self.path
                if path.endswith("/auth/identity"):
                    body = {"user_id": "", "tenant": "default_tenant"}
                    body["databases"] = ["default_database"]
                    return self.reply(200, json.dumps(body).encode(), {})
                if path.endswith("/tenants/default_tenant"):
                    return self.reply(200, b'{"name": "default_tenant"}', {})
                if path.endswith("/databases/default_database"):
                    body = {"id": str(uuid.UUID(int=0)), "name": "default_database"}
                    body["tenant"] = "default_tenant"
                    return self.reply(200, json.dumps(body).encode(), {})
                if path.endswith("/heartbeat"):
                    return self.reply(*fake.answer)
                return self.reply(404, b'{"error": "NotFoundError", "message": "nf"}', {})

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


# ------------------------------------------------------------- get_collection_by_id


def test_get_collection_by_id_in_the_clients_tenant_and_database(server: RunningServer) -> None:
    """A fresh client of tenant T / database D finds a collection of T/D by id (huedb's
    looked in the default tenant and database); a client elsewhere does not."""
    tenant = "byid_" + uuid.uuid4().hex[:8]
    admin = ours(server.port)
    admin.create_tenant(tenant)
    admin.create_database("dbx", tenant=tenant)
    results = {}
    for name, make in (("huedb", ours), ("chromadb", theirs)):
        collection_id = (
            make(server.port, tenant=tenant, database="dbx").create_collection(f"inside_{name}").id
        )
        fresh = make(server.port, tenant=tenant, database="dbx")
        elsewhere = make(server.port)
        results[name] = (
            outcome(lambda: fresh.get_collection_by_id(collection_id).name),  # noqa: B023
            outcome(lambda: elsewhere.get_collection_by_id(collection_id).name),  # noqa: B023
        )
    assert results["huedb"][0] == ("OK", "'inside_huedb'")
    assert results["chromadb"][0] == ("OK", "'inside_chromadb'")
    assert results["huedb"][1][0] == results["chromadb"][1][0] == "NotFoundError"


# ---------------------------------------------------------------------- client types


def test_client_types_as_chromadb_exports_them(server: RunningServer, tmp_path: Path) -> None:
    """The annotations and imports chromadb programs use work, and huedb's clients are
    instances of the types."""
    for source in (
        "_client: chromadb.ClientAPI | None = None",
        "def f(c: chromadb.AsyncClientAPI, a: chromadb.AdminAPI): pass",
        "from chromadb import ClientAPI, AdminAPI, AsyncClientAPI, CloudClient, Collection",
        "from chromadb.api import ClientAPI, AdminAPI, AsyncClientAPI, AsyncAdminAPI",
    ):
        exec(source.replace("from chromadb", "from huedb"), {"chromadb": huedb})
        exec(source, {"chromadb": chromadb})
    local = huedb.PersistentClient(path=str(tmp_path / "data"))
    remote = ours(server.port)
    admin = huedb.AdminClient(remote.get_settings())
    assert isinstance(local, huedb.ClientAPI) and isinstance(remote, huedb.ClientAPI)
    assert isinstance(admin, huedb.AdminAPI)
    from huedb.api import AsyncAdminAPI, ClientAPI

    assert ClientAPI is huedb.ClientAPI

    async def make_async() -> Any:
        return await huedb.AsyncHttpClient(host="127.0.0.1", port=server.port)

    async_client = asyncio.run(make_async())
    assert isinstance(async_client, huedb.AsyncClientAPI)
    assert isinstance(async_client, AsyncAdminAPI)


def test_cloud_client_names_huedbs_alternative() -> None:
    with pytest.raises(NotImplementedError, match=r"huedb\.HttpClient\(.*TokenAuthClientProvider"):
        huedb.CloudClient(tenant="t", database="d", api_key="key")


# ---------------------------------------------------------------------- auth headers

AUTH_CASES = {
    "basic": {
        "chroma_client_auth_provider": BASIC_PROVIDER,
        "chroma_client_auth_credentials": "admin:secret",
    },
    "token": {
        "chroma_client_auth_provider": TOKEN_PROVIDER,
        "chroma_client_auth_credentials": "tok",
    },
    "token-x-chroma": {
        "chroma_client_auth_provider": TOKEN_PROVIDER,
        "chroma_client_auth_credentials": "tok",
        "chroma_auth_token_transport_header": "X-Chroma-Token",
    },
    "token-explicit-authorization": {
        "chroma_client_auth_provider": TOKEN_PROVIDER,
        "chroma_client_auth_credentials": "tok",
        "chroma_auth_token_transport_header": "Authorization",
    },
    "token-bad-header": {
        "chroma_client_auth_provider": TOKEN_PROVIDER,
        "chroma_client_auth_credentials": "tok",
        "chroma_auth_token_transport_header": "X-Api-Key",
    },
    "token-lowercase-header": {
        "chroma_client_auth_provider": TOKEN_PROVIDER,
        "chroma_client_auth_credentials": "tok",
        "chroma_auth_token_transport_header": "x-chroma-token",
    },
    "token-not-ascii": {
        "chroma_client_auth_provider": TOKEN_PROVIDER,
        "chroma_client_auth_credentials": "tök",
    },
    "token-without-credentials": {"chroma_client_auth_provider": TOKEN_PROVIDER},
    "basic-without-credentials": {"chroma_client_auth_provider": BASIC_PROVIDER},
    "nothing": {},
}


def _sent_auth(fake: FakeServer, make: Callable[[], Any]) -> tuple[str, str]:
    """The auth headers of a heartbeat by the client `make` builds, or its error."""

    def call() -> dict[str, str]:
        client = make()
        fake.headers.clear()
        client.heartbeat()
        return {
            k: v for k, v in fake.headers[-1].items() if k in ("authorization", "x-chroma-token")
        }

    return outcome(call)


@pytest.mark.parametrize("case", sorted(AUTH_CASES))
def test_auth_provider_picks_the_header_as_chromadb(fake: FakeServer, case: str) -> None:
    fields = AUTH_CASES[case]
    got = _sent_auth(fake, lambda: ours(fake.port, settings=fields))
    want = _sent_auth(fake, lambda: theirs(fake.port, settings=fields))
    assert got == want
    if case == "basic":
        assert got == (
            "OK",
            repr({"authorization": "Basic " + base64.b64encode(b"admin:secret").decode()}),
        )


def test_auth_provider_unknown_is_refused(fake: FakeServer) -> None:
    """A provider huedb does not know is a ValueError (ConfigError) naming the two it knows
    (chromadb imports the class, which fails for a module that does not exist)."""
    fields = {"chroma_client_auth_provider": "chromadb.auth.token.TokenAuthClientProvider"}
    fields["chroma_client_auth_credentials"] = "tok"
    with pytest.raises(ValueError, match="TokenAuthClientProvider and .*BasicAuthClientProvider"):
        ours(fake.port, settings=fields)


def test_credentials_without_provider_send_a_token_unlike_chromadb(fake: FakeServer) -> None:
    """The one difference kept: huedb's tools pass the token alone, so credentials without a
    provider act as TokenAuthClientProvider's; chromadb sends no header then."""
    fields = {"chroma_client_auth_credentials": "tok"}
    assert _sent_auth(fake, lambda: ours(fake.port, settings=fields)) == (
        "OK",
        repr({"authorization": "Bearer tok"}),
    )
    assert _sent_auth(fake, lambda: theirs(fake.port, settings=fields)) == ("OK", "{}")


def test_async_client_sends_the_providers_header(fake: FakeServer) -> None:
    fields = AUTH_CASES["token-x-chroma"]

    async def heartbeat() -> None:
        client = await huedb.AsyncHttpClient(
            host="127.0.0.1", port=fake.port, settings=Settings(**fields)
        )
        fake.headers.clear()
        await client.heartbeat()

    asyncio.run(heartbeat())
    assert fake.headers[-1]["x-chroma-token"] == "tok"
    assert "authorization" not in fake.headers[-1]


# ---------------------------------------------------- tenant and database from the token

ADMIN = "admintok-123456"
SCOPED = "scopedtok-123456"
MULTI = "multitok-123456"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {
        "HUEDB_AUTH_TOKENS": f"{ADMIN}:admin,{SCOPED}:admin@acme/prod,{MULTI}:admin@acme/prod+dev"
    }
    with huedb_server(tmp_path_factory.mktemp("http-parity-auth") / "data", env=env) as running:
        admin = ours(
            running.port,
            settings={
                "chroma_client_auth_provider": TOKEN_PROVIDER,
                "chroma_client_auth_credentials": ADMIN,
            },
        )
        admin.create_tenant("acme")
        admin.create_database("prod", tenant="acme")
        admin.create_database("dev", tenant="acme")
        yield running


def _scoped(
    make: Callable[..., Any], port: int, token: str, overwrite: Any = True, **kwargs: Any
) -> Any:
    fields = {
        "chroma_client_auth_provider": TOKEN_PROVIDER,
        "chroma_client_auth_credentials": token,
    }
    if overwrite is not None:
        fields[OVERWRITE] = overwrite
    return make(port, settings=fields, **kwargs)


@pytest.mark.parametrize(
    ("token", "kwargs"),
    [
        (SCOPED, {}),
        (SCOPED, {"tenant": "acme"}),
        (SCOPED, {"tenant": "acme", "database": "prod"}),
        (SCOPED, {"tenant": "other"}),
        (SCOPED, {"database": "dev"}),
        (MULTI, {}),
        (MULTI, {"database": "dev"}),
        (ADMIN, {}),
    ],
)
def test_overwrite_tenant_database_from_auth(
    token_server: RunningServer, token: str, kwargs: dict[str, str]
) -> None:
    """With the setting on, the client takes the token's tenant (and its one database), and
    refuses a tenant or database given that differs, as chromadb's does."""

    def where(make: Callable[..., Any]) -> Callable[[], Any]:
        def build() -> Any:
            client = _scoped(make, token_server.port, token, **kwargs)
            collection = client.get_or_create_collection("scoped_col", embedding_function=None)
            return client.tenant, client.database, collection.tenant, collection.database

        return build

    got, want = outcome(where(ours)), outcome(where(theirs))
    assert got == want
    if token == SCOPED and not kwargs:
        assert got == ("OK", repr(("acme", "prod", "acme", "prod")))


def test_overwrite_off_keeps_the_default_tenant(token_server: RunningServer) -> None:
    got = outcome(lambda: _scoped(ours, token_server.port, SCOPED, overwrite=None).tenant)
    want = outcome(lambda: _scoped(theirs, token_server.port, SCOPED, overwrite=None).tenant)
    assert got[0] == want[0] == "ChromaAuthError"


def test_overwrite_from_the_environment(
    token_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OVERWRITE.upper(), "true")
    got = _scoped(ours, token_server.port, SCOPED, overwrite=None)
    want = _scoped(theirs, token_server.port, SCOPED, overwrite=None)
    assert (got.tenant, got.database) == (want.tenant, want.database) == ("acme", "prod")


def test_async_overwrite_tenant_database_from_auth(token_server: RunningServer) -> None:
    async def build() -> tuple[str, str]:
        fields = {
            "chroma_client_auth_provider": TOKEN_PROVIDER,
            "chroma_client_auth_credentials": SCOPED,
            OVERWRITE: True,
        }
        client = await huedb.AsyncHttpClient(
            host="127.0.0.1", port=token_server.port, settings=Settings(**fields)
        )
        collection = await client.get_or_create_collection("scoped_async", embedding_function=None)
        return collection.tenant, collection.database

    assert asyncio.run(build()) == ("acme", "prod")


# --------------------------------------------------------------------------- timeout


def test_no_read_timeout_as_chromadb(fake: FakeServer) -> None:
    """chromadb's client waits for an answer however long it takes (timeout=None); huedb's
    gave up after 60 s. Both sessions are configured alike, and a slow answer arrives."""
    mine, chromas = ours(fake.port), theirs(fake.port)
    assert chromas._server._session.timeout == httpx.Timeout(None)
    assert mine._server._session().timeout == httpx.Timeout(None)
    fake.answer = (200, b'{"nanosecond heartbeat": 7}', {})
    assert mine.heartbeat() == chromas.heartbeat() == 7


# ---------------------------------------------------------------------- get_settings


def _settings_fields(settings: Any) -> tuple[Any, ...]:
    return (
        settings.chroma_api_impl,
        settings.chroma_server_host,
        settings.chroma_server_http_port,
        settings.chroma_server_ssl_enabled,
    )


def test_get_settings_describes_the_server(server: RunningServer) -> None:
    mine = ours(server.port, host="localhost")
    assert _settings_fields(mine.get_settings()) == _settings_fields(
        theirs(server.port, host="localhost").get_settings()
    )
    assert _settings_fields(mine.get_settings()) == (FASTAPI, "localhost", server.port, False)
    name = "rt_" + uuid.uuid4().hex[:8]
    mine.create_collection(name)
    again = huedb.Client(mine.get_settings())
    assert name in [c.name for c in again.list_collections()]
    tenant = "rt_t_" + uuid.uuid4().hex[:8]
    huedb.AdminClient(mine.get_settings()).create_tenant(tenant)
    assert mine.get_tenant(tenant) == {"name": tenant}
    # chromadb's Settings make a port given as a string an int
    as_string = Settings(
        chroma_api_impl=FASTAPI,
        chroma_server_host="localhost",
        chroma_server_http_port=str(server.port),
    )
    assert huedb.AdminClient(as_string).get_tenant(tenant) == {"name": tenant}


def test_async_get_settings_names_the_async_api(server: RunningServer) -> None:
    async def settings_of_async(module: Any) -> Any:
        client = await module.AsyncHttpClient(host="localhost", port=server.port)
        return client.get_settings()

    SharedSystemClient.clear_system_cache()
    want = asyncio.run(settings_of_async(chromadb))
    assert _settings_fields(asyncio.run(settings_of_async(huedb))) == _settings_fields(want)


# ----------------------------------------------------------------- connection errors


def test_refused_connection_while_built_is_a_value_error(fake: FakeServer) -> None:
    port = fake.port
    fake.stop()
    got, want = outcome(lambda: ours(port)), outcome(lambda: theirs(port))
    assert (
        got
        == want
        == ("ValueError", "Could not connect to a Chroma server. Are you sure it is running?")
    )


def test_refused_connection_after_built_is_httpx_connect_error(fake: FakeServer) -> None:
    mine, chromas = ours(fake.port), theirs(fake.port)
    fake.stop()
    for client in (mine, chromas):
        with pytest.raises(httpx.ConnectError):
            client.heartbeat()
        with pytest.raises(httpx.ConnectError):
            client.list_collections()


# ---------------------------------------------------------------------- after close


@pytest.mark.parametrize("make", [ours, theirs], ids=["huedb", "chromadb"])
def test_client_and_collections_work_after_close(
    server: RunningServer, make: Callable[..., Any]
) -> None:
    name = f"closed_{make.__name__}"
    with make(server.port) as client:
        collection = client.get_or_create_collection(name, embedding_function=None)
    collection.upsert(ids=["a"], embeddings=[[1.0, 2.0]])
    assert collection.count() == 1
    assert client.heartbeat() > 0
    client.close()
    client.close()
    assert [c.name for c in client.list_collections() if c.name == name] == [name]
    client.delete_collection(name)


# ----------------------------------------------------------------------- embeddings


def test_embeddings_read_back_as_float64(server: RunningServer) -> None:
    def reads(client: Any, name: str) -> list[Any]:
        collection = client.create_collection(name, embedding_function=None)
        collection.add(ids=["a", "b"], embeddings=[[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]])
        got = collection.get(ids=["a", "b"], include=["embeddings"])["embeddings"]
        peek = collection.peek(1)["embeddings"]
        query = collection.query(
            query_embeddings=[[0.1, 0.2, 0.3]], n_results=2, include=["embeddings"]
        )
        client.delete_collection(name)
        arrays = [got, peek, *query["embeddings"]]
        return [(type(a).__name__, str(a.dtype), a.shape, np.round(a, 6).tolist()) for a in arrays]

    got = reads(ours(server.port), "dtype_huedb")
    assert got == reads(theirs(server.port), "dtype_chromadb")
    assert {row[1] for row in got} == {"float64"}


# ---------------------------------------------------------- constructor conversions


def test_constructor_conversions_and_checks_as_chromadb(server: RunningServer) -> None:
    port = server.port

    def both(**kwargs: Any) -> tuple[Any, Any]:
        settings = kwargs.pop("settings", {})

        def mine() -> Any:
            return huedb.HttpClient(settings=Settings(**settings), **kwargs).heartbeat() > 0

        def chromas() -> Any:
            SharedSystemClient.clear_system_cache()
            chosen = ChromaSettings(anonymized_telemetry=False, **settings)
            return chromadb.HttpClient(settings=chosen, **kwargs).heartbeat() > 0

        return outcome(mine), outcome(chromas)

    cases = [
        {"host": "localhost", "port": port, "settings": {"chroma_server_host": "otherhost"}},
        {"host": "localhost", "port": port, "settings": {"chroma_server_http_port": 1234}},
        {"host": "localhost", "port": port, "settings": {"chroma_server_host": "localhost"}},
        {"host": "localhost", "port": port, "settings": {"chroma_server_http_port": port}},
        {"host": "localhost", "port": float(port)},
        {"host": "localhost", "port": str(port)},
        {"host": f"http://localhost:{port}", "port": "abc"},
        {"host": "localhost", "port": port, "tenant": 123},
        {"host": "localhost", "port": port, "database": 123},
        {"host": "localhost", "port": port, "ssl": 0},
    ]
    for kwargs in cases:
        got, want = both(**dict(kwargs))
        assert got == want, kwargs
    assert both(host="localhost", port=port, settings={"chroma_server_host": "otherhost"})[0] == (
        "ValueError",
        "Chroma server host provided in settings[otherhost] is different to the one provided "
        "in HttpClient: [localhost]",
    )


def test_settings_object_is_claimed_as_chromadb_does(server: RunningServer) -> None:
    """chromadb writes the server into the Settings given: the same object for another port
    is refused."""
    settings = Settings()
    huedb.HttpClient(host="localhost", port=server.port, settings=settings)
    assert _settings_fields(settings) == (FASTAPI, "localhost", server.port, False)
    with pytest.raises(ValueError, match=r"http port provided in settings\[\d+\] is different"):
        huedb.HttpClient(host="localhost", port=server.port + 1, settings=settings)


# ----------------------------------------------------------------------- odd answers

ODD_ANSWERS = [
    (302, b"", {}),
    (302, b"", {"chroma-trace-id": "t-1"}),
    (200, b"", {}),
    (200, b"not json", {}),
    (400, b'{"error": "InvalidArgumentError"}', {}),
    (400, b'{"error": "InvalidArgumentError"}', {"chroma-trace-id": "t-2"}),
    (400, b'{"error": "SomethingElse", "message": "m"}', {}),
    (400, b'["error"]', {}),
    (500, b"Internal Server Error", {}),
    (404, b'{"error": "NotFoundError", "message": "nf"}', {"chroma-trace-id": "t-3"}),
]


@pytest.mark.parametrize(
    "answer", ODD_ANSWERS, ids=[f"{s}-{b[:20]!r}-{bool(h)}" for s, b, h in ODD_ANSWERS]
)
def test_odd_answers_raise_what_chromadb_raises(
    fake: FakeServer, answer: tuple[int, bytes, dict[str, str]]
) -> None:
    mine, chromas = ours(fake.port), theirs(fake.port)
    fake.answer = answer

    def heartbeat(client: Any) -> tuple[str, str, Any]:
        try:
            client.heartbeat()
        except Exception as exc:
            return type(exc).__name__, str(exc), getattr(exc, "trace_id", None)
        return "OK", "", None

    got, want = heartbeat(mine), heartbeat(chromas)
    assert got == want
    assert got[0] != "TypeError"


def test_async_client_refused_while_built_as_chromadb(fake: FakeServer) -> None:
    """chromadb's async client asks for its identity first, unwrapped: a server it cannot
    reach is httpx's ConnectError (the sync clients' ValueError)."""
    port = fake.port
    fake.stop()

    async def build(module: Any) -> Any:
        settings = {"anonymized_telemetry": False} if module is chromadb else {}
        chosen = (ChromaSettings if module is chromadb else Settings)(**settings)
        return await module.AsyncHttpClient(host="127.0.0.1", port=port, settings=chosen)

    for module in (huedb, chromadb):
        with pytest.raises(httpx.ConnectError):
            asyncio.run(build(module))


def test_results_list_their_keys_as_chromadbs_http_client(server: RunningServer) -> None:
    """chromadb's HTTP client builds get and query results in orders of their own (not its
    in-process client's, which huedb's HTTP client used: a DataFrame's columns, printouts
    and `list(result)` differed; review, 2026-12-08)."""
    assert result_key_orders(ours(server.port), "http-keys-ours") == result_key_orders(
        theirs(server.port), "http-keys-theirs"
    )


def test_header_names_are_merged_without_case(server: RunningServer) -> None:
    """A user's `authorization` header beside a token provider's `Authorization` was sent
    twice (the server refused two tokens); a user's Content-Type replaced the JSON one
    every request needs. chromadb replaces both, and so does huedb now."""
    from huedb.api.http_headers import merged_headers

    assert merged_headers(
        {"authorization": "Bearer stale", "X-Other": "1"},
        {"Content-Type": "text/plain"},
        {"Authorization": "Bearer fresh", "content-type": "application/json"},
    ) == {"X-Other": "1", "Authorization": "Bearer fresh", "content-type": "application/json"}
    client = ours(server.port, headers={"Content-Type": "text/plain"})
    col = client.get_or_create_collection("header-case", embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0, 2.0]])
    assert col.count() == 1


def test_a_lower_case_auth_header_gives_way_to_the_token_provider(
    token_server: RunningServer,
) -> None:
    for make in (ours, theirs):
        client = make(
            token_server.port,
            headers={"authorization": "Bearer stale-token"},
            settings={
                "chroma_client_auth_provider": TOKEN_PROVIDER,
                "chroma_client_auth_credentials": ADMIN,
            },
        )
        assert client.count_collections() >= 0, make
