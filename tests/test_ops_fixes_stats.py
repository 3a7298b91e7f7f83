"""`huedb stats` tells same-named collections of different tenants and databases apart."""

from __future__ import annotations

import json
from pathlib import Path

import huedb
from huedb.api.client import clear_system_cache
from tests.cli import check_cli
from tests.servers import huedb_server

ADMIN = "admin-token-123456"


def _two_docs(data: Path) -> None:
    client = huedb.PersistentClient(path=data)
    client.create_tenant("acme")
    client.create_database("prod", tenant="acme")
    client.create_collection("docs").add(ids=["a"], embeddings=[[1.0]])
    other = huedb.PersistentClient(path=data, tenant="acme", database="prod")
    other.create_collection("docs").add(ids=["a", "b", "c"], embeddings=[[1.0]] * 3)
    other.close()
    client.close()
    clear_system_cache()


def _by_place(stats: dict) -> dict[tuple[str, str, str], int]:
    return {(c["tenant"], c["database"], c["name"]): c["count"] for c in stats["collections"]}


def test_stats_name_the_tenant_and_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _two_docs(data)
    stats = json.loads(check_cli("stats", "--path", str(data), "--json").stdout)
    assert _by_place(stats) == {
        ("default_tenant", "default_database", "docs"): 1,
        ("acme", "prod", "docs"): 3,
    }
    lines = check_cli("stats", "--path", str(data)).stdout.splitlines()
    assert any(line.startswith("  docs: 1 x 1") for line in lines), lines
    assert any(line.startswith("  acme/prod/docs: 3 x 1") for line in lines), lines
    env = {"HUEDB_AUTH_TOKENS": f"{ADMIN}:admin"}
    with huedb_server(data, env=env) as server:
        remote = check_cli("stats", "--url", server.url, "--token", ADMIN, "--json").stdout
    assert _by_place(json.loads(remote)) == _by_place(stats)


def test_stats_lines_escape_control_characters_in_names(tmp_path: Path) -> None:
    """A tenant name holding a newline (Chroma allows it) is printed quoted on its own line:
    it cannot forge a line of `huedb stats`' text output."""
    data = tmp_path / "data"
    tenant = "evil\nWARNING: disk on fire"
    client = huedb.PersistentClient(path=data)
    client.create_tenant(tenant)
    client.create_database("dbx", tenant=tenant)
    scoped = huedb.PersistentClient(path=data, tenant=tenant, database="dbx")
    scoped.create_collection("docs").add(ids=["a"], embeddings=[[1.0]])
    scoped.close()
    client.close()
    clear_system_cache()
    lines = check_cli("stats", "--path", str(data)).stdout.splitlines()
    assert not any(line.startswith("WARNING: disk on fire") for line in lines), lines
    assert any(line.startswith(f"  {tenant!r}/dbx/docs: 1 x 1") for line in lines), lines
