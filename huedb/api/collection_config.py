"""Collection configuration, decided by Chroma 1.5's rules.

A collection is created from three inputs: Chroma's `configuration` (`hnsw`, `spann`,
`embedding_function`), the legacy `hnsw:*` keys of its metadata, and a `schema` (Chroma's
`Schema`, in `collection_schema`). Chroma's Rust core reconciles them (`rust/types`,
`collection_configuration.rs` and `collection_schema.rs` of chromadb 1.5.9); this module
follows the same steps, so every combination gives the same space, the same errors and the
same echoed configuration and schema (docs/chroma-schema.md lists the rules; the
differential tests in tests/test_space_precedence.py and tests/test_schema.py check them).

Two halves, as in chromadb:
- `client_request`: what chromadb's Python client sends for `create_collection(...)` (the
  embedding function's identity and default space folded into the configuration JSON),
  and `client_update_request` for `modify(configuration=...)`; used by huedb's `Client`
  and `Collection`, whatever server they speak to.
- `create_configuration`: what the server stores, from the configuration JSON, the metadata
  and the schema JSON (`LocalAPI.create_collection`, so embedded and HTTP alike);
  `apply_update` for `modify(configuration=...)` (docs/chroma-schema.md, section 5).

The stored configuration is the echoed one plus the reconciled schema under `schema`
(`STORED_SCHEMA_KEY`), so no change of the on-disk format is needed; `split_stored` reads it
back (collections stored before schemas were kept get the schema Chroma derives from their
configuration, plus the keys their writes added). When the user chose `ef_search` (at
create or modify), the stored configuration also records it (`EF_SEARCH_CHOSEN_KEY`, never
echoed), so the planner leaves a chosen 100 alone (`hnsw_config.ef_search_set`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from huedb.api.collection_schema import (
    EMBEDDING_KEY,
    HNSW_ECHOED,
    HNSW_INDEX_FIELDS,
    check_schema_rules,
    check_sparse_indexes,
    configuration_from_schema,
    default_schema,
    parse_schema,
    reconcile_with_defaults,
    schema_from_configuration,
    schema_is_default,
    update_vector_indexes,
    vector_index_config,
)
from huedb.api.config_values import (
    USIZE_MAX,
    ef_is_default,
    expect_object,
    parse_embedding_function,
    parse_f64,
    parse_space,
    parse_usize,
    unknown_field,
)
from huedb.engine.hnsw_config import EF_SEARCH_CHOSEN_KEY, hnsw_defaults
from huedb.engine.schema_keys import STORED_SCHEMA_KEY
from huedb.errors import InvalidArgumentError, serde_unexpected, shape_error, shape_error_within

__all__ = [
    "DEFAULT_EF_IDENTITY",
    "HNSW_ACCEPTED",
    "HNSW_DEFAULTS",
    "HNSW_FIELDS",
    "HNSW_MUTABLE",
    "LEGACY_KEYS",
    "SPANN_FIELDS",
    "HNSW_UPDATE_FIELDS",
    "SPANN_UPDATE_FIELDS",
    "apply_update",
    "check_embedding_function_conflict",
    "client_request",
    "client_update_request",
    "create_configuration",
    "embedding_function_identity",
    "parse_update",
    "schema_embedding_function",
    "schema_request",
    "split_stored",
]

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
# The HNSW settings a modify changes in effect (Chroma's update also takes max_neighbors,
# which no built graph changes: `apply_update`).
HNSW_MUTABLE = ("ef_search", "num_threads", "batch_size", "sync_threshold", "resize_factor")
# Accepted by huedb's readers of Chroma stores (ops/chroma_dir).
HNSW_ACCEPTED = HNSW_FIELDS

# The HNSW settings a stored configuration echoes, at their defaults.
HNSW_DEFAULTS: dict[str, Any] = {k: v for k, v in hnsw_defaults().items() if k in HNSW_ECHOED}


# -- Chroma's HnswConfiguration and SpannConfiguration ----------------------------------


def _field(key: str, parse: Callable[[Any], Any], value: Any) -> Any:
    """`parse(value)`, a refusal of its shape naming `key` as the field that held it."""
    try:
        return parse(value)
    except InvalidArgumentError as exc:
        raise shape_error_within(exc, key) from None


Parsers = dict[str, Callable[[Any], Any]]


def _parse_struct(value: Any, struct: str, parsers: Parsers) -> dict[str, Any]:
    """A serde struct whose fields are all optional: each field given (not null) parsed by
    its parser, unknown fields refused naming the struct's fields in `parsers`' order."""
    given = expect_object(value, f"struct {struct}")
    out: dict[str, Any] = {}
    for key, item in given.items():
        if key not in parsers:
            raise unknown_field(key, tuple(parsers))
        if item is not None:
            out[key] = _field(key, parsers[key], item)
    return out


def _parsers(fields: tuple[str, ...], **special: Callable[[Any], Any]) -> Parsers:
    """Each of `fields` parsed as a usize unless `special` names its parser."""
    return {name: special.get(name, parse_usize) for name in fields}


_HNSW_PARSERS = _parsers(HNSW_FIELDS, space=parse_space, resize_factor=parse_f64)
_SPANN_PARSERS = _parsers(SPANN_FIELDS, space=parse_space)


def _parse_hnsw(value: Any) -> dict[str, Any]:
    """Chroma's `HnswConfiguration` (all fields optional, unknown fields refused)."""
    return _parse_struct(value, "HnswConfiguration", _HNSW_PARSERS)


