"""`huedb.AdminClient`, as chromadb's: tenants and databases of the store (or server) the
settings name, so admin code survives the one-import switch."""

from __future__ import annotations

from pathlib import Path

import chromadb
from chromadb.api.shared_system_client import SharedSystemClient

import huedb
from huedb.config import Settings


def _admin_steps(module: object, settings: object) -> list[object]:
    admin = module.AdminClient(settings)  # type: ignore[attr-defined]
    admin.create_tenant("acme")
    admin.create_database("prod", tenant="acme")
    return [
        admin.get_tenant("acme")["name"],
        admin.get_database("prod", tenant="acme")["name"],
        [d["name"] for d in admin.list_databases(tenant="acme")],
    ]


def test_admin_client_as_chromadb(tmp_path: Path) -> None:
    SharedSystemClient.clear_system_cache()
    theirs = _admin_steps(
        chromadb,
        chromadb.config.Settings(is_persistent=True, persist_directory=str(tmp_path / "c")),
    )
    SharedSystemClient.clear_system_cache()
    ours = _admin_steps(huedb, Settings(is_persistent=True, persist_directory=str(tmp_path / "h")))
    assert ours == theirs == ["acme", "prod", ["prod"]]
    client = huedb.PersistentClient(path=str(tmp_path / "h"), tenant="acme", database="prod")
    client.create_collection("in-acme").add(ids=["a"], embeddings=[[1.0]])
    assert client.get_collection("in-acme").count() == 1
    client.close()
