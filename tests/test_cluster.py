"""Three `huedb run` nodes on one PostgreSQL serve each other's writes (issue 15, acceptance 1).

Two writer processes add records through nodes A and B; after each acknowledged add, the
writer reads every record of it through another node: a `get` by id and a query with the
record's own vector (it must come back first, at distance 0). Meanwhile reader threads
query all three nodes. Not one record may be missing. The writes go in batches of 1 to 64
records, so the check covers both many small transactions and large ones; each record is
checked on its own. `HUEDB_CLUSTER_WRITES` raises the number of records (default 5,000).

The node helpers here are shared by the other cluster tests (nginx, partition) and the
cluster bench.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from tests.servers import RunningServer, start_server

DB = "/api/v2/tenants/default_tenant/databases/default_database"
# Read at collection, before the suite's fixtures clear HUEDB_* from the environment.
WRITES = int(os.environ.get("HUEDB_CLUSTER_WRITES", "5000"))
DIM = 32
BATCH_SIZES = (1, 4, 16, 64)


def start_nodes(root: Path, count: int, *args: str, timeout: float = 60) -> list[RunningServer]:
    """Start `count` `huedb run` nodes (each with its own directory `root/node-<i>` and
    process group, extra `args`) and wait until every one answers its heartbeat."""
    nodes = [
        start_server(root / f"node-{i}", *args, new_session=True, log_path=root / f"node-{i}.log")
        for i in range(count)
    ]
    try:
        for node in nodes:
            node.wait_up(timeout)
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def stop_nodes(nodes: list[RunningServer]) -> None:
    """SIGKILL every node's process group (a node's derived files are never needed again)."""
    for node in nodes:
        if node.process.poll() is None:
            node.kill_group()


@contextlib.contextmanager
def running_nodes(root: Path, count: int, *args: str) -> Iterator[list[RunningServer]]:
    """`start_nodes` for a `with` block."""
    nodes = start_nodes(root, count, *args)
    try:
        yield nodes
    finally:
        stop_nodes(nodes)


def create_collection(base: str, name: str) -> str:
    """Create collection `name` (l2) through the node at `base`; its id."""
    r = httpx.post(f"{base}{DB}/collections", json={"name": name}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def vectors_for(ids: list[str]) -> np.ndarray:
    """A distinct random vector per id, derived from the id (any process gets the same)."""
    out = np.empty((len(ids), DIM), dtype=np.float32)
    for row, record_id in enumerate(ids):
        rng = np.random.default_rng(hash_of(record_id))
        out[row] = rng.standard_normal(DIM, dtype=np.float32)
    return out


def hash_of(text: str) -> int:
    """A stable 64-bit hash of `text` (Python's `hash` differs between processes)."""
    value = 1469598103934665603
    for byte in text.encode():
        value = ((value ^ byte) * 1099511628211) % 2**64
    return value


def missing_through(http: httpx.Client, cid: str, ids: list[str]) -> list[str]:
    """Problems reading acknowledged records `ids` through the node of `http`: each
    record must come back from a get by id and first, at distance 0, from a query with
    its own vector. An empty list when every record was found."""
    vectors = vectors_for(ids)
    r = http.post(f"{DB}/collections/{cid}/get", json={"ids": ids, "include": []})
    if r.status_code != 200:
        return [f"get {ids[0]}..: HTTP {r.status_code} {r.text[:200]}"]
    problems = [f"get: {i} missing" for i in sorted(set(ids) - set(r.json()["ids"]))]
    body = {
        "query_embeddings": vectors.tolist(),
        "n_results": 1,
        "include": ["distances"],
    }
    r = http.post(f"{DB}/collections/{cid}/query", json=body)
    if r.status_code != 200:
        return [*problems, f"query {ids[0]}..: HTTP {r.status_code} {r.text[:200]}"]
    got = r.json()
    for record_id, hits, distances in zip(ids, got["ids"], got["distances"], strict=True):
        if hits[:1] != [record_id] or distances[0] != 0.0:
            problems.append(f"query: {record_id} -> {hits[:1]} at {distances[:1]}")
    return problems


@dataclass
class WriterReport:
    """What one writer process did and saw."""

    name: str
    acked: int = 0
    requests: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def write_and_check(
    name: str, write_url: str, read_urls: list[str], cid: str, n: int
) -> WriterReport:
    """Add `n` records named `name-<i>` through `write_url` in batches of `BATCH_SIZES`;
    after each acknowledged add, check each of its records through the next of
    `read_urls` (round robin). Runs in a writer process."""
    report = WriterReport(name)
    started = time.monotonic()
    rng = random.Random(name)
    readers = [httpx.Client(base_url=url, timeout=60) for url in read_urls]
    with httpx.Client(base_url=write_url, timeout=60) as writer:
        while report.acked < n:
            size = min(rng.choice(BATCH_SIZES), n - report.acked)
            ids = [f"{name}-{report.acked + i}" for i in range(size)]
            body = {
                "ids": ids,
                "embeddings": vectors_for(ids).tolist(),
                "metadatas": [{"writer": name} for _ in ids],
            }
            r = writer.post(f"{DB}/collections/{cid}/add", json=body)
            if r.status_code != 201:
                report.problems.append(f"add {ids[0]}..: HTTP {r.status_code} {r.text[:200]}")
                break
            report.acked += size
            reader = readers[report.requests % len(readers)]
            report.requests += 1
            report.problems += missing_through(reader, cid, ids)
    for client in readers:
        client.close()
    report.seconds = time.monotonic() - started
    return report


@dataclass
class ReaderLoad:
    """Reader threads querying every node until stopped; what they saw."""

    urls: list[str]
    cid: str
    queries: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        clients = [httpx.Client(base_url=url, timeout=60) for url in self.urls]
        last_count = [0] * len(clients)
        try:
            while not self.stop.is_set():
                node = int(rng.integers(len(clients)))
                http = clients[node]
                count = http.get(f"{DB}/collections/{self.cid}/count").json()
                if count < last_count[node]:
                    self.errors.append(f"node {node}: count went {last_count[node]} -> {count}")
                last_count[node] = count
                body = {
                    "query_embeddings": [rng.standard_normal(DIM).tolist()],
                    "n_results": 10,
                    "include": ["distances"],
                }
                r = http.post(f"{DB}/collections/{self.cid}/query", json=body)
                self.queries += 1
                if r.status_code != 200:
                    self.errors.append(f"node {node}: HTTP {r.status_code} {r.text[:200]}")
                    continue
                distances = r.json()["distances"][0]
                if len(distances) < min(10, count) or distances != sorted(distances):
                    self.errors.append(f"node {node}: {len(distances)} results, count {count}")
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(repr(exc))
        finally:
            for client in clients:
                client.close()


def test_three_nodes_read_each_others_writes(tmp_path: Path, pg_url: str) -> None:
    with running_nodes(tmp_path, 3, "--store", pg_url) as nodes:
        a, b, c = (node.url for node in nodes)
        cid = create_collection(a, "cluster")
        load = ReaderLoad([a, b, c], cid)
        readers = [threading.Thread(target=load.run, args=(seed,)) for seed in range(2)]
        for thread in readers:
            thread.start()
        half = WRITES // 2
        spawn = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(2, mp_context=spawn) as pool:
                futures = [
                    pool.submit(write_and_check, "wa", a, [b, c], cid, half),
                    pool.submit(write_and_check, "wb", b, [c, a], cid, WRITES - half),
                ]
                reports = [f.result(timeout=600) for f in futures]
        finally:
            load.stop.set()
            for thread in readers:
                thread.join(60)
        for report in reports:
            print(
                f"writer {report.name}: {report.acked} records acknowledged in "
                f"{report.requests} adds, each read back through another node, "
                f"{report.seconds:.1f} s, {len(report.problems)} problems"
            )
        print(f"readers: {load.queries} queries, {len(load.errors)} errors")
        problems = [p for report in reports for p in report.problems]
        assert not problems, problems[:20]
        assert sum(r.acked for r in reports) == WRITES
        assert not load.errors, load.errors[:20]
        assert load.queries > 0
        for node in nodes:
            count = httpx.get(f"{node.url}{DB}/collections/{cid}/count", timeout=30).json()
            assert count == WRITES, node.url
            assert "Traceback" not in node.log(), node.log()[-3000:]
