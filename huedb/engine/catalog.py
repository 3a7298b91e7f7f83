"""Tenants, databases and collections in SQLite (all calls run inside the caller's transaction)."""

from __future__ import annotations

import ipaddress
import json
import re
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

from huedb.errors import (
    AlreadyExistsError,
    CollectionExistsError,
    InvalidArgumentError,
    NotFoundError,
)

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


def validate_name(name: Any, what: str = "name") -> str:
    """Chroma's rule for collection and database names."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"Validation error: {what}: Expected a string, got {name!r}")
    base = (
        f"Validation error: {what}: Expected a name containing 3-512 characters from "
        f"[a-zA-Z0-9._-], starting and ending with a character in [a-zA-Z0-9]. Got: {name}"
    )
    if not _NAME_RE.match(name):
        raise InvalidArgumentError(base)
    if ".." in name:
        raise InvalidArgumentError(
            f"Validation error: {what}: Expected a name that does not contains two "
            f"consecutive periods (..). Got: {name}"
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise InvalidArgumentError(
        f"Validation error: {what}: Expected a name that is not a valid ip address. Got: {name}"
    )


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


def ensure_defaults(conn: sqlite3.Connection, tenant: str, database: str) -> None:
    """Create the default tenant and database (idempotent)."""
    conn.execute("INSERT OR IGNORE INTO tenants (name) VALUES (?)", (tenant,))
    conn.execute(
        "INSERT OR IGNORE INTO databases (id, name, tenant) VALUES (?, ?, ?)",
        (DEFAULT_DATABASE_ID, database, tenant),
    )


def create_tenant(conn: sqlite3.Connection, name: str) -> None:
    validate_tenant_name(name)
    if conn.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone():
        raise AlreadyExistsError(f"Tenant [{name}] already exists")
    conn.execute("INSERT INTO tenants (name) VALUES (?)", (name,))


def get_tenant(conn: sqlite3.Connection, name: str) -> dict[str, Any]:
    if not conn.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone():
        raise NotFoundError(f"Tenant [{name}] not found")
    return {"name": name}


def create_database(conn: sqlite3.Connection, name: str, tenant: str) -> None:
    validate_name(name)
    get_tenant(conn, tenant)
    exists = conn.execute(
        "SELECT 1 FROM databases WHERE tenant = ? AND name = ?", (tenant, name)
    ).fetchone()
    if exists:
        raise AlreadyExistsError(f"Database [{name}] already exists")
    conn.execute(
        "INSERT INTO databases (id, name, tenant) VALUES (?, ?, ?)",
        (str(uuid.uuid4()), name, tenant),
    )


def get_database(conn: sqlite3.Connection, name: str, tenant: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT id FROM databases WHERE tenant = ? AND name = ?", (tenant, name)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"Database [{name}] not found. Are you sure it exists?")
    return {"id": row[0], "name": name, "tenant": tenant}


def list_databases(
    conn: sqlite3.Connection, tenant: str, limit: int | None, offset: int | None
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, name FROM databases WHERE tenant = ? ORDER BY name LIMIT ? OFFSET ?",
        (tenant, -1 if limit is None else limit, offset or 0),
    ).fetchall()
    return [{"id": r[0], "name": r[1], "tenant": tenant} for r in rows]


def database_names(conn: sqlite3.Connection, db_id: str) -> tuple[str, str] | None:
    """(tenant, database) names of a database id, if it exists."""
    row = conn.execute("SELECT tenant, name FROM databases WHERE id = ?", (db_id,)).fetchone()
    return (row[0], row[1]) if row else None


def database_id(conn: sqlite3.Connection, tenant: str, database: str) -> str:
    return get_database(conn, database, tenant)["id"]


def delete_database(conn: sqlite3.Connection, name: str, tenant: str) -> list[CollectionRow]:
    """Delete a database; returns its collections so the caller can drop their records."""
    db_id = database_id(conn, tenant, name)
    cols = [
        _row(r)
        for r in conn.execute(f"SELECT {_COLUMNS} FROM collections WHERE database_id = ?", (db_id,))
    ]
    conn.execute("DELETE FROM aliases WHERE database_id = ?", (db_id,))
    conn.execute("DELETE FROM collections WHERE database_id = ?", (db_id,))
    conn.execute("DELETE FROM databases WHERE id = ?", (db_id,))
    return cols


_COLUMNS = (
    "cid, uuid, name, database_id, metadata, configuration, dimension, pruned_seq, snapshot_seq"
)


def _row(r: tuple) -> CollectionRow:
    return CollectionRow(
        cid=r[0],
        uuid=r[1],
        name=r[2],
        database_id=r[3],
        metadata=json.loads(r[4]) if r[4] is not None else None,
        configuration=json.loads(r[5]),
        dimension=r[6],
        pruned_seq=r[7],
        snapshot_seq=r[8],
    )


def collection_by_name(
    conn: sqlite3.Connection, db_id: str, name: str, follow_alias: bool = True
) -> CollectionRow:
    """A collection by name, or by an alias naming it (unless `follow_alias` is False)."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM collections WHERE database_id = ? AND name = ?", (db_id, name)
    ).fetchone()
    if row is None and follow_alias:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM collections WHERE cid = "
            "(SELECT cid FROM aliases WHERE database_id = ? AND name = ?)",
            (db_id, name),
        ).fetchone()
    if row is None:
        raise NotFoundError(f"Collection [{name}] does not exist")
    return _row(row)


