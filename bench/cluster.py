"""Cluster benchmark: 1 and 3 `huedb run` nodes on one PostgreSQL, on this machine.

For each node count, on a fresh database of a throwaway PostgreSQL cluster (`bench/pg.py`:
fsync and synchronous commit on), with one collection of `--n` random vectors:

- the first query on a node that has no index of the collection yet (the slowest node):
  what a node pays when a dead node's collections move to it;
- query QPS with 4 client processes spread over the nodes (n_results 10, no filter), after
  every node has its index ready, over `--duration` seconds;
- write-to-visible-elsewhere latency: one client adds one record through node 0 and then
  queries its vector through node 1 (node 0 when there is one node) until it comes back
  first; the time from sending the add to that answer, p50/p99 over `--samples` records
  (read-your-writes means the first query already finds it: the figure is one add plus
  one query with its oplog catch-up);
- write throughput with 4 client processes adding one record per request through the
  nodes, and PostgreSQL's commit rate meanwhile (`pg_stat_database.xact_commit` deltas of
  the database over the phase's duration: huedb's read transactions count too, so the
  query phase's rate is given, and both per request);
- PostgreSQL's own commit rate on this machine (4 connections committing one-row INSERTs):
  the write ceiling huedb's single-record adds are measured against.

Every process (PostgreSQL, nodes, clients) shares this machine's cores: see the note the
report prints. Example: python -m bench cluster --n 20000 --duration 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import pg

RESULTS = Path(__file__).resolve().parent / "results"
DB = "/api/v2/tenants/default_tenant/databases/default_database"
CLIENTS = 4
NOTE = (
    "All nodes, PostgreSQL and the 4 clients share {cores} cores here, with whatever else "
    "runs on the machine (see the load average). A node with one worker runs its engine "
    "calls one at a time, so it uses about one core: 3 nodes can use both cores of a 2-core "
    "machine where 1 node uses one, but no more than the cores allow, and on a machine "
    "shared with other jobs that difference drowns in the noise (compare runs). On "
    "machines of their own, nodes add their single-node query rate each, until "
    "PostgreSQL's read capacity is reached (every request is one or more transactions: "
    "see commits per query). Writes are bounded by PostgreSQL's commit rate whatever the "
    "number of nodes; here the nodes' CPU, not PostgreSQL, limits single-record adds "
    "(compare with PostgreSQL's own commit rate). write->visible is one add through one "
    "node and one query through another: a write is visible elsewhere at the first read "
    "after its acknowledgement."
)


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def nodes(root: Path, count: int, url: str) -> Iterator[list[Any]]:
    """`count` huedb nodes on `url`, killed afterwards."""
    from tests.servers import start_server  # the test extra, as bench.pg's cluster

    root.mkdir(parents=True, exist_ok=True)
    started = [
        start_server(root / f"node-{i}", "--store", url, new_session=True) for i in range(count)
    ]
    try:
        for node in started:
            node.wait_up(120)
        yield started
    finally:
        for node in started:
            if node.process.poll() is None:
                node.kill_group()


def commits(url: str) -> int:
    """Committed transactions of the database at `url` so far."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0])


def commit_ceiling(url: str, seconds: float, connections: int = CLIENTS) -> float:
    """PostgreSQL's own commit rate here: `connections` threads each committing one-row
    INSERTs into a scratch table for `seconds`; commits per second."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commits (n bigint)")
    done = [0] * connections

    def work(slot: int) -> None:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                conn.execute("INSERT INTO bench_commits VALUES (%s)", (slot,))
                done[slot] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("DROP TABLE bench_commits")
    return sum(done) / elapsed


def load(base: str, cid: str, vectors: np.ndarray) -> None:
    """Add `vectors` as records v0.. in batches of 1,000."""
    with httpx.Client(base_url=base, timeout=300) as http:
        for start in range(0, len(vectors), 1000):
            chunk = vectors[start : start + 1000]
            body = {
                "ids": [f"v{start + i}" for i in range(len(chunk))],
                "embeddings": chunk.tolist(),
            }
            r = http.post(f"{DB}/collections/{cid}/add", json=body)
            r.raise_for_status()


def wait_indexed(bases: list[str], cid: str, dim: int, timeout: float = 600) -> list[float]:
    """Query every node once (it loads the collection from PostgreSQL and answers by exact
    search while its graph builds) and wait until each graph serves; the seconds of each
    node's first query."""
    deadline = time.monotonic() + timeout
    firsts = []
    for base in bases:
        body = {"query_embeddings": [[0.0] * dim], "n_results": 1}
        started = time.monotonic()
        r = httpx.post(f"{base}{DB}/collections/{cid}/query", json=body, timeout=300)
        r.raise_for_status()
        firsts.append(time.monotonic() - started)
        while True:
            r = httpx.get(f"{base}{DB}/collections/{cid}/indexing_status", timeout=30)
            if r.json().get("op_indexing_progress", 1.0) >= 1.0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base}: index not ready after {timeout} s")
            time.sleep(0.5)
    return firsts


