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
