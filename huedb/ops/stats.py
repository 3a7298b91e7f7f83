"""`huedb stats`: sizes, memory, latency and the warnings that say it is time to scale.

Thresholds (documented in docs/operations.md):
- index memory above 50 % of physical RAM: the machine will swap under load;
- an estimated full index rebuild above 10 minutes (about 0.54 ms of CPU per vector for HNSW
  at 384 dimensions, scaled by dimension): cold starts without a snapshot, `verify --repair`
  and restores become long;
- reclaimable bytes above 25 % of the database: run `huedb compact`;
- free disk below 10 % (or below twice the database size): backups and compaction may fail;
- with an index memory budget, most of at least 100 queries reloading their index: the
  budget is below the working set;
- a graph's measured recall@10 below its collection's recall target: the ef_search set by
  the user is too small, or the data needs a denser graph than the planner's largest ef
  reaches.

Each collection's entry names its `tenant` and `database` (the same name may be used in
several). `index_cache` gives the process's index memory (its budget, the bytes its dense
indexes hold, the resident collections from least to most recently used, the evicted ones,
hits, misses and evictions, and the bytes its sparse indexes hold, under the same budget):
the figures of the process that answers (`huedb stats --url`: one server worker).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from huedb.engine.catalog import CollectionRow
from huedb.engine.engine import Engine
from huedb.engine.index_cache import hnsw_params
from huedb.engine.recall_calibration import shortfall
from huedb.engine.snapshot import snapshot_path
from huedb.ops.store import open_store

Figures = Callable[[Engine, CollectionRow], dict[str, Any]]

INDEX_RAM_SHARE = 0.5
REBUILD_WARN_SECONDS = 600
BUILD_SECONDS_PER_VECTOR_384 = 0.00054
RECLAIM_SHARE = 0.25
FREE_DISK_SHARE = 0.10
THRASH_MIN_QUERIES = 100


def physical_memory() -> int:
    """Bytes of RAM on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def index_memory_estimate(count: int, dim: int, max_neighbors: int) -> int:
    """Bytes an HNSW graph of this collection needs in RAM (vectors + links + keys)."""
    return int(count * (4 * dim + 2 * max_neighbors * 4 + 16) * 1.1)


def _engine_figures(engine: Engine, col: CollectionRow) -> dict[str, Any]:
    return engine.collection_figures(col)


