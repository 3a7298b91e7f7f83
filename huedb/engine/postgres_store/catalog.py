"""Tenants, databases, collections and aliases in PostgreSQL (calls of a `PgSession`).

Races between transactions are settled by constraints and locks, with the errors the
SQLite store raises (where one writer at a time makes them impossible):
- tenants and databases: `INSERT ... ON CONFLICT DO NOTHING`; nothing inserted means it
  exists (AlreadyExistsError).
- `database_id` in a write session takes a transaction-level advisory lock on the
  database, so the catalog changes of one database (create / get-or-create / delete a
  collection, aliases; a fork and a rename through `lock_database_of`) run one at a time,
  as in SQLite: get_or_create never fails on a concurrent create of the same name.
- a write session locks a collection's row the first time it reads it (`FOR UPDATE`), so
  the collection's writers are serialised (records, oplog, renames, deletes). Locks are
  always taken database first, then collection, never the reverse: no deadlock.
- names: collections and aliases of a database share `catalog_names` (primary key), so a
  rename racing an alias of the same name fails on the constraint (CollectionExistsError).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from psycopg import errors as pg_errors

from huedb.engine import fork_lineage
from huedb.engine.catalog import (
    COLLECTION_COLUMNS,
    DEFAULT_DATABASE_ID,
    CollectionRow,
    collection_row,
    dump_metadata,
)
from huedb.engine.postgres_store.base import SessionBase
from huedb.engine.postgres_store.connection import ADVISORY_CLASS
from huedb.errors import (
    AlreadyExistsError,
    CollectionExistsError,
    InvalidArgumentError,
    NotFoundError,
)


class CatalogSQL(SessionBase):
    """The catalog half of a PostgreSQL session."""

    def _lock_clause(self) -> str:
        return " FOR UPDATE" if self._writable else ""

    def _collection(self, where: str, params: tuple) -> CollectionRow | None:
        """One collection row; in a write session its row is locked until commit. A read
        session notes the oplog head read with it (`oplog_head` then needs no statement)."""
        row = self.run(
            f"SELECT {COLLECTION_COLUMNS}, log_seq FROM collections "
            f"WHERE {where}{self._lock_clause()}",
            params,
        ).fetchone()
        if row is None:
            return None
        col = collection_row(row[:-1])
        if not self._writable:
            self._heads[col.cid] = row[-1]
        else:  # the first read locked the row: the head no one else can move until commit
            self._locked_heads.setdefault(col.cid, row[-1])
        return col

    def ensure_defaults(self, tenant: str, database: str) -> None:
        self.run("INSERT INTO tenants (name) VALUES (%s) ON CONFLICT DO NOTHING", (tenant,))
        self.run(
            "INSERT INTO databases (id, name, tenant) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (DEFAULT_DATABASE_ID, database, tenant),
        )

    def create_tenant(self, name: str) -> None:
        inserted = self.run(
            "INSERT INTO tenants (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,)
        ).rowcount
        if not inserted:
            raise AlreadyExistsError(f"Tenant [{name}] already exists")

    def get_tenant(self, name: str) -> dict[str, Any]:
        if not self.run("SELECT 1 FROM tenants WHERE name = %s", (name,)).fetchone():
            raise NotFoundError(f"Tenant [{name}] not found")
        return {"name": name}

    def delete_empty_tenant(self, name: str) -> None:
        # The tenant row is locked (exclusive) so no database is created in it meanwhile.
        if not self.run("SELECT 1 FROM tenants WHERE name = %s FOR UPDATE", (name,)).fetchone():
            raise NotFoundError(f"Tenant [{name}] not found")
        if self.run("SELECT 1 FROM databases WHERE tenant = %s LIMIT 1", (name,)).fetchone():
            raise InvalidArgumentError(f"Tenant [{name}] holds databases")
        self.run("DELETE FROM tenants WHERE name = %s", (name,))

    def create_database(self, name: str, tenant: str) -> None:
        # The tenant row is locked (shared) so a concurrent delete cannot orphan the database.
        if not self.run(
            "SELECT 1 FROM tenants WHERE name = %s FOR KEY SHARE", (tenant,)
        ).fetchone():
            raise NotFoundError(f"Tenant [{tenant}] not found")
        inserted = self.run(
            "INSERT INTO databases (id, name, tenant) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (str(uuid.uuid4()), name, tenant),
        ).rowcount
        if not inserted:
            raise AlreadyExistsError(f"Database [{name}] already exists")

    def get_database(self, name: str, tenant: str) -> dict[str, Any]:
        row = self.run(
            "SELECT id FROM databases WHERE tenant = %s AND name = %s", (tenant, name)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"Database [{name}] not found. Are you sure it exists?")
        return {"id": row[0], "name": name, "tenant": tenant}

    def list_databases(
        self, tenant: str, limit: int | None, offset: int | None
    ) -> list[dict[str, Any]]:
        rows = self.run(
            'SELECT id, name FROM databases WHERE tenant = %s ORDER BY name COLLATE "C" '
            "LIMIT %s OFFSET %s",
            (tenant, limit, offset or 0),
        ).fetchall()
        return [{"id": r[0], "name": r[1], "tenant": tenant} for r in rows]

    def database_names(self, db_id: str) -> tuple[str, str] | None:
        row = self.run("SELECT tenant, name FROM databases WHERE id = %s", (db_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def database_id(self, tenant: str, database: str) -> str:
        """The database's id; a write also takes the database's lock (which
        `delete_database` holds until it commits), then reads the row again: a database
        deleted while this waited is gone (READ COMMITTED: the statement sees the commit),
        so nothing is created in it."""
        db_id = self.get_database(database, tenant)["id"]
        if self._writable:
            self._lock_database(db_id)
            if self.run("SELECT 1 FROM databases WHERE id = %s", (db_id,)).fetchone() is None:
                raise NotFoundError(f"Database [{database}] not found. Are you sure it exists?")
        return db_id

    def delete_database(self, name: str, tenant: str) -> list[CollectionRow]:
        """The rows locked first wait for each collection's writers; the collections
        returned are those the DELETE removed (a statement of its own under READ COMMITTED:
        it would also remove a row committed after the lock's read)."""
        db_id = self.database_id(tenant, name)
        self.run(
            "SELECT cid FROM collections WHERE database_id = %s ORDER BY cid FOR UPDATE", (db_id,)
        )
        self.run("DELETE FROM catalog_names WHERE database_id = %s", (db_id,))
        cols = [
            collection_row(r)
            for r in self.run(
                f"DELETE FROM collections WHERE database_id = %s RETURNING {COLLECTION_COLUMNS}",
                (db_id,),
            )
        ]
        self.run("DELETE FROM databases WHERE id = %s", (db_id,))
        fork_lineage.forget(self.run, "%s", [c.uuid for c in cols])
        return cols

    def collection_by_name(self, db_id: str, name: str, follow_alias: bool = True) -> CollectionRow:
        col = self._collection("database_id = %s AND name = %s", (db_id, name))
        if col is None and follow_alias:
            col = self._collection(
                "cid = (SELECT cid FROM catalog_names WHERE database_id = %s AND name = %s "
                "AND is_alias)",
                (db_id, name),
            )
        if col is None:
            raise NotFoundError(f"Collection [{name}] does not exist")
        return col

    def lock_database_of(self, collection_uuid: str) -> None:
        """The database's advisory lock, before the collection's row is locked: a fork
        that locked only the source's row raced `delete_database`, which then deleted the
        fork's row but not its records (they read their list before the fork committed)."""
        row = self.run(
            "SELECT database_id FROM collections WHERE uuid = %s", (collection_uuid,)
        ).fetchone()
        if row is not None and self._writable:
            self._lock_database(row[0])

    def _lock_database(self, db_id: str) -> None:
        """The database's transaction-level advisory lock (its catalog changes, one at a
        time)."""
        self.run("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (ADVISORY_CLASS, db_id))

    def collection_by_uuid(self, collection_uuid: str) -> CollectionRow:
        col = self._collection("uuid = %s", (collection_uuid,))
        if col is None:
            raise NotFoundError(f"Collection [{collection_uuid}] does not exist.")
        return col

    def list_collections(
        self, db_id: str, limit: int | None, offset: int | None
    ) -> list[CollectionRow]:
        rows = self.run(
            f"SELECT {COLLECTION_COLUMNS} FROM collections WHERE database_id = %s "
            'ORDER BY uuid COLLATE "C" LIMIT %s OFFSET %s',
            (db_id, limit, offset or 0),
        ).fetchall()
        return [collection_row(r) for r in rows]

    def count_collections(self, db_id: str) -> int:
        return self.run(
            "SELECT count(*) FROM collections WHERE database_id = %s", (db_id,)
        ).fetchone()[0]

    def collection_uuids(self) -> list[str]:
        return [r[0] for r in self.run("SELECT uuid FROM collections ORDER BY cid")]

    def _name_taken(self, db_id: str, name: str) -> bool:
        """Whether a collection or an alias of the database has this name."""
        return (
            self.run(
                "SELECT 1 FROM catalog_names WHERE database_id = %s AND name = %s", (db_id, name)
            ).fetchone()
            is not None
        )

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
        try:
            cid = self.run(
                "INSERT INTO collections (uuid, name, database_id, metadata, configuration) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING cid",
                (new_uuid, name, db_id, dump_metadata(metadata), json.dumps(configuration)),
            ).fetchone()[0]
            self.run(
                "INSERT INTO catalog_names (database_id, name, cid, is_alias) "
                "VALUES (%s, %s, %s, false)",
                (db_id, name, cid),
            )
        except pg_errors.UniqueViolation as exc:
            raise CollectionExistsError(f"Collection [{name}] already exists") from exc
        return self.collection_by_uuid(new_uuid)

    def update_collection(
        self,
        col: CollectionRow,
        new_name: str | None,
        new_metadata: dict[str, Any] | None,
        new_configuration: dict[str, Any] | None,
    ) -> None:
        if new_name is not None and new_name != col.name:
            clash = CollectionExistsError(
                f"UNIQUE constraint failed: collections.database_id, collections.name "
                f"(Collection [{new_name}] already exists)"
            )
            if self._name_taken(col.database_id, new_name):
                raise clash
            try:
                self.run(
                    "UPDATE catalog_names SET name = %s WHERE cid = %s AND NOT is_alias",
                    (new_name, col.cid),
                )
                self.run("UPDATE collections SET name = %s WHERE cid = %s", (new_name, col.cid))
            except pg_errors.UniqueViolation as exc:
                raise clash from exc
        if new_metadata is not None:
            self.run(
                "UPDATE collections SET metadata = %s WHERE cid = %s",
                (dump_metadata(new_metadata or None), col.cid),
            )
        if new_configuration is not None:
            self.run(
                "UPDATE collections SET configuration = %s WHERE cid = %s",
                (json.dumps(new_configuration), col.cid),
            )

    def set_dimension(self, cid: int, dimension: int) -> None:
        self.run(
            "UPDATE collections SET dimension = %s WHERE cid = %s AND dimension IS NULL",
            (dimension, cid),
        )

    def delete_collection_row(self, cid: int) -> None:
        self.run("DELETE FROM index_holders WHERE cid = %s", (cid,))
        self.run("DELETE FROM catalog_names WHERE cid = %s", (cid,))
        row = self.run("DELETE FROM collections WHERE cid = %s RETURNING uuid", (cid,)).fetchone()
        if row is not None:
            fork_lineage.forget(self.run, "%s", [row[0]])

    def record_fork(self, source_uuid: str, fork_uuid: str) -> None:
        fork_lineage.record_fork(self.run, "%s", source_uuid, fork_uuid)

    def fork_count(self, collection_uuid: str) -> int:
        return fork_lineage.fork_count(self.run, "%s", collection_uuid)

    def alias_target(self, db_id: str, name: str) -> int | None:
        row = self.run(
            "SELECT cid FROM catalog_names WHERE database_id = %s AND name = %s AND is_alias",
            (db_id, name),
        ).fetchone()
        return None if row is None else row[0]

    def set_alias(self, db_id: str, alias: str, target: str, create: bool) -> None:
        if self.run(
            "SELECT 1 FROM collections WHERE database_id = %s AND name = %s", (db_id, alias)
        ).fetchone():
            raise InvalidArgumentError(
                f"[{alias}] is a collection name; an alias needs its own name"
            )
        row = self.run(
            "SELECT cid FROM collections WHERE database_id = %s AND name = %s", (db_id, target)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"Collection [{target}] does not exist")
        exists = self.alias_target(db_id, alias) is not None
        if create and exists:
            raise AlreadyExistsError(f"Alias [{alias}] already exists")
        if not create and not exists:
            raise NotFoundError(f"Alias [{alias}] does not exist")
        # A collection renamed to `alias` meanwhile holds the name: nothing is written then.
        written = self.run(
            "INSERT INTO catalog_names (database_id, name, cid, is_alias) "
            "VALUES (%s, %s, %s, true) ON CONFLICT (database_id, name) "
            "DO UPDATE SET cid = excluded.cid WHERE catalog_names.is_alias",
            (db_id, alias, row[0]),
        ).rowcount
        if not written:
            raise InvalidArgumentError(
                f"[{alias}] is a collection name; an alias needs its own name"
            )

    def delete_alias(self, db_id: str, alias: str) -> None:
        deleted = self.run(
            "DELETE FROM catalog_names WHERE database_id = %s AND name = %s AND is_alias",
            (db_id, alias),
        ).rowcount
        if deleted == 0:
            raise NotFoundError(f"Alias [{alias}] does not exist")

    def list_aliases(self, db_id: str) -> list[dict[str, str]]:
        rows = self.run(
            "SELECT a.name, c.name, c.uuid FROM catalog_names a JOIN collections c "
            "ON c.cid = a.cid WHERE a.database_id = %s AND a.is_alias "
            'ORDER BY a.name COLLATE "C"',
            (db_id,),
        )
        return [{"name": r[0], "collection": r[1], "collection_id": r[2]} for r in rows]

    def aliases_of(self, cid: int) -> list[str]:
        return [
            r[0]
            for r in self.run(
                "SELECT name FROM catalog_names WHERE cid = %s AND is_alias "
                'ORDER BY name COLLATE "C"',
                (cid,),
            )
        ]
