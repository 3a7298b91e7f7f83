"""A collection's vector-index settings: Chroma's HNSW defaults and the distance space.

The one place where a collection's space and graph parameters are derived from its
configuration (and, for configurations from Chroma files, the legacy `hnsw:*` metadata).
"""

from __future__ import annotations

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
# Fields Chroma's schema reports besides the stored ones, with Chroma's defaults.
HNSW_REPORTED_DEFAULTS: dict[str, Any] = {"num_threads": 2, "batch_size": 100}


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
        value = HNSW_DEFAULTS.get(key, HNSW_REPORTED_DEFAULTS.get(key))
    return value
