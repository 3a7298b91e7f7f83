"""Collection configuration and schema, decided by Chroma 1.5's rules.

A collection is created from three inputs: Chroma's `configuration` (`hnsw`, `spann`,
`embedding_function`), the legacy `hnsw:*` keys of its metadata, and a `schema` (Chroma's
`Schema`: per value type and per key, which indexes are on; the vector index's space, HNSW
parameters and embedding function). Chroma's Rust core reconciles them (`rust/types`,
`collection_configuration.rs` and `collection_schema.rs` of chromadb 1.5.9); this module
follows the same steps, so every combination gives the same space, the same errors and the
same echoed configuration and schema (docs/chroma-schema.md lists the rules; the
differential tests in tests/test_space_precedence.py and tests/test_schema.py check them).

Two halves, as in chromadb:
- `client_request`: what chromadb's Python client sends for `create_collection(...)` (the
  embedding function's identity and default space folded into the configuration JSON);
  used by huedb's `Client`, whatever server it speaks to.
- `create_configuration`: what the server stores, from the configuration JSON, the metadata
  and the schema JSON (`LocalAPI.create_collection`, so embedded and HTTP alike).

The stored configuration is the echoed one plus the reconciled schema under `schema`
(`STORED_SCHEMA_KEY`), so no change of the on-disk format is needed; collections stored
before schemas were kept get the schema Chroma derives from their configuration.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from huedb.engine.hnsw_config import hnsw_defaults
from huedb.engine.schema_keys import METADATA_TYPE_DEFAULTS, STORED_SCHEMA_KEY
from huedb.errors import InvalidArgumentError

DOCUMENT_KEY = "#document"
EMBEDDING_KEY = "#embedding"
SPACE_NAMES = ("l2", "cosine", "ip")  # serde's order in Chroma's error messages
DEFAULT_EF_IDENTITY: dict[str, Any] = {"type": "known", "name": "default", "config": {}}


HNSW_FIELDS = (
    "space",
    "ef_construction",
    "ef_search",
    "max_neighbors",
    "num_threads",
    "resize_factor",
    "sync_threshold",
    "batch_size",
)
# What the echoed configuration shows of the HNSW settings (num_threads and batch_size are
# serde(skip_serializing) in Chroma's configuration; the schema shows them).
HNSW_ECHOED = (
    "space",
    "ef_construction",
    "ef_search",
    "max_neighbors",
    "resize_factor",
    "sync_threshold",
)
HNSW_INDEX_FIELDS = (
    "ef_construction",
    "max_neighbors",
    "ef_search",
    "num_threads",
    "batch_size",
    "sync_threshold",
    "resize_factor",
)
SPANN_FIELDS = (
    "search_nprobe",
    "write_nprobe",
    "space",
    "ef_construction",
    "ef_search",
    "max_neighbors",
    "reassign_neighbor_count",
    "split_threshold",
    "merge_threshold",
)
SPANN_INDEX_DEFAULTS: dict[str, Any] = {
    "search_nprobe": 64,
    "search_rng_factor": 1.0,
    "search_rng_epsilon": 10.0,
    "nreplica_count": 8,
    "write_rng_factor": 1.0,
    "write_rng_epsilon": 5.0,
    "split_threshold": 50,
    "num_samples_kmeans": 1000,
    "initial_lambda": 100.0,
    "reassign_neighbor_count": 64,
    "merge_threshold": 25,
    "num_centers_to_merge_to": 8,
    "write_nprobe": 32,
    "ef_construction": 200,
    "ef_search": 200,
    "max_neighbors": 64,
    "center_drift_threshold": None,
    "quantize": "none",
}
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
HNSW_MUTABLE = ("ef_search", "num_threads", "batch_size", "sync_threshold", "resize_factor")
# Accepted by huedb's readers of Chroma stores (ops/chroma_dir).
HNSW_ACCEPTED = HNSW_FIELDS

VALUE_TYPES = ("string", "float_list", "sparse_vector", "int", "float", "bool")
INDEXES_OF = {
    "string": ("fts_index", "string_inverted_index"),
    "float_list": ("vector_index",),
    "sparse_vector": ("sparse_vector_index",),
    "int": ("int_inverted_index",),
    "float": ("float_inverted_index",),
    "bool": ("bool_inverted_index",),
}


# The HNSW settings a stored configuration echoes, at their defaults.
HNSW_DEFAULTS: dict[str, Any] = {k: v for k, v in hnsw_defaults().items() if k in HNSW_ECHOED}


# -- serde-like value checks (Chroma's messages, without serde's " at line L column C") ---


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a sequence"
    return "a map"


def _space(value: Any) -> str:
    if isinstance(value, str):
        if value in SPACE_NAMES:
            return value
        raise InvalidArgumentError(
            f"unknown variant `{value}`, expected one of `l2`, `cosine`, `ip`"
        )
    raise InvalidArgumentError(f"invalid type: {_describe(value)}, expected a string")


def _usize(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InvalidArgumentError(f"invalid value: integer `{value}`, expected usize")
        return value
    raise InvalidArgumentError(f"invalid type: {_describe(value)}, expected usize")


def _f64(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise InvalidArgumentError(f"invalid type: {_describe(value)}, expected f64")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"invalid type: {_describe(value)}, expected {what}")
    return value


def _unknown_field(key: str, fields: tuple[str, ...]) -> InvalidArgumentError:
    expected = ", ".join(f"`{f}`" for f in fields)
    return InvalidArgumentError(f"unknown field `{key}`, expected one of {expected}")


def _parse_hnsw(value: Any) -> dict[str, Any]:
    """Chroma's `HnswConfiguration` (all fields optional, unknown fields refused)."""
    given = _object(value, "struct HnswConfiguration")
    out: dict[str, Any] = {}
    for key, item in given.items():
        if key not in HNSW_FIELDS:
            raise _unknown_field(key, HNSW_FIELDS)
        if item is None:
            continue
        if key == "space":
            out[key] = _space(item)
        elif key == "resize_factor":
            out[key] = _f64(item)
        else:
            out[key] = _usize(item)
    return out


