"""Metrics of the index cache (issues 15 and 17): hits, misses, evictions, bytes held and
the budget; snapshot writes (ok and failed) and their bytes; graph builds running, their
vectors and progress, and the vectors they added; passes applying a graph's backlog and
the changed keys they applied.

In-process, the engine's events go to the server's own `EngineMetrics` (prometheus-client's
default registry); a scripted workload under a 1-byte budget (only the index in use stays)
gives exact counts, a failed snapshot write (injected ENOSPC) keeps its index held, and a
build paused after its first 10,000-vector chunk shows its progress. Through `huedb run`
(multi-process mode), a scrape of `/metrics` shows the same figures as the admin stats.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

import huedb
from huedb.engine import events, snapshot
from huedb.engine.engine import Engine
from huedb.engine.graph_backlog import INLINE_MAX_CHANGES
from huedb.engine.graph_build import FRAME_ROWS
from huedb.engine.recall_calibration import SAMPLE_QUERIES_MAX
from huedb.record_batch import RecordBatch
from huedb.server.metrics import EngineMetrics
from tests.graph_wait import wait_for_graph
from tests.servers import huedb_server
from tests.test_fault_injection import faulty
from tests.test_metrics import ADMIN, READER, TOKENS_ENV, scrape

DIM = 4
GRAPH = 300  # vectors of a collection with a graph (300 x 4 floats > 64)
EXACT = 10  # vectors of an exact-only one
BUDGET_ONE = huedb.Settings(huedb_exact_max_floats=64, huedb_index_memory=1)
SERIES = {
    "hits": ("huedb_index_cache_hits_total", {}),
    "misses": ("huedb_index_cache_misses_total", {}),
    "evictions": ("huedb_index_evictions_total", {}),
    "snapshots_ok": ("huedb_index_snapshot_writes_total", {"outcome": "ok"}),
    "snapshots_failed": ("huedb_index_snapshot_writes_total", {"outcome": "failed"}),
    "snapshot_bytes": ("huedb_index_snapshot_written_bytes_total", {}),
    "builds_ok": ("huedb_index_build_duration_seconds_count", {"outcome": "ok"}),
    "added": ("huedb_index_build_added_vectors_total", {}),
    "running": ("huedb_index_builds_running", {}),
    "build_vectors": ("huedb_index_build_vectors", {}),
    "build_done": ("huedb_index_build_vectors_done", {}),
    "resident": ("huedb_index_resident_bytes", {}),
}


ZERO = {key: 0 for key in SERIES if key != "resident"}


def registry_values() -> dict[str, float]:
    return {
        key: REGISTRY.get_sample_value(name, labels) or 0.0
        for key, (name, labels) in SERIES.items()
    }


def changes(before: dict[str, float]) -> dict[str, float]:
    after = registry_values()
    return {key: after[key] - before[key] for key in SERIES if key != "resident"}


@pytest.fixture
def listener() -> Iterator[EngineMetrics]:
    metrics = EngineMetrics()
    events.listen(metrics)
    try:
        yield metrics
    finally:
        events.listen(None)


def vectors(n: int, seed: int) -> list[list[float]]:
    return np.random.default_rng(seed).standard_normal((n, DIM)).tolist()


def make(client: huedb.Client, name: str, n: int) -> huedb.Collection:
    col = client.create_collection(name)
    col.add(ids=[f"r{i}" for i in range(n)], embeddings=vectors(n, n))
    return col


def wait_for_snapshots(before: dict[str, float], count: int) -> None:
    """Until `count` snapshots were written since `before` (a thread writes them)."""
    deadline = time.monotonic() + 60
    while changes(before)["snapshots_ok"] < count:
        assert time.monotonic() < deadline, "the snapshot was never written"
        time.sleep(0.02)


def query(col: huedb.Collection) -> None:
    col.query(query_embeddings=vectors(1, 0), n_results=3)


def snapshot_payload_bytes(path: Path, col: huedb.Collection) -> int:
    header = snapshot.read_header(snapshot.snapshot_path(path / "index", str(col.id)))
    assert header is not None
    return int(header["length"])


def test_cache_and_snapshot_metrics_count_a_scripted_workload(
    tmp_path: Path, listener: EngineMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = huedb.PersistentClient(path=tmp_path, settings=BUDGET_ONE)
    engine = client._server.engine
    before = registry_values()
    graph, small_a = make(client, "graph", GRAPH), make(client, "aaa", EXACT)
    query(graph)  # miss; its graph is built in the background
    wait_for_graph(graph)
    query(small_a)  # miss; the graph (never snapshotted) is snapshotted, then evicted
    first_snapshot = snapshot_payload_bytes(tmp_path, graph)
    query(small_a)  # hit
    query(graph)  # miss (reloaded from its snapshot); aaa evicted
    graph.add(ids=["new"], embeddings=vectors(1, 5))  # a change its snapshot lacks
    with faulty(monkeypatch, "write", 1, errno.ENOSPC):
        query(small_a)  # miss; the graph's snapshot write fails: it stays held
    held = [col.name for col, _ in engine.index_memory()["resident"]]
    assert held == ["graph", "aaa"]
    small_b = make(client, "bbb", EXACT)
    query(small_b)  # miss; the graph is snapshotted and evicted, aaa evicted
    assert changes(before) == {
        "hits": 1,
        "misses": 5,
        "evictions": 4,
        "snapshots_ok": 2,
        "snapshots_failed": 1,
        "snapshot_bytes": first_snapshot + snapshot_payload_bytes(tmp_path, graph),
        "builds_ok": 1,
        "added": GRAPH,
        "running": 0,
        "build_vectors": 0,
        "build_done": 0,
    }
    figures = engine.index_memory()
    assert (figures["hits"], figures["misses"], figures["evictions"]) == (1, 5, 4)
    assert [col.name for col, _ in figures["resident"]] == ["bbb"]
    assert registry_values()["resident"] == figures["resident_bytes"] > 0


class PausedBuilds(EngineMetrics):
    """The server's listener, holding a build's thread after its first chunk until told."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def index_build_progress(self, vectors: int) -> None:
        super().index_build_progress(vectors)
        self.reached.set()
        self.go.wait(60)


