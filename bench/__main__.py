"""`python -m bench`: the core benchmark of huedb (and chromadb, when importable).

Example: python -m bench --n 100000 --dim 384 --systems huedb,chromadb
HTTP servers (huedb vs `chroma run`): python -m bench http --help
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.core import SYSTEMS, DataSpec, format_table, run

RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["http"]:
        from bench.http import main as http_main

        return http_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="records (default 10000)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384)")
    parser.add_argument("--systems", default="huedb,chromadb", help="comma-separated systems")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200, help="measured queries per case")
    parser.add_argument("--workdir", type=Path, default=None, help="where temp dirs go")
    parser.add_argument(
        "--out", default=None, help="JSON path (default bench/results/core-<timestamp>.json)"
    )
    args = parser.parse_args(argv)

    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {unknown}; known: {sorted(SYSTEMS)}")
    systems: list[str] = []
    skipped: list[str] = []
    for name in wanted:
        if SYSTEMS[name].available():
            systems.append(name)
        else:
            skipped.append(name)
            log(f"{name} is not importable with {sys.executable}: skipping it")
    if not systems:
        log("no system to benchmark")
        return 2
    if "chromadb" not in systems:
        log("running without chromadb: no ratios")

    spec = DataSpec(
        n=args.n, dim=args.dim, clusters=args.clusters, queries=args.queries, seed=args.seed
    )
    report = run(spec, systems, workdir=args.workdir, log=log)
    report["skipped_systems"] = skipped
    out = Path(args.out) if args.out else RESULTS / f"core-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    m = report["machine"]
    print(
        f"core benchmark: n={spec.n} dim={spec.dim} space={spec.space} "
        f"clusters={spec.clusters} seed={spec.seed} queries={spec.queries} k=10"
    )
    print(
        f"machine: {m['cpu_model']} x{m['cpu_count']}, {m['platform']}, python {m['python']}, "
        f"loadavg {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end; "
        f"versions {m['versions']}"
    )
    for name in skipped:
        print(f"{name}: not importable with {sys.executable}, not run (no ratios)")
    print()
    print(format_table(report))
    problems = [(n, e) for n, r in report["systems"].items() for e in r["errors"]]
    if problems:
        print()
        print("problems:")
        for name, err in problems:
            print(f"  {name}: {err}")
    print()
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