def alias_target(conn: sqlite3.Connection, db_id: str, name: str) -> int | None:
    """The collection id an alias points at, or None if `name` is no alias."""
    row = conn.execute(
        "SELECT cid FROM aliases WHERE database_id = ? AND name = ?", (db_id, name)
    ).fetchone()
    return None if row is None else row[0]


def set_alias(conn: sqlite3.Connection, db_id: str, alias: str, target: str, create: bool) -> None:
    """Create an alias, or point an existing one at another collection (one statement)."""
    validate_name(alias)
    if conn.execute(
        "SELECT 1 FROM collections WHERE database_id = ? AND name = ?", (db_id, alias)
    ).fetchone():
        raise InvalidArgumentError(f"[{alias}] is a collection name; an alias needs its own name")
    col = collection_by_name(conn, db_id, target, follow_alias=False)
    exists = alias_target(conn, db_id, alias) is not None
    if create and exists:
        raise AlreadyExistsError(f"Alias [{alias}] already exists")
    if not create and not exists:
        raise NotFoundError(f"Alias [{alias}] does not exist")
    conn.execute(
        "INSERT INTO aliases (database_id, name, cid) VALUES (?, ?, ?) "
        "ON CONFLICT (database_id, name) DO UPDATE SET cid = excluded.cid",
        (db_id, alias, col.cid),
    )


def delete_alias(conn: sqlite3.Connection, db_id: str, alias: str) -> None:
    if (
        conn.execute(
            "DELETE FROM aliases WHERE database_id = ? AND name = ?", (db_id, alias)
        ).rowcount
        == 0
    ):
        raise NotFoundError(f"Alias [{alias}] does not exist")


def list_aliases(conn: sqlite3.Connection, db_id: str) -> list[dict[str, str]]:
    rows = conn.execute(
        "SELECT a.name, c.name, c.uuid FROM aliases a JOIN collections c ON c.cid = a.cid "
        "WHERE a.database_id = ? ORDER BY a.name",
        (db_id,),
    )
    return [{"name": r[0], "collection": r[1], "collection_id": r[2]} for r in rows]


def aliases_of(conn: sqlite3.Connection, cid: int) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM aliases WHERE cid = ?", (cid,))]


def collection_by_uuid(conn: sqlite3.Connection, collection_uuid: str) -> CollectionRow:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM collections WHERE uuid = ?", (collection_uuid,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"Collection [{collection_uuid}] does not exist.")
    return _row(row)


def list_collections(
    conn: sqlite3.Connection, db_id: str, limit: int | None, offset: int | None
) -> list[CollectionRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM collections WHERE database_id = ? ORDER BY uuid LIMIT ? OFFSET ?",
        (db_id, -1 if limit is None else limit, offset or 0),
    ).fetchall()
    return [_row(r) for r in rows]


def count_collections(conn: sqlite3.Connection, db_id: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM collections WHERE database_id = ?", (db_id,)
    ).fetchone()[0]


def insert_collection(
    conn: sqlite3.Connection,
    db_id: str,
    name: str,
    metadata: dict[str, Any] | None,
    configuration: dict[str, Any],
) -> CollectionRow:
    exists = conn.execute(
        "SELECT 1 FROM collections WHERE database_id = ? AND name = ?", (db_id, name)
    ).fetchone()
    if exists or alias_target(conn, db_id, name) is not None:
        raise CollectionExistsError(f"Collection [{name}] already exists")
    new_uuid = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO collections (uuid, name, database_id, metadata, configuration) "
        "VALUES (?, ?, ?, ?, ?)",
        (new_uuid, name, db_id, _dump(metadata), json.dumps(configuration)),
    )
    return collection_by_uuid(conn, new_uuid)


def update_collection(
    conn: sqlite3.Connection,
    col: CollectionRow,
    new_name: str | None,
    new_metadata: dict[str, Any] | None,
    new_configuration: dict[str, Any] | None,
) -> None:
    if new_name is not None and new_name != col.name:
        clash = conn.execute(
            "SELECT 1 FROM collections WHERE database_id = ? AND name = ?",
            (col.database_id, new_name),
        ).fetchone()
        if clash or alias_target(conn, col.database_id, new_name) is not None:
            raise CollectionExistsError(
                f"UNIQUE constraint failed: collections.database_id, collections.name "
                f"(Collection [{new_name}] already exists)"
            )
        conn.execute("UPDATE collections SET name = ? WHERE cid = ?", (new_name, col.cid))
    if new_metadata is not None:
        conn.execute(
            "UPDATE collections SET metadata = ? WHERE cid = ?",
            (_dump(new_metadata or None), col.cid),
        )
    if new_configuration is not None:
        conn.execute(
            "UPDATE collections SET configuration = ? WHERE cid = ?",
            (json.dumps(new_configuration), col.cid),
        )


def set_dimension(conn: sqlite3.Connection, cid: int, dimension: int) -> None:
    conn.execute(
        "UPDATE collections SET dimension = ? WHERE cid = ? AND dimension IS NULL",
        (dimension, cid),
    )


def delete_collection_row(conn: sqlite3.Connection, cid: int) -> None:
    conn.execute("DELETE FROM collections WHERE cid = ?", (cid,))


def _dump(metadata: dict[str, Any] | None) -> str | None:
    return None if metadata is None else json.dumps(metadata, ensure_ascii=False)
