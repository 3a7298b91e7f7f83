"""`python -m bench`: the core benchmark of huedb (and chromadb, when importable).

Each system runs in its own fresh child process on the same seeded data; one table per size,
then (with several sizes) a growth table. Example:
  python -m bench --sizes 10000,100000 --systems huedb,chromadb
HTTP servers (huedb vs `chroma run`): python -m bench http --help
Hybrid search (dense + BM25 vs bm25s): python -m bench search --help
Queries after another process changed much of a collection: python -m bench backlog --help
Writes to a large collection queried meanwhile: python -m bench writes --help
Two processes (server workers) on one data directory: python -m bench shared --help
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.core import (
    PEERS,
    SYSTEMS,
    DataSpec,
    format_growth,
    format_table,
    format_targets,
    run_suite,
    size_label,
)

RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def parse_sizes(text: str) -> list[int]:
    """ "10000,100000" -> [10000, 100000] (positive, in the order given, duplicates dropped)."""
    sizes: list[int] = []
    for item in text.split(","):
        item = item.strip().replace("_", "")
        if not item:
            continue
        n = int(item)
        if n <= 0:
            raise ValueError(f"size {n} is not positive")
        if n not in sizes:
            sizes.append(n)
    if not sizes:
        raise ValueError("no size given")
    return sizes


def print_report(suite: dict[str, Any], skipped: list[str], out: Path) -> None:
    """The tables on stdout."""
    m = suite["machine"]
    print(
        f"machine: {m['cpu_model']} x{m['cpu_count']}, {m['platform']}, python {m['python']}, "
        f"loadavg {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end; "
        f"versions {m['versions']}"
    )
    if suite["huedb_settings_overrides"]:
        print(f"huedb settings overridden: {suite['huedb_settings_overrides']}")
    for name in skipped:
        hint = " (a peer: pip install -e '.[bench]')" if name in PEERS else ""
        print(f"{name}: not importable with {sys.executable}, not run (no ratios){hint}")
    for report in suite["runs"]:
        d = report["data"]
        print()
        print(
            f"core benchmark: n={d['n']} dim={d['dim']} space={d['space']} "
            f"clusters={d['clusters']} seed={d['seed']} queries={d['queries']} k={d['k']} "
            f"({report['elapsed_s']:.0f} s)"
        )
        print()
        print(format_table(report))
        if report["targets"]:
            print()
            scope = "those marked 1M apply at n=1,000,000, the others at n=100,000"
            print(f"targets of the issues ({scope}), at n={d['n']}:")
            print(format_targets(report))
        problems = [(n, e) for n, r in report["systems"].items() for e in r["errors"]]
        notes = [(n, e) for n, r in report["systems"].items() for e in r.get("notes", [])]
        if problems:
            print()
            print("problems:")
            for name, err in problems:
                print(f"  {name}: {err}")
        if notes:
            print()
            print("notes:")
            for name, note in notes:
                print(f"  {name}: {note}")
    if len(suite["runs"]) > 1:
        sizes = ", ".join(size_label(n) for n in suite["sizes"])
        print()
        print(f"growth with n ({sizes}):")
        print()
        print(format_growth(suite))
    print()
    print(f"results: {out}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["http"]:
        from bench.http import main as http_main

        return http_main(argv[1:])
    if argv[:1] == ["cluster"]:
        from bench.cluster import main as cluster_main

        return cluster_main(argv[1:])
    if argv[:1] == ["backlog"]:
        from bench.backlog import main as backlog_main

        return backlog_main(argv[1:])
    if argv[:1] == ["writes"]:
        from bench.writes import main as writes_main

        return writes_main(argv[1:])
    if argv[:1] == ["shared"]:
        from bench.shared import main as shared_main

        return shared_main(argv[1:])
    if argv[:1] == ["footprint"]:
        from bench.footprint import main as footprint_main

        return footprint_main(argv[1:])
    if argv[:1] == ["search"]:
        from bench.search import main as search_main

        return search_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default=None,
        help="comma-separated record counts, each run in turn (default 10000); "
        "1000000 is possible but slow with chromadb (see bench/README.md)",
    )
    parser.add_argument("--n", type=int, default=None, help="one size (alias of --sizes N)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384)")
    parser.add_argument(
        "--systems",
        default="huedb,chromadb",
        help=f"comma-separated, of {', '.join(SYSTEMS)} (default huedb,chromadb)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200, help="measured queries per case")
    parser.add_argument(
        "--huedb-exact-max-floats",
        type=int,
        default=None,
        help="override huedb's exact-search threshold (vectors x dim) so that small runs "
        "build and snapshot a graph too; recorded in the JSON (default: huedb's own)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where temp dirs go")
    parser.add_argument(
        "--out", default=None, help="JSON path (default bench/results/core-<timestamp>.json)"
    )
    args = parser.parse_args(argv)

    if args.sizes is not None and args.n is not None:
        parser.error("give --sizes or --n, not both")
    try:
        sizes = parse_sizes(args.sizes) if args.sizes is not None else [args.n or 10_000]
    except ValueError as exc:
        parser.error(f"--sizes: {exc}")
    if args.queries < 1:
        parser.error("--queries must be at least 1")

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
            hint = " (a peer: pip install -e '.[bench]')" if name in PEERS else ""
            log(f"{name} is not importable with {sys.executable}: skipping it{hint}")
    if not systems:
        log("no system to benchmark")
        return 2
    if "chromadb" not in systems:
        log("running without chromadb: no ratios")

    specs = [
        DataSpec(n=n, dim=args.dim, clusters=args.clusters, queries=args.queries, seed=args.seed)
        for n in sizes
    ]
    overrides: dict[str, Any] = {}
    if args.huedb_exact_max_floats is not None:
        overrides["huedb_exact_max_floats"] = args.huedb_exact_max_floats
    suite = run_suite(specs, systems, workdir=args.workdir, log=log, huedb_settings=overrides)
    suite["skipped_systems"] = skipped
    out = Path(args.out) if args.out else RESULTS / f"core-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(suite, indent=2) + "\n")
    print_report(suite, skipped, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
