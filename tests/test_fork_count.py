"""`collection.fork_count()` (Chroma Cloud's) in every mode: the number of forks made in a
collection's lineage tree, the same answer from every member.

- In-process on SQLite and PostgreSQL: 0 before any fork; after forks of the source and of
  a fork, every member answers the tree's total; another tree is apart; the count survives
  reopening the store, is not lowered by deleting members, and its catalog rows are gone
  once no member is left (also after `delete_database`); a backup restored into the other
  store kind keeps it.
- Over HTTP against `huedb run`: `GET .../fork_count` answers `{"count": n}`; chromadb's
  `HttpClient` and huedb's read it; a missing collection is a 404 NotFoundError.
- chromadb's in-process client on huedb's store (the bridge) reads it too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import httpx
import psycopg
import pytest
from chromadb.api.shared_system_client import SharedSystemClient

import huedb
from huedb.api.client import clear_system_cache
from huedb.chroma_bridge import API_IMPL
from huedb.ops.backup import backup, restore
from tests import stores
from tests.servers import RunningServer, huedb_server
from tests.stores import StoreTarget

store = stores.store
LINEAGE_KEYS = "SELECT key, value FROM huedb_meta WHERE key LIKE 'fork%' ORDER BY key"


def lineage_rows(store: StoreTarget, data: Path) -> list[tuple[str, str]]:
    """The store's lineage rows in its catalog (`huedb/engine/fork_lineage.py`)."""
    if store.is_postgres:
        with psycopg.connect(store.url) as conn:
            return [tuple(r) for r in conn.execute(LINEAGE_KEYS)]
    with sqlite3.connect(data / "huedb.sqlite3") as conn:
        return [tuple(r) for r in conn.execute(LINEAGE_KEYS)]


def grow_tree(client: Any) -> tuple[Any, list[Any]]:
    """A source forked three times, one fork forked again: 4 forks in one tree."""
    source = client.create_collection("source", embedding_function=None)
    source.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
    assert source.fork_count() == 0
    first = source.fork("fork-1")
    assert source.fork_count() == first.fork_count() == 1
    forks = [first, source.fork("fork-2"), source.fork("fork-3")]
    forks.append(forks[1].fork("fork-2-1"))
    return source, forks


def test_fork_count_in_process(store: StoreTarget, tmp_path: Path) -> None:
    data = tmp_path / "data"
    client = store.client(data)
    source, forks = grow_tree(client)
    assert [c.fork_count() for c in (source, *forks)] == [4] * 5
    other = client.create_collection("other", embedding_function=None)
    assert other.fork_count() == 0
    other.fork("other-fork")
    assert other.fork_count() == 1 and source.fork_count() == 4
    clear_system_cache()

    reopened = store.client(data)
    assert reopened.get_collection("fork-2-1").fork_count() == 4
    for name in ("source", "fork-2"):  # the root and a fork with a fork of its own
        reopened.delete_collection(name)
    assert reopened.get_collection("fork-1").fork_count() == 4
    assert reopened.get_collection("fork-2-1").fork("fork-2-1-1").fork_count() == 5
    for name in ("fork-1", "fork-3", "fork-2-1", "fork-2-1-1"):
        reopened.delete_collection(name)
    rows = lineage_rows(store, data)
    assert [k.split(":")[0] for k, _ in rows] == ["fork_edges", "fork_root"]  # other's tree
    reopened.create_database("db2")
    elsewhere = store.client(data, database="db2")
    elsewhere.create_collection("src", embedding_function=None).fork("frk")
    assert len(lineage_rows(store, data)) == len(rows) + 2
    reopened.delete_database("db2")
    assert lineage_rows(store, data) == rows


def test_fork_count_survives_backup_and_restore(store: StoreTarget, tmp_path: Path) -> None:
    """A backup of either store restores its lineage into a fresh SQLite directory; on
    PostgreSQL, that backup also restores into the store emptied meanwhile."""
    data = tmp_path / "data"
    client = store.client(data)
    grow_tree(client)
    rows = lineage_rows(store, data)
    clear_system_cache()
    out = tmp_path / "backup.tar"
    backup(data, out, show_progress=False, store=store.url or None)
    restore(out, tmp_path / "restored", show_progress=False)
    restored = huedb.PersistentClient(path=str(tmp_path / "restored"))
    assert restored.get_collection("fork-2-1").fork_count() == 4
    assert lineage_rows(StoreTarget("sqlite"), tmp_path / "restored") == rows
    clear_system_cache()
    if store.is_postgres:
        emptied = store.client(data)
        for col in emptied.list_collections():
            emptied.delete_collection(col.name)
        assert lineage_rows(store, data) == []
        clear_system_cache()
        restore(out, data, show_progress=False, store=store.url)
        assert store.client(data).get_collection("source").fork_count() == 4
        assert lineage_rows(store, data) == rows


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with huedb_server(tmp_path_factory.mktemp("fork-count") / "data") as running:
        yield running


def test_fork_count_over_http(server: RunningServer) -> None:
    theirs = chromadb.HttpClient(host=server.host, port=server.port)
    ours = huedb.HttpClient(host=server.host, port=server.port)
    source, forks = grow_tree(theirs)
    assert [c.fork_count() for c in (source, *forks)] == [4] * 5
    assert ours.get_collection("fork-2-1").fork_count() == 4
    url = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    with httpx.Client(timeout=30) as http:
        assert http.get(f"{url}/{source.id}/fork_count").json() == {"count": 4}
        missing = http.get(f"{url}/{'0' * 8}-0000-4000-8000-{'0' * 12}/fork_count")
        assert (missing.status_code, missing.json()["error"]) == (404, "NotFoundError")
    theirs.delete_collection("fork-3")
    with pytest.raises(chromadb.errors.NotFoundError):
        theirs.get_collection("fork-3")
    assert source.fork_count() == 4


def test_fork_count_through_the_chromadb_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chromadb's own `PersistentClient` on huedb's store (`CHROMA_API_IMPL`)."""
    monkeypatch.setenv("CHROMA_API_IMPL", API_IMPL)
    SharedSystemClient.clear_system_cache()
    try:
        client = chromadb.PersistentClient(path=str(tmp_path / "data"))
        source, forks = grow_tree(client)
        assert [c.fork_count() for c in (source, *forks)] == [4] * 5
    finally:
        SharedSystemClient.clear_system_cache()
