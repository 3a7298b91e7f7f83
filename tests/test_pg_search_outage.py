"""A search while PostgreSQL is down fails with StorageUnavailableError within the pool
timeout (docs/postgres.md), as every other call does: not after asking the store a second
time whether the collection still exists (which waited for the pool once more)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import huedb
from huedb import Knn, Search
from huedb.errors import StorageUnavailableError
from tests.pg_cluster import PgCluster

POOL_TIMEOUT_S = 2.0


def test_a_search_during_an_outage_fails_within_the_pool_timeout(tmp_path: Path) -> None:
    with PgCluster() as cluster:  # its own server: stopping it disturbs no other test
        url = cluster.create_database("search_outage")
        settings = huedb.Settings(huedb_store=url, huedb_pg_pool_timeout=POOL_TIMEOUT_S)
        client = huedb.PersistentClient(path=str(tmp_path / "node"), settings=settings)
        try:
            col = client.create_collection("docs")
            col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
            search = Search().rank(Knn(query=[1.0, 0.0])).limit(1)
            assert col.search(search)["ids"] == [["a"]]  # the schema is cached now
            cluster.stop("immediate")
            started = time.monotonic()
            with pytest.raises(StorageUnavailableError):
                col.search(search)
            waited = time.monotonic() - started
            with pytest.raises(StorageUnavailableError):
                col.count()
            # one wait for the pool (the second wait doubled it), with room for a slow machine
            assert waited < 1.75 * POOL_TIMEOUT_S, waited
            cluster.start()
            assert col.search(search)["ids"] == [["a"]]
        finally:
            client.close()
