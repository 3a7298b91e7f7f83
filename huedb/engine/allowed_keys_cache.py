"""The keys filters allowed, kept per collection and filter while the store's version of
the collection stays what it was when they were read.

A filtered query reads the keys its filter allows before it searches: on PostgreSQL a
round trip and an index scan (about 0.2 ms for 1,000 keys of 100,000), on SQLite a scan of
the covering metadata index (2.0 ms for 10,000 keys of 100,000, plus 0.2 ms to parse
them: a third of a 10 % filtered query). Applications repeat a few filters (a tenant, a
category) far more often than they write. So keys read in a snapshot where the version
was `v` are the keys that filter allows in every later snapshot whose version is still
`v` and whose collection row is unchanged. The version is the store's:
- PostgreSQL: the collection's oplog head; every change to a record moves it (`oplog.py`:
  a vector change logs entries, any other change advances the counter), and a query whose
  index reflects it searches with the kept keys at once and confirms it with its one read
  of the rows (`postgres_store/rows_at_head.read_filtered`);
- SQLite: the connection's `PRAGMA data_version` (which moves when another connection
  commits, read inside the read transaction: it stays as of its snapshot) with its own
  `total_changes` and the store's count of write transactions (which move when it
  writes, a rollback included), so any write to the database, of any collection, makes
  the kept keys stale (`sqlite_store/store.py`).

Bounded by entries and by the bytes of the key arrays; the least recently used go first,
and an entry read at another version is replaced when that filter is next read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from huedb.engine.catalog import CollectionRow

MAX_ENTRIES = 256
MAX_BYTES = 32 * 1024 * 1024  # 4 M keys: a 40 % filter of 10 M records
MAX_PARAMS = 64  # a filter with more parameters is not kept
MAX_KEY_CHARS = 4096  # nor one whose parameters take more characters (a long $in, many ids)


@dataclass(frozen=True)
class _Entry:
    collection: CollectionRow
    version: object  # the store's version of the collection when the keys were read
    keys: np.ndarray  # uint64, read-only


class AllowedKeysCache:
    """Allowed keys by (collection uuid, filter statement, parameters); thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    @staticmethod
    def key(col: CollectionRow, sql: str, params: list[Any]) -> tuple[str, str, str] | None:
        """The cache key of a filter's allowed-keys statement for a collection; None for a
        filter too long to be worth keeping (such as a long list of ids)."""
        if len(params) > MAX_PARAMS:
            return None
        text = repr(params)
        return None if len(text) > MAX_KEY_CHARS else (col.uuid, sql, text)

    def get(
        self, key: tuple[str, str, str], col: CollectionRow, version: object
    ) -> np.ndarray | None:
        """The keys read for `key` when `col` was as it is and the version `version`, if
        kept."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.version != version or entry.collection != col:
                return None
            self._entries.move_to_end(key)
            return entry.keys

    def put(
        self, key: tuple[str, str, str], col: CollectionRow, version: object, keys: np.ndarray
    ) -> None:
        """Keep `keys`, read in a snapshot where `col` was the row and `version` the version."""
        if keys.nbytes > self._max_bytes:
            return
        keys.setflags(write=False)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.keys.nbytes
            self._entries[key] = _Entry(col, version, keys)
            self._bytes += keys.nbytes
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.keys.nbytes

    def __len__(self) -> int:
        return len(self._entries)
