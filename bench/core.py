"""Core benchmark: ingest, query latency/recall, filtered queries, reopen time and disk use.

Every system under test is wrapped in an adapter (`HuedbSystem`, `ChromaSystem`) with the same
interface, so each figure is measured by the same code on the same seeded data in one run.
The library of an adapter is imported lazily, so a fresh process can time its own import.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

COLLECTION = "bench"
BATCH = 1_000
K = 10
RARE_TOKEN = "zyzzyva"
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """Parameters that fully determine the generated data set."""

    n: int = 10_000
    dim: int = 384
    clusters: int = 100
    sigma: float = 0.5
    queries: int = 200
    warmup: int = 20
    seed: int = 0
    space: str = "cosine"


@dataclass
class Dataset:
    """Seeded clustered float32 vectors with metadata, documents and held-out queries."""

    spec: DataSpec
    vectors: np.ndarray  # (n, dim) float32
    queries: np.ndarray  # (queries, dim) float32, measured
    warmup: np.ndarray  # (warmup, dim) float32, run before measuring
    buckets: np.ndarray  # (n,) int, uniform in 0..99
    rare: np.ndarray  # (n,) bool, documents that contain RARE_TOKEN
    documents: list[str]

    def ids(self, start: int, stop: int) -> list[str]:
        return [record_id(i) for i in range(start, stop)]

    def metadatas(self, start: int, stop: int) -> list[dict[str, Any]]:
        return [{"bucket": int(b)} for b in self.buckets[start:stop]]


def record_id(i: int) -> str:
    return f"id-{i:08d}"


def record_index(doc_id: str) -> int:
    return int(doc_id[3:])


def make_dataset(spec: DataSpec) -> Dataset:
    """Gaussian clusters around `spec.clusters` random centres; queries from the same mixture."""
    rng = np.random.default_rng(spec.seed)
    centres = rng.standard_normal((spec.clusters, spec.dim), dtype=np.float32)
    total = spec.n + spec.queries + spec.warmup
    labels = rng.integers(0, spec.clusters, total)
    vectors = np.empty((total, spec.dim), dtype=np.float32)
    step = 100_000
    for start in range(0, total, step):
        stop = min(start + step, total)
        noise = rng.standard_normal((stop - start, spec.dim), dtype=np.float32)
        vectors[start:stop] = centres[labels[start:stop]] + np.float32(spec.sigma) * noise
    buckets = rng.integers(0, 100, spec.n)
    rare = rng.random(spec.n) < 0.01
    word_ids = rng.integers(0, len(WORDS), (spec.n, 3))
    documents = [
        f"record {i} {WORDS[a]} {WORDS[b]} {RARE_TOKEN if r else WORDS[c]}"
        for i, ((a, b, c), r) in enumerate(zip(word_ids.tolist(), rare.tolist(), strict=True))
    ]
    n, q = spec.n, spec.queries
    return Dataset(
        spec=spec,
        vectors=vectors[:n],
        queries=vectors[n : n + q],
        warmup=vectors[n + q :],
        buckets=buckets,
        rare=rare,
        documents=documents,
    )


class GroundTruth:
    """Exact top-k by cosine distance with numpy, over all records or an allowed subset."""

    def __init__(self, data: Dataset) -> None:
        if data.spec.space != "cosine":
            raise ValueError("ground truth is implemented for cosine space only")
        self._base = _normalize(data.vectors)
        self._queries = _normalize(data.queries)

    def top_k(self, k: int, mask: np.ndarray | None = None) -> list[set[int]]:
        """The exact k nearest record indices of each measured query."""
        rows = np.arange(len(self._base)) if mask is None else np.flatnonzero(mask)
        out: list[set[int]] = []
        for start in range(0, len(self._queries), 50):
            sims = self._queries[start : start + 50] @ self._base[rows].T
            kk = min(k, len(rows))
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            out.extend({int(rows[j]) for j in r} for r in part)
        return out


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# -- systems --------------------------------------------------------------------------------


class System(ABC):
    """One database under test; the same calls for every system."""

    name: str = ""
    module: str = ""

    def __init__(self) -> None:
        self._lib: Any = None
        self._client: Any = None
        self._collection: Any = None

    @classmethod
    def available(cls) -> bool:
        try:
            __import__(cls.module)
        except ImportError:
            return False
        return True

    def load(self) -> None:
        """Import the library (timed separately in the reopen figure)."""
        self._lib = __import__(self.module)

    def version(self) -> str:
        if self._lib is None:
            self.load()
        return str(getattr(self._lib, "__version__", "?"))

    @abstractmethod
    def open(self, path: Path) -> None:
        """Open a persistent client on `path`."""

    def settings(self) -> dict[str, Any]:
        """Settings worth recording next to the figures."""
        return {}

    def create(self, space: str) -> None:
        self._collection = self._client.create_collection(
            COLLECTION, metadata={"hnsw:space": space}, embedding_function=None
        )

    def get(self) -> None:
        self._collection = self._client.get_collection(COLLECTION, embedding_function=None)

    def add(
        self,
        ids: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
        documents: list[str],
    ) -> None:
        self._collection.add(ids=ids, embeddings=vectors, metadatas=metadatas, documents=documents)

    def count(self) -> int:
        return int(self._collection.count())

    def query(
        self,
        vector: np.ndarray,
        k: int,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
    ) -> list[str]:
        """Ids of the k nearest records to one query (default include, like a user)."""
        result = self._collection.query(
            query_embeddings=vector[None, :],
            n_results=k,
            where=where,
            where_document=where_document,
        )
        return list(result["ids"][0])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._collection = None

    def wait_until_indexed(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Return once queries are served by the ANN index (chromadb indexes during add)."""


