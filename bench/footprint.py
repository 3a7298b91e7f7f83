"""`python -m bench footprint`: huedb's disk bytes per vector, item by item (issue 18).

Ingests N x dim clustered vectors with the core benchmark's metadata and documents
(`bench.core.make_dataset`) into a PersistentClient in batches of 1,000, asks one query,
waits until the graph is built and snapshotted, closes the client, then prints bytes per
vector: every file under the data directory (allocated, like `du`), and the SQLite file's
tables and indexes (the `dbstat` virtual table). Peak RSS of the process is printed too.
Example: python -m bench footprint --n 100000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import memory
from bench.core import BATCH, DataSpec, make_dataset

RESULTS = Path(__file__).resolve().parent / "results"
COLLECTION = "footprint"


def log(message: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class RssSampler:
    """Samples RSS every 20 ms in a thread; keeps each phase's highest sample."""

    def __init__(self) -> None:
        self.phase = "open"
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            now = memory.rss() or 0
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), now)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def ingest(path: Path, spec: DataSpec) -> dict[str, Any]:
    """Fill a store at `path`, wait for the graph and its snapshot, close; timings and RSS
    (peak over the RSS before the client opened, overall and per phase)."""
    import huedb

    data = make_dataset(spec)
    memory.reset_peak()
    baseline = memory.rss() or 0
    sampler = RssSampler()
    client = huedb.PersistentClient(path=str(path))
    collection = client.create_collection(
        COLLECTION, metadata={"hnsw:space": spec.space}, embedding_function=None
    )
    sampler.phase = "ingest"
    start = time.perf_counter()
    for lo in range(0, spec.n, BATCH):
        hi = min(lo + BATCH, spec.n)
        collection.add(
            ids=data.ids(lo, hi),
            embeddings=data.vectors[lo:hi],
            metadatas=data.metadatas(lo, hi),
            documents=data.documents[lo:hi],
        )
    ingest_s = time.perf_counter() - start
    sampler.phase = "first query and graph build"
    collection.query(query_embeddings=data.warmup[:1], n_results=10)
    while collection.get_indexing_status().op_indexing_progress < 1.0:
        time.sleep(0.05)
    ready_s = time.perf_counter() - start
    uuid = str(collection.id)
    sampler.phase = "close"
    client.close()
    peaks = sampler.stop()
    hwm = memory.peak_rss() or 0
    return {
        "ingest_s": ingest_s,
        "ready_s": ready_s,
        "uuid": uuid,
        "peak_rss_over_baseline_bytes": hwm - baseline,
        "phase_peak_rss_over_baseline_bytes": {k: v - baseline for k, v in peaks.items()},
    }


def file_sizes(path: Path) -> dict[str, int]:
    """Allocated bytes of every file under `path`, by relative name (uuids shortened)."""
    out: dict[str, int] = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(path))] = p.lstat().st_blocks * 512
    return out


def table_sizes(db: Path) -> dict[str, int]:
    """Bytes of every SQLite table and index (`dbstat`), largest first; `(free)` for free pages."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        con.close()
    sizes = {name: int(size) for name, size in rows}
    sizes["(free pages)"] = free * page_size
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def report(path: Path, n: int, run: dict[str, Any]) -> dict[str, Any]:
    """Bytes per vector by file and by SQLite table/index."""
    files = file_sizes(path)
    dbs = [path / name for name in files if name.endswith(".sqlite3")]
    tables = table_sizes(dbs[0]) if dbs else {}
    total = sum(files.values())
    return {
        "n": n,
        **run,
        "total_bytes": total,
        "bytes_per_vector": total / n,
        "files": files,
        "tables": tables,
    }


def print_report(r: dict[str, Any]) -> None:
    n, uuid = r["n"], r["uuid"]
    print(
        f"n={n}: {r['bytes_per_vector']:,.0f} B/vector on disk "
        f"({r['total_bytes'] / 2**20:,.1f} MiB); ingest {r['ingest_s']:.1f} s, ready "
        f"{r['ready_s']:.1f} s; peak RSS over baseline "
        f"{r['peak_rss_over_baseline_bytes'] / 2**20:,.1f} MiB"
    )
    phases = r["phase_peak_rss_over_baseline_bytes"]
    print("  peak RSS over baseline by phase (20 ms samples):")
    for phase, size in phases.items():
        print(f"    {size / 2**20:10,.1f} MiB  {phase}")
    print("  files:")
    for name, size in r["files"].items():
        print(f"    {size / n:10,.1f}  {name.replace(uuid, '<uuid>')}")
    print("  SQLite tables and indexes:")
    for name, size in r["tables"].items():
        print(f"    {size / n:10,.1f}  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench footprint", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    spec = DataSpec(n=args.n, dim=args.dim, seed=args.seed)
    path = Path(tempfile.mkdtemp(prefix="huedb-footprint-", dir=args.workdir))
    log(f"ingest {args.n} x {args.dim} into {path}")
    run = ingest(path, spec)
    r = report(path, args.n, run)
    print_report(r)
    out = args.out or RESULTS / f"footprint-{args.n}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1) + "\n")
    print(f"results: {out}" + (f"; data: {path}" if args.keep else ""))
    if not args.keep:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
