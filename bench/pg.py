"""The throwaway PostgreSQL server of the `huedb-pg` system.

The parent of a run (`bench.core.run`) starts one cluster when `huedb-pg` is benchmarked:
`tests/pg_cluster.PgCluster` (initdb in a temporary directory, 127.0.0.1 and a Unix socket
only, as an unprivileged user when run as root), with the test suite's speed-ups taken back:
fsync, full-page writes and synchronous commit are on, so an acknowledged write is as
durable as on huedb's SQLite store (`huedb_sync="full"`). Each run of the system gets a
fresh database (`BENCH_PG_URL` in the worker's environment), dropped at the end.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

URL_ENV = "BENCH_PG_URL"

# Appended after the test settings' include in postgresql.conf, so these win.
BENCH_SETTINGS = {
    "fsync": "on",
    "full_page_writes": "on",
    "synchronous_commit": "on",
    "shared_buffers": "256MB",
    "max_wal_size": "2GB",
}
_databases = itertools.count(1)


@contextlib.contextmanager
def cluster() -> Iterator[Any]:
    """A running throwaway PostgreSQL cluster with durable settings, destroyed afterwards."""
    from tests.pg_cluster import PgCluster  # needs the test extra, as chromadb does

    pg = PgCluster()
    try:
        lines = "".join(f"{name} = {value}\n" for name, value in BENCH_SETTINGS.items())
        with (pg.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# bench: durable settings\n" + lines)
        pg.start()
        yield pg
    finally:
        pg.destroy()


@contextlib.contextmanager
def database(pg: Any, label: str) -> Iterator[str]:
    """The URL of a fresh database (with pg_trgm) of `pg`, dropped afterwards."""
    name = f"bench_{label}_{next(_databases)}"
    url = pg.create_database(name)
    try:
        yield url
    finally:
        pg.drop_database(name)


def database_bytes(url: str) -> int:
    """Bytes PostgreSQL uses for the database at `url` (`pg_database_size`)."""
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0])


def server_settings(url: str) -> dict[str, str]:
    """The server settings that decide write speed and durability, as in force."""
    import psycopg

    names = ["server_version", *BENCH_SETTINGS]
    with psycopg.connect(url, connect_timeout=10) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in names}