def query_client(base: str, cid: str, dim: int, seconds: float, seed: int) -> list[float]:
    """Query `base` with random vectors for `seconds`; each query's latency (client process)."""
    rng = np.random.default_rng(seed)
    latencies = []
    with httpx.Client(base_url=base, timeout=60) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            body = {"query_embeddings": [rng.standard_normal(dim).tolist()], "n_results": 10}
            started = time.monotonic()
            r = http.post(f"{DB}/collections/{cid}/query", json=body)
            r.raise_for_status()
            latencies.append(time.monotonic() - started)
    return latencies


def write_client(base: str, cid: str, dim: int, seconds: float, seed: int) -> list[float]:
    """Add one record per request through `base` for `seconds`; each add's latency."""
    rng = np.random.default_rng(seed)
    name = f"w{seed}"
    latencies = []
    with httpx.Client(base_url=base, timeout=60) as http:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            body = {"ids": [f"{name}-{n}"], "embeddings": [rng.standard_normal(dim).tolist()]}
            n += 1
            started = time.monotonic()
            r = http.post(f"{DB}/collections/{cid}/add", json=body)
            r.raise_for_status()
            latencies.append(time.monotonic() - started)
    return latencies


def in_clients(target: Any, jobs: list[tuple]) -> list[list[float]]:
    """Run `target(*job)` in one spawned process per job; their results."""
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(len(jobs)) as pool:
        return pool.starmap(target, jobs)


def visible_elsewhere(write: str, read: str, cid: str, dim: int, samples: int) -> list[float]:
    """Seconds from sending an add through `write` until a query through `read` returns the
    record first, per record."""
    rng = np.random.default_rng(1)
    out = []
    with (
        httpx.Client(base_url=write, timeout=60) as w,
        httpx.Client(base_url=read, timeout=60) as r,
    ):
        for n in range(samples):
            vector = rng.standard_normal(dim).tolist()
            record_id = f"vis-{n}"
            started = time.monotonic()
            add = w.post(
                f"{DB}/collections/{cid}/add", json={"ids": [record_id], "embeddings": [vector]}
            )
            add.raise_for_status()
            while True:
                body = {"query_embeddings": [vector], "n_results": 1, "include": []}
                got = r.post(f"{DB}/collections/{cid}/query", json=body)
                got.raise_for_status()
                if got.json()["ids"][0][:1] == [record_id]:
                    break
            out.append(time.monotonic() - started)
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_nodes(pg_cluster: Any, count: int, args: argparse.Namespace, workdir: Path) -> dict:
    """All figures for `count` nodes on a fresh database."""
    with (
        pg.database(pg_cluster, f"cluster{count}") as url,
        nodes(workdir / f"n{count}", count, url) as running,
    ):
        bases = [node.url for node in running]
        r = httpx.post(f"{bases[0]}{DB}/collections", json={"name": "bench"}, timeout=60)
        r.raise_for_status()
        cid = r.json()["id"]
        log(f"{count} node(s): loading {args.n} x {args.dim}")
        load(
            bases[0],
            cid,
            np.random.default_rng(0).standard_normal((args.n, args.dim)).astype(np.float32),
        )
        firsts = wait_indexed(bases, cid, args.dim)

        log(f"{count} node(s): query QPS, {CLIENTS} clients, {args.duration} s")
        before = commits(url)
        jobs = [(bases[i % count], cid, args.dim, args.duration, i) for i in range(CLIENTS)]
        latencies = [x for client in in_clients(query_client, jobs) for x in client]
        query_commits = commits(url) - before

        log(f"{count} node(s): write-to-visible-elsewhere, {args.samples} records")
        visible = visible_elsewhere(bases[0], bases[1 % count], cid, args.dim, args.samples)

        log(f"{count} node(s): writes, {CLIENTS} clients, {args.duration} s")
        before = commits(url)
        jobs = [(bases[i % count], cid, args.dim, args.duration, i) for i in range(CLIENTS)]
        adds = [x for client in in_clients(write_client, jobs) for x in client]
        write_commits = commits(url) - before
        log(f"{count} node(s): PostgreSQL's own commit rate, {CLIENTS} connections")
        ceiling = commit_ceiling(url, args.duration)
    return {
        "nodes": count,
        "first_query_s": max(firsts),
        "query_qps": len(latencies) / args.duration,
        "query_p50_ms": percentile(latencies, 50) * 1000,
        "query_p99_ms": percentile(latencies, 99) * 1000,
        "query_phase_commits_per_s": query_commits / args.duration,
        "visible_elsewhere_p50_ms": percentile(visible, 50) * 1000,
        "visible_elsewhere_p99_ms": percentile(visible, 99) * 1000,
        "writes_per_s": len(adds) / args.duration,
        "add_p50_ms": percentile(adds, 50) * 1000,
        "add_p99_ms": percentile(adds, 99) * 1000,
        "write_phase_commits_per_s": write_commits / args.duration,
        "commits_per_add": write_commits / max(len(adds), 1),
        "commits_per_query": query_commits / max(len(latencies), 1),
        "pg_commit_ceiling_per_s": ceiling,
    }


