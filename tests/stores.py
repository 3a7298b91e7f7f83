"""The stores huedb runs on, as one test parametrisation: the suites that define huedb's
behaviour run against each of them, unchanged.

`STORE_KINDS` are the ids, `"sqlite"` and `"postgresql"`. The fixtures `store` (one per
test) and `module_store` (one per module, for module-scoped servers) are parametrised over
them and yield a `StoreTarget`: what a test needs to open a client, a server, a CLI command
or a worker process on that store. A data directory still comes from the test (`tmp_path`):
on SQLite it holds the store, on PostgreSQL only the node's derived index snapshots.

A PostgreSQL target is a fresh database of the session's throwaway cluster
(`tests/pg_cluster.py`), dropped afterwards; the cluster starts on the first PostgreSQL
test, so a run selecting only SQLite tests (`-k sqlite`) never starts one. After a passing
test the fixture checks that huedb created its tables in that database, so a store setting
lost on the way (a worker, a CLI command) fails the test instead of silently testing SQLite.

Use in a test module (the fixture is bound to a module name, so pytest finds it)::

    from tests import stores
    from tests.stores import StoreTarget

    store = stores.store


    def test_x(store: StoreTarget, tmp_path: Path) -> None:
        client = store.client(tmp_path / "data", database="db")
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

import huedb
from huedb.engine.engine import Engine
from huedb.options import EngineOptions

STORE_KINDS = ("sqlite", "postgresql")
_databases = itertools.count(1)


@dataclass(frozen=True)
class StoreTarget:
    """One store to run a test on: its kind and, for PostgreSQL, the database URL."""

    kind: str
    url: str = ""  # postgresql:// URL of a fresh database; "" for the SQLite store

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgresql"

    @property
    def settings(self) -> dict[str, Any]:
        """`huedb.Settings` keyword arguments selecting the store (none for SQLite)."""
        return {"huedb_store": self.url} if self.url else {}

    def cli_args(self) -> list[str]:
        """Arguments selecting the store for `huedb run` and the operations commands."""
        return ["--store", self.url] if self.url else []

    def env(self) -> dict[str, str]:
        """Environment selecting the store for CLI commands and worker processes."""
        return {"HUEDB_STORE": self.url} if self.url else {}

    def client(
        self, path: Path | str, settings: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        """A `huedb.PersistentClient` on `path` and this store; `settings` are more
        `huedb.Settings` fields, `kwargs` go to the client (tenant, database)."""
        chosen = huedb.Settings(**self.settings, **(settings or {}))
        return huedb.PersistentClient(path=str(path), settings=chosen, **kwargs)


SQLITE = StoreTarget("sqlite")


@contextlib.contextmanager
def store_target(kind: str, request: pytest.FixtureRequest) -> Iterator[StoreTarget]:
    """A `StoreTarget` of `kind` for the requesting test or module; a PostgreSQL database
    is created in the session's cluster for it and dropped afterwards."""
    if kind == "sqlite":
        yield StoreTarget("sqlite")
        return
    if kind != "postgresql":
        raise ValueError(f"unknown store kind {kind!r}; known: {STORE_KINDS}")
    cluster = request.getfixturevalue("pg_cluster")
    if not cluster.running:
        cluster.start()
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    name = f"s{os.getpid()}_{next(_databases)}_{slug}"[:63]
    url = cluster.create_database(name)
    try:
        yield StoreTarget("postgresql", url)
        if not cluster.running:
            cluster.start()
        assert_store_created(url)
    finally:
        if not cluster.running:
            cluster.start()
        cluster.drop_database(name)


def assert_store_created(url: str) -> None:
    """Fail unless huedb created its store in the database at `url`: a test handed a
    PostgreSQL target must not have run on SQLite because a setting was not passed on."""
    with psycopg.connect(url, connect_timeout=10) as conn:
        found = conn.execute("SELECT to_regclass('public.huedb_meta') IS NOT NULL").fetchone()
    assert found == (True,), f"no huedb store was created in {url}: the test ran on SQLite"


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest) -> Iterator[StoreTarget]:
    """Each store in turn, for one test (a fresh PostgreSQL database per test)."""
    with store_target(request.param, request) as target:
        yield target


@pytest.fixture(scope="module", params=STORE_KINDS)
def module_store(request: pytest.FixtureRequest) -> Iterator[StoreTarget]:
    """Each store in turn, for a whole module (a module-scoped server runs on it)."""
    with store_target(request.param, request) as target:
        yield target


def engine(target: StoreTarget, path: Path, **settings: Any) -> Engine:
    """An engine on `target`'s store (`path`: the data directory), with engine `settings`."""
    options = {"store": target.url} if target.url else {}
    return Engine(path, EngineOptions(**options, **settings))


@pytest.fixture
def engines(store: StoreTarget, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one store, as two processes (or nodes) would have."""
    a = engine(store, tmp_path / "a")
    b = engine(store, tmp_path / "a" if not store.url else tmp_path / "b")
    yield a, b
    a.close()
    b.close()
