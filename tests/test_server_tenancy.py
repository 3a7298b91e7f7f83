"""Tenant and database in the path of collection-id routes.

Every route that names a collection by id checks that the collection lives in the tenant
and database of the path: through another tenant, another database, or a tenant/database
that does not exist, it answers 404 NotFoundError as Chroma does for a collection that does
not exist there, and changes nothing (full snapshot compare). Both the FastAPI routes and
the fast path (add/update/upsert/get/query) are covered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http_checks import assert_error, ok, snapshot
from tests.servers import RunningServer, huedb_server

TENANTS = ("tenant_a", "tenant_b")


def base(tenant: str, database: str) -> str:
    return f"/api/v2/tenants/{tenant}/databases/{database}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with huedb_server(tmp_path_factory.mktemp("tenancy") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def layout(server: RunningServer) -> dict[str, str]:
    """tenant_a/db_x holds collection `col_a` (3 records); tenant_a/db_y and tenant_b/db_x exist."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for tenant in TENANTS:
            ok(client.post("/api/v2/tenants", json={"name": tenant}))
            for db in ("db_x", "db_y"):
                ok(client.post(f"/api/v2/tenants/{tenant}/databases", json={"name": db}))
        col = ok(client.post(f"{base('tenant_a', 'db_x')}/collections", json={"name": "col_a"}))
        records = {
            "ids": ["1", "2", "3"],
            "embeddings": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
            "documents": ["one", "two", "three"],
        }
        ok(
            client.post(f"{base('tenant_a', 'db_x')}/collections/{col['id']}/add", json=records),
            201,
        )
        return {"id": col["id"]}


def id_routes(cid: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, suffix after /collections/<id>, JSON body) for every collection-id route."""
    rec = {"ids": ["9"], "embeddings": [[0.5, 0.5]], "documents": ["nine"]}
    return [
        ("POST", "/add", rec),
        ("POST", "/upsert", rec),
        ("POST", "/update", {"ids": ["1"], "documents": ["changed"]}),
        ("POST", "/get", {"include": ["documents"]}),
        ("POST", "/query", {"query_embeddings": [[1.0, 0.0]], "n_results": 1}),
        ("POST", "/delete", {"ids": ["1"]}),
        ("GET", "/count", None),
        ("GET", "/indexing_status", None),
        ("PUT", "", {"new_name": "renamed", "new_metadata": {"k": "v"}}),
        ("GET", "", None),  # GET .../collections/<id> is get-by-name: "<id>" is no name there
    ]


WRONG_PLACES = [
    ("tenant_b", "db_x"),  # another tenant, same database name
    ("tenant_a", "db_y"),  # same tenant, another database
    ("no_such_tenant", "db_x"),
    ("tenant_a", "no_such_db"),
    ("default_tenant", "default_database"),
]


@pytest.mark.parametrize(("tenant", "database"), WRONG_PLACES)
def test_id_routes_outside_their_tenant_are_not_found(
    server: RunningServer, layout: dict[str, str], tenant: str, database: str
) -> None:
    cid = layout["id"]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        before = snapshot(client, TENANTS)
        for method, suffix, body in id_routes(cid):
            response = client.request(
                method, f"{base(tenant, database)}/collections/{cid}{suffix}", json=body
            )
            assert_error(response, 404, "NotFoundError")
            if suffix:  # by name, a missing tenant/database says so ("Database [d] not found")
                message = response.json()["message"]
                assert message == f"Collection [{cid}] does not exist.", message
        by_id = client.get(f"{base(tenant, database)}/collections/by-id/{cid}")
        assert_error(by_id, 404, "NotFoundError")
        assert snapshot(client, TENANTS) == before


def test_id_routes_in_their_tenant_still_work(
    server: RunningServer, layout: dict[str, str]
) -> None:
    cid = layout["id"]
    prefix = f"{base('tenant_a', 'db_x')}/collections/{cid}"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert ok(client.get(f"{prefix}/count")) == 3
        got = ok(client.post(f"{prefix}/get", json={"ids": ["2"], "include": ["documents"]}))
        assert got["documents"] == ["two"]
        found = ok(
            client.post(f"{prefix}/query", json={"query_embeddings": [[0.0, 1.0]], "n_results": 1})
        )
        assert found["ids"] == [["2"]]
        ok(client.get(f"{base('tenant_a', 'db_x')}/collections/by-id/{cid}"))
        ok(client.get(f"{prefix}/indexing_status"))


def test_a_deleted_collection_is_gone_on_every_worker(tmp_path: Path) -> None:
    """With two workers, the id of a deleted collection is not found on either of them."""
    with (
        huedb_server(tmp_path / "data", "--workers", "2") as running,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        ok(client.post("/api/v2/tenants", json={"name": "tenant_one"}))
        ok(client.post("/api/v2/tenants/tenant_one/databases", json={"name": "db_one"}))
        prefix = base("tenant_one", "db_one")
        col = ok(client.post(f"{prefix}/collections", json={"name": "col_c"}))
        for _ in range(20):  # spread over both workers
            assert ok(client.get(f"{prefix}/collections/{col['id']}/count")) == 0
        ok(client.delete(f"{prefix}/collections/col_c"))
        for _ in range(20):
            response = client.post(f"{prefix}/collections/{col['id']}/get", json={"include": []})
            assert_error(response, 404, "NotFoundError")
