"""Chroma's collection `Schema`: parsed, merged with the defaults, compared, and echoed.

A schema says, per value type and per key, which indexes are on, and holds the vector
index's space, HNSW parameters and embedding function. These are the steps of Chroma
1.5.9's Rust core (`collection_schema.rs`): serde's parsing of a user's schema JSON
(`parse_schema`), `Schema::is_default`, the merge over the default schema
(`reconcile_with_defaults`), the default schema of a configuration (`default_schema`,
`schema_from_configuration`) and the configuration a schema echoes
(`configuration_from_schema`). `collection_config` decides with them what a new collection
stores; docs/chroma-schema.md lists the rules.
"""

from __future__ import annotations

import copy
import functools
import json
import warnings
from collections.abc import Callable
from typing import Any

from huedb.api.cmek import Cmek
from huedb.api.config_values import (
    ef_is_default,
    expect_object,
    parse_embedding_function,
    parse_f64,
    parse_space,
    parse_usize,
    unknown_field,
)
from huedb.engine.hnsw_config import hnsw_defaults
from huedb.engine.schema_keys import METADATA_TYPE_DEFAULTS
from huedb.errors import InvalidArgumentError, serde_unexpected, shape_error, shape_error_within
from huedb.sparse_vector import SparseVector, validate_sparse_vectors
from huedb.utils.embedding_functions import sparse_known_embedding_functions

DOCUMENT_KEY = "#document"
EMBEDDING_KEY = "#embedding"

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
VALUE_TYPES = ("string", "float_list", "sparse_vector", "int", "float", "bool")
INDEXES_OF = {
    "string": ("fts_index", "string_inverted_index"),
    "float_list": ("vector_index",),
    "sparse_vector": ("sparse_vector_index",),
    "int": ("int_inverted_index",),
    "float": ("float_inverted_index",),
    "bool": ("bool_inverted_index",),
}


# -- the default schema, and the one a configuration implies -----------------------------


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
            "sparse_vector": copy.deepcopy(METADATA_TYPE_DEFAULTS["sparse_vector"]),
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
#
# Each parser reads one serde type and refuses its value with a path relative to it;
# `_within` puts the field that held the value in front, so a refusal names the whole path
# from the schema (`keys.<key>.sparse_vector.sparse_vector_index.config.source_key`; over
# HTTP `collection_config` adds `schema.`). Fields are read in the order given, so the first
# error is the one serde reports; a missing required field is reported after the others.

_VALUE_TYPE_ALIASES = {f"#{name}": name for name in VALUE_TYPES}
_INDEX_ALIASES = {f"${name}": name for names in INDEXES_OF.values() for name in names}
_VECTOR_FIELDS = ("space", "embedding_function", "source_key", "hnsw", "spann")
_SPARSE_FIELDS = ("embedding_function", "source_key", "bm25", "algorithm")
_SPANN_INDEX_FIELDS = tuple(SPANN_INDEX_DEFAULTS)
SPARSE_ALGORITHMS = ("wand", "max_score")  # `SparseIndexAlgorithm`; wand is the default
_SCHEMA_FIELDS = ("defaults", "keys", "cmek", "source_attached_function_id")
_VALUE_TYPE_STRUCTS = {
    "string": "StringValueType",
    "float_list": "FloatListValueType",
    "sparse_vector": "SparseVectorValueType",
    "int": "IntValueType",
    "float": "FloatValueType",
    "bool": "BoolValueType",
}
_INDEX_STRUCTS = {  # index: (its serde type, its config's)
    "fts_index": ("FtsIndexType", "FtsIndexConfig"),
    "string_inverted_index": ("StringInvertedIndexType", "StringInvertedIndexConfig"),
    "vector_index": ("VectorIndexType", "VectorIndexConfig"),
    "sparse_vector_index": ("SparseVectorIndexType", "SparseVectorIndexConfig"),
    "int_inverted_index": ("IntInvertedIndexType", "IntInvertedIndexConfig"),
    "float_inverted_index": ("FloatInvertedIndexType", "FloatInvertedIndexConfig"),
    "bool_inverted_index": ("BoolInvertedIndexType", "BoolInvertedIndexConfig"),
}
_MISSING = object()


