"""A PostgreSQL store that cannot be opened says why, in a class naming no host nor user
(the full libpq text is logged at DEBUG): a mistyped database or role is not reported as an
outage.
The pool gives no reason when it finds no working connection in time, so the store tries one
connection of its own (`postgres_store.connection._connection_failure`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import huedb
from huedb.errors import StorageUnavailableError
from tests.pg_cluster import PgCluster
from tests.servers import free_port


def _open(url: str, path: Path) -> None:
    settings = huedb.Settings(huedb_store=url, huedb_pg_pool_timeout=1.0)
    huedb.PersistentClient(path=str(path), settings=settings).close()


def test_a_missing_database_or_role_is_named_as_such(
    pg_cluster: PgCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not pg_cluster.running:
        pg_cluster.start()
    missing_db = pg_cluster.url("no_such_database_here")
    missing_role = f"postgresql://nobody_here@127.0.0.1:{pg_cluster.port}/postgres"
    for url in (missing_db, missing_role):
        with caplog.at_level(logging.DEBUG), pytest.raises(StorageUnavailableError) as caught:
            _open(url, tmp_path / "node")
        assert "(no such database or role)" in str(caught.value)
        assert "nobody_here" not in str(caught.value) and "no_such" not in str(caught.value)
    assert 'database "no_such_database_here" does not exist' in caplog.text


def test_nothing_listening_is_a_refused_connection(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailableError, match=r"\(connection refused\)"):
        _open(f"postgresql://someone@127.0.0.1:{free_port()}/db", tmp_path / "node")
