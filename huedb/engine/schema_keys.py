"""Keys of written metadata, added to the collection's stored schema as Chroma does.

Chroma 1.5 adds each (key, value type) of the metadata a write stores to the collection's
schema, with a copy of the schema's defaults for that type (`ensure_key_from_metadata`), and
`get_collection` echoes them; keys of deleted records stay (docs/chroma-schema.md, section 4).
The schema is kept in the collection row's configuration JSON under `STORED_SCHEMA_KEY`.

Every store records the pairs of a write inside the write transaction that stores the records
(`StoreSession.record_key_types`, writers of a collection serialised), so the read-modify-write
of the row cannot lose another process's keys; this module holds what they share: the pairs
of a batch (`key_types`) and their merge into the schema (`add_pairs`).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable
from itertools import chain
from typing import Any

STORED_SCHEMA_KEY = "schema"
# Keys Chroma reserves for itself (`chroma:document`, ...) are never added.
RESERVED_PREFIX = "chroma:"

# Chroma's default indexes of the metadata value types (`Schema::new_default`): used for a
# collection stored before schemas were kept, whose schema has no `defaults` yet.
METADATA_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "string": {
        "fts_index": {"enabled": False, "config": {}},
        "string_inverted_index": {"enabled": True, "config": {}},
    },
    "int": {"int_inverted_index": {"enabled": True, "config": {}}},
    "float": {"float_inverted_index": {"enabled": True, "config": {}}},
    "bool": {"bool_inverted_index": {"enabled": True, "config": {}}},
    "sparse_vector": {
        "sparse_vector_index": {
            "enabled": False,
            "config": {"embedding_function": {"type": "unknown"}, "bm25": False},
        }
    },
}

# A stored sparse vector is a dict (`record_values.stored_sparse`): Chroma's `sparse_vector`.
_TYPE_NAMES: dict[type, str] = {
    str: "string",
    bool: "bool",
    int: "int",
    float: "float",
    dict: "sparse_vector",
}


def key_types(metadatas: Iterable[dict[str, Any] | None]) -> list[tuple[str, str]]:
    """The distinct (key, value type) pairs of stored metadata, sorted.

    `metadatas` are as stored (None values and NaN already dropped); an array counts as
    its elements' type; keys with Chroma's reserved `chroma:` prefix are left out. (Run on
    every write: the pairs are collected by C-level iteration, ~0.5 us per value.)
    """
    present = [m for m in metadatas if m]
    names = chain.from_iterable(present)
    classes = map(type, chain.from_iterable(map(dict.values, present)))
    pairs: set[tuple[str, str]] = set()
    for name, cls in set(zip(names, classes, strict=True)):
        if name.startswith(RESERVED_PREFIX):
            continue
        if cls is list:
            pairs.update(_array_key_types(present, name))
            continue
        type_name = _type_name_of_class(cls)
        if type_name is not None:
            pairs.add((name, type_name))
    return sorted(pairs)


def _type_name_of_class(cls: type) -> str | None:
    name = _TYPE_NAMES.get(cls)
    if name is not None:
        return name
    if issubclass(cls, bool):
        return "bool"
    if issubclass(cls, numbers.Integral):
        return "int"
    if issubclass(cls, numbers.Real):
        return "float"
    return "string" if issubclass(cls, str) else None


def _array_key_types(metadatas: list[dict[str, Any]], name: str) -> set[tuple[str, str]]:
    """(name, element type) of every non-empty array stored under `name`."""
    classes = {type(m[name][0]) for m in metadatas if isinstance(m.get(name), list) and m[name]}
    return {(name, t) for t in map(_type_name_of_class, classes) if t is not None}


def add_pairs(configuration: dict[str, Any], pairs: list[tuple[str, str]]) -> bool:
    """Add the missing pairs to the configuration's schema; True if anything changed."""
    schema = configuration.get(STORED_SCHEMA_KEY)
    if not isinstance(schema, dict):
        schema = configuration[STORED_SCHEMA_KEY] = {"keys": {}}
    keys = schema.setdefault("keys", {})
    defaults = schema.get("defaults") or METADATA_TYPE_DEFAULTS
    changed = False
    for name, type_name in pairs:
        types = keys.setdefault(name, {})
        if type_name not in types:
            default = defaults.get(type_name) or METADATA_TYPE_DEFAULTS[type_name]
            types[type_name] = copy.deepcopy(default)
            changed = True
    return changed