def test_a_running_build_shows_its_progress(tmp_path: Path) -> None:
    paused = PausedBuilds()
    events.listen(paused)
    try:
        settings = huedb.Settings(huedb_exact_max_floats=64)
        client = huedb.PersistentClient(path=tmp_path, settings=settings)
        before = registry_values()
        col = make(client, "big", 12_000)  # frames of 4,096 rows, the recall sample left out
        query(col)
        assert paused.reached.wait(60)
        first = FRAME_ROWS - SAMPLE_QUERIES_MAX
        assert changes(before) == {
            **ZERO,
            "misses": 1,
            "running": 1,
            "build_vectors": 12_000,
            "build_done": first,
            "added": first,
        }
        paused.go.set()
        wait_for_graph(col)
        # Adopted with 12,000 changes its (absent) snapshot lacks: snapshotted at once (by
        # a thread).
        wait_for_snapshots(before, 1)
        assert changes(before) == {
            **ZERO,
            "misses": 1,
            "builds_ok": 1,
            "added": 12_000,
            "snapshots_ok": 1,
            "snapshot_bytes": snapshot_payload_bytes(tmp_path, col),
        }
    finally:
        paused.go.set()
        events.listen(None)


def series_sum(samples: dict, name: str, **labels: str) -> float:
    """The sum of a series over the labels not given (e.g. the `pid` of each worker)."""
    want = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and want <= set(got))


def test_index_metrics_through_huedb_run(tmp_path: Path) -> None:
    args = ("--index-memory", "1", "--exact-max-floats", "64")
    with huedb_server(tmp_path / "data", *args, env=TOKENS_ENV) as server:
        base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database"
        with httpx.Client(headers={"x-chroma-token": ADMIN}, timeout=60) as http:
            ids = {}
            for name, n in (("graph", GRAPH), ("aaa", EXACT), ("bbb", EXACT)):
                ids[name] = http.post(f"{base}/collections", json={"name": name}).json()["id"]
                body = {"ids": [f"r{i}" for i in range(n)], "embeddings": vectors(n, n)}
                http.post(f"{base}/collections/{ids[name]}/add", json=body).raise_for_status()

            def ask(name: str) -> None:
                body = {"query_embeddings": vectors(1, 0), "n_results": 3}
                http.post(f"{base}/collections/{ids[name]}/query", json=body).raise_for_status()

            ask("graph")
            status = f"{base}/collections/{ids['graph']}/indexing_status"
            deadline = time.monotonic() + 60
            while http.get(status).json()["op_indexing_progress"] < 1.0:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            for name in ("aaa", "aaa", "bbb", "graph"):
                ask(name)
            stats = http.get(f"{server.url}/api/v2/admin/stats").json()["index_cache"]
        samples = scrape(server, READER)
    assert (stats["hits"], stats["misses"], stats["evictions"]) == (1, 4, 3)
    assert [c["name"] for c in stats["resident_collections"]] == ["graph"]
    assert {c["name"] for c in stats["evicted_collections"]} == {"aaa", "bbb"}
    header = snapshot.read_header(snapshot.snapshot_path(tmp_path / "data" / "index", ids["graph"]))
    expected = {
        "huedb_index_cache_hits_total": 1,
        "huedb_index_cache_misses_total": 4,
        "huedb_index_evictions_total": 3,
        "huedb_index_snapshot_written_bytes_total": header["length"],
        "huedb_index_build_added_vectors_total": GRAPH,
        "huedb_index_builds_running": 0,
        "huedb_index_build_vectors": 0,
        "huedb_index_build_vectors_done": 0,
        "huedb_index_resident_bytes": stats["resident_bytes"],
        "huedb_index_memory_budget_bytes": 1,
    }
    assert {name: series_sum(samples, name) for name in expected} == expected
    assert series_sum(samples, "huedb_index_snapshot_writes_total", outcome="ok") == 1
    assert series_sum(samples, "huedb_index_snapshot_writes_total", outcome="failed") == 0