def _parse_spann(value: Any) -> dict[str, Any]:
    """Chroma's `SpannConfiguration` (all fields optional, unknown fields refused)."""
    return _parse_struct(value, "SpannConfiguration", _SPANN_PARSERS)


# -- the client half: what chromadb's client sends --------------------------------------


def embedding_function_identity(ef: Any) -> dict[str, Any] | None:
    """How chromadb's client records an embedding function: known (name + config) or legacy."""
    if ef is None:
        return None
    if isinstance(ef, dict):
        return parse_embedding_function(ef)
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
        _warn_unsupported_spaces(ef, identity["name"], hnsw, spann, metadata)
    return {**out, "hnsw": hnsw, "spann": spann, "embedding_function": identity}


def _warn_unsupported_spaces(
    ef: Any, name: str, hnsw: Any, spann: Any, metadata: dict[str, Any] | None
) -> None:
    """chromadb's UserWarning for each space the collection is given that the function's
    `supported_spaces()` does not list (the legacy `hnsw:space` only when no configuration
    block gives one); a function without the method is not checked."""
    method = getattr(ef, "supported_spaces", None)
    if not callable(method):
        return
    supported = method()
    given = [block.get("space") for block in (hnsw, spann) if isinstance(block, dict)]
    if hnsw is None and spann is None and (metadata or {}).get("hnsw:space") is not None:
        given = [metadata["hnsw:space"]]  # type: ignore[index]
    for space in given:
        if space not in supported:
            warnings.warn(
                f"space {space} is not supported by {name}. Supported spaces: {supported}",
                UserWarning,
                stacklevel=4,
            )


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


def _update_identity(ef: Any) -> dict[str, Any] | None:
    """An embedding function of a configuration update as chromadb's client sends it
    (`update_collection_configuration_to_json`): its identity, checked by its own
    `validate_config` first when it is a known one."""
    identity = embedding_function_identity(ef)
    validate = getattr(ef, "validate_config", None)
    if identity is not None and identity.get("type") == "known" and callable(validate):
        validate(identity["config"])
    return identity


def _check_function_update(recorded: Any, ef: Any, identity: dict[str, Any] | None) -> None:
    """chromadb's `overwrite_embedding_function`: a known function replaces a known one of
    the same name only, and the new one's `validate_config_update` may refuse the change."""
    if not isinstance(recorded, dict) or recorded.get("type") != "known":
        return
    if identity is None or identity.get("type") != "known":
        return
    if recorded.get("name") != identity.get("name"):
        raise ValueError(
            "Cannot update embedding function: incompatible types "
            f"({recorded.get('name')} vs {identity.get('name')})"
        )
    validate_update = getattr(ef, "validate_config_update", None)
    if callable(validate_update):
        validate_update(recorded.get("config") or {}, identity["config"])


