"""Two huedb nodes on one PostgreSQL store, each with its own directory of snapshots: the
node that writes and snapshots must not prune oplog entries the other node's snapshot still
needs, or that node reloads every vector from PostgreSQL and rebuilds its graph on its next
query (postgres_store/oplog.py, "Pruning across nodes")."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from huedb.engine.engine import Engine
from huedb.engine.filters import compile_filter
from huedb.options import EngineOptions
from huedb.record_batch import RecordBatch
from tests.graph_wait import wait_for_engine_graph

DIM = 16
ALL = compile_filter(None, None, None)


def _node(url: str, path: Path) -> Engine:
    # Graphs from 100 vectors on; a snapshot (and a prune) after every 20 changes.
    return Engine(path, EngineOptions(store=url, exact_max_floats=100 * DIM, snapshot_every=20))


def _graph_ready(engine: Engine, uuid: str, probe: np.ndarray) -> None:
    deadline = time.monotonic() + 60
    wait_for_engine_graph(engine, uuid)
    engine.query(uuid, probe, 1, ALL, False)  # adopts the graph, then snapshots it...
    states = engine._indexes._states.values()
    while any(s.saving is not None or s.saved_at is not None for s in states):
        # ...in a thread: a later call registers it (`index_holders`) and prunes
        assert time.monotonic() < deadline, "the snapshot was not written in 60 s"
        time.sleep(0.05)
        engine.indexing_status(uuid)


def _pruned_seq(url: str, uuid: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT pruned_seq FROM collections WHERE uuid = %s", (uuid,)
        ).fetchone()[0]


def test_a_writing_node_keeps_what_the_other_nodes_snapshot_needs(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = _node(pg_url, tmp_path / "a"), _node(pg_url, tmp_path / "b")
    try:
        col = a.create_collection("shared", None, {}, False, "default_tenant", "default_database")
        rng = np.random.default_rng(7)
        vectors = rng.standard_normal((400, DIM)).astype(np.float32)
        a.add(col.uuid, RecordBatch(ids=[f"r{i}" for i in range(400)], embeddings=vectors))
        _graph_ready(a, col.uuid, vectors[:1])
        _graph_ready(b, col.uuid, vectors[:1])
        b_snapshot = _pruned_seq(pg_url, col.uuid)  # b's snapshot and prune came last
        for start in range(400, 600, 10):  # node A writes on, snapshots and prunes often
            batch = rng.standard_normal((10, DIM)).astype(np.float32)
            ids = [f"r{i}" for i in range(start, start + 10)]
            a.add(col.uuid, RecordBatch(ids=ids, embeddings=batch))
            a.query(col.uuid, batch[:1], 1, ALL, False)
        assert _pruned_seq(pg_url, col.uuid) <= b_snapshot  # held back for node B
        caplog.clear()
        caplog.set_level(logging.INFO, logger="huedb.engine.index_cache")
        hits = b.query(col.uuid, batch[-1:], 1, ALL, False)
        assert hits.rows[hits.keys[0][0]][1] == ids[-1]  # B sees A's last write...
        reloads = [r.getMessage() for r in caplog.records if "from the store" in r.getMessage()]
        assert reloads == []  # ...by catching up from the oplog, not by a reload
    finally:
        a.close()
        b.close()