def _expected_value(path: tuple[str, ...]) -> InvalidArgumentError:
    """serde_json's syntax error for a value an enum cannot start with (not a string, nor
    an object of one variant): Chroma's 400 `Failed to parse the request body as JSON:
    schema.<path>: expected value`, not a 422 (`path` is kept for `_within`)."""
    shown = ".".join(("schema", *path))
    error = InvalidArgumentError(
        f"Failed to parse the request body as JSON: {shown}: expected value"
    )
    error.syntax_path = path  # type: ignore[attr-defined]
    return error


def _within(field: str, parse: Callable[[Any], Any], value: Any) -> Any:
    """`parse(value)`, its refusal's path starting with `field` (the field holding it)."""
    try:
        return parse(value)
    except InvalidArgumentError as exc:
        inner = getattr(exc, "syntax_path", None)
        if inner is not None:
            raise _expected_value((field, *inner)) from None
        raise shape_error_within(exc, field) from None


def _typed(field: str, value: Any, kind: type, expected: str) -> Any:
    """`value` of an optional field (a string or a bool) if it is null or of `kind`;
    serde's `invalid type` refusal naming `field` otherwise."""
    if value is None or isinstance(value, kind):
        return value
    raise shape_error(f"invalid type: {serde_unexpected(value)}, expected {expected}", (field,))


def _unit_variant(value: Any, variants: tuple[str, ...]) -> str:
    """An enum of unit variants as serde_json reads one: a variant's name, or an object of
    one variant whose value is null; anything else (null included) is the 400."""
    if isinstance(value, dict) and value:
        name, inner = next(iter(value.items()))
        _check_variant(name, variants)
        if inner is not None:
            raise shape_error(f"invalid type: {serde_unexpected(inner)}, expected unit", (name,))
        if len(value) > 1:
            raise _expected_value(())
        return name
    if not isinstance(value, str):
        raise _expected_value(())
    _check_variant(value, variants)
    return value


def _check_variant(name: str, variants: tuple[str, ...]) -> None:
    """serde's refusal of an enum variant it does not have (its wording for one, two or
    more variants)."""
    if name not in variants:
        named = [f"`{v}`" for v in variants]
        if len(named) == 1:
            expected = named[0]
        elif len(named) == 2:
            expected = f"{named[0]} or {named[1]}"
        else:
            expected = f"one of {', '.join(named)}"
        raise shape_error(f"unknown variant `{name}`, expected {expected}")


def _parse_cmek(value: Any) -> dict[str, Any]:
    """`Cmek`, an enum whose one variant `gcp` holds a string: `{"gcp": "<resource>"}`."""
    if isinstance(value, str):
        _check_variant(value, ("gcp",))
        raise shape_error("invalid type: unit variant, expected newtype variant", (value,))
    if not isinstance(value, dict) or not value:
        raise _expected_value(())
    name, resource = next(iter(value.items()))
    _check_variant(name, ("gcp",))
    if not isinstance(resource, str):
        raise shape_error(f"invalid type: {serde_unexpected(resource)}, expected a string", (name,))
    if len(value) > 1:
        raise _expected_value(())
    return {name: resource}


def _parse_index(name: str, value: Any) -> dict[str, Any]:
    """An index (`FtsIndexType`, ...): `enabled` and its `config`, both required."""
    type_struct, _ = _INDEX_STRUCTS[name]
    index = expect_object(value, f"struct {type_struct}")
    enabled: Any = _MISSING
    config: Any = _MISSING
    for field, item in index.items():  # serde ignores the fields an index type lacks
        if field == "enabled":
            if not isinstance(item, bool):
                raise shape_error(
                    f"invalid type: {serde_unexpected(item)}, expected a boolean", (field,)
                )
            enabled = item
        elif field == "config":
            config = _within(field, functools.partial(_parse_index_config, name), item)
    if enabled is _MISSING:
        raise shape_error("missing field `enabled`")
    if config is _MISSING:
        raise shape_error("missing field `config`")
    return {"enabled": enabled, "config": config}