def _check_vector_index_update(parsed: dict[str, Any], schema: dict[str, Any] | None) -> None:
    """chromadb's `update_schema_from_collection_configuration`: an `hnsw` update needs an
    HNSW index, a `spann` update a SPANN one (ValueError)."""
    if schema is None:
        return
    index = vector_index_config(schema)
    if parsed["hnsw"] is not None and index.get("hnsw") is None:
        raise ValueError("Trying to update HNSW config but schema has SPANN")
    if parsed["spann"] is not None and index.get("spann") is None:
        raise ValueError("Trying to update SPANN config but schema has HNSW")


def client_update_request(
    configuration: Any, recorded: dict[str, Any], schema: dict[str, Any] | None
) -> Any:
    """The configuration JSON chromadb's client sends for `modify(configuration=...)`, or
    None when there is nothing to send.

    An embedding function object is sent as its identity (`validate_config` run first).
    Then the refusals in chromadb's order: the server's (`parse_update`), then those
    chromadb's collection makes once its server has accepted the update: a known function
    replaced by one of another name, or refused by `validate_config_update`; an `hnsw`
    update of a SPANN index or a `spann` one of an HNSW index (ValueErrors). huedb makes
    them before sending, so a refused update changes nothing. `recorded` is the
    collection's echoed configuration, `schema` its schema JSON (None if not reported).
    """
    if not configuration:
        return None
    if not isinstance(configuration, dict):
        return configuration  # the server refuses it, with serde's message
    request = dict(configuration)
    ef = configuration.get("embedding_function")
    identity = _update_identity(ef)
    if ef is not None:
        request["embedding_function"] = identity
    parsed = parse_update(request)
    _check_function_update(recorded.get("embedding_function"), ef, identity)
    _check_vector_index_update(parsed, schema)
    return request


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
                hnsw[field] = parse_space(value)
            elif field == "resize_factor":
                hnsw[field] = parse_f64(value)
            else:
                hnsw[field] = parse_usize(value)
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
    config = expect_object(configuration, "struct CollectionConfiguration") if configuration else {}
    hnsw_given = None if config.get("hnsw") is None else _field("hnsw", _parse_hnsw, config["hnsw"])
    spann = config.get("spann")
    spann_given = None if spann is None else _field("spann", _parse_spann, spann)
    ef = _field("embedding_function", parse_embedding_function, config.get("embedding_function"))
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
    return ef_is_default(ef) and hnsw == hnsw_defaults()


def create_configuration(
    configuration: Any, metadata: dict[str, Any] | None, schema: Any = None
) -> dict[str, Any]:
    """What a server stores for a new collection, decided as Chroma's local server does.

    `configuration` is the configuration JSON a client sent (None if none), `schema` the
    schema JSON (None if none). The result is the echoed configuration (`hnsw`, `spann`,
    `embedding_function`) plus the reconciled schema under `STORED_SCHEMA_KEY`.
    """
    hnsw, ef = _field(
        "configuration", lambda c: _internal_configuration(c, metadata), configuration
    )
    user_schema = None if schema is None else _field("schema", parse_schema, schema)
    if user_schema is not None:
        check_schema_rules(schema, user_schema)
    config_default = _configuration_is_default(hnsw, ef)
    if user_schema is not None and not schema_is_default(user_schema) and not config_default:
        raise InvalidArgumentError(
            "Failed to reconcile schema: Cannot set both collection config and schema "
            "simultaneously"
        )
    reconciled = reconcile_with_defaults(user_schema)
    if not config_default:
        reconciled = default_schema(hnsw, ef)
    elif schema_is_default(reconciled):
        reconciled = default_schema(None, ef)
    check_sparse_indexes(reconciled)
    stored = configuration_from_schema(reconciled)
    _check_engine_limits({**hnsw_defaults(), **stored["hnsw"]})
    if stored["hnsw"]["ef_search"] in _given_ef_search(configuration, metadata, user_schema):
        stored[EF_SEARCH_CHOSEN_KEY] = True
    return {**stored, STORED_SCHEMA_KEY: reconciled}


