"""A per-worker cache of each collection's figures (`Engine.collection_figures`: a count
and a sum of lengths over its rows, under the engine lock), shared by `/metrics` and the
console's database stats.

A collection's figures are recomputed at most once per `FIGURES_TTL_S` (15 s; the
environment variable `HUEDB_FIGURES_TTL_S` overrides it) in a worker, one computation at a
time: while one runs, other callers get the last value (they wait only when there is none
yet). `huedb_collection_figures_computations` counts the computations.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from prometheus_client import Counter

from huedb.engine.catalog import CollectionRow
from huedb.engine.engine import Engine
from huedb.server import metric_files

metric_files.install()  # before the counter below opens its worker's file
FIGURES_TTL_S = float(os.environ.get("HUEDB_FIGURES_TTL_S", "15"))

COMPUTATIONS = Counter(
    "huedb_collection_figures_computations",
    "Scans of a collection's counts and bytes for /metrics and the console's stats",
)


class FiguresCache:
    """Collection figures by collection id, each at most `ttl_s` old (see the module doc)."""

    def __init__(self, ttl_s: float = FIGURES_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, dict[str, Any]]] = {}

    def figures(self, engine: Engine, col: CollectionRow) -> dict[str, Any]:
        """The collection's figures, computed now only if the cached ones are too old."""
        last = self._values.get(col.uuid)
        if last is not None and time.monotonic() - last[0] < self.ttl_s:
            return last[1]
        if last is None:
            self._lock.acquire()
        elif not self._lock.acquire(blocking=False):
            return last[1]  # another caller is computing: reuse the last value
        try:
            last = self._values.get(col.uuid)
            if last is not None and time.monotonic() - last[0] < self.ttl_s:
                return last[1]
            value = engine.collection_figures(col)
            COMPUTATIONS.inc()
            self._values[col.uuid] = (time.monotonic(), value)
            return value
        finally:
            self._lock.release()

    def keep_only(self, ids: set[str]) -> None:
        """Forget the figures of collections that no longer exist."""
        for gone in self._values.keys() - ids:
            self._values.pop(gone, None)


FIGURES = FiguresCache()
