"""Core benchmark: data, system adapters, figures, the parent side of a run and its tables.

Every system under test is wrapped in an adapter with the same interface (`bench.system.System`:
`HuedbSystem`, `ChromaSystem` here, the embedded peers in `bench/peer_*.py`), so each figure is
measured by the same code on the same seeded data in one run. The library of an adapter is
imported lazily, so a fresh process can time its own import.

The parent (`run`, `run_suite`) generates the seeded data only to compute the exact ground
truth, writes it to a temporary file and starts one fresh child interpreter per system
(`python -m bench.worker`, see `bench/worker.py`), which regenerates the same data and measures
every figure; memory figures are therefore per system.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench.memory import status_bytes
from bench.peer_lancedb import LanceDbHnswSqSystem, LanceDbSystem
from bench.peer_milvus import MilvusLiteSystem
from bench.peer_sqlite_vec import SqliteVecSystem
from bench.system import COLLECTION as COLLECTION  # re-exported for bench.ops
from bench.system import System

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
    centres: np.ndarray  # (clusters, dim) float32, the mixture (for new vectors in mutations)

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
        centres=centres,
    )


TIE_EPSILON = 1e-6


class GroundTruth:
    """Exact top-k by cosine distance with numpy, over all records or an allowed subset."""

    def __init__(self, data: Dataset) -> None:
        if data.spec.space != "cosine":
            raise ValueError("ground truth is implemented for cosine space only")
        self._base = normalize(data.vectors)
        self._queries = normalize(data.queries)

    def top_k(self, k: int, mask: np.ndarray | None = None) -> list[set[int]]:
        """The exact k nearest record indices of each measured query, plus any row tied
        with the k-th (so a system is not marked wrong for picking the other of a tie)."""
        return exact_top_k(self._base, self._queries, k, mask)


def exact_top_k(
    base: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None
) -> list[set[int]]:
    """Exact top-k row indices of `base` for each query by dot product (normalised inputs)."""
    rows = np.arange(len(base)) if mask is None else np.flatnonzero(mask)
    out: list[set[int]] = []
    kk = min(k, len(rows))
    if kk == 0:
        return [set() for _ in range(len(queries))]
    sub = base if mask is None else base[rows]
    for start in range(0, len(queries), 50):
        sims = queries[start : start + 50] @ sub.T
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        for row_sims, r in zip(sims, part, strict=True):
            # Rows tied with the k-th best (within float32 noise) are equally correct.
            kth = row_sims[r].min()
            tied = np.flatnonzero(row_sims >= kth - TIE_EPSILON)
            out.append({int(rows[j]) for j in tied})
    return out


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# -- systems --------------------------------------------------------------------------------

HUEDB_SETTINGS_ENV = "BENCH_HUEDB_SETTINGS"
EMPTY_DB_BYTES_ENV = "BENCH_PG_EMPTY_BYTES"


def huedb_overrides() -> dict[str, Any]:
    """huedb `Settings` overrides for this run (JSON in $BENCH_HUEDB_SETTINGS), usually none."""
    raw = os.environ.get(HUEDB_SETTINGS_ENV, "")
    return dict(json.loads(raw)) if raw else {}


class HuedbSystem(System):
    name = "huedb"
    module = "huedb"

    def load(self) -> None:
        """Import huedb and the client it opens: `import huedb` loads its names on first
        use (PEP 562), so without this the client API's import (~0.25 s, ~25 MB) was
        timed and measured as part of the open (chromadb's import loads its client)."""
        super().load()
        self._lib.PersistentClient  # noqa: B018 - the access imports it

    def _settings(self) -> Any:
        from huedb.config import Settings

        return Settings(**huedb_overrides())

    def open(self, path: Path) -> None:
        if self._lib is None:
            self.load()
        overrides = huedb_overrides()
        if overrides:
            self._client = self._lib.PersistentClient(path=str(path), settings=self._settings())
        else:
            self._client = self._lib.PersistentClient(path=str(path))

    def settings(self) -> dict[str, Any]:
        s = self._settings()
        return {
            "huedb_sync": s.huedb_sync,
            "huedb_exact_max_floats": s.huedb_exact_max_floats,
            "huedb_filtered_exact_max_floats": s.huedb_filtered_exact_max_floats,
            "huedb_snapshot_every": s.huedb_snapshot_every,
            "overrides": huedb_overrides(),
            "hnsw": "defaults (M=16, ef_construction=100, ef_search=100)",
        }

    def wait_until_indexed(self) -> None:
        """huedb builds its graph in the background after the first query; wait for it."""
        while self._collection.get_indexing_status().op_indexing_progress < 1.0:
            time.sleep(0.05)

    def index_status(self) -> dict[str, Any]:
        """The recall target's choice: the ef searches use, and the recall it measured."""
        status = self._collection.get_indexing_status()
        return {
            "ef_search": status.ef_search,
            "ef_search_source": status.ef_search_source,
            "measured_recall": status.recall,
            "recall_target": status.recall_target,
        }

    def exact_only(self, n: int, dim: int) -> bool:
        """True when huedb serves `n` x `dim` vectors by exact search (no graph, no snapshot)."""
        return n * dim <= int(self._settings().huedb_exact_max_floats)


class HuedbPgSystem(HuedbSystem):
    """huedb on its PostgreSQL store: the database is `BENCH_PG_URL` (a fresh database of
    the run's throwaway cluster, `bench/pg.py`); the path holds only the derived files."""

    name = "huedb-pg"

    @classmethod
    def available(cls) -> bool:
        if not super().available():
            return False
        try:
            import psycopg  # noqa: F401

            from tests.pg_cluster import find_pg_bin
        except ImportError:
            return False
        return find_pg_bin() is not None

    @staticmethod
    def url() -> str:
        from bench.pg import URL_ENV

        return os.environ[URL_ENV]

    def _settings(self) -> Any:
        from huedb.config import Settings

        return Settings(**huedb_overrides(), huedb_store=self.url())

    def open(self, path: Path) -> None:
        if self._lib is None:
            self.load()
        self._client = self._lib.PersistentClient(path=str(path), settings=self._settings())

    def settings(self) -> dict[str, Any]:
        from bench.pg import server_settings

        return super().settings() | {"postgresql": server_settings(self.url())}

    def cli_args(self) -> list[str]:
        return ["--store", self.url()]

    def store_bytes(self) -> int:
        """Bytes of the PostgreSQL database beyond what it held when it was created."""
        from bench.pg import database_bytes

        return database_bytes(self.url()) - int(os.environ.get(EMPTY_DB_BYTES_ENV, "0"))


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


SYSTEMS: dict[str, type[System]] = {
    "huedb": HuedbSystem,
    "huedb-pg": HuedbPgSystem,
    "chromadb": ChromaSystem,
    # Peers of issue 18 (bench-only dependencies, the `bench` extra): bench/peer_*.py.
    "lancedb": LanceDbSystem,
    "lancedb-hnsw-sq": LanceDbHnswSqSystem,
    "milvus-lite": MilvusLiteSystem,
    "sqlite-vec": SqliteVecSystem,
}
PEERS = ("lancedb", "lancedb-hnsw-sq", "milvus-lite", "sqlite-vec")
HUEDB_FAMILY = ("huedb", "huedb-pg")  # systems with huedb's own figures (graph, Parquet)


# -- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the result table; `only` names the one system that has it, if any
    ("huedb": every system of `HUEDB_FAMILY`, whatever its store)."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    only: str | None = None

    def applies_to(self, system: str) -> bool:
        """True when `system` reports this figure."""
        family = HUEDB_FAMILY if self.only == "huedb" else (self.only,)
        return self.only is None or system in family


FIGURES: list[Figure] = [
    Figure("add_vps", "ingest: raw add throughput", "vec/s", True),
    Figure("ingest_s", "ingest: add time", "s", False),
    Figure("ingest_first_vps", "ingest: first 10% of batches", "vec/s", True),
    Figure("ingest_last_vps", "ingest: last 10% of batches", "vec/s", True),
    Figure("ingest_growth", "ingest: end/start ratio", "", True),
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
    Figure("peak_memory_mib", "peak memory (ingest, index, queries)", "MiB", False),
    Figure("disk_bytes_per_vector", "disk bytes per vector", "B", False),
    Figure("raw_p50_ms", "raw usearch search p50 (huedb's graph)", "ms", False, "huedb"),
    Figure("query_over_raw", "query p50 / raw library p50", "", False, "huedb"),
    Figure("reopen_s", "reopen: open + first query (median of 3)", "s", False),
    Figure("reopen_import_s", "reopen: library import (median of 3)", "s", False),
    Figure("reopen_wall_s", "reopen: whole fresh process (median of 3)", "s", False),
    Figure("reopen_filtered_s", "reopen: then a first 10% filtered query", "s", False),
    Figure("reopen_peak_mib", "reopen: that process's peak memory", "MiB", False),
    Figure("export_ips", "export: get() pages of 1,000", "items/s", True),
    Figure("parquet_ips", "export: huedb export to Parquet", "items/s", True, "huedb"),
    Figure("update_rps", "update 10% (batches of 1,000)", "rec/s", True),
    Figure("upsert_rps", "upsert 10% (batches of 1,000)", "rec/s", True),
    Figure("delete_rps", "delete 10% (batches of 1,000)", "rec/s", True),
    Figure("mutated_first_s", "query after mutations: first answer", "s", False),
    Figure("mutated_indexed_s", "mutations: graph up to date after", "s", False, "huedb"),
    Figure("mutated_p50_ms", "query after mutations p50", "ms", False),
    Figure("mutated_recall", "query after mutations recall@10", "", True),
]


def figures_of(system: str) -> list[Figure]:
    """The figures a system is expected to report."""
    return [f for f in FIGURES if f.applies_to(system)]


@dataclass(frozen=True)
class Target:
    """A goal of an issue and its bound: the ratio of `pair`'s two systems (`ratio`), or a
    figure of its first system."""

    key: str
    label: str
    op: str  # ">=" or "<="
    bound: float
    ratio: bool = True
    pair: str = "huedb/chromadb"


TARGETS: list[Target] = [
    Target("add_vps", "ingest throughput (raw add) >= 5x", ">=", 5.0),
    Target("ready_vps", "ingest throughput incl. index ready >= 5x", ">=", 5.0),
    Target("query_p50_ms", "unfiltered query p50 <= 0.5x", "<=", 0.5),
    Target("query_recall", "unfiltered recall@10 >= chromadb's", ">=", 1.0),
    Target("filter10_p50_ms", "where ~10% p50 <= 0.1x", "<=", 0.1),
    Target("filter10_recall", "where ~10% recall@10 = 1.0", ">=", 1.0, False),
    Target("filter1_p50_ms", "where ~1% p50 <= 0.1x", "<=", 0.1),
    Target("filter1_recall", "where ~1% recall@10 = 1.0", ">=", 1.0, False),
    Target("contains_p50_ms", "$contains p50 <= 0.1x", "<=", 0.1),
    Target("contains_recall", "$contains recall@10 = 1.0", ">=", 1.0, False),
    Target("update_rps", "update throughput >= 5x", ">=", 5.0),
    Target("upsert_rps", "upsert throughput >= 5x", ">=", 5.0),
    Target("delete_rps", "delete throughput >= 5x", ">=", 5.0),
    Target("export_ips", "export throughput >= 5x", ">=", 5.0),
    Target("reopen_s", "cold open to first answer <= 0.3x", "<=", 0.3),
    Target("disk_bytes_per_vector", "disk bytes per vector <= 1x", "<=", 1.0),
    Target("peak_memory_mib", "peak memory <= 1x", "<=", 1.0),
    Target("query_over_raw", "embedded query p50 <= 2x raw usearch p50", "<=", 2.0, False),
    Target("ingest_growth", "ingest end/start >= 0.5 (meant for a 1M load)", ">=", 0.5, False),
]
# Issue 18, acceptance 3: at 1M x 384 (evaluated only for runs of at least that size).
GROWTH_MIN_N = 1_000_000
GROWTH_TARGETS: list[Target] = [
    Target("query_recall", "1M: recall@10 >= 0.95 at defaults", ">=", 0.95, False, "huedb"),
    Target("query_p50_ms", "1M: query p50 <= chromadb's", "<=", 1.0),
    Target("ingest_growth", "1M: ingest end/start >= 0.8", ">=", 0.8, False, "huedb"),
]
# Issue 14: huedb on PostgreSQL against huedb on SQLite (the index is the same) and Chroma.
PG = "huedb-pg/huedb"
PG_TARGETS: list[Target] = [
    Target("query_p50_ms", "pg: query p50 <= 1.2x SQLite's", "<=", 1.2, pair=PG),
    Target("filter10_p50_ms", "pg: where ~10% p50 <= 2x SQLite's", "<=", 2.0, pair=PG),
    Target("filter1_p50_ms", "pg: where ~1% p50 <= 2x SQLite's", "<=", 2.0, pair=PG),
    Target("contains_p50_ms", "pg: $contains p50 <= 2x SQLite's", "<=", 2.0, pair=PG),
    Target("add_vps", "pg: raw ingest >= 0.5x SQLite's", ">=", 0.5, pair=PG),
    Target("add_vps", "pg: raw ingest >= 5x chromadb's", ">=", 5.0, pair="huedb-pg/chromadb"),
]
# The ratio columns of the table, when both systems ran: (numerator, denominator, header).
RATIO_PAIRS = [
    ("huedb", "chromadb", "huedb/chroma"),
    ("huedb-pg", "huedb", "pg/huedb"),
    ("huedb-pg", "chromadb", "pg/chroma"),
    *(("huedb", peer, f"huedb/{peer}") for peer in PEERS),
]
TOLERANCE = 1e-9


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target whose systems ran, with the measured value (None when it cannot be
    measured) and whether it is met."""
    out: list[dict[str, Any]] = []
    growth = GROWTH_TARGETS if report["data"]["n"] >= GROWTH_MIN_N else []
    for t in TARGETS + PG_TARGETS + growth:
        if not all(name in report["systems"] for name in t.pair.split("/")):
            continue
        first = report["systems"][t.pair.split("/")[0]]["figures"]
        value = report["ratios"][t.pair].get(t.key) if t.ratio else first.get(t.key)
        met = None
        if value is not None:
            met = value >= t.bound - TOLERANCE if t.op == ">=" else value <= t.bound + TOLERANCE
        out.append(asdict(t) | {"value": value, "met": met})
    return out


# Issue 18, acceptance 1: huedb against every other system of the run (not huedb-pg), when
# one of the embedded peers ran. Each entry: figure key, label, "lowest" or a bound on huedb
# over the best other system, and which systems qualify (recall, latency).
QUALIFYING_RECALL = 0.95
READY_MAX_P50_MS = 5.0


def _qualifies(key: str, figures: dict[str, float]) -> bool:
    """Whether a system takes part in the comparison of `key` (see PEER_TARGETS)."""
    recall = {"query_p50_ms": "query_recall", "ready_s": "query_recall"}.get(key)
    if key in ("filter10_p50_ms", "filter1_p50_ms"):
        return figures.get(key.replace("_p50_ms", "_recall"), 0.0) >= 1.0 - TOLERANCE
    if recall is not None and figures.get(recall, 0.0) < QUALIFYING_RECALL - TOLERANCE:
        return False
    if key == "ready_s":
        return figures.get("query_p50_ms", float("inf")) < READY_MAX_P50_MS
    return True


PEER_TARGETS: list[tuple[str, str, str, float]] = [
    ("query_p50_ms", "query p50 lowest (recall@10 >= 0.95)", "<=", 1.0),
    ("filter10_p50_ms", "where ~10% p50 lowest (recall 1.0)", "<=", 1.0),
    ("filter1_p50_ms", "where ~1% p50 lowest (recall 1.0)", "<=", 1.0),
    ("ready_s", "first add to p50 < 5 ms at recall >= 0.95 lowest", "<=", 1.0),
    ("add_vps", "raw ingest >= 0.5x the fastest other's", ">=", 0.5),
    ("disk_bytes_per_vector", "disk bytes/vector <= 1.3x the smallest other's", "<=", 1.3),
]


def evaluate_peer_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's targets: huedb over the best other system that qualifies for each figure
    (value None and met when no other system qualifies; not met when huedb does not)."""
    systems = report["systems"]
    if "huedb" not in systems or not any(p in systems for p in PEERS):
        return []
    ours = systems["huedb"]["figures"]
    higher = {f.key: f.higher_is_better for f in FIGURES} | {"ready_s": False}
    out: list[dict[str, Any]] = []
    for key, label, op, bound in PEER_TARGETS:
        others = {
            name: res["figures"][key]
            for name, res in systems.items()
            if name not in HUEDB_FAMILY
            and res["figures"].get(key) is not None
            and _qualifies(key, res["figures"])
        }
        best = (max if higher[key] else min)(others, key=others.__getitem__, default=None)
        value = None
        met: bool | None = None
        if ours.get(key) is None:
            met = None
        elif not _qualifies(key, ours):
            met = False
        elif best is None:
            met = True
        else:
            value = ours[key] / others[best] if others[best] else None
            if value is not None:
                met = value >= bound - TOLERANCE if op == ">=" else value <= bound + TOLERANCE
        pair = f"huedb/{best}" if best else "huedb"
        target = Target(key, f"{label} [{pair}]", op, bound, pair=pair)
        out.append(asdict(target) | {"value": value, "met": met})
    return out


@dataclass
class QueryCase:
    """A family of queries with optional filters and the record mask they allow."""

    key: str
    where: dict[str, Any] | None
    where_document: dict[str, Any] | None
    mask: Callable[[Dataset], np.ndarray | None]


REOPEN_FILTER = {"bucket": {"$lt": 10}}  # ~10 %: also the reopened process's filtered query
QUERY_CASES: list[QueryCase] = [
    QueryCase("query", None, None, lambda d: None),
    QueryCase("filter10", REOPEN_FILTER, None, lambda d: d.buckets < 10),
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
    notes: list[str] = field(default_factory=list)


# -- fresh processes ------------------------------------------------------------------------


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
    filtered = system.query(query, K, where=REOPEN_FILTER)
    t4 = time.perf_counter()
    hwm = status_bytes("VmHWM")
    system.close()
    line = {
        "import_s": t1 - t0,
        "open_s": t2 - t1,
        "first_query_s": t3 - t2,
        "hits": len(ids),
        "first_filtered_query_s": t4 - t3,
        "filtered_hits": len(filtered),
        "peak_rss_bytes": hwm,
    }
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
    peers = ("lancedb", "pymilvus", "milvus-lite", "sqlite-vec", "apsw")
    for dist in ("huedb", "chromadb", "numpy", "usearch", *peers):
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


def save_truth(truth: dict[str, list[set[int]]], path: Path) -> None:
    """Ground truth as JSON (sorted index lists), for the worker processes."""
    path.write_text(json.dumps({k: [sorted(s) for s in v] for k, v in truth.items()}))


def load_truth(path: Path) -> dict[str, list[set[int]]]:
    return {k: [set(r) for r in v] for k, v in json.loads(path.read_text()).items()}


def run_worker(
    name: str,
    spec: DataSpec,
    truth_path: Path,
    base: Path,
    huedb_settings: dict[str, Any],
    log: Callable[[str], None],
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Measure one system in a fresh `python -m bench.worker` (with `extra_env` in its
    environment); its result as a dict."""
    job_path = base / f"job-{name}.json"
    out_path = base / f"result-{name}.json"
    job = {
        "system": name,
        "spec": asdict(spec),
        "truth": str(truth_path),
        "workdir": str(base),
        "out": str(out_path),
    }
    job_path.write_text(json.dumps(job))
    env = dict(os.environ)
    env.pop(HUEDB_SETTINGS_ENV, None)
    if huedb_settings:
        env[HUEDB_SETTINGS_ENV] = json.dumps(huedb_settings)
    env.update(extra_env or {})
    try:
        stdout: Any = sys.stderr.fileno()  # the worker's stray prints must not reach the table
    except (AttributeError, OSError, ValueError):
        stdout = subprocess.DEVNULL
    log(f"{name}: starting a fresh worker process")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.worker", str(job_path)], cwd=REPO_ROOT, env=env, stdout=stdout
    )
    wall = time.perf_counter() - start
    try:
        result: dict[str, Any] = json.loads(out_path.read_text())
    except (OSError, ValueError):
        result = asdict(SystemResult(system=name))
    result["details"]["worker_wall_s"] = wall
    result["details"]["worker_exit_code"] = proc.returncode
    if proc.returncode != 0:
        result["errors"].append(f"worker process exited with code {proc.returncode}")
    return result


@contextlib.contextmanager
def system_environment(
    name: str, spec: DataSpec, log: Callable[[str], None]
) -> Iterator[dict[str, str]]:
    """What a system's worker needs in its environment, set up for the block: for
    `huedb-pg` a throwaway PostgreSQL cluster and a fresh database (`bench/pg.py`)."""
    if name != HuedbPgSystem.name:
        yield {}
        return
    from bench import pg

    log(f"{name}: starting a throwaway PostgreSQL cluster (127.0.0.1, durable settings)")
    warm = 2 * spec.n * spec.dim * 4  # about the WAL of the ingest (bench/pg.py, warm_wal)
    with pg.cluster(warm) as cluster, pg.database(cluster, f"n{spec.n}") as url:
        yield {pg.URL_ENV: url, EMPTY_DB_BYTES_ENV: str(pg.database_bytes(url))}


def run(
    spec: DataSpec,
    systems: list[str],
    workdir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
    huedb_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the core benchmark for `systems` on one data set; returns the JSON-able report."""
    info = machine_info()
    started = time.time()
    log(f"n={spec.n}: generating {spec.n} x {spec.dim} for the ground truth")
    data = make_dataset(spec)
    truth = ground_truth(data)
    selectivity = {
        case.key: float(np.mean(m)) if (m := case.mask(data)) is not None else 1.0
        for case in QUERY_CASES
    }
    del data
    base = Path(tempfile.mkdtemp(prefix="huedb-bench-", dir=workdir))
    results: dict[str, Any] = {}
    try:
        truth_path = base / "truth.json"
        save_truth(truth, truth_path)
        with contextlib.ExitStack() as stack:
            for name in systems:
                env = stack.enter_context(system_environment(name, spec, log))
                res = run_worker(name, spec, truth_path, base, huedb_settings or {}, log, env)
                results[name] = res
                for err in res["errors"]:
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
    report["ratios"] = {
        f"{a}/{b}": ratios(results[a]["figures"], results[b]["figures"])
        for a, b, _ in RATIO_PAIRS
        if a in results and b in results
    }
    if "huedb/chromadb" in report["ratios"]:
        report["ratios_huedb_over_chromadb"] = report["ratios"]["huedb/chromadb"]
    report["targets"] = evaluate_targets(report) + evaluate_peer_targets(report)
    return report


def run_suite(
    specs: list[DataSpec],
    systems: list[str],
    workdir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
    huedb_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`run` for each data size in turn; the reports plus the growth of each figure with n."""
    info = machine_info()
    started = time.time()
    runs = [run(spec, systems, workdir, log, huedb_settings) for spec in specs]
    return {
        "benchmark": "core",
        "started_unix": started,
        "elapsed_s": time.time() - started,
        "machine": info | {"loadavg_end": list(os.getloadavg())},
        "sizes": [s.n for s in specs],
        "systems": systems,
        "huedb_settings_overrides": huedb_settings or {},
        "figures": [asdict(f) for f in FIGURES],
        "runs": runs,
        "growth": growth(runs),
    }


def ratios(a: dict[str, float], b: dict[str, float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for f in FIGURES:
        x, y = a.get(f.key), b.get(f.key)
        out[f.key] = x / y if x is not None and y not in (None, 0) else None
    return out


def growth(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """figure key -> system -> n (as text) -> value, over the runs of a suite."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for f in FIGURES:
        per: dict[str, dict[str, float | None]] = {}
        for r in runs:
            n = str(r["data"]["n"])
            for name, res in r["systems"].items():
                if f.applies_to(name):
                    per.setdefault(name, {})[n] = res["figures"].get(f.key)
        out[f.key] = per
    return out


# -- tables ---------------------------------------------------------------------------------


def format_table(report: dict[str, Any]) -> str:
    """The figure | each system | ratio columns table as plain text."""
    systems = list(report["systems"])
    pairs = [(f"{a}/{b}", header) for a, b, header in RATIO_PAIRS]
    pairs = [(key, header) for key, header in pairs if key in report.get("ratios", {})]
    rows = [["figure", "unit", "better", *systems, *(header for _, header in pairs)]]
    for f in FIGURES:
        row = [f.label, f.unit, "higher" if f.higher_is_better else "lower"]
        for name in systems:
            row.append(_fmt(report["systems"][name]["figures"].get(f.key)))
        for key, _ in pairs:
            r = report["ratios"][key].get(f.key)
            row.append("-" if r is None else f"{r:.2f}x")
        rows.append(row)
    return _layout(rows)


def format_targets(report: dict[str, Any]) -> str:
    """One line per target of the issue: value and whether it is met at this size."""
    lines = []
    width = max([45, *(len(t["label"]) for t in report.get("targets", []))])
    for t in report.get("targets", []):
        value = t["value"]
        if value is None and t["met"] is not None:  # nothing to compare with
            shown, verdict = "-", "met" if t["met"] else "NOT met (huedb does not qualify)"
        elif value is None:
            shown, verdict = "-", "not measured"
        else:
            shown = f"{value:.3f}x" if t["ratio"] else f"{value:.3f}"
            verdict = "met" if t["met"] else "NOT met"
        lines.append(f"  {t['label']:<{width}} {shown:>10}  {verdict}")
    return "\n".join(lines)


def size_label(n: int) -> str:
    """10000 -> "10k", 1000000 -> "1M"."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def format_growth(suite: dict[str, Any]) -> str:
    """Each figure per size and system, with the last/first size factor per system."""
    sizes = [str(n) for n in suite["sizes"]]
    systems = [s for s in suite["systems"] if any(s in r["systems"] for r in suite["runs"])]
    header = ["figure", "unit"]
    for name in systems:
        header += [f"{name} {size_label(int(n))}" for n in sizes]
        if len(sizes) > 1:
            header.append(f"{name} x{size_label(int(sizes[-1]))}/{size_label(int(sizes[0]))}")
    rows = [header]
    for f in FIGURES:
        row = [f.label, f.unit]
        per = suite["growth"].get(f.key, {})
        for name in systems:
            vals = [per.get(name, {}).get(n) for n in sizes]
            row += [_fmt(v) for v in vals]
            if len(sizes) > 1:
                a, b = vals[0], vals[-1]
                row.append("-" if a in (None, 0) or b is None else f"{b / a:.2f}x")
        rows.append(row)
    return _layout(rows)


def _layout(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        rest = [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        cells = [r[0].ljust(widths[0]), *rest]
        lines.append(" | ".join(cells))
        if j == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"