def _given_ef_search(
    configuration: Any, metadata: dict[str, Any] | None, user_schema: dict[str, Any] | None
) -> list[int]:
    """The `ef_search` values a create request gives (checked already): the configuration's
    `hnsw`, the legacy `hnsw:search_ef` key, the schema's vector indexes. The collection's
    `ef_search` is the user's choice when it is one of them (whichever input Chroma's rules
    let decide). An `hnsw` block giving every setting is a copy of a stored definition (an
    import, `configuration=other.configuration`), which tells no choice: left out. With a
    `spann` configuration the HNSW settings are the defaults, chosen by no one.
    """
    config = configuration or {}
    if config.get("spann") is not None:
        return []
    given = []
    hnsw = config.get("hnsw")
    if hnsw is not None:
        block = _parse_hnsw(hnsw)
        if "ef_search" in block and not all(k in block for k in HNSW_ECHOED):
            given.append(block["ef_search"])
    legacy = (metadata or {}).get("hnsw:search_ef")
    if legacy is not None:
        given.append(parse_usize(legacy))
    for types in _vector_index_holders(user_schema):
        index = (types.get("float_list") or {}).get("vector_index") or {}
        block = (index.get("config") or {}).get("hnsw") or {}
        if "ef_search" in block and not all(k in block for k in HNSW_INDEX_FIELDS):
            given.append(block["ef_search"])
    return given


