"""A collection's vector-index settings: Chroma's HNSW defaults and the distance space.

The one place where a collection's space and graph parameters are derived from its
configuration (and, for configurations from Chroma files, the legacy `hnsw:*` metadata),
and the huedb recall target from its metadata (`huedb:recall_target`).
"""

from __future__ import annotations

import math
import os
from typing import Any

from huedb.errors import InvalidArgumentError

# The planner's recall target (docs/ARCHITECTURE.md, "Recall target"): a collection
# metadata key, so Chroma's clients carry it and Chroma's configuration checks are untouched.
RECALL_TARGET_KEY = "huedb:recall_target"
DEFAULT_RECALL_TARGET = 0.95
# The least ef graph searches use when the user did not choose one (the planner's ladder
# starts there too): at 100k x 384 (the bench's clustered data) recall@10 was 0.9885-0.990
# at ef 100 and 0.9957 at 128, for +15 % search time; Chroma's own float32 graph gave
# 0.982-0.992 at 100 over six builds. 128 keeps recall above Chroma's defaults whichever
# way its build falls.
UNCHOSEN_EF_MIN = 128
# The largest expansion a graph is searched with: Chroma stores any ef_search up to 2**64 - 1,
# and usearch allocates a search context of that size ("Out of memory!" at 2**64 - 1). Past
# the graph's size a larger ef finds nothing more.
EF_SEARCH_MAX = 65_536


def search_expansion(ef: int, count: int = 0) -> int:
    """usearch's `expansion_search` for searching at `ef` for `count` results: `ef`, at most
    `EF_SEARCH_MAX`, and never below `count`."""
    return max(min(ef, EF_SEARCH_MAX), count)


# Chroma's HNSW defaults, as stored in a collection's configuration.
HNSW_DEFAULTS: dict[str, Any] = {
    "space": "l2",
    "ef_construction": 100,
    "ef_search": 100,
    "max_neighbors": 16,
    "resize_factor": 1.2,
    "sync_threshold": 1000,
}
# A stored configuration's record that the user chose `ef_search` (at create or modify),
# never echoed: Chroma writes its default into every configuration, so the value alone
# cannot tell an `ef_search` of 100 the user chose from the default (which the planner tunes).
EF_SEARCH_CHOSEN_KEY = "huedb:ef_search_chosen"
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


def ef_search_set(configuration: dict[str, Any] | None) -> bool:
    """True when the user chose `ef_search`: recorded at create or modify
    (`EF_SEARCH_CHOSEN_KEY`), else (no record: a collection created before the record was
    kept, or from a copy of a stored definition) a value other than Chroma's default."""
    if (configuration or {}).get(EF_SEARCH_CHOSEN_KEY) is True:
        return True
    return int(hnsw_setting(configuration, "ef_search")) != HNSW_DEFAULTS["ef_search"]


def recall_target(metadata: dict[str, Any] | None) -> float:
    """The collection's recall target (`huedb:recall_target`, a number from 0 to 1; 0 turns
    the measurement off), or the default; InvalidArgumentError for any other value."""
    value = (metadata or {}).get(RECALL_TARGET_KEY)
    if value is None:
        return DEFAULT_RECALL_TARGET
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgumentError(f"{RECALL_TARGET_KEY} must be a number from 0 to 1")
    if not 0 <= value <= 1:
        raise InvalidArgumentError(f"{RECALL_TARGET_KEY} must be from 0 to 1, got {value}")
    return float(value)
