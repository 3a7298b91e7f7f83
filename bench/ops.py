"""Measured phases of the core benchmark: queries, export, mutations and the raw library.

Each function drives one `System` adapter (or, for the huedb-only figures, huedb's files and
command line) and returns timings and checks; `bench.worker` records them as figures.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import (
    BATCH,
    COLLECTION,
    Dataset,
    K,
    QueryCase,
    System,
    exact_top_k,
    normalize,
    record_id,
    record_index,
)

EXPORT_PAGE = 1_000
EXPORT_SAMPLE = 1_000
MUTATED_FRACTION = 10  # update, upsert and delete each touch n // MUTATED_FRACTION records


# -- queries --------------------------------------------------------------------------------


def measure_queries(
    system: System,
    queries: np.ndarray,
    warmup: np.ndarray,
    truth: list[set[int]],
    case: QueryCase | None = None,
) -> dict[str, Any]:
    """Warm-up, then single queries timed one by one; latency percentiles and recall@K."""
    where = case.where if case is not None else None
    where_document = case.where_document if case is not None else None
    for vec in warmup:
        system.query(vec, K, where, where_document)
    latencies: list[float] = []
    recalls: list[float] = []
    short = 0
    for vec, exact in zip(queries, truth, strict=True):
        start = time.perf_counter()
        ids = system.query(vec, K, where, where_document)
        latencies.append((time.perf_counter() - start) * 1000.0)
        got = {record_index(i) for i in ids}
        want = min(K, len(exact))  # `exact` may hold rows tied with the k-th best
        if len(ids) < want:
            short += 1
        recalls.append(min(len(got & exact), want) / max(want, 1))
    lat = np.asarray(latencies)
    return {
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(np.mean(lat)),
        "recall": float(np.mean(recalls)),
        "min_recall": float(np.min(recalls)),
        "short": short,
    }


# -- export ---------------------------------------------------------------------------------


def measure_export(system: System, data: Dataset) -> dict[str, Any]:
    """Page through the collection with `get(limit=1000, offset=o)` until a page is empty.

    Only the `get` calls are timed. Checks: the number of records, no duplicate ids, and a
    seeded sample of records against the data (vectors by float32 equality, metadata and
    document by equality).
    """
    n = data.spec.n
    rng = np.random.default_rng([data.spec.seed, 2])
    sample = set(rng.choice(n, size=min(n, EXPORT_SAMPLE), replace=False).tolist())
    seen: set[str] = set()
    pages = 0
    elapsed = 0.0
    exact = 0
    close = 0
    checked = 0
    max_abs = 0.0
    bad_fields = 0
    offset = 0
    while True:
        start = time.perf_counter()
        page = system.get_page(offset, EXPORT_PAGE)
        elapsed += time.perf_counter() - start
        ids = list(page["ids"])
        if not ids:
            break
        pages += 1
        offset += len(ids)
        seen.update(ids)
        embeddings = page["embeddings"]
        for j, doc_id in enumerate(ids):
            i = record_index(doc_id)
            if i not in sample:
                continue
            checked += 1
            got = np.asarray(embeddings[j], dtype=np.float32)
            want = data.vectors[i]
            if np.array_equal(got, want):
                exact += 1
            if got.shape == want.shape:
                max_abs = max(max_abs, float(np.max(np.abs(got - want))))
                if np.allclose(got, want, rtol=1e-5, atol=1e-6):
                    close += 1
            meta = page["metadatas"][j] or {}
            if (
                meta.get("bucket") != int(data.buckets[i])
                or page["documents"][j] != (data.documents[i])
            ):
                bad_fields += 1
    return {
        "items": offset,
        "unique_ids": len(seen),
        "pages": pages,
        "get_s": elapsed,
        "items_per_s": offset / elapsed if elapsed > 0 else None,
        "sample": len(sample),
        "sample_checked": checked,
        "sample_exact": exact,
        "sample_close": close,
        "sample_max_abs_diff": max_abs,
        "sample_bad_metadata_or_document": bad_fields,
    }


def huedb_parquet_export(
    path: Path, out: Path, n: int, store_args: list[str] | None = None
) -> dict[str, Any]:
    """Time `huedb export` (a fresh process, so interpreter start and import are included);
    `store_args` select the store (`--store URL`), else the SQLite store in `path`."""
    cmd = [
        sys.executable,
        "-m",
        "huedb.cli",
        "export",
        "--path",
        str(path),
        "--collection",
        COLLECTION,
        "--out",
        str(out),
        *(store_args or []),
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=24 * 3600)
    wall = time.perf_counter() - start
    result: dict[str, Any] = {
        "command": " ".join(cmd[1:]),
        "wall_s": wall,
        "exit_code": proc.returncode,
        "stdout_tail": proc.stdout.strip()[-500:],
        "stderr_tail": proc.stderr.strip()[-1000:],
    }
    if proc.returncode == 0 and out.exists():
        import pyarrow.parquet as pq

        result["rows"] = pq.read_metadata(out).num_rows
        result["file_bytes"] = out.stat().st_size
        result["items_per_s"] = n / wall
    return result


# -- mutations ------------------------------------------------------------------------------


@dataclass
class MutationPlan:
    """Which records the mutation phase updates, upserts and deletes, and with what."""

    update_idx: np.ndarray
    update_vectors: np.ndarray
    update_buckets: np.ndarray
    upsert_idx: np.ndarray
    upsert_vectors: np.ndarray
    delete_idx: np.ndarray


def mixture_sample(data: Dataset, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` new vectors from the data set's Gaussian mixture."""
    labels = rng.integers(0, len(data.centres), count)
    noise = rng.standard_normal((count, data.spec.dim), dtype=np.float32)
    return data.centres[labels] + np.float32(data.spec.sigma) * noise


