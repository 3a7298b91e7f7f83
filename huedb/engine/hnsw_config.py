"""A collection's vector-index settings: Chroma's HNSW defaults and the distance space.

The one place where a collection's space and graph parameters are derived from its
configuration (and, for configurations from Chroma files, the legacy `hnsw:*` metadata).
"""

from __future__ import annotations

import os
from typing import Any

# Chroma's HNSW defaults, as stored in a collection's configuration.
HNSW_DEFAULTS: dict[str, Any] = {
    "space": "l2",
    "ef_construction": 100,
    "ef_search": 100,
    "max_neighbors": 16,
    "resize_factor": 1.2,
    "sync_threshold": 1000,
}
# Fields Chroma's schema reports besides the stored ones (num_threads: `default_num_threads`).
HNSW_REPORTED_DEFAULTS: dict[str, Any] = {"batch_size": 100}


def default_num_threads() -> int:
    """Chroma's default `num_threads`: Rust's `available_parallelism` (the usable cores)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def hnsw_defaults() -> dict[str, Any]:
    """Every HNSW setting Chroma knows, at its default (Chroma's `InternalHnswConfiguration`)."""
    return {**HNSW_DEFAULTS, **HNSW_REPORTED_DEFAULTS, "num_threads": default_num_threads()}


def collection_space(
    configuration: dict[str, Any] | None, metadata: dict[str, Any] | None = None
) -> str:
    """The distance space: configuration (`hnsw`, then `spann`), then `hnsw:space`, then l2."""
    for section in ("hnsw", "spann"):
        block = (configuration or {}).get(section)
        if isinstance(block, dict) and block.get("space"):
            return str(block["space"])
    if metadata and metadata.get("hnsw:space"):
        return str(metadata["hnsw:space"])
    return str(HNSW_DEFAULTS["space"])


def hnsw_setting(configuration: dict[str, Any] | None, key: str) -> Any:
    """One HNSW setting of a stored configuration, or its default."""
    block = (configuration or {}).get("hnsw")
    value = block.get(key) if isinstance(block, dict) else None
    if value is None:
        value = hnsw_defaults().get(key)
    return value
