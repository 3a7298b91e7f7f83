"""A fixture of the two stores themselves (no engine, no client), for tests of what each
store renders: bind it in a test module with `store = raw_stores.store`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from huedb.engine.postgres_store import PostgresStore
from huedb.engine.postgres_store.connection import PoolSettings
from huedb.engine.sqlite_store.store import SQLiteStore
from huedb.options import EngineOptions


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """An in-memory SQLite store, or a PostgreSQL store in a fresh database."""
    if request.param == "sqlite":
        opened: Any = SQLiteStore(None, EngineOptions())
    else:
        url = request.getfixturevalue("pg_url")
        opened = PostgresStore(url, EngineOptions(), PoolSettings(timeout=3.0))
    yield opened
    opened.close()
