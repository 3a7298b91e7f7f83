"""`huedb run --store postgresql://...`: serving, start-up refusals, and a PostgreSQL outage.

Issue 14, acceptance 3: PostgreSQL is stopped (`pg_ctl stop -m immediate`) while two
clients write through `huedb run`: the clients get 503s with Chroma's JSON error body (no
500, no request past a bound far above the pool wait), and after PostgreSQL starts again the
same server process serves again and every acknowledged write is present. The outage test
stops a cluster of its own, so the session's shared cluster keeps serving the other tests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from huedb.engine.postgres_store.connection import storage_error
from huedb.errors import StorageUnavailableError
from tests.cli import run_cli
from tests.pg_cluster import PgCluster
from tests.servers import free_port, huedb_server

DB = "/api/v2/tenants/default_tenant/databases/default_database"
POOL_TIMEOUT_S = 2.0
# A request waits at most the pool timeout for a connection, plus the connect timeout of an
# attempt in flight: ~4 s. The bound is far above that, and below the clients' own timeout.
MAX_REQUEST_S = 20.0
CLIENT_TIMEOUT_S = 60.0
WRITES_BEFORE = 20  # acknowledged writes per client before the stop
OUTAGE_S = 8.0  # longer than the pool's reconnect timeout (5 s): it must still come back
WRITES_AFTER = 20  # acknowledged writes per client after the restart


@dataclass
class Writer:
    """One client adding one record per request; what it saw."""

    name: str
    base: str
    collection: str
    acked: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    bodies_503: list[dict] = field(default_factory=list)
    max_seconds: float = 0.0
    error: BaseException | None = None
    acked_before_first_503: int | None = None

    def run(self, stop: threading.Event) -> None:
        try:
            with httpx.Client(base_url=self.base, timeout=CLIENT_TIMEOUT_S) as http:
                n = 0
                while not stop.is_set():
                    record_id = f"{self.name}-{n}"
                    n += 1
                    body = {
                        "ids": [record_id],
                        "embeddings": [[float(n), float(len(self.name)), 1.0]],
                        "metadatas": [{"writer": self.name, "n": n}],
                        "documents": [f"doc {record_id}"],
                    }
                    started = time.monotonic()
                    r = http.post(f"{DB}/collections/{self.collection}/add", json=body)
                    self.max_seconds = max(self.max_seconds, time.monotonic() - started)
                    self.statuses[r.status_code] += 1
                    if r.status_code == 201:
                        self.acked.append(record_id)
                    elif r.status_code == 503:
                        if self.acked_before_first_503 is None:
                            self.acked_before_first_503 = len(self.acked)
                        self.bodies_503.append(r.json())
                        time.sleep(0.05)  # a client backing off (not a synchronisation)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_outage_gives_503s_then_the_same_node_serves_again(tmp_path: Path) -> None:
    with PgCluster() as cluster:
        url = cluster.create_database("outage")
        args = ("--store", url, "--pg-pool-timeout", str(POOL_TIMEOUT_S))
        with huedb_server(tmp_path / "node", *args) as server:
            http = httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT_S)
            r = http.post(f"{DB}/collections", json={"name": "outage"})
            assert r.status_code == 200, r.text
            cid = r.json()["id"]
            writers = [Writer(name, server.url, cid) for name in ("a", "b")]
            stop = threading.Event()
            threads = [threading.Thread(target=w.run, args=(stop,)) for w in writers]
            for t in threads:
                t.start()
            try:
                _wait_for(
                    lambda: all(len(w.acked) >= WRITES_BEFORE for w in writers),
                    60,
                    "writes before the stop",
                )
                cluster.stop("immediate")
                _wait_for(
                    lambda: all(w.statuses[503] >= 1 for w in writers), 60, "503s during the outage"
                )
                # Each writer sends one request at a time: a write committed just before the
                # stop may still be acknowledged after it, but none after the writer's first 503.
                before = [w.acked_before_first_503 for w in writers]
                time.sleep(OUTAGE_S)  # keep PostgreSQL down while the clients keep trying
                during = [len(w.acked) for w in writers]
                cluster.start()
                wanted = [d + WRITES_AFTER for d in during]
                _wait_for(
                    lambda: all(len(w.acked) >= n for w, n in zip(writers, wanted, strict=True)),
                    90,
                    "writes after the restart",
                )
            finally:
                stop.set()
                for t in threads:
                    t.join(CLIENT_TIMEOUT_S + 5)
            for w in writers:
                assert w.error is None, f"writer {w.name}: {w.error!r}"
                assert set(w.statuses) <= {201, 503}, f"writer {w.name}: {w.statuses}"
                assert w.max_seconds < MAX_REQUEST_S, f"writer {w.name}: {w.max_seconds:.1f} s"
                for body in w.bodies_503[:20]:
                    assert body["error"] == "InternalError", body
                    assert "PostgreSQL is unavailable" in body["message"], body
            assert during == before, "no write may be acknowledged while PostgreSQL is down"
            acked = [i for w in writers for i in w.acked]
            got = http.post(
                f"{DB}/collections/{cid}/get", json={"ids": acked, "include": ["metadatas"]}
            )
            assert got.status_code == 200, got.text
            assert sorted(got.json()["ids"]) == sorted(acked)
            count = http.get(f"{DB}/collections/{cid}/count").json()
            assert count >= len(acked)
            # The same server process served before, during and after (never restarted).
            assert server.process.poll() is None
            log = server.log()
            print(
                f"outage: {sum(w.statuses[503] for w in writers)} 503s, "
                f"{len(acked)} acknowledged writes all present (count {count}), "
                f"max request {max(w.max_seconds for w in writers):.2f} s, "
                f"statuses {[dict(w.statuses) for w in writers]}"
            )
            assert "Traceback" not in log, log[-3000:]


def test_start_refuses_unreachable_postgresql_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql://huedb:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    started = time.monotonic()
    r = run_cli(
        "run", "--path", str(tmp_path / "node"), "--port", str(free_port()),
        "--store", url, "--pg-pool-timeout", "1",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot start" in lines[0], r.stderr
    assert "PostgreSQL is unavailable" in lines[0]
    assert "Traceback" not in r.stderr and "s3cret-pw" not in r.stderr + r.stdout
    assert elapsed < 60


@pytest.mark.parametrize("command", ["stats", "verify", "compact"])
def test_commands_on_unreachable_postgresql_exit_3_in_one_line(
    tmp_path: Path, command: str
) -> None:
    url = f"postgresql://huedb:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    r = run_cli(command, "--store", url, env={"HUEDB_PG_POOL_TIMEOUT": "1"})
    assert r.returncode == 3, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "storage error" in lines[0], r.stderr
    assert "s3cret-pw" not in r.stderr + r.stdout


def test_server_on_postgresql_serves_and_masks_the_password(
    tmp_path: Path, pg_cluster: PgCluster, pg_url: str
) -> None:
    # The test cluster trusts loopback logins, so any password is accepted: it must still
    # never be shown (log, stats).
    url = pg_url.replace("huedb@", "huedb:s3cret-pw@")
    with huedb_server(tmp_path / "node", "--store", url) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        cid = http.post(f"{DB}/collections", json={"name": "served"}).json()["id"]
        r = http.post(
            f"{DB}/collections/{cid}/add",
            json={"ids": ["x"], "embeddings": [[1.0, 2.0]], "documents": ["hello"]},
        )
        assert r.status_code == 201, r.text
        stats = http.get("/api/v2/admin/stats").json()
        assert stats["store_kind"] == "postgresql"
        assert stats["engine"]["store"] == url.replace("s3cret-pw", "***")
        assert stats["engine"]["postgresql_synchronous_commit"] == "on"
        log = server.log()
    assert "s3cret-pw" not in log and "s3cret-pw" not in str(stats)
    assert "store: PostgreSQL postgresql://huedb:***@" in log
    # Only derived files in the node's directory: no SQLite database.
    assert not (tmp_path / "node" / "huedb.sqlite3").exists()


def test_a_lost_connection_gives_clients_a_503_without_libpq_detail(
    tmp_path: Path, pg_cluster: PgCluster, pg_url: str
) -> None:
    # A write waits on the collection's row lock held here; its backend is then terminated,
    # so libpq's own error reaches the store mid-request.
    with huedb_server(tmp_path / "node", "--store", pg_url) as server:
        http = httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT_S)
        cid = http.post(f"{DB}/collections", json={"name": "held"}).json()["id"]
        body = {"ids": ["x"], "embeddings": [[1.0, 2.0]]}
        with psycopg.connect(pg_url, autocommit=True) as admin, psycopg.connect(pg_url) as holder:
            holder.execute("SELECT 1 FROM collections FOR UPDATE")
            result: dict[str, httpx.Response] = {}
            add = threading.Thread(
                target=lambda: result.update(r=http.post(f"{DB}/collections/{cid}/add", json=body))
            )
            add.start()
            waiting = (
                "SELECT pid FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            _wait_for(lambda: admin.execute(waiting).fetchone() is not None, 30, "a blocked write")
            admin.execute(f"SELECT pg_terminate_backend(pid) FROM ({waiting}) AS w")
            add.join(CLIENT_TIMEOUT_S)
            holder.rollback()
        r = result["r"]
        assert r.status_code == 503, r.text
        assert r.json() == {
            "error": "InternalError",
            "message": "PostgreSQL is unavailable (connection ended by the server); "
            "the request was not carried out",
        }
        log = server.log()
    assert "WARNING" in log and "terminating connection due to administrator command" in log


def test_unavailable_message_names_no_host_port_nor_user() -> None:
    port = free_port()
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(f"postgresql://someone:pw@127.0.0.1:{port}/db", connect_timeout=5)
    assert f"{port}" in str(caught.value)  # libpq's text names them
    error = storage_error(caught.value)
    assert isinstance(error, StorageUnavailableError)
    assert str(error) == (
        "PostgreSQL is unavailable (connection refused); the request was not carried out"
    )


def test_a_deadlock_is_a_rolled_back_write_not_an_outage(pg_url: str) -> None:
    """Two transactions that each wait for the other's row: PostgreSQL rolls one back
    (deadlock_detected). That is a 503 to retry, saying so; PostgreSQL is not unavailable."""
    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE pair (id int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO pair VALUES (1, 0), (2, 0)")
    first = psycopg.connect(pg_url)
    second = psycopg.connect(pg_url)
    failures: list[BaseException] = []
    try:
        first.execute("UPDATE pair SET v = 1 WHERE id = 1")
        second.execute("UPDATE pair SET v = 2 WHERE id = 2")

        def cross(conn: psycopg.Connection, row: int) -> None:
            try:
                conn.execute("UPDATE pair SET v = 3 WHERE id = %s", (row,))
                conn.commit()
            except psycopg.Error as exc:
                failures.append(exc)
                conn.rollback()

        threads = [
            threading.Thread(target=cross, args=(first, 2)),
            threading.Thread(target=cross, args=(second, 1)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        first.close()
        second.close()
    assert len(failures) == 1 and isinstance(failures[0], psycopg.errors.DeadlockDetected)
    error = storage_error(failures[0])
    assert isinstance(error, StorageUnavailableError)
    assert "deadlocked with another transaction" in str(error) and "retry it" in str(error)
    assert "unavailable" not in str(error)