def _parse_spann(value: Any) -> dict[str, Any]:
    """Chroma's `SpannConfiguration` (all fields optional, unknown fields refused)."""
    given = _object(value, "struct SpannConfiguration")
    out: dict[str, Any] = {}
    for key, item in given.items():
        if key not in SPANN_FIELDS:
            raise _unknown_field(key, SPANN_FIELDS)
        if item is None:
            continue
        out[key] = _space(item) if key == "space" else _usize(item)
    return out


def _parse_ef(value: Any) -> dict[str, Any] | None:
    """An `EmbeddingFunctionConfiguration`: legacy, unknown, or known (name + config)."""
    if value is None:
        return None
    given = _object(value, "internally tagged enum EmbeddingFunctionConfiguration")
    kind = given.get("type")
    if kind in ("legacy", "unknown"):
        return {"type": kind}
    if kind == "known":
        if not isinstance(given.get("name"), str):
            raise InvalidArgumentError("missing field `name`")
        if "config" not in given:
            raise InvalidArgumentError("missing field `config`")
        return {"type": "known", "name": given["name"], "config": given["config"]}
    if kind is None:
        raise InvalidArgumentError("missing field `type`")
    raise InvalidArgumentError(
        f"unknown variant `{kind}`, expected one of `legacy`, `known`, `unknown`"
    )


def _ef_is_default(ef: dict[str, Any] | None) -> bool:
    """Chroma's `is_embedding_function_default`: none, unknown, or the known "default"."""
    if ef is None:
        return True
    if ef.get("type") == "legacy":
        return False
    if ef.get("type") == "unknown":
        return True
    return ef.get("name") == "default"


# -- the client half: what chromadb's client sends --------------------------------------


def embedding_function_identity(ef: Any) -> dict[str, Any] | None:
    """How chromadb's client records an embedding function: known (name + config) or legacy."""
    if ef is None:
        return None
    if isinstance(ef, dict):
        return _parse_ef(ef)
    legacy = getattr(ef, "is_legacy", None)
    name, config = getattr(ef, "name", None), getattr(ef, "get_config", None)
    try:
        if callable(legacy) and legacy():
            return {"type": "legacy"}
        if callable(name) and callable(config):
            ident = {"type": "known", "name": name(), "config": config()}
            if ident["name"] is NotImplemented or ident["config"] is NotImplemented:
                return {"type": "legacy"}
            return ident
    except Exception:  # noqa: BLE001 - chromadb falls back to legacy on any error
        return {"type": "legacy"}
    return {"type": "legacy"}


