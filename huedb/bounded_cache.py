"""A small thread-safe mapping that keeps at most a fixed number of entries, dropping the
least recently used: for per-collection facts a process learns once and may forget (a
server that sees many short-lived collections must not keep one entry per collection for
ever)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `max_entries` entries; `get` refreshes an entry, `put` may drop the oldest."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("a bounded cache needs room for at least one entry")
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value kept for `key`, or None."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Keep `value` for `key`, dropping the least recently used entry when full."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget `key` (nothing happens when it is not kept)."""
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
