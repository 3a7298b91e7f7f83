"""A collection's owner (tenant, database) is what token scopes are checked against: a
collection whose database row is gone (deleted between two reads by another process) is
not found, never taken for one of the default database, which a token of that database is
allowed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.errors import NotFoundError


def test_a_collection_without_its_database_has_no_owner(tmp_path: Path) -> None:
    admin = huedb.AdminClient(huedb.Settings(is_persistent=True, persist_directory=str(tmp_path)))
    admin.create_tenant("acme")
    admin.create_database("prod", tenant="acme")
    client = huedb.PersistentClient(path=tmp_path, tenant="acme", database="prod")
    col = client.create_collection("docs")
    local = client._server
    assert local.owner_of(str(col.id)) == ("acme", "prod")
    with sqlite3.connect(tmp_path / "huedb.sqlite3") as conn:  # the row another process deleted
        conn.execute("DELETE FROM databases WHERE name = 'prod'")
    try:
        with pytest.raises(NotFoundError, match=f"Collection \\[{col.id}\\] does not exist"):
            local.owner_of(str(col.id))
    finally:
        client.close()
        clear_system_cache()