class HuedbSystem(System):
    name = "huedb"
    module = "huedb"

    def open(self, path: Path) -> None:
        if self._lib is None:
            self.load()
        self._client = self._lib.PersistentClient(path=str(path))

    def settings(self) -> dict[str, Any]:
        from huedb.config import Settings

        s = Settings()
        return {
            "huedb_sync": s.huedb_sync,
            "huedb_exact_max_floats": s.huedb_exact_max_floats,
            "huedb_filtered_exact_max_floats": s.huedb_filtered_exact_max_floats,
            "huedb_snapshot_every": s.huedb_snapshot_every,
            "hnsw": "defaults (M=16, ef_construction=100, ef_search=100)",
        }

    def wait_until_indexed(self) -> None:
        """huedb builds its graph in the background after the first query; wait for it."""
        while self._collection.get_indexing_status().op_indexing_progress < 1.0:
            time.sleep(0.05)


class ChromaSystem(System):
    name = "chromadb"
    module = "chromadb"

    def open(self, path: Path) -> None:
        if self._lib is None:
            self.load()
        from chromadb.config import Settings

        self._client = self._lib.PersistentClient(
            path=str(path), settings=Settings(anonymized_telemetry=False)
        )

    def settings(self) -> dict[str, Any]:
        return {
            "anonymized_telemetry": False,
            "hnsw": "defaults (M=16, ef_construction=100, ef_search=100)",
        }


SYSTEMS: dict[str, type[System]] = {"huedb": HuedbSystem, "chromadb": ChromaSystem}


# -- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the result table."""

    key: str
    label: str
    unit: str
    higher_is_better: bool


FIGURES: list[Figure] = [
    Figure("add_vps", "ingest: raw add throughput", "vec/s", True),
    Figure("ingest_s", "ingest: add time", "s", False),
    Figure("first_query_s", "ingest: first query after add", "s", False),
    Figure("ready_s", "ingest + index ready", "s", False),
    Figure("ready_vps", "ingest + index ready throughput", "vec/s", True),
    Figure("query_p50_ms", "query p50", "ms", False),
    Figure("query_p99_ms", "query p99", "ms", False),
    Figure("query_recall", "query recall@10", "", True),
    Figure("filter10_p50_ms", "where bucket<10 (~10%) p50", "ms", False),
    Figure("filter10_recall", "where bucket<10 (~10%) recall@10", "", True),
    Figure("filter1_p50_ms", "where bucket==7 (~1%) p50", "ms", False),
    Figure("filter1_recall", "where bucket==7 (~1%) recall@10", "", True),
    Figure("contains_p50_ms", "where_document $contains (~1%) p50", "ms", False),
    Figure("contains_recall", "where_document $contains recall@10", "", True),
    Figure("reopen_s", "reopen: open + first query (median of 3)", "s", False),
    Figure("reopen_import_s", "reopen: library import (median of 3)", "s", False),
    Figure("reopen_wall_s", "reopen: whole fresh process (median of 3)", "s", False),
    Figure("disk_bytes_per_vector", "disk bytes per vector", "B", False),
]


@dataclass
class QueryCase:
    """A family of queries with optional filters and the record mask they allow."""

    key: str
    where: dict[str, Any] | None
    where_document: dict[str, Any] | None
    mask: Callable[[Dataset], np.ndarray | None]


QUERY_CASES: list[QueryCase] = [
    QueryCase("query", None, None, lambda d: None),
    QueryCase("filter10", {"bucket": {"$lt": 10}}, None, lambda d: d.buckets < 10),
    QueryCase("filter1", {"bucket": 7}, None, lambda d: d.buckets == 7),
    QueryCase("contains", None, {"$contains": RARE_TOKEN}, lambda d: d.rare),
]


