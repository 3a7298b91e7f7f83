"""Opening a store for one operation, and `huedb compact`.

Operations open a store the way every other entry point does: through the engine registry.
The store is a SQLite data directory (`data`), or the PostgreSQL store of a URL (`store`,
else HUEDB_STORE), with `data` then an optional directory of this node's derived files.
They join the engine this process already has open on it, whatever its options; otherwise
it is opened with the one settings chain's options (defaults < HUEDB_* environment).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huedb.api.client import Client, PersistentClient
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT, LOCAL_API_IMPL, Settings
from huedb.engine.engine import Engine
from huedb.engine.registry import acquire_engine, release_engine
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.errors import NotFoundError, UsageError
from huedb.options import masked_url, resolve_options


def store_url(store: str | None) -> str:
    """The store URL an operation works on: `store`, else HUEDB_STORE; "" for SQLite."""
    return resolve_options(env=os.environ, args={"store": store}).store


def describe(data: Path | None, store: str) -> str:
    """How a store is named in messages (a URL's password masked)."""
    return masked_url(store) if store else str(data)


def require_store(data: Path) -> None:
    """Refuse a directory that holds no huedb store (a mistyped path must not create one)."""
    if not (Path(data) / DB_FILENAME).is_file():
        raise UsageError(f"{data} holds no huedb store ({DB_FILENAME} is missing); check --path")


def require_postgres_store(url: str) -> None:
    """Refuse a PostgreSQL database that holds no huedb store: a mistyped database name must
    not get huedb's tables from `stats` or `verify` (only import, migrate-chroma and restore
    create a store). A database that cannot be reached is left to the store's own error."""
    if _postgres_store_exists(url) is False:
        raise UsageError(f"{masked_url(url)} holds no huedb store (no huedb tables); check --store")


def _postgres_store_exists(url: str) -> bool | None:
    """Whether the PostgreSQL database at `url` holds huedb's tables; None when it cannot
    be reached (left to the store's own error when it is opened)."""
    import psycopg  # only for a PostgreSQL store (see `engine.store_factory`)

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT to_regclass('huedb_meta') IS NOT NULL").fetchone()
    except psycopg.Error:
        return None
    return row is not None and bool(row[0])


def refuse_inside_data(out: Path, data: Path | None, what: str) -> None:
    """Refuse an output file inside the data directory `data` (it could replace the live
    database or another file of the store); nothing has been written when it is refused."""
    if data is None:
        return
    root, target = Path(data).resolve(), Path(out).resolve()
    if target == root or root in target.parents:
        raise UsageError(
            f"{what} {out} is inside the data directory {data}: write it elsewhere "
            "(nothing was written)"
        )


def require_out_directory(out: Path) -> None:
    """Refuse an output file whose directory does not exist: a mistyped one is refused,
    not created."""
    if not Path(out).parent.is_dir():
        raise UsageError(f"{Path(out).parent} is not a directory; nothing was written to {out}")


def scope_missing(tenant: str, database: str, cause: object = None) -> UsageError:
    """The error for a tenant or database that does not exist; `cause` is the store's or
    server's NotFoundError, whose message tells which of the two."""
    what, option = _missing(tenant, database, cause)
    return UsageError(f"{what}; check {option}")


def _missing(tenant: str, database: str, cause: object = None) -> tuple[str, str]:
    """What does not exist, and the option naming it (without `cause`: the tenant unless it
    is the default one, else the database)."""
    text = str(cause) if cause is not None else ""
    if text.startswith("Tenant") or (not text and tenant != DEFAULT_TENANT):
        return f"tenant {tenant!r} does not exist", "--tenant"
    if text.startswith("Database") or not text:
        return f"database {database!r} does not exist in tenant {tenant!r}", "--database"
    return f"tenant {tenant!r}, database {database!r}: {text}", "--tenant and --database"


def store_client(
    data: Path | None,
    store: str | None = None,
    create: bool = False,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
) -> Client:
    """A client of `tenant`/`database` in the SQLite store in `data` (which must exist
    unless `create`), or in the PostgreSQL store of `store` (else HUEDB_STORE) with derived
    files in `data`, if given.

    A tenant or database that does not exist is refused (UsageError) before anything is
    created: a store that `create` would make holds only the default tenant and database,
    so with another one it is refused, not created.
    """
    url = store_url(store)
    if not url:
        if data is None:
            raise UsageError("give --path DATA (a SQLite store) or --store URL (PostgreSQL)")
        if not create:
            require_store(data)
    elif not create:
        require_postgres_store(url)
    if create:
        require_scope_store(data, url, tenant, database)
    settings = _local_settings(huedb_store=url)
    if data is None:  # a PostgreSQL store without a directory of derived files
        settings.is_persistent = False
        return scoped_client(lambda: Client(settings, tenant, database), tenant, database)
    return scoped_client(
        lambda: PersistentClient(data, settings, tenant, database), tenant, database
    )


def require_scope_store(data: Path | None, store: str | None, tenant: str, database: str) -> None:
    """Refuse a tenant or database other than the default ones when the store (`data`, or
    the PostgreSQL store of `store`, else HUEDB_STORE) does not exist yet: a store created
    for it would hold only the default tenant and database. Nothing is created."""
    if (tenant, database) == (DEFAULT_TENANT, DEFAULT_DATABASE):
        return
    url = store_url(store)
    if url:
        if _postgres_store_exists(url) is not False:  # there, or left to the store's error
            return
        where = masked_url(url)
    else:
        if data is None or (Path(data) / DB_FILENAME).is_file():
            return
        where = str(data)
    what, _ = _missing(tenant, database)
    raise UsageError(
        f"{what}: {where} holds no huedb store yet, and a new one has only "
        f"{DEFAULT_TENANT}/{DEFAULT_DATABASE}; nothing was created"
    )


def scoped_client(open_client: Callable[[], Client], tenant: str, database: str) -> Client:
    """`open_client()` (a client of `tenant`/`database`), with a tenant or database it
    does not find refused as `scope_missing`."""
    try:
        return open_client()
    except NotFoundError as exc:
        raise scope_missing(tenant, database, exc) from exc


def _local_settings(**fields: Any) -> Settings:
    """Settings of a client on the store itself, whatever CHROMA_API_IMPL says (an operation
    names its store by --path / --store, never by chromadb's client settings)."""
    return Settings(chroma_api_impl=LOCAL_API_IMPL, **fields)


@contextmanager
def open_store(data: Path | None, store: str | None = None) -> Iterator[Engine]:
    """The engine of the existing SQLite store in `data`, or of the PostgreSQL store of
    `store` (else HUEDB_STORE) with its derived files in `data` (optional); given back to
    the registry afterwards."""
    url = store_url(store)
    if not url:
        if data is None:
            raise UsageError("give --path DATA (a SQLite store) or --store URL (PostgreSQL)")
        require_store(data)
    else:
        require_postgres_store(url)
    engine = acquire_engine(data, store=url)
    try:
        yield engine
    finally:
        release_engine(engine)


@dataclass
class CompactReport:
    """What compact did: the bytes the store shrank by (0 when it did not shrink) and the
    collections whose graph was rebuilt."""

    reclaimed_bytes: int
    rebuilt: list[str] = field(default_factory=list)


def compact(data: Path | None, store: str | None = None) -> CompactReport:
    """Rebuild graph indexes without their tombstones (each snapshot is kept until the
    rebuilt graph's replaces it), drop what deletes left behind, then return free pages to
    the disk (SQLite: after merging the document index; PostgreSQL: VACUUM). A collection
    deleted while compact runs is skipped; the others are still compacted."""
    with open_store(data, store) as engine:
        rebuilt = []
        for col in engine.collections():
            try:
                if engine.compact_index(col.uuid):
                    rebuilt.append(col.name)
            except NotFoundError:
                continue  # deleted meanwhile: nothing left to compact
        return CompactReport(reclaimed_bytes=engine.reclaim_space(), rebuilt=rebuilt)
