"""Recreating a collection's definition (configuration and schema) through the client API.

Importers (Chroma directories, Parquet files) know what the source echoed: the configuration
and the reconciled schema. The client API only takes Chroma's creation inputs (configuration,
legacy `hnsw:*` metadata keys, a user schema), reconciled by Chroma's rules
(`huedb.api.collection_config`), so `create_like` picks inputs that reconcile back to the
source's definition, then applies the mutable HNSW settings a later `modify` changed.
`differences` names what still differs, for the importer to warn about (never silently).

Whether the user chose `ef_search` (huedb's record, never echoed: `hnsw_config.ef_search_set`)
is read by `ef_search_chosen`; `create_like` records a choice the source had, and
`ef_search_difference` tells when the copy's record still differs.
"""

from __future__ import annotations

from typing import Any

from huedb.api import collection_config as rules
from huedb.api.client import Client
from huedb.api.collection import Collection
from huedb.api.collection_schema import (
    configuration_from_schema,
    parse_schema,
    schema_is_default,
    vector_index_config,
)
from huedb.engine.engine import Engine
from huedb.engine.hnsw_config import ef_search_set, hnsw_defaults
from huedb.errors import ChromaError

# Settings fixed when a collection is created (`modify` changes the others).
IMMUTABLE = ("space", "ef_construction", "max_neighbors")


def create_like(
    client: Client,
    name: str,
    metadata: dict[str, Any] | None,
    schema: dict[str, Any],
    chosen_ef_search: bool | None = None,
) -> Collection:
    """Create collection `name` whose configuration and schema reconcile to `schema`.

    `chosen_ef_search`: whether the source's user chose its `ef_search` (None: unknown);
    a choice is recorded on the copy. Raises the client's errors for a schema huedb
    refuses (e.g. a sparse-vector index). Once the records are written, `differences`
    tells what was not reproduced.
    """
    wanted = parse_schema(schema)
    vector = vector_index_config(wanted)
    config_arg, schema_arg = _creation_inputs(wanted, vector, metadata)
    collection = client.create_collection(
        name,
        schema=schema_arg,
        configuration=config_arg,
        metadata=metadata,
        embedding_function=None,
    )
    apply_mutable_settings(collection, vector, chosen_ef_search is True)
    return collection


def ef_search_chosen(collection: Collection) -> bool | None:
    """Whether the user chose the collection's `ef_search`: read from the stored
    configuration for a store this process opened, else from a huedb server's indexing
    status (`ef_search_source`; the server loads the collection's index for it, as for a
    query). None when unknown: a Chroma server reports no source and records no choice."""
    engine = getattr(collection._client, "engine", None)
    if isinstance(engine, Engine):
        return ef_search_set(engine.get_collection_by_uuid(str(collection.id)).configuration)
    try:
        source = collection.get_indexing_status().ef_search_source
    except ChromaError:  # `chroma run` answers that it is not implemented
        return None
    return None if source is None else source == "configuration"


def ef_search_difference(collection: Collection, chosen: bool | None) -> list[str]:
    """A warning when whether the user chose the collection's `ef_search` differs from the
    source's `chosen` (None: unknown, nothing to compare); empty otherwise."""
    have = ef_search_chosen(collection)
    if chosen is None or have is None or have == chosen:
        return []
    if not have:
        return [
            f"collection {collection.name!r}: ef_search is left to the planner, while the "
            "source's user chose it"
        ]
    return [
        f"collection {collection.name!r}: ef_search is recorded as the user's choice (the "
        "legacy hnsw:search_ef key of its metadata is one), while the source's was left to "
        "the planner"
    ]