@dataclass
class SystemResult:
    """Figures and problems of one system in one run."""

    system: str
    version: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def run_system(
    system: System,
    data: Dataset,
    truth: dict[str, list[set[int]]],
    workdir: Path,
    reopen_runs: int = 3,
    log: Callable[[str], None] = lambda _: None,
) -> SystemResult:
    """Measure every figure for one system; a failing phase is recorded, not raised."""
    result = SystemResult(system=system.name, version=system.version())
    result.settings = system.settings()
    path = Path(tempfile.mkdtemp(prefix=f"{system.name}-", dir=workdir))
    n = data.spec.n
    figs = result.figures
    try:
        system.open(path)
        system.create(data.spec.space)
        log(f"{system.name}: ingest {n} x {data.spec.dim} in batches of {BATCH}")
        start = time.perf_counter()
        for lo in range(0, n, BATCH):
            hi = min(lo + BATCH, n)
            meta, docs = data.metadatas(lo, hi), data.documents[lo:hi]
            system.add(data.ids(lo, hi), data.vectors[lo:hi], meta, docs)
        ingest = time.perf_counter() - start
        start = time.perf_counter()
        system.query(data.warmup[0], K)
        first = time.perf_counter() - start
        system.wait_until_indexed()
        ready = time.perf_counter() - start
        figs.update(
            add_vps=n / ingest,
            ingest_s=ingest,
            first_query_s=first,
            ready_s=ingest + ready,
            ready_vps=n / (ingest + ready),
        )
        count = system.count()
        result.details["count_after_ingest"] = count
        if count != n:
            result.errors.append(f"count() after ingest is {count}, expected {n}")
    except Exception as exc:  # noqa: BLE001 - a crash is a result
        result.errors.append(f"ingest: {type(exc).__name__}: {exc}")
        system.close()
        shutil.rmtree(path, ignore_errors=True)
        return result

    for case in QUERY_CASES:
        log(f"{system.name}: {case.key} queries")
        try:
            _measure_queries(system, data, case, truth[case.key], result)
        except Exception as exc:  # noqa: BLE001
            result.errors.append(f"{case.key}: {type(exc).__name__}: {exc}")

    try:
        system.close()
    except Exception as exc:  # noqa: BLE001
        result.errors.append(f"close: {type(exc).__name__}: {exc}")
    disk = disk_usage(path)
    result.details["disk_bytes"] = disk
    result.details["disk_apparent_bytes"] = apparent_size(path)
    figs["disk_bytes_per_vector"] = disk / n

    log(f"{system.name}: reopen x{reopen_runs} in fresh processes")
    runs: list[dict[str, float]] = []
    for _ in range(reopen_runs):
        try:
            runs.append(reopen_in_subprocess(system.name, path, data.warmup[1]))
        except Exception as exc:  # noqa: BLE001
            result.errors.append(f"reopen: {type(exc).__name__}: {exc}")
            break
    result.details["reopen_runs"] = runs
    if runs:
        figs["reopen_s"] = statistics.median(r["open_s"] + r["first_query_s"] for r in runs)
        figs["reopen_import_s"] = statistics.median(r["import_s"] for r in runs)
        figs["reopen_wall_s"] = statistics.median(r["wall_s"] for r in runs)
        bad = [r["hits"] for r in runs if r["hits"] != K]
        if bad:
            result.errors.append(f"reopen: first query returned {bad} hits, expected {K}")
    shutil.rmtree(path, ignore_errors=True)
    return result


def _measure_queries(
    system: System,
    data: Dataset,
    case: QueryCase,
    truth: list[set[int]],
    result: SystemResult,
) -> None:
    for vec in data.warmup:
        system.query(vec, K, case.where, case.where_document)
    latencies: list[float] = []
    recalls: list[float] = []
    short = 0
    for vec, exact in zip(data.queries, truth, strict=True):
        start = time.perf_counter()
        ids = system.query(vec, K, case.where, case.where_document)
        latencies.append((time.perf_counter() - start) * 1000.0)
        got = {record_index(i) for i in ids}
        if len(ids) < len(exact):
            short += 1
        recalls.append(len(got & exact) / max(len(exact), 1))
    lat = np.asarray(latencies)
    figs = result.figures
    figs[f"{case.key}_p50_ms"] = float(np.percentile(lat, 50))
    figs[f"{case.key}_p99_ms"] = float(np.percentile(lat, 99))
    figs[f"{case.key}_recall"] = float(np.mean(recalls))
    result.details[f"{case.key}_min_recall"] = float(np.min(recalls))
    result.details[f"{case.key}_mean_ms"] = float(np.mean(lat))
    if short:
        result.errors.append(f"{case.key}: {short} queries returned fewer than {K} hits")


