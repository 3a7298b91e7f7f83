"""Keys of written metadata, added to the collection's stored schema as Chroma does.

Chroma 1.5 adds each (key, value type) of the metadata a write stores to the collection's
schema, with a copy of the schema's defaults for that type (`ensure_key_from_metadata`), and
`get_collection` echoes them; keys of deleted records stay (docs/chroma-schema.md, section 4).
The schema is kept in the collection row's configuration JSON under `STORED_SCHEMA_KEY`.

`record_key_types` runs inside the write transaction that stores the records (writers are
serialised), so the read-modify-write of the row cannot lose another process's keys. The pairs
known to be stored are remembered per connection in a TEMP table: a batch whose pairs are all
known costs one small query instead of reading and rewriting the row. The TEMP table changes
in the same transaction as the row, so a rolled-back write forgets its pairs in both; as the
stored set only grows, every pair it holds is stored.
"""

from __future__ import annotations

import copy
import json
import numbers
import sqlite3
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
}

_TYPE_NAMES: dict[type, str] = {str: "string", bool: "bool", int: "int", float: "float"}
_KNOWN_TABLE = "temp.huedb_schema_keys"


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


def record_key_types(conn: sqlite3.Connection, cid: int, pairs: list[tuple[str, str]]) -> None:
    """Add the (key, type) pairs missing from collection `cid`'s stored schema.

    Runs inside the caller's write transaction. Each new pair gets a copy of the schema's
    defaults for its type; pairs already there (with their own settings) are left alone.
    """
    if not pairs:
        return
    unknown = _unknown_pairs(conn, cid, pairs)
    if not unknown:
        return
    row = conn.execute("SELECT configuration FROM collections WHERE cid = ?", (cid,)).fetchone()
    if row is None:
        return
    configuration = json.loads(row[0])
    if _add_pairs(configuration, unknown):
        conn.execute(
            "UPDATE collections SET configuration = ? WHERE cid = ?",
            (json.dumps(configuration), cid),
        )
    conn.executemany(
        f"INSERT OR IGNORE INTO {_KNOWN_TABLE} (cid, name, type) VALUES (?, ?, ?)",
        [(cid, name, type_name) for name, type_name in unknown],
    )


def _unknown_pairs(
    conn: sqlite3.Connection, cid: int, pairs: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The pairs this connection does not know to be stored (all of them on first use)."""
    sql = (
        "SELECT json_extract(p.value, '$[0]'), json_extract(p.value, '$[1]') "
        f"FROM json_each(?) p WHERE NOT EXISTS (SELECT 1 FROM {_KNOWN_TABLE} k "
        "WHERE k.cid = ? AND k.name = json_extract(p.value, '$[0]') "
        "AND k.type = json_extract(p.value, '$[1]')) ORDER BY p.key"
    )
    param = json.dumps(pairs, ensure_ascii=False)
    try:
        return [(r[0], r[1]) for r in conn.execute(sql, (param, cid))]
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
    # Created inside the write transaction: if that rolls back, the table goes with it
    # and the next write creates it again.
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {_KNOWN_TABLE} "
        "(cid INTEGER, name TEXT, type TEXT, PRIMARY KEY (cid, name, type)) WITHOUT ROWID"
    )
    return list(pairs)


def _add_pairs(configuration: dict[str, Any], pairs: list[tuple[str, str]]) -> bool:
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