def differences(
    client: Client,
    collection: Collection,
    schema: dict[str, Any],
    configuration: dict[str, Any] | None = None,
) -> list[str]:
    """What of the source's echoed `configuration` (None: the one Chroma derives from the
    schema) and `schema` the collection does not echo, as warnings (empty: the same).

    Called after the records are written: keys of their metadata join the schema then (as
    copies of the defaults, which a source without them is not told apart from).
    """
    wanted = parse_schema(schema)
    model = client.get_collection_by_id(collection.id, embedding_function=None).get_model()
    name = collection.name
    config = configuration or configuration_from_schema(wanted)
    found = []
    if model.configuration_json != config:
        found.append(
            f"collection {name!r}: configuration {model.configuration_json} differs from the "
            f"source's {config}"
        )
    if model.schema is None or model.schema == wanted:
        return found
    have, want = model.schema["keys"], wanted["keys"]
    keys = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    discovered = [k for k in keys if k not in have and _copies_defaults(want[k], wanted)]
    others = [
        k
        for k in keys
        if k not in discovered and not (k not in want and _copies_defaults(have[k], wanted))
    ]
    if wanted["defaults"] != model.schema["defaults"]:
        others.insert(0, "defaults")
    if discovered:
        found.append(
            f"collection {name!r}: keys {', '.join(discovered)} that the source added to its "
            "schema from written metadata are not echoed (no imported record has them, and a "
            "schema cannot be given beside legacy hnsw:* metadata keys); filters on them "
            "behave the same"
        )
    if others:
        found.append(
            f"collection {name!r}: schema differs from the source's for {', '.join(others)}"
        )
    return found


def _creation_inputs(
    schema: dict[str, Any], vector: dict[str, Any], metadata: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(configuration, schema) to create with, given the legacy keys the metadata carries.

    A schema that is not Chroma's default can only be given when the legacy keys leave the
    configuration at its defaults (Chroma refuses both); otherwise the vector index settings
    travel as the configuration, which reconciles to the default schema with them.
    """
    legacy = _legacy_settings(metadata)
    if not schema_is_default(schema) and legacy == hnsw_defaults():
        return None, schema
    hnsw = {"space": vector.get("space", "l2"), **(vector.get("hnsw") or {})}
    ef = vector.get("embedding_function")
    if ef is None:
        # A configuration is recorded with a function ("legacy" if none is given): when the
        # legacy keys give the settings fixed at creation, they are used alone, as in the
        # source; otherwise the settings win and the default function is recorded (what
        # chromadb's client uses for a collection without one).
        if all(legacy[k] == hnsw.get(k, legacy[k]) for k in IMMUTABLE):
            return None, None
        ef = rules.DEFAULT_EF_IDENTITY
    return {"hnsw": hnsw, "embedding_function": ef}, None


def _legacy_settings(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The HNSW settings the legacy `hnsw:*` metadata keys give (defaults without them)."""
    settings = hnsw_defaults()
    for key, field in rules.LEGACY_KEYS.items():
        if metadata and key in metadata:
            settings[field] = metadata[key]
    return settings


def apply_mutable_settings(
    collection: Collection, vector: dict[str, Any], chosen_ef_search: bool
) -> None:
    """Set the HNSW settings a `modify` may change to the source's values; `ef_search` also
    when the source's user chose it, which records the choice (a copy of a stored
    definition tells none)."""
    wanted = vector.get("hnsw") or {}
    model = collection.get_model()
    if model.schema is not None:
        have = vector_index_config(model.schema).get("hnsw") or {}
    else:  # a client that does not report schemas: the echoed settings
        have = model.configuration_json.get("hnsw") or {}
    changes = {
        k: wanted[k]
        for k in rules.HNSW_MUTABLE
        if wanted.get(k) is not None and wanted[k] != have.get(k)
    }
    if chosen_ef_search and wanted.get("ef_search") is not None:
        changes["ef_search"] = wanted["ef_search"]
    if changes:
        collection.modify(configuration={"hnsw": changes})


def _copies_defaults(types: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Whether a key's indexes are the defaults' (how Chroma records a key it discovers)."""
    return all(
        schema["defaults"].get(value_type) == indexes for value_type, indexes in types.items()
    )
