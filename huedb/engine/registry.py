"""The one way an engine is opened: shared per process, store and data path, like Chroma's
cache.

Every entry point (clients, server workers, CLI commands) calls `acquire_engine` and gives
the engine back with `release_engine`; the last release closes it (snapshots written).
Engines are keyed by (store URL, data path): "" and the path for the SQLite store of a
directory, the URL and the directory of this node's derived files (or none) for a
PostgreSQL store. Opening the same key twice in one process with different options is
refused: one store connection (or pool) and one set of indexes serve the whole process.

A process forked from one holding engines must not use them: their SQLite connections,
PostgreSQL sockets, locks and threads belong to the parent. In the child they are set aside,
never closed (closing them there would act on the parent's connections), and a client that
held one opens the store afresh (`engine_for_this_process`). The process's in-memory store
stays: the child's copy of it is the only one it has.
"""

from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

from huedb.engine.engine import Engine
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.errors import InternalError
from huedb.options import EngineOptions, masked_url, resolve_options

EPHEMERAL = ":ephemeral:"
# The file of a Chroma store (what `huedb migrate-chroma` reads).
CHROMA_FILENAME = "chroma.sqlite3"


@dataclass
class _Entry:
    key: tuple[str, str]
    engine: Engine
    options: EngineOptions
    owner: Hashable
    refs: int


_lock = threading.Lock()
_engines: dict[tuple[str, str], _Entry] = {}
# Engines a forked process inherited: kept referenced so that nothing closes them here.
_inherited: list[_Entry] = []


def registry_key(store: str, path: Path | None) -> tuple[str, str]:
    """The key of a store URL ("" for SQLite) and a data path (resolved; EPHEMERAL for
    none: the process's in-memory SQLite store, or a PostgreSQL store without files)."""
    return store, EPHEMERAL if path is None else str(Path(path).expanduser().resolve())


def acquire_engine(
    path: Path | None,
    options: EngineOptions | None = None,
    owner: Hashable = None,
    store: str | None = None,
) -> Engine:
    """The process-wide engine of the store and `path` (None: no directory), opened on
    first use; the store is `options.store`, else `store`, else HUEDB_STORE's.

    `owner` carries what the caller's layer must also agree on (e.g. a client's
    `allow_reset`); a second caller with other options or another owner is refused.
    Operations pass neither: they use the engine as it is open in this process, or open
    it with the environment's options (`resolve_options(env=os.environ)`, with `store`).
    A SQLite data directory holding a Chroma store and no huedb store is refused
    (`InternalError` naming the `huedb migrate-chroma` command), never opened as a new store.
    """
    if options is not None:
        chosen = options.store
    else:
        chosen = store if store is not None else _environment_options(None).store
    key = registry_key(chosen, path)
    with _lock:
        entry = _engines.get(key)
        if entry is not None:
            if _conflicts(entry, options, owner):
                raise ValueError(
                    f"An instance of Chroma already exists for {_shown(key)} with different "
                    "settings"
                )
            entry.refs += 1
            return entry.engine
        if not chosen and path is not None:
            _refuse_chroma_directory(Path(key[1]))
        if options is None:
            options = _environment_options(chosen)
        engine = Engine(None if path is None else Path(key[1]), options)
        _engines[key] = _Entry(key, engine, options, owner, 1)
        return engine


def _refuse_chroma_directory(path: Path) -> None:
    """Refuse a directory holding a Chroma store and no huedb store: opening it would start
    an empty huedb store beside Chroma's data (a switched import would see no collections
    and write elsewhere). A directory holding both opens its huedb store."""
    if (path / CHROMA_FILENAME).is_file() and not (path / DB_FILENAME).is_file():
        raise InternalError(
            f"{path} holds a Chroma store ({CHROMA_FILENAME}) and no huedb store ({DB_FILENAME} "
            "is missing); huedb does not open Chroma's files. Migrate it into a huedb store "
            f"with: huedb migrate-chroma --from {shlex.quote(str(path))} --path NEW_DIR "
            "(then open NEW_DIR)"
        )


def engine_for_this_process(engine: Engine) -> Engine:
    """`engine` itself, or when it was inherited through a fork, this process's engine of
    the same store and path (acquired: give it back with `release_engine`)."""
    with _lock:
        entry = next((e for e in _inherited if e.engine is engine), None)
    if entry is None:
        return engine
    path = entry.key[1]
    return acquire_engine(None if path == EPHEMERAL else Path(path), entry.options, entry.owner)


def _set_aside_inherited_engines() -> None:
    """In a forked child: engines on a store outside this process's memory are set aside."""
    global _lock
    _lock = threading.Lock()  # the parent may have held it while forking
    for key in list(_engines):
        if key != ("", EPHEMERAL):
            _inherited.append(_engines.pop(key))


os.register_at_fork(after_in_child=_set_aside_inherited_engines)


def _environment_options(store: str | None) -> EngineOptions:
    return resolve_options(env=os.environ, args={"store": store})


def _shown(key: tuple[str, str]) -> str:
    store, path = key
    return path if not store else f"{masked_url(store)} ({path})"


def _conflicts(entry: _Entry, options: EngineOptions | None, owner: Hashable) -> bool:
    if options is not None and options != entry.options:
        return True
    return owner is not None and entry.owner is not None and owner != entry.owner


def release_engine(engine: Engine) -> None:
    """Give an engine back; the last holder's release closes it."""
    with _lock:
        for key, entry in list(_engines.items()):
            if entry.engine is engine:
                entry.refs -= 1
                if entry.refs > 0:
                    return
                del _engines[key]
                break
        else:
            return
    engine.close()


def close_all_engines() -> None:
    """Close every engine of this process (Chroma's `clear_system_cache`)."""
    with _lock:
        entries = list(_engines.values())
        _engines.clear()
    for entry in entries:
        entry.engine.close()
