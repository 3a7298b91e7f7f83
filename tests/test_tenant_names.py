"""Tenant and database names must be addressable in the HTTP API's URL paths (issue 13).

A tenant named `a/b/../c` used to be accepted and then could never be reached again
(`/tenants/a%2Fb%2F..%2Fc` is routed on its decoded path). Names with '/' are refused with
Chroma's error type, embedded and over HTTP; every name that is accepted round-trips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

import huedb
from huedb import errors
from huedb.api.client import clear_system_cache
from tests.servers import RunningServer, huedb_server

UNADDRESSABLE = ["a/b/../c", "a/b", "/abc", "abc/", "../../etc"]
# Chroma's server accepts these too; each must reach the same tenant again through a URL.
ADDRESSABLE = ["ab?c", "ab#c", "a b", "abé", "ab%c", "ab%2Fc", "...", "..x", "ab\\c", "a;b"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with huedb_server(tmp_path_factory.mktemp("tenants") / "data") as running:
        yield running


@pytest.mark.parametrize("name", UNADDRESSABLE)
def test_embedded_refuses_a_tenant_name_with_a_slash(name: str) -> None:
    client = huedb.EphemeralClient()
    with pytest.raises(errors.InvalidArgumentError, match="URL path"):
        client.create_tenant(name)
    with pytest.raises(errors.NotFoundError):
        client.get_tenant(name)
    with pytest.raises(errors.InvalidArgumentError):
        client.create_database(name)
    clear_system_cache()


@pytest.mark.parametrize("name", UNADDRESSABLE)
def test_http_refuses_a_tenant_name_with_a_slash(name: str, server: RunningServer) -> None:
    r = httpx.post(f"{server.url}/api/v2/tenants", json={"name": name})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "InvalidArgumentError" and "URL path" in r.json()["message"]
    client = huedb.HttpClient(host=server.host, port=server.port)
    with pytest.raises(errors.InvalidArgumentError, match="URL path"):
        client.create_tenant(name)
    listed = httpx.post(
        f"{server.url}/api/v2/tenants/default_tenant/databases", json={"name": name}
    )
    assert listed.status_code == 400 and listed.json()["error"] == "InvalidArgumentError"


def test_chromadb_client_gets_chromas_error_type(server: RunningServer) -> None:
    import chromadb
    from chromadb.config import Settings

    admin = chromadb.AdminClient(
        Settings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host=server.host,
            chroma_server_http_port=server.port,
            anonymized_telemetry=False,
        )
    )
    with pytest.raises(chromadb.errors.InvalidArgumentError):
        admin.create_tenant("a/b/../c")


@pytest.mark.parametrize("name", ADDRESSABLE)
def test_every_accepted_tenant_name_is_addressable(name: str, server: RunningServer) -> None:
    r = httpx.post(f"{server.url}/api/v2/tenants", json={"name": name})
    assert r.status_code == 200, r.text
    tenant_url = f"{server.url}/api/v2/tenants/{quote(name, safe='')}"
    got = httpx.get(tenant_url)
    assert got.status_code == 200 and got.json()["name"] == name
    client = huedb.HttpClient(host=server.host, port=server.port)
    client.create_database("dbx", tenant=name)
    scoped = huedb.HttpClient(host=server.host, port=server.port, tenant=name, database="dbx")
    scoped.create_collection("kept").add(ids=["a"], embeddings=[[1.0, 2.0]])
    listed = httpx.get(f"{tenant_url}/databases/dbx/collections").json()
    assert [c["name"] for c in listed] == ["kept"]
    assert scoped.get_collection("kept").count() == 1


def test_embedded_and_served_store_agree(tmp_path: Path) -> None:
    """A tenant created embedded is reachable once the same store is served."""
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    client.create_tenant("ab?c")
    client.create_database("dbx", tenant="ab?c")
    with pytest.raises(errors.InvalidArgumentError):
        client.create_tenant("a/b/../c")
    client.close()
    clear_system_cache()
    with huedb_server(data) as running:
        got = httpx.get(f"{running.url}/api/v2/tenants/{quote('ab?c', safe='')}/databases")
        assert [d["name"] for d in got.json()] == ["dbx"]


# Chroma's library takes any database name of 3 or more UTF-8 bytes (its server holds new
# ones to the collection-name rule); huedb refuses '/' besides, as for tenants.
LIBRARY_DATABASE_NAMES = [
    "alice@example.com", "team alpha", "db_", "_private", "données", "1.2.3.4", "a..b",
    "été", "x" * 600, "ab", "é", "",
]  # fmt: skip


@pytest.mark.parametrize("name", LIBRARY_DATABASE_NAMES, ids=lambda n: repr(n[:12]))
def test_embedded_database_names_are_chromadbs(name: str) -> None:
    """huedb's library refused every name outside [a-zA-Z0-9._-] (the server's rule), so a
    database named after a user's e-mail address worked with chromadb and not with huedb."""
    chromadb = pytest.importorskip("chromadb")
    theirs = chromadb.AdminClient(chromadb.Settings(anonymized_telemetry=False))
    ours = huedb.AdminClient()
    outcomes = []
    for admin in (theirs, ours):
        try:
            admin.create_database(name)
            outcomes.append(("created", admin.get_database(name)["name"]))
        except Exception as exc:  # noqa: BLE001 - the error's type is compared
            outcomes.append(("refused", type(exc).__name__))
    assert outcomes[1] == outcomes[0], outcomes
    if outcomes[1][0] == "created":
        client = huedb.EphemeralClient(database=name)
        client.create_collection("notes").add(ids=["a"], embeddings=[[1.0, 2.0]])
        assert huedb.EphemeralClient(database=name).get_collection("notes").count() == 1


def test_embedded_database_names_with_a_slash_are_refused() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="URL path"):
        huedb.AdminClient().create_database("prod/eu")


def test_a_database_the_library_named_is_served_though_the_server_creates_no_such_name(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data, database="default_database")
    huedb.AdminClient(client.get_settings()).create_database("alice@example.com")
    huedb.PersistentClient(path=data, database="alice@example.com").create_collection("notes")
    client.close()
    clear_system_cache()
    with huedb_server(data) as running:
        base = f"{running.url}/api/v2/tenants/default_tenant/databases"
        refused = httpx.post(base, json={"name": "bob@example.com"})
        assert refused.status_code == 400 and refused.json()["error"] == "InvalidArgumentError"
        listed = httpx.get(f"{base}/{quote('alice@example.com', safe='')}/collections")
        assert [c["name"] for c in listed.json()] == ["notes"]
