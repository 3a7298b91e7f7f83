"""Opening the store an engine runs on: SQLite by default, PostgreSQL for a store URL.

The PostgreSQL store (and psycopg) is imported only when a store URL is opened: most
processes never need it, and the import costs ~80 ms of every start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from huedb.engine.sqlite_store.store import SQLiteStore
from huedb.engine.store import Store
from huedb.errors import errors_if_loaded
from huedb.options import EngineOptions

if TYPE_CHECKING:
    from huedb.engine.postgres_store.connection import PoolSettings


def pool_settings(options: EngineOptions) -> PoolSettings:
    """The PostgreSQL connection pool the options ask for."""
    from huedb.engine.postgres_store.connection import PoolSettings

    return PoolSettings(
        max_size=options.pg_pool_max_size,
        timeout=options.pg_pool_timeout,
        connect_timeout=max(1, round(options.pg_pool_timeout)),
        tcp_user_timeout=options.pg_pool_timeout,
        write_idle_timeout=options.pg_write_idle_timeout,
    )


def open_store(path: Path | None, options: EngineOptions) -> Store:
    """The store `options.store` selects: a `postgresql://` URL is the PostgreSQL store in
    that database (`path` then holds only derived files); "" is the SQLite store of the data
    directory `path` (None: a private one in memory)."""
    if options.store:
        from huedb.engine.postgres_store import PostgresStore

        return PostgresStore(options.store, options, pool_settings(options))
    return SQLiteStore(path, options)


def postgres_errors() -> tuple[type[BaseException], ...]:
    """psycopg's and its pool's errors once a PostgreSQL store was opened in this process
    (none before: nothing can have raised them), for an `except` to name."""
    return errors_if_loaded("psycopg", "Error") + errors_if_loaded("psycopg_pool", "PoolTimeout")