def test_an_unwritable_snapshot_lock_fails_the_snapshot_not_the_query(
    tmp_path: Path, listener: EngineMetrics
) -> None:
    """The snapshot lock file cannot be opened (a directory stands in its place): the query
    that would evict the graph is answered, the failure is counted, the graph stays held."""
    client = huedb.PersistentClient(path=tmp_path, settings=BUDGET_ONE)
    graph, small = make(client, "graph", GRAPH), make(client, "aaa", EXACT)
    query(graph)
    wait_for_graph(graph)
    (tmp_path / "index" / f"{graph.id}.lock").mkdir(parents=True)
    before = registry_values()
    query(small)
    assert changes(before) == {**ZERO, "misses": 1, "snapshots_failed": 1}
    held = client._server.engine.index_memory()["resident"]
    assert [col.name for col, _ in held] == ["graph", "aaa"]


def test_catch_up_lag_in_entries_and_seconds(tmp_path: Path, listener: EngineMetrics) -> None:
    """Another process's writes are applied at this process's next query: the entries it
    was behind by, and the seconds since its index was last known current (here at least
    the pause between its last query and the next)."""
    ours = huedb.PersistentClient(path=tmp_path)
    col = make(ours, "lagging", EXACT)
    query(col)  # the index is loaded and current
    other = Engine(tmp_path)  # another process on the same directory
    try:
        before = {
            name: REGISTRY.get_sample_value(name) or 0.0
            for name in (
                "huedb_oplog_catch_up_entries_sum",
                "huedb_oplog_catch_up_lag_seconds_count",
                "huedb_oplog_catch_up_lag_seconds_sum",
            )
        }
        other.add(
            str(col.id), RecordBatch(ids=["x", "y", "z"], embeddings=np.ones((3, DIM), np.float32))
        )
        time.sleep(0.3)
        query(col)
        got = {name: (REGISTRY.get_sample_value(name) or 0.0) - v for name, v in before.items()}
    finally:
        other.close()
    assert got["huedb_oplog_catch_up_entries_sum"] == 3
    assert got["huedb_oplog_catch_up_lag_seconds_count"] == 1
    assert 0.3 <= got["huedb_oplog_catch_up_lag_seconds_sum"] < 30


def test_a_graph_backlog_pass_is_counted(tmp_path: Path, listener: EngineMetrics) -> None:
    """A catch-up larger than INLINE_MAX_CHANGES, found by a query, is applied by a
    background pass: one pass counted (ok), with the changed keys it applied."""
    n = INLINE_MAX_CHANGES + 500
    settings = huedb.Settings(huedb_exact_max_floats=64)
    first = huedb.PersistentClient(path=tmp_path, settings=settings)
    col = make(first, "bulk", n)
    wait_for_graph(col)
    first.close()  # snapshotted
    writer = Engine(tmp_path)  # another process, holding no index
    changed = INLINE_MAX_CHANGES + 100
    try:
        new = np.random.default_rng(5).standard_normal((changed, DIM)).astype(np.float32)
        writer.update(
            str(col.id), RecordBatch(ids=[f"r{i}" for i in range(changed)], embeddings=new)
        )
    finally:
        writer.close()
    name = "huedb_graph_backlog_duration_seconds_count"
    before_ok = REGISTRY.get_sample_value(name, {"outcome": "ok"}) or 0.0
    before_changes = REGISTRY.get_sample_value("huedb_graph_backlog_changes_total") or 0.0
    reader = huedb.PersistentClient(path=tmp_path, settings=settings)
    try:
        again = reader.get_collection("bulk")
        query(again)
        wait_for_graph(again)
    finally:
        reader.close()
    assert (REGISTRY.get_sample_value(name, {"outcome": "ok"}) or 0.0) - before_ok == 1
    got = (REGISTRY.get_sample_value("huedb_graph_backlog_changes_total") or 0.0) - before_changes
    assert got == changed
