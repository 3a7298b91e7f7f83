"""The real-PostgreSQL test harness (`tests/pg_cluster.py`) does what later tests rely on:
a server that is not root, reachable on 127.0.0.1 only, with a working pg_trgm, that keeps
committed rows across an immediate stop, with databases isolated from each other, and that
is gone (process and directory) once torn down."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

import psycopg
import pytest

from tests.pg_cluster import PgCluster, process_alive, require_pg_bin


def process_uid(pid: int) -> int:
    """The real user id of process `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


def _decode_address(hex_address: str) -> tuple[str, int]:
    """('127.0.0.1', 5432) from /proc/net/tcp's '0100007F:1538' (IPv6 likewise)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # The kernel prints the address as 32-bit words in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port, 16)


def listening_tcp_addresses(pid: int) -> set[tuple[str, int]]:
    """Every TCP address process `pid` listens on (its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        if match:
            inodes.add(match.group(1))
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                addresses.add(_decode_address(fields[1]))
    return addresses


def test_server_is_not_root_and_listens_on_loopback_only(pg_cluster: PgCluster) -> None:
    with psycopg.connect(pg_cluster.url()) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]
        assert process_uid(backend) != 0  # while connected: the backend exits with it
    postmaster = pg_cluster.postmaster_pid
    assert process_uid(postmaster) != 0
    assert listen == "127.0.0.1"
    assert listening_tcp_addresses(postmaster) == {("127.0.0.1", pg_cluster.port)}
    assert (pg_cluster.socket_dir / f".s.PGSQL.{pg_cluster.port}").is_socket()


def test_trigram_index_serves_substring_search(pg_url: str) -> None:
    rows = 20_000
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute(
            "INSERT INTO docs SELECT i, md5(i::text) FROM generate_series(1, %s) AS i", [rows]
        )
        conn.execute("CREATE INDEX docs_trgm ON docs USING gin (body gin_trgm_ops)")
        conn.execute("ANALYZE docs")
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN SELECT id FROM docs WHERE body LIKE '%abc%'")
        )
        found = {r[0] for r in conn.execute("SELECT id FROM docs WHERE body LIKE '%abc%'")}
    assert "Index Scan on docs_trgm" in plan, plan
    expected = {i for i in range(1, rows + 1) if "abc" in hashlib.md5(str(i).encode()).hexdigest()}
    assert expected and found == expected


def test_committed_rows_survive_an_immediate_stop(pg_cluster: PgCluster, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
    open_txn = psycopg.connect(pg_url)
    open_txn.execute("INSERT INTO t VALUES (1000)")  # never committed
    try:
        pg_cluster.stop("immediate")
        assert not pg_cluster.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg_url, connect_timeout=5).close()
        pg_cluster.start()
    finally:
        open_txn.close()
    with psycopg.connect(pg_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM t ORDER BY id")]
    assert ids == list(range(1, 101))


def test_databases_are_isolated(pg_cluster: PgCluster, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_here (x int)")
    other = pg_cluster.create_database("isolation_other")
    try:
        with psycopg.connect(other) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone()[0] is None
            conn.execute("CREATE TABLE only_here (x text)")  # same name, no conflict
    finally:
        pg_cluster.drop_database("isolation_other")


def test_teardown_stops_the_server_and_removes_its_directory_when_a_test_fails() -> None:
    with pytest.raises(ZeroDivisionError), PgCluster() as cluster:
        pid = cluster.postmaster_pid
        root = cluster.root
        assert cluster.running
        _ = 1 / 0
    assert not root.exists()
    assert not process_alive(pid)


def test_missing_binaries_fail_and_name_make_test() -> None:
    with pytest.raises(pytest.fail.Exception, match="make test"):
        require_pg_bin(search_path="", debian_glob="/nonexistent/*/bin")
