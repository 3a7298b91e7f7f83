"""The throwaway PostgreSQL server of the `huedb-pg` system.

The parent of a run (`bench.core.run`) starts one cluster when `huedb-pg` is benchmarked:
`tests/pg_cluster.PgCluster` (initdb in a temporary directory, 127.0.0.1 and a Unix socket
only, as an unprivileged user when run as root), with the test suite's speed-ups taken back:
fsync, full-page writes and synchronous commit are on, so an acknowledged write is as
durable as on huedb's SQLite store (`huedb_sync="full"`). Each run of the system gets a
fresh database (`BENCH_PG_URL` in the worker's environment), dropped at the end.

The cluster is warmed before it is measured (`warm_wal`): a server that has been running
recycles its old WAL segment files, while a brand-new cluster creates (and zero-fills) a new
16 MB file for every segment it writes. At 100k x 384 that made the first ingest into a
new cluster ~25 % slower than the same ingest once segments existed (12.5-14.2k against
18-19.5k records/s, load ~2), a cost no running server pays. So about as much WAL as the
run will write (the core benchmark asks for twice its vectors' bytes, at most 1 GB) is
written once through a throwaway table and checkpointed, and `min_wal_size` keeps that
many segment files for reuse.
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
    "min_wal_size": "1GB",  # the warmed segments stay for reuse (see `warm_wal`)
}
MAX_WARM_WAL_BYTES = 1 << 30
_databases = itertools.count(1)


@contextlib.contextmanager
def cluster(warm_bytes: int = 0) -> Iterator[Any]:
    """A running throwaway PostgreSQL cluster with durable settings, destroyed afterwards;
    `warm_bytes` of WAL written first (`warm_wal`)."""
    from tests.pg_cluster import PgCluster  # needs the test extra, as chromadb does

    pg = PgCluster()
    try:
        lines = "".join(f"{name} = {value}\n" for name, value in BENCH_SETTINGS.items())
        with (pg.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# bench: durable settings\n" + lines)
        pg.start()
        if warm_bytes > 0:
            warm_wal(pg.url(), min(warm_bytes, MAX_WARM_WAL_BYTES))
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


def warm_wal(url: str, wal_bytes: int) -> None:
    """Write about `wal_bytes` of WAL through a throwaway table and checkpoint, so the
    segment files exist and are recycled as on a running server (module docstring)."""
    import psycopg

    rows = max(1, wal_bytes // 1_600)  # ~1.5 KB of WAL per row
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "CREATE TABLE bench_warm_wal AS SELECT g, repeat('x', 1500) AS pad "
            "FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("DROP TABLE bench_warm_wal")
        conn.execute("CHECKPOINT")


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