COLUMNS = [
    ("nodes", "nodes", "{:d}"),
    ("first_query_s", "first query, cold node s", "{:.2f}"),
    ("query_qps", "query QPS (4 clients)", "{:.0f}"),
    ("query_p50_ms", "query p50 ms", "{:.1f}"),
    ("visible_elsewhere_p50_ms", "write->visible p50 ms", "{:.1f}"),
    ("visible_elsewhere_p99_ms", "write->visible p99 ms", "{:.1f}"),
    ("writes_per_s", "adds/s (4 clients, 1 rec)", "{:.0f}"),
    ("write_phase_commits_per_s", "PG commits/s (writes)", "{:.0f}"),
    ("query_phase_commits_per_s", "PG commits/s (queries)", "{:.0f}"),
    ("commits_per_add", "commits/add", "{:.1f}"),
    ("commits_per_query", "commits/query", "{:.1f}"),
    ("pg_commit_ceiling_per_s", "PG alone: commits/s", "{:.0f}"),
]


def format_table(rows: list[dict]) -> str:
    """The figures as a Markdown table."""
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=20000, help="records (default 20000)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load phase")
    parser.add_argument("--samples", type=int, default=300, help="write->visible records")
    parser.add_argument("--nodes", default="1,3", help="node counts (default 1,3)")
    parser.add_argument(
        "--out", default=None, help="JSON path (default bench/results/cluster-<timestamp>.json)"
    )
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.nodes.split(",") if x.strip()]
    rows = []
    loadavg_start = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="huedb-bench-cluster-") as tmp,
        pg.cluster() as pg_cluster,
    ):
        settings = pg.server_settings(pg_cluster.url())
        for count in counts:
            rows.append(run_nodes(pg_cluster, count, args, Path(tmp)))
    cores = os.cpu_count() or 1
    report = {
        "command": "cluster",
        "n": args.n,
        "dim": args.dim,
        "duration_s": args.duration,
        "samples": args.samples,
        "clients": CLIENTS,
        "cpu_count": cores,
        "loadavg_start": loadavg_start,
        "loadavg_end": os.getloadavg(),
        "postgresql": settings,
        "runs": rows,
        "note": NOTE.format(cores=cores),
    }
    print(
        f"cluster benchmark: n={args.n} dim={args.dim}, {args.duration:.0f} s per phase, "
        f"PostgreSQL {settings.get('server_version')} (fsync on), {cores} cores, "
        f"loadavg {loadavg_start[0]:.2f} at start, {report['loadavg_end'][0]:.2f} at end"
    )
    print()
    print(format_table(rows))
    print()
    print(report["note"])
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out}")
    return 0
