"""`python -m bench backlog`: queries right after another process changed much of a collection.

Three fresh processes on one data directory, one after the other:
1. build: adds N x dim clustered vectors (the core benchmark's data) in batches of 1,000,
   waits for the graph, closes (the graph snapshotted);
2. change: updates `--updated` of the records (new vectors from the same mixture) and
   deletes `--deleted` others, in batches of 1,000, holding no index (as a separate writer
   process does), closes;
3. query: opens and asks the held-out queries over and over: the first query's latency
   (it finds the whole change as an oplog backlog to apply), then p50 and recall@10 while
   `get_indexing_status` reports the graph still taking the backlog, the time until it has
   taken it, and p50 and recall@10 after.
Recall is against exact top-10 over the current vectors. JSON in
`bench/results/backlog-<n>-<time>.json`. Example: python -m bench backlog --n 200000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import (
    BATCH,
    DataSpec,
    exact_top_k,
    make_dataset,
    normalize,
    record_id,
    record_index,
)

RESULTS = Path(__file__).resolve().parent / "results"
COLLECTION = "backlog"
K = 10


def log(message: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def report(result: dict[str, Any], out: Path | None = None) -> None:
    """Print the result as JSON and write it to `out` (default: bench/results/<benchmark>-
    <n>-<time>.json)."""
    print(json.dumps(result, indent=2))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out or RESULTS / f"{result['benchmark']}-{result['n']}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    log(f"wrote {out}")


def changed_vectors(spec: DataSpec, updated: int, deleted: int) -> dict[str, Any]:
    """The records updated (with their new vectors) and deleted, seeded."""
    data = make_dataset(spec)
    rng = np.random.default_rng(spec.seed + 1)
    picked = rng.choice(spec.n, updated + deleted, replace=False)
    labels = rng.integers(0, spec.clusters, updated)
    noise = rng.standard_normal((updated, spec.dim), dtype=np.float32)
    vectors = data.centres[labels] + np.float32(spec.sigma) * noise
    return {"updated": picked[:updated], "vectors": vectors, "deleted": picked[updated:]}


def build(path: str, spec: DataSpec) -> float:
    """Phase 1: fill, wait for the graph, close; seconds taken."""
    import huedb

    data = make_dataset(spec)
    start = time.perf_counter()
    client = huedb.PersistentClient(path=path)
    col = client.create_collection(COLLECTION, metadata={"hnsw:space": spec.space})
    for lo in range(0, spec.n, BATCH):
        hi = min(lo + BATCH, spec.n)
        col.add(ids=data.ids(lo, hi), embeddings=data.vectors[lo:hi])
    col.query(query_embeddings=data.warmup[:1], n_results=K)
    while col.get_indexing_status().op_indexing_progress < 1.0:
        time.sleep(0.1)
    client.close()
    return time.perf_counter() - start


def change(
    path: str, spec: DataSpec, updated: int, deleted: int, collection: str = COLLECTION
) -> float:
    """Phase 2: update and delete, holding no index; seconds taken."""
    import huedb

    changes = changed_vectors(spec, updated, deleted)
    ids = np.asarray([record_id(i) for i in range(spec.n)])
    start = time.perf_counter()
    client = huedb.PersistentClient(path=path)
    col = client.get_collection(collection)
    for lo in range(0, updated, BATCH):
        rows = changes["updated"][lo : lo + BATCH]
        col.update(ids=ids[rows].tolist(), embeddings=changes["vectors"][lo : lo + BATCH])
    for lo in range(0, deleted, BATCH):
        col.delete(ids=ids[changes["deleted"][lo : lo + BATCH]].tolist())
    client.close()
    return time.perf_counter() - start


def truth(spec: DataSpec, updated: int, deleted: int) -> list[set[int]]:
    """Exact top-K row numbers of each held-out query over the current vectors (with the
    rows tied with the K-th, `exact_top_k`)."""
    data = make_dataset(spec)
    changes = changed_vectors(spec, updated, deleted)
    vectors = data.vectors.copy()
    vectors[changes["updated"]] = changes["vectors"]
    alive = np.ones(spec.n, dtype=bool)
    alive[changes["deleted"]] = False
    return exact_top_k(normalize(vectors), normalize(data.queries), K, alive)


def query(path: str, spec: DataSpec, after: int) -> dict[str, Any]:
    """Phase 3: the first query, the queries while the backlog is taken, `after` after."""
    import huedb

    data = make_dataset(spec)
    client = huedb.PersistentClient(path=path)
    col = client.get_collection(COLLECTION)
    found: list[tuple[float, float, bool, list[str]]] = []  # (at, seconds, during, ids)
    opened = time.perf_counter()
    during, done_at, i = True, None, 0
    remaining = after
    while remaining > 0:
        q = data.queries[i % len(data.queries)]
        began = time.perf_counter()
        ids = col.query(query_embeddings=q[None, :], n_results=K, include=[])["ids"][0]
        found.append((began - opened, time.perf_counter() - began, during, ids))
        i += 1
        if during and (i % 20 == 0 or i == 1):
            if col.get_indexing_status().op_indexing_progress >= 1.0:
                during, done_at = False, time.perf_counter() - opened
        elif not during:
            remaining -= 1
    start = time.perf_counter()
    client.close()
    return {"queries": found, "backlog_s": done_at, "close_s": time.perf_counter() - start}


def summarize(spec: DataSpec, run: dict[str, Any], expected: list[set[int]]) -> dict[str, Any]:
    """First-query latency, p50 and recall@10 during and after the backlog."""
    queries = spec.queries

    def figures(rows: list[tuple[int, tuple]]) -> dict[str, Any]:
        if not rows:
            return {"queries": 0, "p50_ms": None, "max_ms": None, "recall": None}
        hits = [
            min(len({record_index(x) for x in r[3]} & expected[n % queries]), K) / K
            for n, r in rows
        ]
        return {
            "queries": len(rows),
            "p50_ms": 1000 * float(np.median([r[1] for _, r in rows])),
            "max_ms": 1000 * max(r[1] for _, r in rows),  # a stall: a graph swapped in, saved
            "recall": float(np.mean(hits)),
        }

    rows = list(enumerate(run["queries"]))
    return {
        "first_query_s": run["queries"][0][1],
        "backlog_s": run["backlog_s"],
        "during": figures([(n, r) for n, r in rows[1:] if r[2]]),
        "after": figures([(n, r) for n, r in rows if not r[2]]),
        "close_s": run["close_s"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench backlog", description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--updated", type=float, default=0.2, help="fraction of n updated")
    parser.add_argument("--deleted", type=float, default=0.05, help="fraction of n deleted")
    parser.add_argument("--after", type=int, default=400, help="queries after the backlog")
    args = parser.parse_args(argv)
    spec = DataSpec(n=args.n)
    updated, deleted = int(args.updated * args.n), int(args.deleted * args.n)
    pool = multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1)
    with tempfile.TemporaryDirectory(prefix="huedb-backlog-") as path:
        log(f"build: {args.n:,} x {spec.dim}")
        build_s = pool.apply(build, (path, spec))
        log(f"change: update {updated:,}, delete {deleted:,} ({build_s:.1f} s to build)")
        change_s = pool.apply(change, (path, spec, updated, deleted))
        log(f"query ({change_s:.1f} s to change)")
        run = pool.apply(query, (path, spec, args.after))
    pool.close()
    result = {
        "benchmark": "backlog",
        "n": args.n,
        "dim": spec.dim,
        "updated": updated,
        "deleted": deleted,
        "build_s": build_s,
        "change_s": change_s,
        **summarize(spec, run, truth(spec, updated, deleted)),
    }
    report(result)
    return 0