def _parse_index_config(name: str, value: Any) -> dict[str, Any]:
    """An index's config: the vector and sparse ones' fields; the others have none (and
    refuse any, `deny_unknown_fields`)."""
    config = expect_object(value, f"struct {_INDEX_STRUCTS[name][1]}")
    if name == "vector_index":
        return _parse_vector_config(config)
    if name == "sparse_vector_index":
        return _parse_sparse_config(config)
    if config:
        raise unknown_field(next(iter(config)), ())
    return {}


def _parse_vector_config(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key not in _VECTOR_FIELDS:
            raise unknown_field(key, _VECTOR_FIELDS)
        if value is None:
            continue
        if key == "space":
            out[key] = _within(key, parse_space, value)
        elif key == "embedding_function":
            out[key] = _within(key, parse_embedding_function, value)
        elif key == "source_key":
            out[key] = _typed(key, value, str, "a string")
        elif key == "hnsw":
            out[key] = _within(key, _parse_hnsw_index, value)
        else:
            spann = _within(
                key, functools.partial(expect_object, what="struct SpannIndexConfig"), value
            )
            for field in spann:
                if field not in _SPANN_INDEX_FIELDS:
                    raise shape_error_within(unknown_field(field, _SPANN_INDEX_FIELDS), key)
            out[key] = {k: v for k, v in spann.items() if v is not None}
    return out


def _parse_hnsw_index(value: Any) -> dict[str, Any]:
    hnsw = expect_object(value, "struct HnswIndexConfig")
    parsed: dict[str, Any] = {}
    for field, item in hnsw.items():
        if field not in HNSW_INDEX_FIELDS:
            raise unknown_field(field, HNSW_INDEX_FIELDS)
        if item is not None:
            parse = parse_f64 if field == "resize_factor" else parse_usize
            parsed[field] = _within(field, parse, item)
    return parsed


def _parse_sparse_config(config: dict[str, Any]) -> dict[str, Any]:
    """`SparseVectorIndexConfig`: a function, a source key (string), `bm25` (bool), all
    optional, and `algorithm` (`wand` or `max_score`; wand, the default, is left out as
    Chroma serializes it)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key not in _SPARSE_FIELDS:
            raise unknown_field(key, _SPARSE_FIELDS)
        if key == "algorithm":  # not an Option: null is refused too
            algorithm = _within(
                key, functools.partial(_unit_variant, variants=SPARSE_ALGORITHMS), value
            )
            if algorithm != SPARSE_ALGORITHMS[0]:
                out[key] = algorithm
            continue
        if value is None:
            continue
        if key == "embedding_function":
            out[key] = _within(key, parse_embedding_function, value)
        elif key == "source_key":
            out[key] = _typed(key, value, str, "a string")
        else:
            out[key] = _typed(key, value, bool, "a boolean")
    return out


def _parse_value_types(value: Any) -> dict[str, Any]:
    """`ValueTypes`: the index types of each value type given (`#`-aliases accepted;
    unknown value types and indexes ignored, a type named twice refused)."""
    types = expect_object(value, "struct ValueTypes")
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for raw_type, indexes in types.items():
        value_type = _VALUE_TYPE_ALIASES.get(raw_type, raw_type)
        if value_type not in VALUE_TYPES:
            continue  # as Chroma's serde: unknown value types are ignored
        if value_type in seen:
            raise shape_error(f"duplicate field `{value_type}`")
        seen.add(value_type)
        if indexes is not None:
            out[value_type] = _within(
                raw_type, functools.partial(_parse_value_type, value_type), indexes
            )
    return out


def _parse_value_type(value_type: str, value: Any) -> dict[str, Any]:
    """One value type's indexes (`StringValueType`, ...)."""
    indexes = expect_object(value, f"struct {_VALUE_TYPE_STRUCTS[value_type]}")
    parsed: dict[str, Any] = {}
    seen: set[str] = set()
    for raw_name, index in indexes.items():
        name = _INDEX_ALIASES.get(raw_name, raw_name)
        if name not in INDEXES_OF[value_type]:
            continue
        if name in seen:
            raise shape_error(f"duplicate field `{name}`")
        seen.add(name)
        if index is not None:
            parsed[name] = _within(raw_name, functools.partial(_parse_index, name), index)
    return parsed


def _parse_keys(value: Any) -> dict[str, Any]:
    keys = expect_object(value, "a map")
    return {str(k): _within(str(k), _parse_value_types, v) for k, v in keys.items()}


def parse_schema(value: Any) -> dict[str, Any]:
    """A user's schema JSON, checked as Chroma's serde does, in canonical names.

    Its refusals are `shape_error`s (over HTTP Chroma's 422 naming the field's path), but
    for an enum given neither as a name nor as an object of one variant (`algorithm`,
    `cmek`): Chroma's 400 `... expected value` (`_expected_value`)."""
    schema = expect_object(value, "struct Schema")
    found: dict[str, Any] = {}
    for raw, item in schema.items():
        field = "keys" if raw == "key_overrides" else raw  # serde's alias
        if field not in _SCHEMA_FIELDS:
            continue  # `Schema` ignores fields it does not have
        if field in found:
            raise shape_error(f"duplicate field `{field}`")
        if field == "defaults":
            found[field] = _within(raw, _parse_value_types, item)
        elif field == "keys":
            found[field] = _within(raw, _parse_keys, item)
        elif field == "cmek":
            found[field] = None if item is None else _within(raw, _parse_cmek, item)
        else:
            found[field] = _typed(raw, item, str, "a string")
    for field in ("defaults", "keys"):
        if field not in found:
            raise shape_error(f"missing field `{field}`")
    out: dict[str, Any] = {"defaults": found["defaults"], "keys": found["keys"]}
    if found.get("cmek") is not None:
        out["cmek"] = found["cmek"]
    return out


# -- Schema::is_default and reconcile_with_defaults ------------------------------------


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
        if vector["enabled"] or not ef_is_default(config.get("embedding_function")):
            return False
        if config.get("space") not in (None, "l2") or config.get("source_key") is not None:
            return False
        if not _vector_algorithms_default(config):
            return False
    sparse = _get(types, "sparse_vector", "sparse_vector_index")
    if sparse is not None:
        config = sparse["config"]
        if sparse["enabled"] or not ef_is_default(config.get("embedding_function")):
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
        and ef_is_default(config.get("embedding_function"))
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


def reconcile_with_defaults(user: dict[str, Any] | None) -> dict[str, Any]:
    """`Schema::reconcile_with_defaults`: a user's schema merged over the default one."""
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


# -- what a schema echoes, and modify(configuration=...) ----------------------------------


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


def update_vector_indexes(
    schema: dict[str, Any], hnsw_changes: dict[str, Any], ef: dict[str, Any] | None
) -> dict[str, Any]:
    """`Schema::update`: a copy of `schema` whose vector indexes (the defaults' and
    #embedding's) take the changed HNSW values and, if given, the embedding function."""
    schema = copy.deepcopy(schema)
    for types in (schema["defaults"], schema["keys"].get(EMBEDDING_KEY) or {}):
        index = _get(types, "float_list", "vector_index")
        if index is None:
            continue
        if index["config"].get("hnsw") is not None:
            index["config"]["hnsw"].update(hnsw_changes)
        if ef is not None:
            index["config"]["embedding_function"] = ef
    return schema


# -- sparse vector indexes ----------------------------------------------------------------


def _enabled_sparse_keys(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(key, index config) of every key whose sparse-vector index is on, sorted by key."""
    found = []
    for key, types in sorted(schema["keys"].items()):
        index = _get(types, "sparse_vector", "sparse_vector_index")
        if index is not None and index.get("enabled"):
            found.append((key, index.get("config") or {}))
    return found


def check_sparse_indexes(schema: dict[str, Any]) -> None:
    """Chroma's (hosted) rules for sparse-vector indexes of a reconciled schema, with its
    400 `Validation error: schema: ...` messages: none on by default, at most one key, a
    source key only with an embedding function and only `#document` among the `#` keys."""
    bad = "Validation error: schema: "
    default = _get(schema["defaults"], "sparse_vector", "sparse_vector_index") or {}
    if default.get("enabled"):
        raise InvalidArgumentError(
            bad + "Sparse vector index cannot be enabled by default. Please enable sparse "
            "vector index on specific keys. At most one sparse vector index is allowed for "
            "the collection."
        )
    enabled = _enabled_sparse_keys(schema)
    if len(enabled) > 1:
        names = ", ".join(f'"{key}"' for key, _ in enabled)
        raise InvalidArgumentError(
            bad + f"At most one sparse vector index is allowed for the collection: [{names}]"
        )
    for _, config in enabled:  # a '#' key never gets here: `check_schema_rules` refuses it
        source = config.get("source_key")
        if source is None:
            continue
        if (config.get("embedding_function") or {}).get("type") in (None, "unknown"):
            raise InvalidArgumentError(
                bad + "If source_key is provided then embedding_function must also be "
                "provided since there is no default embedding function."
            )
        if source.startswith("#") and source != DOCUMENT_KEY:
            raise InvalidArgumentError(
                bad + "source_key cannot begin with '#'. The only valid key starting with '#' "
                "is Key.DOCUMENT or '#document'."
            )


_DOCUMENT_TYPES = ("string",)
_EMBEDDING_TYPES = ("float_list",)


def check_schema_rules(raw: dict[str, Any], schema: dict[str, Any]) -> None:
    """The rules Chroma's server checks a new collection's schema against (its
    `validate_schema`), in its order and with its 400 `Validation error: schema: ...`
    messages: `raw` is the schema JSON as sent, `schema` the same parsed (`parse_schema`).
    The sparse-vector rules are `check_sparse_indexes`'."""
    bad = "Validation error: schema: "
    if raw.get("source_attached_function_id") is not None:
        raise InvalidArgumentError(
            bad + "Cannot set source_attached_function_id. This field is reserved for system use."
        )
    vector = _get(schema["defaults"], "float_list", "vector_index") or {}
    if vector.get("enabled"):
        raise InvalidArgumentError(
            bad + "Vector index cannot be enabled by default. It can only be enabled on "
            "#embedding field."
        )
    config = vector.get("config") or {}
    if "hnsw" in config and "spann" in config:
        raise InvalidArgumentError(
            bad + "Both spann and hnsw config cannot be present at the same time."
        )
    if (_get(schema["defaults"], "sparse_vector", "sparse_vector_index") or {}).get("enabled"):
        check_sparse_indexes(schema)
    if (_get(schema["defaults"], "string", "fts_index") or {}).get("enabled"):
        raise InvalidArgumentError(
            bad + "Full text search / regular expression index cannot be enabled by default. "
            "It can only be enabled on #document field."
        )
    for key, types in schema["keys"].items():
        _check_key_rules(bad, key, types)
    cmek = schema.get("cmek")
    resource = cmek.get("gcp") if isinstance(cmek, dict) else None
    if isinstance(resource, str) and not Cmek.gcp(resource).validate_pattern():
        shown = json.dumps(resource, ensure_ascii=False)
        raise InvalidArgumentError(bad + f"CMEK does not match expected pattern: Gcp({shown})")


def _check_key_rules(bad: str, key: str, types: dict[str, Any]) -> None:
    """`check_schema_rules` for one key of `keys`."""
    if key.startswith("#") and key not in (DOCUMENT_KEY, EMBEDDING_KEY):
        raise InvalidArgumentError(
            bad + "key cannot begin with '#'. Keys starting with '#' are reserved for system "
            f"use: {key}"
        )
    if key == DOCUMENT_KEY and any(t not in _DOCUMENT_TYPES for t in types):
        raise InvalidArgumentError(
            bad + f"Document field cannot have any value types other than string: {key}"
        )
    if key == EMBEDDING_KEY and any(t not in _EMBEDDING_TYPES for t in types):
        raise InvalidArgumentError(
            bad + f"Embedding field cannot have any value types other than float_list: {key}"
        )
    vector = (types.get("float_list") or {}).get("vector_index")
    if vector is not None:
        if vector.get("enabled") and key != EMBEDDING_KEY:
            raise InvalidArgumentError(
                bad + f"Vector index can only be enabled on #embedding field: {key}"
            )
        if (vector.get("config") or {}).get("source_key", DOCUMENT_KEY) != DOCUMENT_KEY:
            raise InvalidArgumentError(bad + "Vector index can only source from #document")
    strings = types.get("string") or {}
    if (strings.get("fts_index") or {}).get("enabled") and key != DOCUMENT_KEY:
        raise InvalidArgumentError(
            bad + "Full text search / regular expression index can only be enabled on "
            f"#document field: {key}"
        )
    if (strings.get("string_inverted_index") or {}).get("enabled") and key == DOCUMENT_KEY:
        raise InvalidArgumentError(
            bad + f"String inverted index can not be enabled on #document key: {key}"
        )


def sparse_embedding_targets(schema: dict[str, Any] | None) -> list[tuple[str, str, dict]]:
    """(key, source key, embedding function JSON) of each enabled sparse-vector index that
    names both, as the client embeds them on add/update/upsert."""
    if not schema or not isinstance(schema.get("keys"), dict):
        return []
    targets = []
    for key, config in _enabled_sparse_keys(schema):
        ef, source = config.get("embedding_function") or {}, config.get("source_key")
        if source is not None and ef.get("type") == "known":
            targets.append((key, source, ef))
    return targets


def rebuilt_sparse_function(ef: dict[str, Any]) -> Any:
    """The sparse embedding function a schema names, rebuilt by its registered class
    (`register_sparse_embedding_function` of huedb, else chromadb's registry when the program
    loaded chromadb: `sparse_known_embedding_functions`). None, with chromadb's warning,
    when no class has that name or its `build_from_config` fails: chromadb's client then
    embeds nothing with it (the records are stored without that key)."""
    name = ef.get("name")
    try:
        cls = sparse_known_embedding_functions[name]  # KeyError: chromadb's message shows it
        return _built_sparse_function(cls, json.dumps(ef.get("config") or {}, sort_keys=True))
    except Exception as exc:  # chromadb sets any function it cannot rebuild to None
        warnings.warn(
            f"Could not reconstruct sparse embedding function {name}: {exc}. Setting to None.",
            UserWarning,
            stacklevel=5,
        )
        return None


@functools.lru_cache(maxsize=32)
def _built_sparse_function(cls: type, config_json: str) -> Any:
    """`cls` built from that configuration (once: built functions are reused)."""
    return cls.build_from_config(json.loads(config_json))


def _sparse_vectors(output: Any) -> list[SparseVector]:
    """A sparse function's output, checked (`validate_sparse_vectors`); a vector of another
    class with `indices` and `values` (chromadb's `SparseVector`, from a function written for
    chromadb and registered there) is taken as huedb's, checked as it is built."""
    if isinstance(output, list):
        output = [
            SparseVector(
                list(v.indices),
                list(v.values),
                None if getattr(v, "labels", None) is None else list(v.labels),
            )
            if not isinstance(v, SparseVector) and hasattr(v, "indices") and hasattr(v, "values")
            else v
            for v in output
        ]
    return validate_sparse_vectors(output)


def sparse_embedded_metadatas(
    schema: dict[str, Any] | None, metadatas: list[Any] | None, documents: list[Any] | None
) -> list[Any] | None:
    """Record metadatas with each schema sparse target filled as chromadb's client does:
    for a record without the target key, the function's vector of its source (the document
    for `#document`, else a str metadata value); others unchanged (copies, never the
    caller's dicts)."""
    targets = sparse_embedding_targets(schema)
    if not targets or (metadatas is None and documents is None):
        return metadatas
    count = len(metadatas if metadatas is not None else documents)  # type: ignore[arg-type]
    out = [dict(m) if m else {} for m in (metadatas or [None] * count)]
    for key, source, ef in targets:
        function = rebuilt_sparse_function(ef)
        if function is None:
            continue
        if source == DOCUMENT_KEY:
            sources = documents or [None] * count
        else:
            sources = [m.get(source) for m in out]
        positions = [i for i, m in enumerate(out) if key not in m and isinstance(sources[i], str)]
        if not positions:
            continue
        vectors = _sparse_vectors(function([sources[i] for i in positions]))
        if len(vectors) != len(positions):
            raise ValueError("Sparse embedding function returned unexpected number of embeddings.")
        for i, vector in zip(positions, vectors, strict=True):
            out[i][key] = vector
    return [m or None for m in out]
