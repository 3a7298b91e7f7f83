"""`python -m bench shared`: two processes on one data directory, as two server workers.

1. ingest: both open the directory and add N x dim clustered vectors (the core benchmark's
   data) to one collection, alternate batches of 1,000 each, then each asks one query and
   waits until `get_indexing_status` reports its graph ready: per process, the seconds
   from the first add to its last, to its graph ready, and the CPU seconds it and its
   children (graph processes) used;
2. change: a third process updates `--updated` of the records (new vectors from the same
   mixture), holding no index;
3. catch up: both query the held-out queries over and over until their graph has taken
   the change: per process, the seconds until then, the queries answered meanwhile, and
   the CPU seconds.
Each process says whether it built (or passed the change to) the graph itself or served the
snapshot the other one wrote (its log lines). JSON in `bench/results/shared-<n>-<time>.json`.
Example: python -m bench shared --n 100000
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.backlog import change, log, report
from bench.core import BATCH, DataSpec, make_dataset

COLLECTION = "shared"
K = 10
START_DELAY_S = 3.0  # both processes open the directory, then begin together
# huedb's log lines that tell what a process did with the graph (`IndexCache`)
BUILT = "in the background; queries use exact search until it is ready"
PASSED = "are applied in the background"
ADOPTED = "serving the graph another process built"


class _Said(logging.Handler):
    """The messages huedb's index cache (and its recall measurements) logged in this process."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[tuple[float, str]] = []  # (time.perf_counter(), message)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((time.perf_counter(), record.getMessage()))

    def any(self, text: str) -> bool:
        return any(text in m for _, m in self.messages)

    def timeline(self, start: float) -> list[str]:
        """The messages from `start` on, each with its second since then."""
        return [f"{at - start:.2f} s: {m}" for at, m in self.messages if at >= start]


def _listening() -> _Said:
    said = _Said()
    for name in ("huedb.engine.index_cache", "huedb.engine.index_calibration"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(said)
    return said


def _cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (graph processes)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def ingest(path: str, spec: DataSpec, turn: int, start_at: float) -> dict[str, Any]:
    """Phase 1 in one of the two processes: its batches, a query, the wait for its graph."""
    import huedb

    said = _listening()
    data = make_dataset(spec)
    client = huedb.PersistentClient(path=path)
    col = client.get_collection(COLLECTION)
    time.sleep(max(0.0, start_at - time.time()))
    cpu, start = _cpu_s(), time.perf_counter()
    for batch, lo in enumerate(range(0, spec.n, BATCH)):
        if batch % 2 == turn:
            hi = min(lo + BATCH, spec.n)
            col.add(ids=data.ids(lo, hi), embeddings=data.vectors[lo:hi])
    added = time.perf_counter() - start
    col.query(query_embeddings=data.warmup[:1], n_results=K)
    while (status := col.get_indexing_status()).op_indexing_progress < 1.0:
        time.sleep(0.05)
    ready = time.perf_counter() - start
    client.close()
    return {
        "ingest_s": added,
        "ready_s": ready,
        "cpu_s": _cpu_s() - cpu,
        "built_here": said.any(BUILT),
        "served_the_others": said.any(ADOPTED),
        "recall": status.recall,
        "ef_search": status.ef_search,
        "index_log": said.timeline(start),
    }


def catch_up(path: str, spec: DataSpec, start_at: float) -> dict[str, Any]:
    """Phase 3 in one of the two processes: queries until its graph has taken the change."""
    import huedb

    said = _listening()
    data = make_dataset(spec)
    client = huedb.PersistentClient(path=path)
    col = client.get_collection(COLLECTION)
    time.sleep(max(0.0, start_at - time.time()))
    cpu, start, asked = _cpu_s(), time.perf_counter(), 0
    while True:
        q = data.queries[asked % len(data.queries)]
        col.query(query_embeddings=q[None, :], n_results=K, include=[])
        asked += 1
        if asked % 20 == 1 and col.get_indexing_status().op_indexing_progress >= 1.0:
            break
    up_to_date = time.perf_counter() - start
    client.close()
    return {
        "up_to_date_s": up_to_date,
        "queries": asked,
        "cpu_s": _cpu_s() - cpu,
        "passed_here": said.any(PASSED),
        "served_the_others": said.any(ADOPTED),
        "index_log": said.timeline(start),
    }


def _both(pool: Any, work: Any, *args: Any) -> list[dict[str, Any]]:
    """`work` in both processes at once, starting together."""
    start_at = time.time() + START_DELAY_S
    if work is ingest:
        jobs = [pool.apply_async(work, (*args, turn, start_at)) for turn in (0, 1)]
    else:
        jobs = [pool.apply_async(work, (*args, start_at)) for _ in (0, 1)]
    return [job.get() for job in jobs]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench shared", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--updated", type=float, default=0.2, help="fraction of n updated")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results)")
    args = parser.parse_args(argv)
    spec = DataSpec(n=args.n)
    updated = int(args.updated * args.n)
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="huedb-shared-") as path:
        import huedb

        client = huedb.PersistentClient(path=path)
        client.create_collection(COLLECTION, metadata={"hnsw:space": spec.space})
        client.close()
        with context.Pool(2, maxtasksperchild=1) as pool:
            log(f"ingest: {args.n:,} x {spec.dim} from two processes")
            ingested = _both(pool, ingest, path, spec)
        with context.Pool(1, maxtasksperchild=1) as pool:
            log(f"change: update {updated:,} from a third process")
            change_s = pool.apply(change, (path, spec, updated, 0, COLLECTION))
        with context.Pool(2, maxtasksperchild=1) as pool:
            log("catch up: both processes query until their graph has taken the change")
            caught_up = _both(pool, catch_up, path, spec)
    result = {
        "benchmark": "shared",
        "n": args.n,
        "dim": spec.dim,
        "updated": updated,
        "ingest": ingested,
        "ready_s_max": max(r["ready_s"] for r in ingested),
        "ingest_cpu_s": sum(r["cpu_s"] for r in ingested),
        "change_s": change_s,
        "catch_up": caught_up,
        "up_to_date_s_max": max(r["up_to_date_s"] for r in caught_up),
        "catch_up_cpu_s": sum(r["cpu_s"] for r in caught_up),
    }
    report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
