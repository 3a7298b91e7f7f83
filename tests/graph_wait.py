"""Waiting until a collection's HNSW graph serves: its indexing progress reaches 1.0,
through a client's collection or an engine."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import huedb
    from huedb.api.types import IndexingStatus
    from huedb.engine.engine import Engine

POLL_S = 0.02


def wait_for_graph(col: huedb.Collection, seconds: float = 60) -> IndexingStatus:
    """The status of `col` once its graph serves; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while (status := col.get_indexing_status()).op_indexing_progress < 1.0:
        if time.monotonic() >= deadline:
            raise AssertionError(f"the graph was not built in {seconds:g} s: {status}")
        time.sleep(POLL_S)
    return status


def wait_for_engine_graph(engine: Engine, uuid: str, seconds: float = 60) -> dict[str, Any]:
    """The status of collection `uuid` of `engine` once its graph serves; fails after
    `seconds`."""
    deadline = time.monotonic() + seconds
    while (status := engine.indexing_status(uuid))["op_indexing_progress"] < 1.0:
        if time.monotonic() >= deadline:
            raise AssertionError(f"the graph was not built in {seconds:g} s: {status}")
        time.sleep(POLL_S)
    return status
