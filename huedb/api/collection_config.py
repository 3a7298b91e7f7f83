"""Collection configuration: Chroma's `configuration` dict and the legacy `hnsw:*` metadata keys."""

from __future__ import annotations

from typing import Any

from huedb.api.types import SPACES
from huedb.engine.hnsw_config import HNSW_DEFAULTS
from huedb.errors import InvalidArgumentError

HNSW_ACCEPTED = (*HNSW_DEFAULTS, "num_threads", "batch_size")
HNSW_MUTABLE = ("ef_search", "num_threads", "batch_size", "sync_threshold", "resize_factor")
LEGACY_KEYS = {
    "hnsw:space": "space",
    "hnsw:construction_ef": "ef_construction",
    "hnsw:M": "max_neighbors",
    "hnsw:search_ef": "ef_search",
    "hnsw:num_threads": "num_threads",
    "hnsw:batch_size": "batch_size",
    "hnsw:sync_threshold": "sync_threshold",
    "hnsw:resize_factor": "resize_factor",
}


def _check_hnsw_value(key: str, value: Any) -> Any:
    if key == "space":
        if value not in SPACES:
            raise InvalidArgumentError(
                f"Invalid space {value!r}: expected one of {', '.join(SPACES)}"
            )
        return value
    if key == "resize_factor":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise InvalidArgumentError(f"Invalid HNSW parameter {key}: {value!r}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"Invalid HNSW parameter {key}: expected a positive int")
    return value


def build_configuration(
    metadata: dict[str, Any] | None, configuration: dict[str, Any] | None
) -> dict[str, Any]:
    """The configuration_json stored for a new collection (configuration wins over metadata)."""
    hnsw = dict(HNSW_DEFAULTS)
    for legacy, key in LEGACY_KEYS.items():
        if metadata and legacy in metadata:
            hnsw[key] = _check_hnsw_value(key, metadata[legacy])
    ef_config = None
    if configuration:
        if not isinstance(configuration, dict):
            raise InvalidArgumentError("configuration must be a JSON object")
        if configuration.get("spann"):
            spann = configuration["spann"]
            if configuration.get("hnsw"):
                raise InvalidArgumentError("hnsw and spann configurations are mutually exclusive")
            if isinstance(spann, dict) and "space" in spann:
                hnsw["space"] = _check_hnsw_value("space", spann["space"])
        given = configuration.get("hnsw") or {}
        if not isinstance(given, dict):
            raise InvalidArgumentError("configuration.hnsw must be a JSON object")
        for key, value in given.items():
            if key not in HNSW_ACCEPTED:
                raise InvalidArgumentError(f"unknown field `{key}` in hnsw configuration")
            if value is not None:
                hnsw[key] = _check_hnsw_value(key, value)
        ef_config = configuration.get("embedding_function")
    return {
        "hnsw": {k: hnsw[k] for k in HNSW_DEFAULTS},
        "spann": None,
        "embedding_function": ef_config,
    }


def apply_update(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A configuration after `modify(configuration=...)`; only mutable keys may change."""
    if not isinstance(update, dict):
        raise InvalidArgumentError("configuration must be a JSON object")
    result = {**current, "hnsw": dict(current.get("hnsw") or HNSW_DEFAULTS)}
    given = update.get("hnsw") or {}
    if not isinstance(given, dict):
        raise InvalidArgumentError("configuration.hnsw must be a JSON object")
    for key, value in given.items():
        if key not in HNSW_MUTABLE and key != "max_neighbors":
            raise InvalidArgumentError(
                f"unknown field `{key}`: it cannot be changed after creation"
            )
        if key == "max_neighbors":
            raise InvalidArgumentError("max_neighbors cannot be changed after creation")
        if value is not None and key in result["hnsw"]:
            result["hnsw"][key] = _check_hnsw_value(key, value)
    if "embedding_function" in update and update["embedding_function"] is not None:
        result["embedding_function"] = update["embedding_function"]
    return result
