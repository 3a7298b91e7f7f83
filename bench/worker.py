"""Child process of the core benchmark: measures one system in a fresh interpreter.

Usage (started by `bench.core.run_worker`): python -m bench.worker <job.json>

The job names the system, the data parameters, the ground-truth file written by the parent,
a work directory and the result path. The worker regenerates the same seeded data, then runs
the phases in this order, writing its result file after each phase (a crash keeps the figures
measured so far):

1. ingest in batches of 1,000 (every batch timed), first query, wait until indexed;
2. the query cases; 3. close, peak memory, disk bytes; 4. huedb only: raw usearch search on
the graph snapshot; 5. reopen in fresh processes; 6. export by `get` pages (database opened
again), then huedb only: `huedb export` to Parquet; 7. mutations on the database opened
again: update, upsert, delete 10% each, then the first query's latency (huedb: then
waiting until its graph has taken the changes, timed), then queries against the recomputed
ground truth.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

from bench import memory, ops
from bench.core import (
    BATCH,
    QUERY_CASES,
    SYSTEMS,
    Dataset,
    DataSpec,
    HuedbSystem,
    K,
    QueryCase,
    System,
    SystemResult,
    apparent_size,
    disk_usage,
    load_truth,
    make_dataset,
    reopen_in_subprocess,
)

MIB = 2**20


class ChildPeaks:
    """The memory of this process's child processes (huedb's graph process), sampled every
    20 ms in a thread: the largest VmHWM of one, and the largest RSS of this process and
    its children together. Not `getrusage(RUSAGE_CHILDREN)`: a child's `ru_maxrss` counts
    the parent's pages it shared until its exec (~280 MB here, for a ~147 MB process)."""

    def __init__(self) -> None:
        self.peak = 0  # the largest VmHWM of a child
        self.combined = 0  # the largest RSS of this process plus its children's, while any
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        own = _cmdline("self")
        while not self._stop.wait(0.02):
            children = 0
            for pid in _child_pids():
                # Until its exec a child still shows this process's memory figures.
                if _cmdline(str(pid)) in (own, None):
                    continue
                hwm, rss = _status_kb(str(pid), "VmHWM"), _status_kb(str(pid), "VmRSS")
                self.peak = max(self.peak, hwm or 0)
                children += rss or 0
            if children:
                self.combined = max(self.combined, (_status_kb("self", "VmRSS") or 0) + children)


def _cmdline(pid: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _child_pids() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").glob("*"):
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


def _status_kb(pid: str, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def log(message: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class Phases:
    """Runs the phases of one system, recording failures as errors instead of raising."""

    def __init__(self, system: System, data: Dataset, out: Path, log: Callable[[str], None]):
        self.system = system
        self.data = data
        self.out = out
        self.result = SystemResult(system=system.name, version=system.version())
        self.result.settings = system.settings()
        self.log = log
        self.figs = self.result.figures
        self.det = self.result.details

    def save(self) -> None:
        """Write the result so far (atomically)."""
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.result), indent=1) + "\n")
        tmp.replace(self.out)

    def attempt(self, phase: str, body: Callable[[], None]) -> bool:
        """Run one phase; an exception becomes an error of the result. Saves afterwards."""
        try:
            body()
            ok = True
        except Exception as exc:  # noqa: BLE001 - a crash is a result
            self.result.errors.append(f"{phase}: {type(exc).__name__}: {exc}")
            self.log(f"{self.system.name}: PROBLEM in {phase}: {exc}")
            ok = False
        self.save()
        return ok

    def close_quietly(self) -> None:
        try:
            self.system.close()
        except Exception as exc:  # noqa: BLE001
            self.result.errors.append(f"close: {type(exc).__name__}: {exc}")


