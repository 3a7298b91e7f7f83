"""A Chroma collection's HNSW configuration, from whichever form its directory stores."""

from __future__ import annotations

import json
import logging
from typing import Any

from huedb.api.collection_config import HNSW_ACCEPTED, HNSW_DEFAULTS, LEGACY_KEYS
from huedb.api.types import SPACES

logger = logging.getLogger(__name__)

# Keys of the 0.5/0.6 `hnsw_configuration` object that are named differently in 1.x.
OLD_CONFIG_KEYS = {"M": "max_neighbors"}


def parse_configuration(
    schema_str: str | None, config_str: str | None, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """`{"hnsw": {...}, "embedding_function": ...}` from whichever form the directory has.

    1.x keeps the vector index config in `schema_str`; 1.0 dirs keep `{"hnsw": ...}` in
    `config_json_str`; 0.5/0.6 dirs keep a `_type`-tagged object there whose HNSW values the
    legacy `hnsw:*` metadata keys override; without either, the metadata keys decide.
    """
    hnsw = dict(HNSW_DEFAULTS)
    legacy = _legacy_hnsw(metadata)
    found, ef, metadata_wins = _stored_config(schema_str, config_str)
    if metadata_wins:
        hnsw.update(found)
        hnsw.update(legacy)
    else:
        hnsw.update(legacy)
        hnsw.update(found)
    if hnsw["space"] not in SPACES:
        logger.warning("unknown space %r, using l2", hnsw["space"])
        hnsw["space"] = "l2"
    return {"hnsw": hnsw, "embedding_function": ef}


def _legacy_hnsw(metadata: dict[str, Any] | None) -> dict[str, Any]:
    if not metadata:
        return {}
    return {key: metadata[old] for old, key in LEGACY_KEYS.items() if old in metadata}


def _stored_config(
    schema_str: str | None, config_str: str | None
) -> tuple[dict[str, Any], Any, bool]:
    """(hnsw values, embedding function config, whether metadata keys override them)."""
    schema = load_json_object(schema_str)
    if schema:
        config = _schema_vector_config(schema)
        if config is not None:
            index = config.get("hnsw") or config.get("spann") or {}
            values = {k: v for k, v in index.items() if k in HNSW_ACCEPTED and v is not None}
            if config.get("space"):
                values["space"] = config["space"]
            return values, config.get("embedding_function"), False
    config = load_json_object(config_str)
    if not config:
        return {}, None, False
    if "hnsw_configuration" in config:  # 0.5/0.6 internal form
        old = config.get("hnsw_configuration") or {}
        values = {OLD_CONFIG_KEYS.get(k, k): v for k, v in old.items() if not k.startswith("_")}
        values = {k: v for k, v in values.items() if k in HNSW_ACCEPTED and v is not None}
        return values, config.get("embedding_function"), True
    index = config.get("hnsw") or config.get("spann") or {}
    values = {k: v for k, v in index.items() if k in HNSW_ACCEPTED and v is not None}
    return values, config.get("embedding_function"), False


def _schema_vector_config(schema: dict[str, Any]) -> dict[str, Any] | None:
    for scope in (schema.get("keys", {}).get("#embedding"), schema.get("defaults")):
        try:
            return scope["float_list"]["vector_index"]["config"]
        except (KeyError, TypeError):
            continue
    return None


def load_json_object(text: str | None) -> dict[str, Any] | None:
    """A JSON object stored as text; None if absent, unreadable (logged) or not an object."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        logger.warning("ignoring unreadable configuration JSON")
        return None
    return value if isinstance(value, dict) else None
