"""`GET /metrics` keeps answering, and counts what it should, in three situations it did not:

- PostgreSQL down: the scrape answered 503 after 5 s (its per-collection gauges read the
  store), so the store-unavailable alerts could not fire. Now 200 with the process and
  request metrics, the per-collection gauges left out, one warning in the log.
- A worker killed (SIGKILL, the OOM killer): its live gauges (`pid` label) stayed in every
  scrape. Now they are dropped at the next scrape; those of a pid that runs but is no
  worker of this server (a reused pid) too, those of a running worker never.
- A client gone mid-upload: counted and logged as a 500. Now 499, not a 5xx.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import httpx

from tests.http_checks import ADMIN, DB, TOKENS_ENV
from tests.pg_cluster import PgCluster
from tests.servers import RunningServer, huedb_server
from tests.test_metrics import REQUESTS, scrape, value

HEADERS = {"Authorization": f"Bearer {ADMIN}"}
RESIDENT = "huedb_index_resident_bytes"


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_metrics_answer_while_postgresql_is_down(tmp_path: Path) -> None:
    with PgCluster() as cluster:
        env = {**TOKENS_ENV, "HUEDB_STORE": cluster.create_database("metrics_down")}
        with huedb_server(tmp_path / "data", env=env, timeout=60) as server:
            client = httpx.Client(base_url=server.url, headers=HEADERS, timeout=60)
            made = client.post(f"{DB}/collections", json={"name": "watched"})
            assert made.status_code == 200, made.text
            up = scrape(server, ADMIN)
            assert value(up, "huedb_collections") == 1
            watched = {
                "tenant": "default_tenant",
                "database": "default_database",
                "collection": "watched",
            }
            assert ("huedb_collection_records", frozenset(watched.items())) in up
            cluster.stop("immediate")
            assert client.get(f"{DB}/collections").status_code == 503
            down = scrape(server, ADMIN)  # asserts 200
            names = {name for name, _ in down}
            gauges = {n for n in names if n.startswith("huedb_collection_")}
            assert gauges <= {"huedb_collection_figures_computations_total"}, gauges
            assert "huedb_collections" not in names
            assert value(down, "huedb_storage_errors_total", status="503") >= 1
            assert any(n == REQUESTS for n in names)
            scrape(server, ADMIN)
            warned = server.log().count("/metrics without the per-collection gauges")
            assert warned == 1, server.log()
            assert "Traceback" not in server.log()
            cluster.start()
            wait_for(
                lambda: value(scrape(server, ADMIN), "huedb_collections") == 1,
                60,
                "the per-collection gauges to come back",
            )


def metrics_directory(server: RunningServer) -> Path:
    """The PROMETHEUS_MULTIPROC_DIR `huedb run` made for this server."""
    (found,) = Path(tempfile.gettempdir()).glob(f"huedb-metrics-{server.process.pid}-*")
    return found


def resident_pids(server: RunningServer) -> set[int]:
    return {int(dict(labels)["pid"]) for name, labels in scrape(server, ADMIN) if name == RESIDENT}


def test_a_killed_workers_live_gauges_leave_the_scrape(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", "--workers", "2", env=TOKENS_ENV) as server:
        first = server.worker_pids(2)
        wait_for(lambda: resident_pids(server) == set(first), 30, "both workers' gauges")
        killed, kept = first
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: killed not in server.worker_pids(2), 60, "a new worker")
        now = server.worker_pids(2)
        wait_for(lambda: resident_pids(server) == set(now), 30, "the new worker's gauge")
        assert kept in now
        files = metrics_directory(server)
        assert not list(files.glob(f"gauge_live*_{killed}.db"))
        # A pid that runs but is no worker of this server (this test: a reused pid) does not
        # keep gauges alive; the running workers' gauges stay.
        shutil.copy(files / f"gauge_liveall_{kept}.db", files / f"gauge_liveall_{os.getpid()}.db")
        assert resident_pids(server) == set(now)
        assert not (files / f"gauge_liveall_{os.getpid()}.db").exists()


def test_a_client_gone_mid_upload_counts_as_499(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", "--log-format", "json", env=TOKENS_ENV) as server:
        client = httpx.Client(base_url=server.url, headers=HEADERS, timeout=60)
        cid = client.post(f"{DB}/collections", json={"name": "uploads"}).json()["id"]
        path = f"{DB}/collections/{cid}/add"
        route = "/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}/add"
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN}"
                    "\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                    '{"ids": ['.encode()
                )
                time.sleep(0.2)

        def counted() -> float:
            labels = {"route": route, "method": "POST", "status": "499", "error": ""}
            return value(scrape(server, ADMIN), REQUESTS, **labels)

        wait_for(lambda: counted() == 3, 30, "three 499s")
        samples = scrape(server, ADMIN)
        statuses = {dict(labels)["status"] for name, labels in samples if name == REQUESTS}
        assert "500" not in statuses, statuses
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        uploads = [e["status"] for e in lines if e.get("route") == route]
        assert uploads == [499, 499, 499], uploads
