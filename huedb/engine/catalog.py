"""The catalog's shared parts: name rules and the stored form of a collection.

Every store's catalog (`engine/sqlite_store/catalog.py`, ...) returns `CollectionRow`s; the
engine checks names with these rules before it asks a store.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from huedb.engine.record_values import stored_json
from huedb.errors import InvalidArgumentError

DEFAULT_DATABASE_ID = "00000000-0000-0000-0000-000000000000"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")


@dataclass
class CollectionRow:
    """A collection as stored."""

    cid: int
    uuid: str
    name: str
    database_id: str
    metadata: dict[str, Any] | None
    configuration: dict[str, Any]
    dimension: int | None
    pruned_seq: int
    snapshot_seq: int


# The columns of a collection row, in `CollectionRow`'s order, as every store keeps them
# (metadata and configuration as JSON text).
COLLECTION_COLUMNS = (
    "cid, uuid, name, database_id, metadata, configuration, dimension, pruned_seq, snapshot_seq"
)


def collection_row(r: Sequence[Any]) -> CollectionRow:
    """A `CollectionRow` from the values of `COLLECTION_COLUMNS`."""
    return CollectionRow(
        cid=r[0],
        uuid=r[1],
        name=r[2],
        database_id=r[3],
        metadata=stored_json(r[4]) if r[4] is not None else None,
        configuration=stored_json(r[5]),
        dimension=r[6],
        pruned_seq=r[7],
        snapshot_seq=r[8],
    )


def dump_metadata(metadata: dict[str, Any] | None) -> str | None:
    """The stored JSON text of a collection's metadata (None: no metadata)."""
    return None if metadata is None else json.dumps(metadata, ensure_ascii=False)


def validate_name(name: Any, what: str | None = "name") -> str:
    """Chroma's rule for collection and database names: 3-512 characters from
    [a-zA-Z0-9._-], no "..", not an IP address; or two such names joined by one `+` (a
    topology prefix, as Chroma 1.5 accepts), each checked alone. Messages start with
    `Validation error: <what>: `, none without `what` (Chroma's for a new database)."""
    bad = "" if what is None else f"Validation error: {what}: "
    if not isinstance(name, str):
        raise InvalidArgumentError(bad + f"Expected a string, got {name!r}")
    if "+" in name:
        if len(name) > 512:
            raise InvalidArgumentError(
                bad + f"Expected a name containing 3-512 characters. Got: {len(name)}"
            )
        topology, rest = name.split("+", 1)
        if "+" in rest:
            raise InvalidArgumentError(
                bad + "Expected a name to contain at most one topology:  Got two `+` characters."
            )
        validate_name(topology, what)
        validate_name(rest, what)
        return name
    if not _NAME_RE.match(name):
        raise InvalidArgumentError(
            bad + "Expected a name containing 3-512 characters from [a-zA-Z0-9._-], starting "
            f"and ending with a character in [a-zA-Z0-9]. Got: {name}"
        )
    if ".." in name:
        raise InvalidArgumentError(
            bad + f"Expected a name that does not contains two consecutive periods (..). Got {name}"
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise InvalidArgumentError(bad + f"Expected a name that is not a valid ip address. Got {name}")


def validate_database_name(name: Any) -> str:
    """Database names as Chroma's library takes them: a string of at least 3 bytes of
    UTF-8, without '/' (as tenant names: it could not be addressed in a URL path). Chroma's
    HTTP server applies the collection-name rule to a new database's name besides
    (`validate_name`, in the route)."""
    if not isinstance(name, str) or len(name.encode("utf-8", "surrogatepass")) < 3:
        raise InvalidArgumentError("database name must be at least 3 characters")
    if "/" in name:
        raise InvalidArgumentError(
            "Expected a database name without '/', which cannot be addressed in a URL path. "
            f"Got: {name}"
        )
    return name


def validate_tenant_name(name: Any) -> str:
    """Tenant names: a string of at least 3 characters, without '/'.

    Chroma also accepts '/', but such a tenant cannot be addressed in the URL paths of the
    HTTP API (`/tenants/{tenant}/...`): a server routes on the decoded path, and chromadb's
    client does not escape '/'. Every other character round-trips (percent-encoded).
    """
    if not isinstance(name, str) or len(name) < 3:
        raise InvalidArgumentError(
            f"Validation error: name: Validation error: length [min 3] for tenant name {name!r}"
        )
    if "/" in name:
        raise InvalidArgumentError(
            "Validation error: name: Expected a tenant name without '/', which cannot be "
            f"addressed in a URL path. Got: {name}"
        )
    return name
