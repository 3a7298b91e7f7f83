"""Opening a store for one operation, and `huedb compact`.

Operations open a store the way every other entry point does: through the engine registry.
The store is a SQLite data directory (`data`), or the PostgreSQL store of a URL (`store`,
else HUEDB_STORE), with `data` then an optional directory of this node's derived files.
They join the engine this process already has open on it, whatever its options; otherwise
it is opened with the one settings chain's options (defaults < HUEDB_* environment).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from huedb.api.client import Client, PersistentClient
from huedb.config import LOCAL_API_IMPL, Settings
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
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT to_regclass('huedb_meta') IS NOT NULL").fetchone()
    except psycopg.Error:
        return
    if row is None or not row[0]:
        raise UsageError(f"{masked_url(url)} holds no huedb store (no huedb tables); check --store")


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


def store_client(data: Path | None, store: str | None = None, create: bool = False) -> Client:
    """A client of the SQLite store in `data` (which must exist unless `create`), or of the
    PostgreSQL store of `store` (else HUEDB_STORE) with derived files in `data`, if given."""
    url = store_url(store)
    if not url:
        if data is None:
            raise UsageError("give --path DATA (a SQLite store) or --store URL (PostgreSQL)")
        if not create:
            require_store(data)
        return PersistentClient(path=data, settings=_local_settings(huedb_store=""))
    if not create:
        require_postgres_store(url)
    if data is None:
        return Client(_local_settings(is_persistent=False, huedb_store=url))
    return PersistentClient(path=data, settings=_local_settings(huedb_store=url))


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
