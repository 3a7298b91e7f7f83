"""Leak test: repeated open/close of clients in one process leaks no fds or memory.

Acceptance (issue): "Repeated open/close of clients in one process leaks no file
descriptors or memory." `test_client_open_close_leaks_nothing` opens and closes
PersistentClient, EphemeralClient and HttpClient many times in this process and checks the
open file descriptors (/proc/self/fd) and VmRSS before and after, after a warm-up; the
server worker must not accumulate fds either.
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import huedb
from tests.proc_stats import fd_count, open_fds, status_kb
from tests.servers import huedb_server

DIM = 64


def test_client_open_close_leaks_nothing(tmp_path: Path) -> None:
    """Open/close clients many times in this process: no fd growth, RSS growth < 20 MB.

    PersistentClient 20 + 300 times (a query each time), EphemeralClient 20 + 300 times,
    HttpClient 20 + 200 times against a server. The first 20 of each are warm-up (imports,
    lazy caches, the first SQLite/HTTP setup); fds and VmRSS are measured after them and at
    the end, after gc.collect(). Allowed fd growth: 0. After every PersistentClient.close()
    (the last client on the path), no fd of this process may point into the store directory:
    the shared engine must have closed its SQLite connection and lock files. The server's
    worker must not accumulate fds either (closed HTTP clients close their connections).
    """
    store = tmp_path / "store"
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((20, DIM)).astype(np.float32)
    ids = [f"id{i}" for i in range(20)]
    query = rng.standard_normal((1, DIM)).astype(np.float32)
    figures: dict[str, Any] = {}

    def persistent_round() -> None:
        client = huedb.PersistentClient(path=str(store))
        col = client.get_or_create_collection("leak")
        col.upsert(ids=ids, embeddings=vectors)
        res = col.query(query_embeddings=query, n_results=3)
        assert len(res["ids"][0]) == 3
        client.close()
        held = [t for t in open_fds() if t.startswith(str(store))]
        assert not held, f"fds into the store still open after close(): {held}"

    def ephemeral_round() -> None:
        client = huedb.EphemeralClient()
        col = client.get_or_create_collection("leak")
        col.upsert(ids=ids, embeddings=vectors)
        res = col.query(query_embeddings=query, n_results=3)
        assert len(res["ids"][0]) == 3
        client.close()

    def measure(name: str, round_fn: Callable[[], None], times: int) -> None:
        for _ in range(20):
            round_fn()
        gc.collect()
        fds_before, rss_before = open_fds(), status_kb("self", "VmRSS")
        for _ in range(times):
            round_fn()
        gc.collect()
        fds_after, rss_after = open_fds(), status_kb("self", "VmRSS")
        figures[name] = {
            "rounds": times,
            "fds_before": len(fds_before),
            "fds_after": len(fds_after),
            "fd_growth": len(fds_after) - len(fds_before),
            "new_fd_targets": sorted(Counter(fds_after) - Counter(fds_before)),
            "rss_before_kb": rss_before,
            "rss_after_kb": rss_after,
            "rss_growth_kb": rss_after - rss_before,
        }

    measure("persistent", persistent_round, 300)
    measure("ephemeral", ephemeral_round, 300)

    data = tmp_path / "server-data"
    data.mkdir()
    with huedb_server(data) as server:
        setup = huedb.HttpClient(host="127.0.0.1", port=server.port)
        setup.create_collection("leak").add(ids=ids, embeddings=vectors)
        setup.close()

        def http_round() -> None:
            client = huedb.HttpClient(host="127.0.0.1", port=server.port)
            res = client.get_collection("leak").query(query_embeddings=query, n_results=3)
            assert len(res["ids"][0]) == 3
            client.close()

        for _ in range(20):
            http_round()
        server_fds_before = fd_count(server.process.pid)
        measure("http", http_round, 200)
        deadline = time.monotonic() + 5
        while (server_fds_after := fd_count(server.process.pid)) > server_fds_before:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        figures["http"]["server_fds_before"] = server_fds_before
        figures["http"]["server_fds_after"] = server_fds_after

    (tmp_path / "leak_results.json").write_text(json.dumps(figures, indent=1))
    print("\nopen/close leak results:", json.dumps(figures, indent=1))
    for name, fig in figures.items():
        assert fig["fd_growth"] <= 0, f"{name}: {fig}"
        assert fig["rss_growth_kb"] < 20 * 1024, f"{name}: {fig}"
    http = figures["http"]
    assert http["server_fds_after"] <= http["server_fds_before"], http