def run_system(
    system: System,
    data: Dataset,
    truth: dict[str, list[set[int]]],
    workdir: Path,
    out: Path,
    reopen_runs: int = 3,
    log: Callable[[str], None] = log,
) -> SystemResult:
    """Measure every figure for one system; a failing phase is recorded, not raised."""
    p = Phases(system, data, out, log)
    name, n, dim = system.name, data.spec.n, data.spec.dim
    figs, det = p.figs, p.det
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))

    # -- memory baseline: data generated and library imported, database not yet opened
    det["memory_hwm_data_generation_bytes"] = memory.peak_rss()
    det["memory_peak_reset"] = memory.reset_peak()
    baseline = memory.rss() or 0
    det["memory_baseline_rss_bytes"] = baseline
    child_peaks = ChildPeaks()

    def ingest() -> None:
        system.open(path)
        system.create(data.spec.space)
        log(f"{name}: ingest {n} x {dim} in batches of {BATCH}")
        batch_s = []
        for lo in range(0, n, BATCH):
            hi = min(lo + BATCH, n)
            meta, docs = data.metadatas(lo, hi), data.documents[lo:hi]
            ids = data.ids(lo, hi)
            start = time.perf_counter()
            system.add(ids, data.vectors[lo:hi], meta, docs)
            batch_s.append(time.perf_counter() - start)
        ingest_s = sum(batch_s)
        sizes = [min(BATCH, n - lo) for lo in range(0, n, BATCH)]
        tenth = max(1, len(batch_s) // 10)
        first = sum(sizes[:tenth]) / sum(batch_s[:tenth])
        last = sum(sizes[-tenth:]) / sum(batch_s[-tenth:])
        det["ingest_batch_s"] = [round(t, 6) for t in batch_s]
        det["ingest_batches_per_tenth"] = tenth
        start = time.perf_counter()
        system.query(data.warmup[0], K)
        first_query = time.perf_counter() - start
        system.wait_until_indexed()
        ready = time.perf_counter() - start
        det["index_status_after_ingest"] = system.index_status()
        figs.update(
            add_vps=n / ingest_s,
            ingest_s=ingest_s,
            ingest_first_vps=first,
            ingest_last_vps=last,
            ingest_growth=last / first,
            first_query_s=first_query,
            ready_s=ingest_s + ready,
            ready_vps=n / (ingest_s + ready),
        )
        count = system.count()
        det["count_after_ingest"] = count
        if count != n:
            p.result.errors.append(f"count() after ingest is {count}, expected {n}")

    if not p.attempt("ingest", ingest):
        p.close_quietly()
        shutil.rmtree(path, ignore_errors=True)
        p.save()
        return p.result

    def query_case(case: QueryCase) -> None:
        log(f"{name}: {case.key} queries")
        r = ops.measure_queries(system, data.queries, data.warmup, truth[case.key], case)
        figs[f"{case.key}_p50_ms"] = r["p50_ms"]
        figs[f"{case.key}_p99_ms"] = r["p99_ms"]
        figs[f"{case.key}_recall"] = r["recall"]
        det[f"{case.key}_min_recall"] = r["min_recall"]
        det[f"{case.key}_mean_ms"] = r["mean_ms"]
        if r["short"]:
            p.result.errors.append(f"{case.key}: {r['short']} queries returned fewer than {K}")

    for case in QUERY_CASES:
        p.attempt(case.key, partial(query_case, case))

    uuid = system.collection_id
    p.close_quietly()
    hwm = memory.peak_rss()
    det["memory_hwm_bytes"] = hwm
    det["memory_rss_after_close_bytes"] = memory.rss()
    # huedb builds a large graph in a child process: the figure is the larger of this
    # process's peak and the largest sum of its RSS and its children's, sampled.
    child_peaks.stop()
    det["memory_child_peak_bytes"] = child_peaks.peak
    det["memory_with_children_peak_bytes"] = child_peaks.combined
    if hwm is not None and baseline:
        figs["peak_memory_mib"] = (max(hwm, child_peaks.combined) - baseline) / MIB
    store_bytes = system.store_bytes()
    disk = disk_usage(path) + store_bytes
    det["disk_bytes"] = disk
    det["disk_store_bytes_outside_path"] = store_bytes
    det["disk_apparent_bytes"] = apparent_size(path)
    figs["disk_bytes_per_vector"] = disk / n
    p.save()

    if isinstance(system, HuedbSystem):

        def raw() -> None:
            snap = path / "index" / f"{uuid}.hnsw"
            if not snap.exists():
                if system.exact_only(n, dim):
                    det["raw_library"] = "not measured: huedb searches exactly at this size"
                    p.result.notes.append(
                        f"raw usearch figures not measured: {n} x {dim} floats is within "
                        "huedb_exact_max_floats, so huedb builds no graph (no snapshot)"
                    )
                    return
                raise FileNotFoundError(f"no graph snapshot at {snap}")
            log(f"{name}: raw usearch search on the graph snapshot")
            r = ops.raw_library_search(snap, data.queries, data.warmup, ops.huedb_ef_search())
            det["raw_library"] = r
            figs["raw_p50_ms"] = r["p50_ms"]
            if "query_p50_ms" in figs and r["p50_ms"] > 0:
                figs["query_over_raw"] = figs["query_p50_ms"] / r["p50_ms"]
            if r["short"]:
                p.result.errors.append(f"raw library: {r['short']} searches found fewer than {K}")

        p.attempt("raw library", raw)

    def reopen() -> None:
        log(f"{name}: reopen x{reopen_runs} in fresh processes")
        runs = [reopen_in_subprocess(name, path, data.warmup[1]) for _ in range(reopen_runs)]
        det["reopen_runs"] = runs
        figs["reopen_s"] = statistics.median(r["open_s"] + r["first_query_s"] for r in runs)
        figs["reopen_import_s"] = statistics.median(r["import_s"] for r in runs)
        figs["reopen_wall_s"] = statistics.median(r["wall_s"] for r in runs)
        figs["reopen_filtered_s"] = statistics.median(r["first_filtered_query_s"] for r in runs)
        if all(r["peak_rss_bytes"] for r in runs):
            figs["reopen_peak_mib"] = statistics.median(r["peak_rss_bytes"] for r in runs) / MIB
        bad = [r["hits"] for r in runs if r["hits"] != K]
        if bad:
            p.result.errors.append(f"reopen: first query returned {bad} hits, expected {K}")
        bad = [r["filtered_hits"] for r in runs if r["filtered_hits"] != K]
        if bad:
            p.result.errors.append(f"reopen: filtered query returned {bad} hits, expected {K}")

    p.attempt("reopen", reopen)

    def export() -> None:
        log(f"{name}: export through get() pages")
        memory.reset_peak()
        before = memory.rss() or 0
        system.open(path)
        system.get()
        try:
            r = ops.measure_export(system, data)
        finally:
            system.close()
        r["memory_peak_over_rss_before_open_mib"] = ((memory.peak_rss() or 0) - before) / MIB
        det["export"] = r
        if r["items_per_s"] is not None:
            figs["export_ips"] = r["items_per_s"]
        if r["items"] != n or r["unique_ids"] != n:
            p.result.errors.append(
                f"export: {r['items']} items, {r['unique_ids']} distinct ids, expected {n}"
            )
        if r["sample_checked"] != r["sample"]:
            p.result.errors.append(f"export: {r['sample_checked']} of {r['sample']} samples seen")
        if r["sample_bad_metadata_or_document"]:
            p.result.errors.append(
                f"export: {r['sample_bad_metadata_or_document']} samples with wrong "
                "metadata or document"
            )
        if r["sample_close"] != r["sample_checked"]:
            p.result.errors.append(
                f"export: {r['sample_checked'] - r['sample_close']} sampled vectors differ "
                f"(max |diff| {r['sample_max_abs_diff']:.3g})"
            )
        elif r["sample_exact"] != r["sample_checked"]:
            msg = (
                f"export: {r['sample_checked'] - r['sample_exact']} of {r['sample_checked']} "
                f"sampled vectors are not float32-identical to the data (max |diff| "
                f"{r['sample_max_abs_diff']:.3g})"
            )
            # huedb promises the stored floats back; Chroma rounds them (cosine), a note
            if isinstance(system, HuedbSystem):
                p.result.errors.append(msg)
            else:
                p.result.notes.append(msg)

    p.attempt("export", export)

    if isinstance(system, HuedbSystem):

        def parquet() -> None:
            log(f"{name}: huedb export to Parquet")
            target = path.parent / f"{path.name}-export.parquet"
            try:
                r = ops.huedb_parquet_export(path, target, n, system.cli_args())
            finally:
                target.unlink(missing_ok=True)
            det["parquet_export"] = r
            if r["exit_code"] != 0:
                raise RuntimeError(f"exit {r['exit_code']}: {r['stderr_tail']}")
            if r.get("rows") != n:
                p.result.errors.append(f"parquet export: {r.get('rows')} rows, expected {n}")
            figs["parquet_ips"] = r["items_per_s"]

        p.attempt("parquet export", parquet)

    def mutations() -> None:
        plan = ops.mutation_plan(data)
        log(f"{name}: exact ground truth after mutations")
        mtruth = ops.mutated_truth(data, plan)
        log(f"{name}: update, upsert, delete {len(plan.update_idx)} records each")
        memory.reset_peak()
        before = memory.rss() or 0
        system.open(path)
        system.get()
        try:
            r = ops.measure_mutations(system, data, plan)
            det["mutations"] = r
            for op in ("update", "upsert", "delete"):
                if r[op]["records_per_s"] is not None:
                    figs[f"{op}_rps"] = r[op]["records_per_s"]
            p.result.errors.extend(
                f"mutations: {e}" for e in ops.check_mutations(system, data, plan)
            )
            log(f"{name}: queries after mutations")
            start = time.perf_counter()
            system.query(data.warmup[0], K, None, None)
            figs["mutated_first_s"] = time.perf_counter() - start
            if isinstance(system, HuedbSystem):  # the p50 below is of the index caught up
                system.wait_until_indexed()
                figs["mutated_indexed_s"] = time.perf_counter() - start
            q = ops.measure_queries(system, data.queries, data.warmup, mtruth)
            figs["mutated_p50_ms"] = q["p50_ms"]
            figs["mutated_recall"] = q["recall"]
            det["mutated_p99_ms"] = q["p99_ms"]
            det["mutated_min_recall"] = q["min_recall"]
            if q["short"]:
                p.result.errors.append(f"after mutations: {q['short']} queries short of {K}")
        finally:
            system.close()
        det["mutations_memory_peak_over_rss_before_open_mib"] = (
            (memory.peak_rss() or 0) - before
        ) / MIB

    if n >= 10:
        p.attempt("mutations", mutations)
    shutil.rmtree(path, ignore_errors=True)
    p.save()
    return p.result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    spec = DataSpec(**job["spec"])
    system = SYSTEMS[job["system"]]()
    system.load()
    prefix = f"{system.name} n={spec.n}"

    def plog(message: str) -> None:
        log(f"{prefix}: {message.removeprefix(system.name + ': ')}")

    plog(f"regenerating {spec.n} x {spec.dim} (seed {spec.seed})")
    data = make_dataset(spec)
    truth = load_truth(Path(job["truth"]))
    run_system(
        system,
        data,
        truth,
        Path(job["workdir"]),
        Path(job["out"]),
        reopen_runs=int(job.get("reopen_runs", 3)),
        log=plog,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