def gather_stats(
    engine: Engine,
    data: Path | None,
    figures_of: Figures = _engine_figures,
    only: Iterable[CollectionRow] | None = None,
) -> dict[str, Any]:
    """Stats of every collection (or of the `only` ones: then the index RAM total covers
    just those) and of the store, the engine options in force, warnings.

    Each collection entry lists its own warnings (`warnings`); `store_warnings` holds the
    store-wide ones, and the top-level `warnings` all of them. `figures_of` computes a
    collection's counts and bytes (the engine's scan, or a cache of it)."""
    storage = engine.storage_figures()
    ram = physical_memory()
    cores = os.cpu_count() or 1
    collections = []
    warnings: list[str] = []
    store_warnings: list[str] = []
    total_index = 0
    cache = engine.index_memory()
    held = {col.uuid: nbytes for col, nbytes in cache["resident"]}
    evicted = {col.uuid for col in cache["evicted"]}
    databases: dict[str, tuple[str, str]] = {}
    for col in engine.collections() if only is None else only:
        figures = figures_of(engine, col)
        if col.database_id not in databases:
            databases[col.database_id] = engine.database_of(col)
        tenant, database = databases[col.database_id]
        dim = col.dimension or 0
        params = hnsw_params(col)
        index_bytes = index_memory_estimate(figures["count"], dim, params.max_neighbors)
        total_index += index_bytes
        snap = None if data is None else snapshot_path(data / "index", col.uuid)
        latencies = np.array(engine.recent_latencies(col.uuid)) * 1000
        rebuild_s = figures["count"] * BUILD_SECONDS_PER_VECTOR_384 * max(dim, 1) / 384 / cores
        entry = {
            "name": col.name,
            "tenant": tenant,
            "database": database,
            "id": col.uuid,
            "dimension": col.dimension,
            "space": params.space,
            **figures,
            "disk_bytes": figures["vector_bytes"]
            + figures["document_bytes"]
            + figures["metadata_bytes"],
            "snapshot_bytes": snap.stat().st_size if snap is not None and snap.exists() else 0,
            "index_memory_bytes": index_bytes,
            "index_resident_bytes": held.get(col.uuid, 0),
            "index_evicted": col.uuid in evicted,
            "estimated_rebuild_seconds": round(rebuild_s, 1),
            "query_p50_ms": float(np.percentile(latencies, 50)) if latencies.size else None,
            "query_p99_ms": float(np.percentile(latencies, 99)) if latencies.size else None,
            "recent_queries": int(latencies.size),
            "warnings": [],
        }
        if rebuild_s > REBUILD_WARN_SECONDS:
            entry["warnings"].append(
                f"{col.name}: a full index rebuild would take about {rebuild_s / 60:.0f} min "
                f"({figures['count']} vectors); keep snapshots healthy and plan to shard"
            )
        short = shortfall(
            figures["recall"],
            figures["recall_target"],
            figures["ef_search"],
            figures["ef_search_source"] == "configuration",
        )
        if short is not None:
            entry["warnings"].append(f"{col.name}: {short}")
        warnings += entry["warnings"]
        collections.append(entry)
    if total_index > INDEX_RAM_SHARE * ram:
        store_warnings.append(
            f"indexes need about {total_index / 2**30:.1f} GiB, over "
            f"{INDEX_RAM_SHARE:.0%} of RAM ({ram / 2**30:.1f} GiB): add memory or shard"
        )
    store_warnings += _budget_warnings(cache)
    if storage["bytes"] and storage["reclaimable_bytes"] > RECLAIM_SHARE * storage["bytes"]:
        store_warnings.append(
            f"{storage['reclaimable_bytes'] / 2**20:.0f} MiB reclaimable after deletes: "
            "run `huedb compact`"
        )
    if data is not None and engine.store_kind == "sqlite":  # PostgreSQL's disk is elsewhere
        disk = shutil.disk_usage(data)
        if disk.free < FREE_DISK_SHARE * disk.total or disk.free < 2 * storage["bytes"]:
            store_warnings.append(
                f"only {disk.free / 2**30:.1f} GiB free on the data disk: backups and "
                "compaction need room for a copy of the database"
            )
    return {
        "store_kind": engine.store_kind,
        "database_bytes": storage["bytes"],
        "reclaimable_bytes": storage["reclaimable_bytes"],
        "index_memory_bytes": total_index,
        "index_cache": index_cache_figures(cache),
        "ram_bytes": ram,
        "engine": engine.settings_in_force(),
        "collections": collections,
        "warnings": warnings + store_warnings,
        "store_warnings": store_warnings,
    }


def index_cache_figures(cache: dict[str, Any]) -> dict[str, Any]:
    """`Engine.index_memory()` as JSON: collections by id and name."""
    return {
        "budget_bytes": cache["budget_bytes"],
        "resident_bytes": cache["resident_bytes"],
        "resident_collections": [
            {"id": col.uuid, "name": col.name, "bytes": nbytes} for col, nbytes in cache["resident"]
        ],
        "evicted_collections": [{"id": col.uuid, "name": col.name} for col in cache["evicted"]],
        "hits": cache["hits"],
        "misses": cache["misses"],
        "evictions": cache["evictions"],
        "sparse_resident_bytes": cache["sparse_resident_bytes"],
    }


def _budget_warnings(cache: dict[str, Any]) -> list[str]:
    queries = cache["hits"] + cache["misses"]
    if not cache["budget_bytes"] or queries < THRASH_MIN_QUERIES or cache["misses"] <= queries / 2:
        return []
    return [
        f"{cache['misses']} of {queries} queries had to reload their index: index_memory "
        f"({readable_bytes(cache['budget_bytes'])}) is below the working set; raise it or "
        "spread collections over more nodes"
    ]


def readable_bytes(nbytes: int) -> str:
    """A byte count as people read it: "512 bytes", "1 KiB", "1.5 MiB", "2 GiB"."""
    if nbytes < 1024:
        return "1 byte" if nbytes == 1 else f"{nbytes} bytes"
    size = float(nbytes)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        size /= 1024
        if round(size, 1) < 1024:
            return f"{size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size / 1024:.1f}".removesuffix(".0") + " EiB"


def store_stats(data: Path | None, store: str | None = None) -> dict[str, Any]:
    """`gather_stats` of the store in `data` (or of the PostgreSQL store of `store`, with
    this node's derived files in `data`, if given), opened for the call."""
    with open_store(data, store) as engine:
        return gather_stats(engine, data)