def _vector_index_holders(schema: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The value types of a parsed user schema that may hold the vector index: the
    defaults' and #embedding's."""
    if schema is None:
        return []
    return [schema["defaults"], schema["keys"].get(EMBEDDING_KEY) or {}]


def split_stored(stored: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored configuration as (echoed configuration, schema); huedb's own records
    (`EF_SEARCH_CHOSEN_KEY`) are left out of both.

    A collection stored before schemas were kept has none, or only the keys its written
    metadata added (`engine/schema_keys.py`): it gets the schema Chroma derives from its
    configuration, with those keys.
    """
    config = dict(stored or {})
    schema = config.pop(STORED_SCHEMA_KEY, None)
    config.pop(EF_SEARCH_CHOSEN_KEY, None)
    if not isinstance(schema, dict) or "defaults" not in schema:
        derived = schema_from_configuration(config)
        written = schema.get("keys") if isinstance(schema, dict) else None
        for key, types in (written or {}).items():
            derived["keys"].setdefault(key, {}).update(types)
        schema = derived
    requested = _schema_max_neighbors(schema)
    hnsw = config.get("hnsw")
    if isinstance(hnsw, dict) and requested is not None and hnsw.get("max_neighbors") != requested:
        # a max_neighbors given to modify: recorded in the schema only (`apply_update`)
        config["hnsw"] = {**hnsw, "max_neighbors": requested}
    return config, schema


def _schema_max_neighbors(schema: dict[str, Any]) -> Any:
    """The `max_neighbors` of a stored schema's vector index (None if it has none)."""
    try:
        return (vector_index_config(schema).get("hnsw") or {}).get("max_neighbors")
    except InvalidArgumentError:
        return None


# -- modify(configuration=...) --------------------------------------------------------

# Chroma's `UpdateHnswConfiguration` and `UpdateSpannConfiguration` fields, in serde's order.
HNSW_UPDATE_FIELDS = (
    "ef_search",
    "max_neighbors",
    "num_threads",
    "resize_factor",
    "sync_threshold",
    "batch_size",
)
SPANN_UPDATE_FIELDS = ("search_nprobe", "ef_search")
U32_MAX = 2**32 - 1


def _parse_u32(value: Any) -> int:
    """A u32 as serde_json reads one (Chroma's `search_nprobe`)."""
    if isinstance(value, int) and not isinstance(value, bool) and value <= USIZE_MAX:
        if 0 <= value <= U32_MAX:
            return value
        raise shape_error(f"invalid value: integer `{value}`, expected u32")
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # beyond u64: serde_json reads a floating point number
    raise shape_error(f"invalid type: {serde_unexpected(value)}, expected u32")


_HNSW_UPDATE_PARSERS = _parsers(HNSW_UPDATE_FIELDS, resize_factor=parse_f64)
_SPANN_UPDATE_PARSERS = _parsers(SPANN_UPDATE_FIELDS, search_nprobe=_parse_u32)


def _parse_hnsw_update(value: Any) -> dict[str, Any]:
    """Chroma's `UpdateHnswConfiguration` (all fields optional, unknown fields refused)."""
    return _parse_struct(value, "UpdateHnswConfiguration", _HNSW_UPDATE_PARSERS)


def _parse_spann_update(value: Any) -> dict[str, Any]:
    """Chroma's `UpdateSpannConfiguration` (all fields optional, unknown fields refused)."""
    return _parse_struct(value, "UpdateSpannConfiguration", _SPANN_UPDATE_PARSERS)


def parse_update(update: Any) -> dict[str, Any]:
    """Chroma's `UpdateCollectionConfiguration` as its server reads one: `hnsw`, `spann`
    and `embedding_function` parsed in the order given (serde's messages; other keys are
    ignored), then `InvalidArgumentError("Multiple vector index configurations provided")`
    when both `hnsw` and `spann` are given."""
    return _field("new_configuration", _parse_update, update)


def _parse_update(update: Any) -> dict[str, Any]:
    given = expect_object(update, "struct UpdateCollectionConfiguration")
    parsers = {
        "hnsw": _parse_hnsw_update,
        "spann": _parse_spann_update,
        "embedding_function": parse_embedding_function,
    }
    parsed: dict[str, Any] = dict.fromkeys(parsers)
    for key, value in given.items():
        if key in parsers and value is not None:
            parsed[key] = _field(key, parsers[key], value)
    if parsed["hnsw"] is not None and parsed["spann"] is not None:
        raise InvalidArgumentError("Multiple vector index configurations provided")
    return parsed


def _check_update_limits(changes: dict[str, Any]) -> None:
    """Values Chroma stores on modify but huedb's graph cannot use, refused as at create."""
    for key in ("max_neighbors", "ef_search"):
        if changes.get(key, 1) < 1:
            raise InvalidArgumentError(f"Invalid HNSW parameter {key}: expected a positive int")
    resize = changes.get("resize_factor", 1.0)
    if not math.isfinite(resize) or resize <= 0:
        raise InvalidArgumentError(f"Invalid HNSW parameter resize_factor: {resize!r}")


def apply_update(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """A stored configuration after `modify(configuration=...)`, as Chroma's local server
    applies one: the HNSW fields given change in the configuration and in both vector
    indexes of the schema, a `spann` update is checked and ignored (a local collection is
    HNSW), a given embedding function replaces the recorded one.

    `max_neighbors` is recorded in the schema only (both echoes show it, as Chroma's): the
    stored `hnsw` block keeps the value the collection's graph is built with, as Chroma's
    persisted index keeps its own. A given `ef_search` is recorded as the user's choice
    (`EF_SEARCH_CHOSEN_KEY`), and a choice recorded before is kept.
    """
    parsed = parse_update(update)
    changes = parsed["hnsw"] or {}
    _check_update_limits(changes)
    ef = parsed["embedding_function"]
    config, schema = split_stored(current)
    graph_hnsw = dict((current or {}).get("hnsw") or HNSW_DEFAULTS)
    graph_hnsw.update({k: v for k, v in changes.items() if k in HNSW_ECHOED and k in HNSW_MUTABLE})
    result = {**config, "hnsw": graph_hnsw}
    if ef is not None:
        result["embedding_function"] = ef
    if "ef_search" in changes or (current or {}).get(EF_SEARCH_CHOSEN_KEY) is True:
        result[EF_SEARCH_CHOSEN_KEY] = True
    return {**result, STORED_SCHEMA_KEY: update_vector_indexes(schema, changes, ef)}