def _ef_name(ef: Any) -> Any:
    if isinstance(ef, dict):
        return ef.get("name")
    name = getattr(ef, "name", None)
    try:
        return name() if callable(name) else None
    except Exception:  # noqa: BLE001
        return None


def _default_space(ef: Any) -> str:
    method = getattr(ef, "default_space", None)
    try:
        space = method() if callable(method) else None
    except Exception:  # noqa: BLE001
        space = None
    return space if isinstance(space, str) else "l2"


def check_embedding_function_conflict(embedding_function: Any, configuration_ef: Any) -> None:
    """chromadb's `validate_embedding_function_conflict_on_create` (a ValueError)."""
    if embedding_function is None or configuration_ef is None:
        return
    given, configured = _ef_name(embedding_function), _ef_name(configuration_ef)
    if given != "default" and given != configured:
        raise ValueError(
            "Multiple embedding functions provided. Please provide only one. Embedding "
            f"function conflict: {given} vs {configured}"
        )


def client_request(
    configuration: Any,
    metadata: dict[str, Any] | None,
    embedding_function: Any,
) -> dict[str, Any] | None:
    """The configuration JSON chromadb's client sends for `create_collection`.

    `embedding_function` is the argument as chromadb's client would have it (its default is
    the default embedding function; None means none). Mirrors `Client.create_collection`
    and `create_collection_configuration_to_json` of chromadb 1.5.9: the function's
    identity is recorded, and its default space fills in a space left out, unless the
    legacy `hnsw:space` metadata key gives one. Returns None when there is nothing to send.
    """
    if configuration is not None and not isinstance(configuration, dict):
        raise InvalidArgumentError("configuration must be a JSON object")
    config = dict(configuration or {})
    configuration_ef = config.get("embedding_function")
    check_embedding_function_conflict(embedding_function, configuration_ef)
    if embedding_function is not None and configuration_ef is None:
        config["embedding_function"] = embedding_function
    if not config:
        return None
    hnsw, spann = config.get("hnsw"), config.get("spann")
    if hnsw is not None and spann is not None:
        raise ValueError("hnsw and spann cannot both be provided")
    out = {k: v for k, v in config.items() if k not in ("hnsw", "spann", "embedding_function")}
    ef = config.get("embedding_function")
    identity = embedding_function_identity(ef)
    if identity is None:
        return {**out, "hnsw": hnsw, "spann": spann, "embedding_function": {"type": "legacy"}}
    if identity.get("type") == "known":
        space = _default_space(ef)
        hnsw = dict(hnsw) if isinstance(hnsw, dict) else hnsw
        spann = dict(spann) if isinstance(spann, dict) else spann
        if hnsw is None and spann is None and (metadata or {}).get("hnsw:space") is None:
            hnsw = {"space": space}
        if isinstance(hnsw, dict) and hnsw.get("space") is None:
            hnsw["space"] = space
        if isinstance(spann, dict) and spann.get("space") is None:
            spann["space"] = space
    return {**out, "hnsw": hnsw, "spann": spann, "embedding_function": identity}


def schema_request(schema: Any) -> dict[str, Any] | None:
    """A schema as sent on the wire: chromadb's `Schema` object serialized, or its JSON."""
    if schema is None:
        return None
    serialize = getattr(schema, "serialize_to_json", None)
    if callable(serialize):
        return serialize()
    if isinstance(schema, dict):
        return schema
    raise InvalidArgumentError("schema must be a chromadb Schema or its JSON object")


def schema_embedding_function(schema: Any) -> Any:
    """The embedding function object of a chromadb `Schema` (#embedding's, else the
    defaults'), as chromadb's collections use it; None for JSON or when unset."""
    keys = getattr(schema, "keys", None)
    candidates = []
    if isinstance(keys, dict) and EMBEDDING_KEY in keys:
        candidates.append(keys[EMBEDDING_KEY])
    candidates.append(getattr(schema, "defaults", None))
    for value_types in candidates:
        float_list = getattr(value_types, "float_list", None)
        index = getattr(float_list, "vector_index", None)
        ef = getattr(getattr(index, "config", None), "embedding_function", None)
        if ef is not None:
            return ef
    return None


# -- the server half: from configuration JSON, metadata and schema to what is stored -----