def reopen_in_subprocess(system: str, path: Path, query: np.ndarray) -> dict[str, float]:
    """Cold start: a fresh interpreter imports the library, opens `path`, answers a query."""
    qfile = path.parent / f"{path.name}-query.npy"
    np.save(qfile, query)
    code = "import sys; from bench.core import reopen_worker; reopen_worker(sys.argv[1:])"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, system, str(path), str(qfile)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.perf_counter() - start
    qfile.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


def reopen_worker(argv: list[str]) -> None:
    """Child side of `reopen_in_subprocess`: prints one JSON line of timings."""
    name, path, qfile = argv
    query = np.load(qfile)
    system = SYSTEMS[name]()
    t0 = time.perf_counter()
    system.load()
    t1 = time.perf_counter()
    system.open(Path(path))
    system.get()
    t2 = time.perf_counter()
    ids = system.query(query, K)
    t3 = time.perf_counter()
    system.close()
    line = {"import_s": t1 - t0, "open_s": t2 - t1, "first_query_s": t3 - t2, "hits": len(ids)}
    sys.stdout.write(json.dumps(line) + "\n")


def disk_usage(path: Path) -> int:
    """Allocated bytes under `path`, like `du -s --block-size=1`."""
    return sum(p.lstat().st_blocks * 512 for p in _walk(path))


def apparent_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in _walk(path) if p.is_file())


def _walk(path: Path) -> Iterable[Path]:
    yield path
    yield from path.rglob("*")


# -- run ------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Where and with what the run happened."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions = {}
    for dist in ("huedb", "chromadb", "numpy", "usearch"):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "mem_total_bytes": mem_total,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "versions": versions,
        "loadavg_start": list(os.getloadavg()),
        "git": _git_state(),
    }


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return proc.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except OSError:
        return {}


def ground_truth(data: Dataset) -> dict[str, list[set[int]]]:
    """Exact top-K for every query case."""
    gt = GroundTruth(data)
    return {case.key: gt.top_k(K, case.mask(data)) for case in QUERY_CASES}


def run(
    spec: DataSpec,
    systems: list[str],
    workdir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run the core benchmark for `systems` on one data set; returns the JSON-able report."""
    info = machine_info()
    started = time.time()
    log(f"generating {spec.n} x {spec.dim} ({spec.clusters} clusters, seed {spec.seed})")
    data = make_dataset(spec)
    truth = ground_truth(data)
    selectivity = {
        case.key: float(np.mean(m)) if (m := case.mask(data)) is not None else 1.0
        for case in QUERY_CASES
    }
    base = Path(tempfile.mkdtemp(prefix="huedb-bench-", dir=workdir))
    results: dict[str, Any] = {}
    try:
        for name in systems:
            res = run_system(SYSTEMS[name](), data, truth, base, log=log)
            results[name] = asdict(res)
            for err in res.errors:
                log(f"{name}: PROBLEM: {err}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report: dict[str, Any] = {
        "benchmark": "core",
        "started_unix": started,
        "elapsed_s": time.time() - started,
        "machine": info | {"loadavg_end": list(os.getloadavg())},
        "data": asdict(spec) | {"batch": BATCH, "k": K, "selectivity": selectivity},
        "figures": [asdict(f) for f in FIGURES],
        "systems": results,
    }
    if "huedb" in results and "chromadb" in results:
        report["ratios_huedb_over_chromadb"] = ratios(
            results["huedb"]["figures"], results["chromadb"]["figures"]
        )
    return report


def ratios(a: dict[str, float], b: dict[str, float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for f in FIGURES:
        x, y = a.get(f.key), b.get(f.key)
        out[f.key] = x / y if x is not None and y not in (None, 0) else None
    return out


def format_table(report: dict[str, Any]) -> str:
    """The figure | huedb | chromadb | ratio table as plain text."""
    systems = list(report["systems"])
    both = "ratios_huedb_over_chromadb" in report
    header = ["figure", "unit", "better", *systems] + (["huedb/chroma"] if both else [])
    rows = [header]
    for f in FIGURES:
        row = [f.label, f.unit, "higher" if f.higher_is_better else "lower"]
        for name in systems:
            row.append(_fmt(report["systems"][name]["figures"].get(f.key)))
        if both:
            r = report["ratios_huedb_over_chromadb"].get(f.key)
            row.append("-" if r is None else f"{r:.2f}x")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for j, r in enumerate(rows):
        rest = [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        cells = [r[0].ljust(widths[0]), *rest]
        lines.append(" | ".join(cells))
        if j == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"