def mutation_plan(data: Dataset) -> MutationPlan:
    """Three disjoint seeded random 10% slices of the records: update, upsert, delete."""
    rng = np.random.default_rng([data.spec.seed, 1])
    n = data.spec.n
    m = n // MUTATED_FRACTION
    perm = rng.permutation(n)
    return MutationPlan(
        update_idx=perm[:m],
        update_vectors=mixture_sample(data, m, rng),
        update_buckets=rng.integers(0, 100, m),
        upsert_idx=perm[m : 2 * m],
        upsert_vectors=mixture_sample(data, m, rng),
        delete_idx=perm[2 * m : 3 * m],
    )


def mutated_truth(data: Dataset, plan: MutationPlan) -> list[set[int]]:
    """Exact top-K of the measured queries over the data set after the mutations."""
    base = data.vectors.copy()
    base[plan.update_idx] = plan.update_vectors
    base[plan.upsert_idx] = plan.upsert_vectors
    for start in range(0, len(base), 100_000):  # normalise in place: one copy of the data
        base[start : start + 100_000] = normalize(base[start : start + 100_000])
    alive = np.ones(data.spec.n, dtype=bool)
    alive[plan.delete_idx] = False
    return exact_top_k(base, normalize(data.queries), K, alive)


def _timed_batches(idx: np.ndarray, call: Any) -> dict[str, Any]:
    """Call `call(lo, hi)` for each batch of BATCH positions of `idx`; records/s overall."""
    times = []
    for lo in range(0, len(idx), BATCH):
        hi = min(lo + BATCH, len(idx))
        start = time.perf_counter()
        call(lo, hi)
        times.append(time.perf_counter() - start)
    total = sum(times)
    return {
        "records": len(idx),
        "batches": len(times),
        "s": total,
        "records_per_s": len(idx) / total if total > 0 else None,
    }


def measure_mutations(system: System, data: Dataset, plan: MutationPlan) -> dict[str, Any]:
    """Update, upsert and delete 10% of the records each, in batches of 1,000, timed."""

    def ids(idx: np.ndarray) -> list[str]:
        return [record_id(int(i)) for i in idx]

    def update(lo: int, hi: int) -> None:
        sl = plan.update_idx[lo:hi]
        metas = [{"bucket": int(b)} for b in plan.update_buckets[lo:hi]]
        system.update(ids(sl), plan.update_vectors[lo:hi], metas)

    def upsert(lo: int, hi: int) -> None:
        sl = plan.upsert_idx[lo:hi]
        metas = [{"bucket": int(data.buckets[i])} for i in sl]
        docs = [data.documents[int(i)] for i in sl]
        system.upsert(ids(sl), plan.upsert_vectors[lo:hi], metas, docs)

    def delete(lo: int, hi: int) -> None:
        system.delete(ids(plan.delete_idx[lo:hi]))

    return {
        "update": _timed_batches(plan.update_idx, update),
        "upsert": _timed_batches(plan.upsert_idx, upsert),
        "delete": _timed_batches(plan.delete_idx, delete),
    }