def _legacy_hnsw(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """`InternalHnswConfiguration::from_legacy_segment_metadata`: the `hnsw:*` keys."""
    hnsw = hnsw_defaults()
    failed = InvalidArgumentError("Failed to parse hnsw parameters from segment metadata")
    if not metadata:
        return hnsw
    for key, value in metadata.items():
        if not isinstance(key, str) or not key.startswith("hnsw:"):
            continue
        field = LEGACY_KEYS.get(key)
        if field is None:
            raise failed
        try:
            if field == "space":
                hnsw[field] = _space(value)
            elif field == "resize_factor":
                hnsw[field] = _f64(value)
            else:
                hnsw[field] = _usize(value)
        except InvalidArgumentError:
            raise failed from None
    if hnsw["sync_threshold"] < 2 or hnsw["batch_size"] < 2:
        raise failed
    return hnsw


def _check_engine_limits(hnsw: dict[str, Any]) -> None:
    """Values Chroma stores but huedb's index cannot build a graph with (huedb refuses)."""
    for key in ("max_neighbors", "ef_construction", "ef_search"):
        if hnsw[key] < 1:
            raise InvalidArgumentError(f"Invalid HNSW parameter {key}: expected a positive int")
    if not math.isfinite(hnsw["resize_factor"]) or hnsw["resize_factor"] <= 0:
        raise InvalidArgumentError(
            f"Invalid HNSW parameter resize_factor: {hnsw['resize_factor']!r}"
        )


def _internal_configuration(
    configuration: Any, metadata: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`InternalCollectionConfiguration::try_from_config` for a local (HNSW) server.

    Returns the full HNSW settings and the embedding function's identity. The legacy
    metadata keys decide when the configuration gives no index settings, or when the ones
    it gives are exactly Chroma's defaults (so `configuration={"hnsw": {"space": "l2"}}`
    with `metadata={"hnsw:space": "cosine"}` is cosine, as in Chroma).
    """
    config = _object(configuration, "struct CollectionConfiguration") if configuration else {}
    hnsw_given = None if config.get("hnsw") is None else _parse_hnsw(config["hnsw"])
    spann_given = None if config.get("spann") is None else _parse_spann(config["spann"])
    ef = _parse_ef(config.get("embedding_function"))
    if hnsw_given is not None and spann_given is not None:
        raise InvalidArgumentError("Multiple vector index configurations provided")
    if spann_given is not None:
        hnsw = hnsw_defaults()
        if "space" in spann_given:
            hnsw["space"] = spann_given["space"]
        return hnsw, ef
    from_metadata = _legacy_hnsw(metadata)
    if hnsw_given is None:
        return from_metadata, ef
    hnsw = {**hnsw_defaults(), **hnsw_given}
    if hnsw == hnsw_defaults() and from_metadata != hnsw:
        hnsw = from_metadata
    return hnsw, ef


def _configuration_is_default(hnsw: dict[str, Any], ef: dict[str, Any] | None) -> bool:
    return _ef_is_default(ef) and hnsw == hnsw_defaults()


def _index(enabled: bool, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"enabled": enabled, "config": config or {}}


def _vector_config(
    hnsw: dict[str, Any], ef: dict[str, Any] | None, source_key: str | None
) -> dict[str, Any]:
    config: dict[str, Any] = {"space": hnsw["space"]}
    if ef is not None:
        config["embedding_function"] = ef
    if source_key is not None:
        config["source_key"] = source_key
    config["hnsw"] = {k: hnsw[k] for k in HNSW_INDEX_FIELDS}
    return config


def default_schema(hnsw: dict[str, Any] | None = None, ef: dict[str, Any] | None = None) -> dict:
    """`Schema::new_default(Hnsw)`, with a vector index of the given settings."""
    hnsw = hnsw or hnsw_defaults()
    return {
        "defaults": {
            "string": copy.deepcopy(METADATA_TYPE_DEFAULTS["string"]),
            "float_list": {"vector_index": _index(False, _vector_config(hnsw, ef, None))},
            "sparse_vector": {
                "sparse_vector_index": _index(
                    False, {"embedding_function": {"type": "unknown"}, "bm25": False}
                )
            },
            **{t: copy.deepcopy(METADATA_TYPE_DEFAULTS[t]) for t in ("int", "float", "bool")},
        },
        "keys": {
            EMBEDDING_KEY: {
                "float_list": {"vector_index": _index(True, _vector_config(hnsw, ef, DOCUMENT_KEY))}
            },
            DOCUMENT_KEY: {
                "string": {"fts_index": _index(True), "string_inverted_index": _index(False)}
            },
        },
    }


def schema_from_configuration(configuration: dict[str, Any]) -> dict[str, Any]:
    """`Schema::try_from(&InternalCollectionConfiguration)`: the schema Chroma derives from
    a configuration (collections created before schemas were stored, imports)."""
    hnsw = hnsw_defaults()
    given = configuration.get("hnsw") if isinstance(configuration, dict) else None
    if isinstance(given, dict):
        hnsw.update({k: v for k, v in given.items() if k in hnsw and v is not None})
    ef = configuration.get("embedding_function") if isinstance(configuration, dict) else None
    return default_schema(hnsw, ef if isinstance(ef, dict) else None)


# -- parsing a user schema (serde of Chroma's `Schema`) --------------------------------

_VALUE_TYPE_ALIASES = {f"#{name}": name for name in VALUE_TYPES}
_INDEX_ALIASES = {f"${name}": name for names in INDEXES_OF.values() for name in names}
_VECTOR_FIELDS = ("space", "embedding_function", "source_key", "hnsw", "spann")
_SPARSE_FIELDS = ("embedding_function", "source_key", "bm25", "algorithm")
_SPANN_INDEX_FIELDS = tuple(SPANN_INDEX_DEFAULTS)


def _parse_index(value_type: str, name: str, value: Any) -> dict[str, Any]:
    index = _object(value, f"struct for {name}")
    if "enabled" not in index:
        raise InvalidArgumentError("missing field `enabled`")
    if not isinstance(index["enabled"], bool):
        raise InvalidArgumentError(
            f"invalid type: {_describe(index['enabled'])}, expected a boolean"
        )
    config = _object(index.get("config", {}), f"struct config of {name}")
    if name == "vector_index":
        config = _parse_vector_config(config)
    elif name == "sparse_vector_index":
        config = _parse_sparse_config(config)
    else:
        config = {}  # the other indexes have no settings (serde ignores unknown fields)
    return {"enabled": index["enabled"], "config": config}


def _parse_vector_config(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key not in _VECTOR_FIELDS:
            raise _unknown_field(key, _VECTOR_FIELDS)
        if value is None:
            continue
        if key == "space":
            out[key] = _space(value)
        elif key == "embedding_function":
            out[key] = _parse_ef(value)
        elif key == "source_key":
            if not isinstance(value, str):
                raise InvalidArgumentError(f"invalid type: {_describe(value)}, expected a string")
            out[key] = value
        elif key == "hnsw":
            hnsw = _object(value, "struct HnswIndexConfig")
            parsed: dict[str, Any] = {}
            for field, item in hnsw.items():
                if field not in HNSW_INDEX_FIELDS:
                    raise _unknown_field(field, HNSW_INDEX_FIELDS)
                if item is not None:
                    parsed[field] = _f64(item) if field == "resize_factor" else _usize(item)
            out[key] = parsed
        else:
            spann = _object(value, "struct SpannIndexConfig")
            for field in spann:
                if field not in _SPANN_INDEX_FIELDS:
                    raise _unknown_field(field, _SPANN_INDEX_FIELDS)
            out[key] = {k: v for k, v in spann.items() if v is not None}
    return out


def _parse_sparse_config(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key not in _SPARSE_FIELDS:
            raise _unknown_field(key, _SPARSE_FIELDS)
        if value is None:
            continue
        out[key] = _parse_ef(value) if key == "embedding_function" else value
    return out


def _parse_value_types(value: Any) -> dict[str, Any]:
    types = _object(value, "struct ValueTypes")
    out: dict[str, Any] = {}
    for raw_type, indexes in types.items():
        value_type = _VALUE_TYPE_ALIASES.get(raw_type, raw_type)
        if value_type not in VALUE_TYPES or indexes is None:
            continue  # as Chroma's serde: unknown value types are ignored
        parsed: dict[str, Any] = {}
        for raw_name, index in _object(indexes, f"struct {value_type}").items():
            name = _INDEX_ALIASES.get(raw_name, raw_name)
            if name in INDEXES_OF[value_type] and index is not None:
                parsed[name] = _parse_index(value_type, name, index)
        out[value_type] = parsed
    return out


def parse_schema(value: Any) -> dict[str, Any]:
    """A user's schema JSON, checked as Chroma's serde does, in canonical names."""
    schema = _object(value, "struct Schema")
    if "defaults" not in schema:
        raise InvalidArgumentError("missing field `defaults`")
    if "keys" not in schema and "key_overrides" not in schema:
        raise InvalidArgumentError("missing field `keys`")
    keys = schema.get("keys", schema.get("key_overrides", {}))
    out: dict[str, Any] = {
        "defaults": _parse_value_types(schema.get("defaults") or {}),
        "keys": {str(k): _parse_value_types(v) for k, v in _object(keys or {}, "a map").items()},
    }
    if schema.get("cmek") is not None:
        out["cmek"] = schema["cmek"]
    return out


# -- Schema::is_default, reconcile_with_defaults, reconcile_with_collection_config -------


def _hnsw_index_is_default(config: dict[str, Any]) -> bool:
    defaults = hnsw_defaults()
    return all(
        config.get(k) is None or config[k] == defaults[k]
        for k in HNSW_INDEX_FIELDS
        if k != "num_threads"
    )


def _spann_index_is_default(config: dict[str, Any]) -> bool:
    return all(config.get(k) in (None, v) for k, v in SPANN_INDEX_DEFAULTS.items())


def _vector_algorithms_default(config: dict[str, Any]) -> bool:
    hnsw, spann = config.get("hnsw"), config.get("spann")
    if hnsw is not None and spann is not None:
        return False
    if hnsw is not None:
        return _hnsw_index_is_default(hnsw)
    if spann is not None:
        return _spann_index_is_default(spann)
    return True


def _get(types: dict[str, Any], value_type: str, index: str) -> dict[str, Any] | None:
    return (types.get(value_type) or {}).get(index)


def _defaults_are_default(types: dict[str, Any]) -> bool:
    for value_type, index, expected in (
        ("string", "string_inverted_index", True),
        ("string", "fts_index", False),
        ("float", "float_inverted_index", True),
        ("int", "int_inverted_index", True),
        ("bool", "bool_inverted_index", True),
    ):
        found = _get(types, value_type, index)
        if found is not None and found["enabled"] != expected:
            return False
    vector = _get(types, "float_list", "vector_index")
    if vector is not None:
        config = vector["config"]
        if vector["enabled"] or not _ef_is_default(config.get("embedding_function")):
            return False
        if config.get("space") not in (None, "l2") or config.get("source_key") is not None:
            return False
        if not _vector_algorithms_default(config):
            return False
    sparse = _get(types, "sparse_vector", "sparse_vector_index")
    if sparse is not None:
        config = sparse["config"]
        if sparse["enabled"] or not _ef_is_default(config.get("embedding_function")):
            return False
        if config.get("source_key") is not None or config.get("bm25") not in (None, False):
            return False
    return True


def _embedding_key_is_default(types: dict[str, Any]) -> bool:
    if any(t in types for t in ("string", "float", "int", "bool", "sparse_vector")):
        return False
    vector = _get(types, "float_list", "vector_index")
    if vector is None:
        return True
    config = vector["config"]
    return (
        vector["enabled"]
        and config.get("space") in (None, "l2")
        and _ef_is_default(config.get("embedding_function"))
        and config.get("source_key") == DOCUMENT_KEY
        and _vector_algorithms_default(config)
    )


def _document_key_is_default(types: dict[str, Any]) -> bool:
    if any(t in types for t in ("float_list", "float", "int", "bool", "sparse_vector")):
        return False
    fts = _get(types, "string", "fts_index")
    inverted = _get(types, "string", "string_inverted_index")
    return (fts is None or fts["enabled"]) and (inverted is None or not inverted["enabled"])


def schema_is_default(schema: dict[str, Any]) -> bool:
    """Chroma's `Schema::is_default`: nothing a user changed from the default schema."""
    if not _defaults_are_default(schema["defaults"]):
        return False
    if any(k not in (EMBEDDING_KEY, DOCUMENT_KEY) for k in schema["keys"]):
        return False
    if EMBEDDING_KEY in schema["keys"] and not _embedding_key_is_default(
        schema["keys"][EMBEDDING_KEY]
    ):
        return False
    if DOCUMENT_KEY in schema["keys"] and not _document_key_is_default(
        schema["keys"][DOCUMENT_KEY]
    ):
        return False
    return schema.get("cmek") is None


def _merge_vector(default: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    dc, uc = default["config"], user["config"]
    config: dict[str, Any] = {}
    for key in ("space", "embedding_function", "source_key"):
        value = uc.get(key, dc.get(key))
        if value is not None:
            config[key] = value
    hnsw = {**(dc.get("hnsw") or {}), **(uc.get("hnsw") or {})}
    if dc.get("hnsw") is not None or uc.get("hnsw") is not None:
        config["hnsw"] = {k: hnsw[k] for k in HNSW_INDEX_FIELDS if k in hnsw}
    merged = {"enabled": user["enabled"], "config": config}
    hnsw_config = config.get("hnsw") or {}
    for key in ("sync_threshold", "batch_size"):
        if hnsw_config.get(key) is not None and hnsw_config[key] < 2:
            raise InvalidArgumentError(
                "Failed to reconcile schema: Invalid HNSW configuration: "
                f'{key}: Validation error: range [{{"value": Number({hnsw_config[key]}), '
                '"min": Number(2)}]'
            )
    return merged


def _merge_sparse(default: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    dc, uc = default["config"], user["config"]
    config = {
        key: uc.get(key, dc.get(key))
        for key in _SPARSE_FIELDS
        if uc.get(key, dc.get(key)) is not None
    }
    if config.get("algorithm") in (None, "wand"):
        config.pop("algorithm", None)
    return {"enabled": user["enabled"], "config": config}


def _merge_value_types(default: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for value_type in VALUE_TYPES:
        d, u = default.get(value_type), user.get(value_type)
        if d is None and u is None:
            continue
        if d is None or u is None:
            merged[value_type] = copy.deepcopy(d if u is None else u)
            continue
        out: dict[str, Any] = {}
        for name in INDEXES_OF[value_type]:
            di, ui = d.get(name), u.get(name)
            if di is None and ui is None:
                continue
            if di is None or ui is None:
                out[name] = copy.deepcopy(di if ui is None else ui)
            elif name == "vector_index":
                out[name] = _merge_vector(di, ui)
            elif name == "sparse_vector_index":
                out[name] = _merge_sparse(di, ui)
            else:
                out[name] = copy.deepcopy(ui)
        merged[value_type] = out
    return merged


def _reconcile_with_defaults(user: dict[str, Any] | None) -> dict[str, Any]:
    base = default_schema()
    if user is None:
        return base
    keys = copy.deepcopy(base["keys"])
    for key, types in user["keys"].items():
        keys[key] = _merge_value_types(keys[key], types) if key in keys else copy.deepcopy(types)
    out = {"defaults": _merge_value_types(base["defaults"], user["defaults"]), "keys": keys}
    if user.get("cmek") is not None:
        out["cmek"] = user["cmek"]
    return out


def _sparse_index_enabled(schema: dict[str, Any]) -> bool:
    every = [schema["defaults"], *schema["keys"].values()]
    return any(
        (_get(t, "sparse_vector", "sparse_vector_index") or {}).get("enabled") for t in every
    )


def vector_index_config(schema: dict[str, Any]) -> dict[str, Any]:
    """The vector index settings in force: #embedding's, else the defaults'."""
    for types in (schema["keys"].get(EMBEDDING_KEY) or {}, schema["defaults"]):
        index = _get(types, "float_list", "vector_index")
        if index is not None:
            return index["config"]
    raise InvalidArgumentError(
        "Schema reconciliation failed: Missing vector index configuration for #embedding"
    )


def configuration_from_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`InternalCollectionConfiguration::try_from(&Schema)`, as the echoed configuration."""
    config = vector_index_config(schema)
    hnsw = hnsw_defaults()
    if config.get("space") is not None:
        hnsw["space"] = config["space"]
    hnsw.update({k: v for k, v in (config.get("hnsw") or {}).items() if v is not None})
    return {
        "hnsw": {k: hnsw[k] for k in HNSW_ECHOED},
        "spann": None,
        "embedding_function": config.get("embedding_function"),
    }


def create_configuration(
    configuration: Any, metadata: dict[str, Any] | None, schema: Any = None
) -> dict[str, Any]:
    """What a server stores for a new collection, decided as Chroma's local server does.

    `configuration` is the configuration JSON a client sent (None if none), `schema` the
    schema JSON (None if none). The result is the echoed configuration (`hnsw`, `spann`,
    `embedding_function`) plus the reconciled schema under `STORED_SCHEMA_KEY`.
    """
    hnsw, ef = _internal_configuration(configuration, metadata)
    user_schema = None if schema is None else parse_schema(schema)
    config_default = _configuration_is_default(hnsw, ef)
    if user_schema is not None and not schema_is_default(user_schema) and not config_default:
        raise InvalidArgumentError(
            "Failed to reconcile schema: Cannot set both collection config and schema "
            "simultaneously"
        )
    reconciled = _reconcile_with_defaults(user_schema)
    if not config_default:
        reconciled = default_schema(hnsw, ef)
    elif schema_is_default(reconciled):
        reconciled = default_schema(None, ef)
    if _sparse_index_enabled(reconciled):
        raise InvalidArgumentError(
            "Failed to reconcile schema: Invalid schema input: Sparse vector indexing is not "
            "enabled in local"
        )
    stored = configuration_from_schema(reconciled)
    _check_engine_limits({**hnsw_defaults(), **stored["hnsw"]})
    return {**stored, STORED_SCHEMA_KEY: reconciled}


def split_stored(stored: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored configuration as (echoed configuration, schema).

    A collection stored before schemas were kept has none, or only the keys its written
    metadata added (`engine/schema_keys.py`): it gets the schema Chroma derives from its
    configuration, with those keys.
    """
    config = dict(stored or {})
    schema = config.pop(STORED_SCHEMA_KEY, None)
    if not isinstance(schema, dict) or "defaults" not in schema:
        derived = schema_from_configuration(config)
        written = schema.get("keys") if isinstance(schema, dict) else None
        for key, types in (written or {}).items():
            derived["keys"].setdefault(key, {}).update(types)
        schema = derived
    return config, schema


# -- modify(configuration=...) --------------------------------------------------------


def _check_update_value(key: str, value: Any) -> Any:
    if key == "resize_factor":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise InvalidArgumentError(f"Invalid HNSW parameter {key}: {value!r}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"Invalid HNSW parameter {key}: expected a positive int")
    return value


def apply_update(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A stored configuration after `modify(configuration=...)`; only mutable keys change,
    in the configuration and in both vector indexes of the schema, as in Chroma."""
    if not isinstance(update, dict):
        raise InvalidArgumentError("configuration must be a JSON object")
    config, schema = split_stored(current)
    result = {**config, "hnsw": dict(config.get("hnsw") or HNSW_DEFAULTS)}
    given = update.get("hnsw") or {}
    if not isinstance(given, dict):
        raise InvalidArgumentError("configuration.hnsw must be a JSON object")
    changes: dict[str, Any] = {}
    for key, value in given.items():
        if key == "max_neighbors":
            raise InvalidArgumentError("max_neighbors cannot be changed after creation")
        if key not in HNSW_MUTABLE:
            raise InvalidArgumentError(
                f"unknown field `{key}`: it cannot be changed after creation"
            )
        if value is not None:
            changes[key] = _check_update_value(key, value)
    result["hnsw"].update({k: v for k, v in changes.items() if k in HNSW_ECHOED})
    ef = update.get("embedding_function")
    if ef is not None:
        result["embedding_function"] = ef
    schema = copy.deepcopy(schema)
    for types in (schema["defaults"], schema["keys"].get(EMBEDDING_KEY) or {}):
        index = _get(types, "float_list", "vector_index")
        if index is None:
            continue
        if index["config"].get("hnsw") is not None:
            index["config"]["hnsw"].update(changes)
        if ef is not None:
            index["config"]["embedding_function"] = ef
    return {**result, STORED_SCHEMA_KEY: schema}


# Kept for huedb's readers of Chroma stores and older callers.
def build_configuration(
    metadata: dict[str, Any] | None, configuration: dict[str, Any] | None
) -> dict[str, Any]:
    """The stored configuration of a new collection without a schema."""
    return create_configuration(configuration, metadata, None)
