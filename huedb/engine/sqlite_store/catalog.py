"""Tenants, databases, collections and aliases in SQLite (calls of a `SQLiteSession`)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from huedb.engine import fork_lineage
from huedb.engine.catalog import (
    COLLECTION_COLUMNS,
    DEFAULT_DATABASE_ID,
    CollectionRow,
    collection_row,
    dump_metadata,
)
from huedb.errors import (
    AlreadyExistsError,
    CollectionExistsError,
    InvalidArgumentError,
    NotFoundError,
)


class CatalogSQL:
    """The catalog half of a SQLite session (runs inside the session's transaction)."""

    _conn: sqlite3.Connection

    def ensure_defaults(self, tenant: str, database: str) -> None:
        self._conn.execute("INSERT OR IGNORE INTO tenants (name) VALUES (?)", (tenant,))
        self._conn.execute(
            "INSERT OR IGNORE INTO databases (id, name, tenant) VALUES (?, ?, ?)",
            (DEFAULT_DATABASE_ID, database, tenant),
        )

    def create_tenant(self, name: str) -> None:
        if self._conn.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone():
            raise AlreadyExistsError(f"Tenant [{name}] already exists")
        self._conn.execute("INSERT INTO tenants (name) VALUES (?)", (name,))

    def get_tenant(self, name: str) -> dict[str, Any]:
        if not self._conn.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone():
            raise NotFoundError(f"Tenant [{name}] not found")
        return {"name": name}

    def delete_empty_tenant(self, name: str) -> None:
        self.get_tenant(name)
        if self._conn.execute("SELECT 1 FROM databases WHERE tenant = ?", (name,)).fetchone():
            raise InvalidArgumentError(f"Tenant [{name}] holds databases")
        self._conn.execute("DELETE FROM tenants WHERE name = ?", (name,))

    def create_database(self, name: str, tenant: str) -> None:
        self.get_tenant(tenant)
        exists = self._conn.execute(
            "SELECT 1 FROM databases WHERE tenant = ? AND name = ?", (tenant, name)
        ).fetchone()
        if exists:
            raise AlreadyExistsError(f"Database [{name}] already exists")
        self._conn.execute(
            "INSERT INTO databases (id, name, tenant) VALUES (?, ?, ?)",
            (str(uuid.uuid4()), name, tenant),
        )

    def get_database(self, name: str, tenant: str) -> dict[str, Any]:
        row = self._conn.execute(
            "SELECT id FROM databases WHERE tenant = ? AND name = ?", (tenant, name)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"Database [{name}] not found. Are you sure it exists?")
        return {"id": row[0], "name": name, "tenant": tenant}

    def list_databases(
        self, tenant: str, limit: int | None, offset: int | None
    ) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT id, name FROM databases WHERE tenant = ? ORDER BY name LIMIT ? OFFSET ?",
            (tenant, -1 if limit is None else limit, offset or 0),
        ).fetchall()
        return [{"id": r[0], "name": r[1], "tenant": tenant} for r in rows]

    def database_names(self, db_id: str) -> tuple[str, str] | None:
        row = self._conn.execute(
            "SELECT tenant, name FROM databases WHERE id = ?", (db_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def database_id(self, tenant: str, database: str) -> str:
        return self.get_database(database, tenant)["id"]

    def delete_database(self, name: str, tenant: str) -> list[CollectionRow]:
        db_id = self.database_id(tenant, name)
        cols = [
            collection_row(r)
            for r in self._conn.execute(
                f"SELECT {COLLECTION_COLUMNS} FROM collections WHERE database_id = ?", (db_id,)
            )
        ]
        self._conn.execute("DELETE FROM aliases WHERE database_id = ?", (db_id,))
        self._conn.execute("DELETE FROM collections WHERE database_id = ?", (db_id,))
        self._conn.execute("DELETE FROM databases WHERE id = ?", (db_id,))
        fork_lineage.forget(self._conn.execute, "?", [c.uuid for c in cols])
        return cols

    def collection_by_name(self, db_id: str, name: str, follow_alias: bool = True) -> CollectionRow:
        row = self._conn.execute(
            f"SELECT {COLLECTION_COLUMNS} FROM collections WHERE database_id = ? AND name = ?",
            (db_id, name),
        ).fetchone()
        if row is None and follow_alias:
            row = self._conn.execute(
                f"SELECT {COLLECTION_COLUMNS} FROM collections WHERE cid = "
                "(SELECT cid FROM aliases WHERE database_id = ? AND name = ?)",
                (db_id, name),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"Collection [{name}] does not exist")
        return collection_row(row)

    def lock_database_of(self, collection_uuid: str) -> None:
        """Nothing to take: the write transaction holds the whole database."""

    def collection_by_uuid(self, collection_uuid: str) -> CollectionRow:
        row = self._conn.execute(
            f"SELECT {COLLECTION_COLUMNS} FROM collections WHERE uuid = ?", (collection_uuid,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"Collection [{collection_uuid}] does not exist.")
        return collection_row(row)

    def list_collections(
        self, db_id: str, limit: int | None, offset: int | None
    ) -> list[CollectionRow]:
        rows = self._conn.execute(
            f"SELECT {COLLECTION_COLUMNS} FROM collections WHERE database_id = ? "
            "ORDER BY uuid LIMIT ? OFFSET ?",
            (db_id, -1 if limit is None else limit, offset or 0),
        ).fetchall()
        return [collection_row(r) for r in rows]

    def count_collections(self, db_id: str) -> int:
        return self._conn.execute(
            "SELECT count(*) FROM collections WHERE database_id = ?", (db_id,)
        ).fetchone()[0]

    def collection_uuids(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT uuid FROM collections ORDER BY cid")]

    def _name_taken(self, db_id: str, name: str) -> bool:
        """Whether a collection or an alias of the database has this name."""
        exists = self._conn.execute(
            "SELECT 1 FROM collections WHERE database_id = ? AND name = ?", (db_id, name)
        ).fetchone()
        return exists is not None or self.alias_target(db_id, name) is not None

    def insert_collection(
        self,
        db_id: str,
        name: str,
        metadata: dict[str, Any] | None,
        configuration: dict[str, Any],
    ) -> CollectionRow:
        if self._name_taken(db_id, name):
            raise CollectionExistsError(f"Collection [{name}] already exists")
        new_uuid = str(uuid.uuid4())
        self._conn.execute(
            "INSERT INTO collections (uuid, name, database_id, metadata, configuration) "
            "VALUES (?, ?, ?, ?, ?)",
            (new_uuid, name, db_id, dump_metadata(metadata), json.dumps(configuration)),
        )
        return self.collection_by_uuid(new_uuid)

    def update_collection(
        self,
        col: CollectionRow,
        new_name: str | None,
        new_metadata: dict[str, Any] | None,
        new_configuration: dict[str, Any] | None,
    ) -> None:
        if new_name is not None and new_name != col.name:
            if self._name_taken(col.database_id, new_name):
                raise CollectionExistsError(
                    f"UNIQUE constraint failed: collections.database_id, collections.name "
                    f"(Collection [{new_name}] already exists)"
                )
            self._conn.execute("UPDATE collections SET name = ? WHERE cid = ?", (new_name, col.cid))
        if new_metadata is not None:
            self._conn.execute(
                "UPDATE collections SET metadata = ? WHERE cid = ?",
                (dump_metadata(new_metadata or None), col.cid),
            )
        if new_configuration is not None:
            self._conn.execute(
                "UPDATE collections SET configuration = ? WHERE cid = ?",
                (json.dumps(new_configuration), col.cid),
            )

    def set_dimension(self, cid: int, dimension: int) -> None:
        self._conn.execute(
            "UPDATE collections SET dimension = ? WHERE cid = ? AND dimension IS NULL",
            (dimension, cid),
        )

    def delete_collection_row(self, cid: int) -> None:
        row = self._conn.execute("SELECT uuid FROM collections WHERE cid = ?", (cid,)).fetchone()
        self._conn.execute("DELETE FROM collections WHERE cid = ?", (cid,))
        if row is not None:
            fork_lineage.forget(self._conn.execute, "?", [row[0]])

    def record_fork(self, source_uuid: str, fork_uuid: str) -> None:
        fork_lineage.record_fork(self._conn.execute, "?", source_uuid, fork_uuid)

    def fork_count(self, collection_uuid: str) -> int:
        return fork_lineage.fork_count(self._conn.execute, "?", collection_uuid)

    def alias_target(self, db_id: str, name: str) -> int | None:
        row = self._conn.execute(
            "SELECT cid FROM aliases WHERE database_id = ? AND name = ?", (db_id, name)
        ).fetchone()
        return None if row is None else row[0]

    def set_alias(self, db_id: str, alias: str, target: str, create: bool) -> None:
        if self._conn.execute(
            "SELECT 1 FROM collections WHERE database_id = ? AND name = ?", (db_id, alias)
        ).fetchone():
            raise InvalidArgumentError(
                f"[{alias}] is a collection name; an alias needs its own name"
            )
        col = self.collection_by_name(db_id, target, follow_alias=False)
        exists = self.alias_target(db_id, alias) is not None
        if create and exists:
            raise AlreadyExistsError(f"Alias [{alias}] already exists")
        if not create and not exists:
            raise NotFoundError(f"Alias [{alias}] does not exist")
        self._conn.execute(
            "INSERT INTO aliases (database_id, name, cid) VALUES (?, ?, ?) "
            "ON CONFLICT (database_id, name) DO UPDATE SET cid = excluded.cid",
            (db_id, alias, col.cid),
        )

    def delete_alias(self, db_id: str, alias: str) -> None:
        deleted = self._conn.execute(
            "DELETE FROM aliases WHERE database_id = ? AND name = ?", (db_id, alias)
        ).rowcount
        if deleted == 0:
            raise NotFoundError(f"Alias [{alias}] does not exist")

    def list_aliases(self, db_id: str) -> list[dict[str, str]]:
        rows = self._conn.execute(
            "SELECT a.name, c.name, c.uuid FROM aliases a JOIN collections c ON c.cid = a.cid "
            "WHERE a.database_id = ? ORDER BY a.name",
            (db_id,),
        )
        return [{"name": r[0], "collection": r[1], "collection_id": r[2]} for r in rows]

    def aliases_of(self, cid: int) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT name FROM aliases WHERE cid = ?", (cid,))]