def check_mutations(system: System, data: Dataset, plan: MutationPlan) -> list[str]:
    """Spot checks after the mutations: count, a few updated, upserted and deleted records."""
    problems = []
    expected = data.spec.n - len(plan.delete_idx)
    count = system.count()
    if count != expected:
        problems.append(f"count() after mutations is {count}, expected {expected}")
    few = slice(0, 20)
    problems += _check_written(
        system, "updated", plan.update_idx[few], plan.update_vectors, plan.update_buckets
    )
    problems += _check_written(system, "upserted", plan.upsert_idx[few], plan.upsert_vectors)
    if len(plan.delete_idx):
        got = system.get_ids([record_id(int(i)) for i in plan.delete_idx[few]])
        if got["ids"]:
            problems.append(f"deleted records still returned by get: {list(got['ids'])[:5]}")
    return problems[:20]


def _check_written(
    system: System,
    label: str,
    indices: np.ndarray,
    vectors: np.ndarray,
    buckets: np.ndarray | None = None,
) -> list[str]:
    """Records written by an update or upsert hold their new vector (and bucket, if given)."""
    if not len(indices):
        return []
    problems = []
    got = system.get_ids([record_id(int(i)) for i in indices])
    by_id = {d: j for j, d in enumerate(got["ids"])}
    for pos, i in enumerate(indices):
        j = by_id.get(record_id(int(i)))
        if j is None:
            problems.append(f"{label} record {i} is missing")
            continue
        if buckets is not None and (got["metadatas"][j] or {}).get("bucket") != int(buckets[pos]):
            problems.append(f"{label} record {i} has metadata {got['metadatas'][j]}")
        vec = np.asarray(got["embeddings"][j], dtype=np.float32)
        if not np.allclose(vec, vectors[pos], rtol=1e-5, atol=1e-6):
            problems.append(f"{label} record {i} does not hold its new vector")
    return problems


# -- raw library (huedb only) ---------------------------------------------------------------


def huedb_ef_search() -> int:
    """huedb's default ef_search, read from the engine (100 when it cannot be read)."""
    try:
        from huedb.engine.vector_index import HnswParams

        return int(HnswParams().ef_search)
    except (ImportError, AttributeError, TypeError, ValueError):
        return 100


def read_snapshot(path: Path) -> tuple[dict[str, Any], memoryview]:
    """Header and usearch payload of a huedb index snapshot file, checked by huedb itself."""
    from huedb.engine import snapshot

    header = snapshot.read_header(path)
    if header is None:
        raise ValueError(f"{path} is not a readable huedb snapshot")
    snap = snapshot.read_snapshot(path, header["owner"])
    if snap is None:
        raise ValueError(f"{path} failed huedb's snapshot checks")
    return header, snap.payload


def raw_library_search(
    snapshot: Path, queries: np.ndarray, warmup: np.ndarray, ef: int
) -> dict[str, Any]:
    """`usearch` search on huedb's graph snapshot with huedb's ef (the recall measurement's
    choice recorded in the snapshot's header when there is one, else `ef`), query by query.

    huedb keeps cosine collections in a usearch index of unit vectors with metric "ip" (older
    snapshots: "cos") and passes the query vector as given (float32, not normalised: the
    inner product ranks as cosine), one query per call with threads=1; so does this.
    """
    from usearch.index import Index

    header, payload = read_snapshot(snapshot)
    ef = int((header.get("calibration") or {}).get("ef_search", ef))
    start = time.perf_counter()
    index = Index.restore(payload)
    restore_s = time.perf_counter() - start
    if index is None:
        raise ValueError(f"usearch cannot restore the payload of {snapshot}")
    index.expansion_search = ef
    for vec in warmup:
        index.search(np.ascontiguousarray(vec, dtype=np.float32), K, threads=1)
    latencies = []
    short = 0
    for vec in queries:
        q = np.ascontiguousarray(vec, dtype=np.float32)
        start = time.perf_counter()
        found = index.search(q, K, threads=1)
        latencies.append((time.perf_counter() - start) * 1000.0)
        if len(found.keys) < K:
            short += 1
    lat = np.asarray(latencies)
    return {
        "snapshot": str(snapshot),
        "snapshot_bytes": snapshot.stat().st_size,
        "header": {k: v for k, v in header.items() if k != "owner"},
        "size": len(index),
        "metric": str(index.metric),
        "expansion_search": ef,
        "restore_s": restore_s,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(np.mean(lat)),
        "short": short,
    }
