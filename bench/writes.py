"""`python -m bench writes`: one process writes to a large collection it queries meanwhile.

Two fresh processes on one data directory:
1. build: as `bench backlog` (N x dim of the core data, the graph built and snapshotted);
2. write: opens, queries once (the graph loaded from its snapshot), then updates
   `--batches` batches of 1,000 records with new vectors while a second thread queries
   every 10 ms. Reported: write call p50 and slowest, query p50 / p99 / slowest (a call
   that copies, loads or saves the graph shows as a slow one, and holds up the other
   thread through the engine's lock or the GIL), and the total. Enough batches pass a
   tenth of the collection, so a snapshot falls due during the run.
JSON in `bench/results/writes-<n>-<time>.json`. Example: python -m bench writes --n 1000000
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.backlog import COLLECTION, build, log, report
from bench.core import BATCH, DataSpec, make_dataset, record_id

QUERY_PAUSE_S = 0.01


def write(path: str, spec: DataSpec, batches: int) -> dict[str, Any]:
    """Phase 2: update `batches` batches while a thread queries; latencies in seconds."""
    import huedb

    data = make_dataset(spec)
    client = huedb.PersistentClient(path=path)
    col = client.get_collection(COLLECTION)
    col.query(query_embeddings=data.warmup[:1], n_results=10)
    rng = np.random.default_rng(spec.seed + 2)
    stop = threading.Event()
    queries: list[float] = []

    def ask() -> None:
        i = 0
        while not stop.is_set():
            q = data.queries[i % len(data.queries)]
            began = time.perf_counter()
            col.query(query_embeddings=q[None, :], n_results=10)
            queries.append(time.perf_counter() - began)
            i += 1
            time.sleep(QUERY_PAUSE_S)

    asker = threading.Thread(target=ask)
    asker.start()
    writes: list[float] = []
    start = time.perf_counter()
    for _ in range(batches):
        rows = rng.choice(spec.n, BATCH, replace=False)
        labels = rng.integers(0, spec.clusters, BATCH)
        noise = rng.standard_normal((BATCH, spec.dim), dtype=np.float32)
        vectors = data.centres[labels] + np.float32(spec.sigma) * noise
        began = time.perf_counter()
        col.update(ids=[record_id(int(r)) for r in rows], embeddings=vectors)
        writes.append(time.perf_counter() - began)
    total = time.perf_counter() - start
    while not queries and asker.is_alive():  # at least one query, even after a short run
        time.sleep(QUERY_PAUSE_S)
    stop.set()
    asker.join()
    client.close()
    return {"writes": writes, "queries": queries, "total_s": total}


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    """Percentiles of the write and query latencies (ms)."""
    writes, queries = np.asarray(run["writes"]), np.asarray(run["queries"])
    return {
        "writes": len(writes),
        "write_p50_ms": 1000 * float(np.median(writes)),
        "write_max_ms": 1000 * float(writes.max()),
        "queries": len(queries),
        "query_p50_ms": 1000 * float(np.median(queries)),
        "query_p99_ms": 1000 * float(np.percentile(queries, 99)),
        "query_max_ms": 1000 * float(queries.max()),
        "total_s": run["total_s"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench writes", description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=110, help="batches of 1,000 updates")
    parser.add_argument("--out", type=Path, help="the JSON file (default: in bench/results)")
    args = parser.parse_args(argv)
    spec = DataSpec(n=args.n)
    pool = multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1)
    with tempfile.TemporaryDirectory(prefix="huedb-writes-") as path:
        log(f"build: {args.n:,} x {spec.dim}")
        build_s = pool.apply(build, (path, spec))
        log(f"write: {args.batches} x {BATCH:,} updates ({build_s:.1f} s to build)")
        run = pool.apply(write, (path, spec, args.batches))
    pool.close()
    result = {
        "benchmark": "writes",
        "n": args.n,
        "dim": spec.dim,
        "batches": args.batches,
        "build_s": build_s,
        **summarize(run),
    }
    report(result, args.out)
    return 0
