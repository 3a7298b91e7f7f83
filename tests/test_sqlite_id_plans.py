"""Selections by id on the SQLite store look the ids up in `records_by_id`.

Written as `r.id IN (...)` next to `r.cid = ?` and `ORDER BY r.key`, SQLite's planner walked
the whole collection in key order through `records_by_collection` to skip a sort (19 ms per
1,000 ids at 100k records, a quarter of a delete's time). Every statement a get, delete and
filtered get by id run is traced here and its query plan read back: the records they select
must come through `records_by_id`. The answers are checked too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from huedb.engine.engine import Engine
from huedb.engine.filters import compile_filter
from huedb.options import EngineOptions
from huedb.record_batch import RecordBatch

N = 300


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    engine = Engine(tmp_path, EngineOptions())
    col = engine.create_collection("c", None, {}, False, "default_tenant", "default_database")
    rng = np.random.default_rng(0)
    engine.add(
        col.uuid,
        RecordBatch(
            ids=[f"r{i}" for i in range(N)],
            embeddings=rng.standard_normal((N, 4)).astype(np.float32),
            metadatas=[{"b": i % 10} for i in range(N)],
        ),
    )
    yield engine, col.uuid
    engine.close()


def _traced(engine: Engine) -> tuple[sqlite3.Connection, list[str]]:
    conn: sqlite3.Connection = engine._store._conn  # type: ignore[attr-defined]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    return conn, statements


def _plans_by_id(conn: sqlite3.Connection, statements: list[str]) -> list[list[str]]:
    """Query plans of the traced statements that select records by a list of ids."""
    conn.set_trace_callback(None)
    plans = []
    for sql in statements:
        if "FROM records r" in sql and "json_each" in sql:
            plans.append([row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")])
    return plans


def test_get_and_delete_by_id_use_the_id_index(engine: tuple[Engine, str]) -> None:
    eng, uuid = engine
    conn, statements = _traced(eng)
    wanted = [f"r{i}" for i in range(0, N, 7)] + ["missing"]
    rows = eng.get(uuid, compile_filter(wanted, None, None), None, None, False)
    assert [r[1] for r in rows] == [f"r{i}" for i in range(0, N, 7)]
    filtered = eng.get(uuid, compile_filter(wanted, {"b": 0}, None), None, None, False)
    assert [r[1] for r in filtered] == [f"r{i}" for i in range(0, N, 70)]
    gone = [f"r{i}" for i in range(1, N, 3)]
    assert eng.delete(uuid, compile_filter(gone, None, None), None) == len(gone)
    plans = _plans_by_id(conn, statements)
    assert len(plans) >= 3
    for plan in plans:
        assert any("records_by_id" in step for step in plan), plan
    left = {r[1] for r in eng.get(uuid, compile_filter(None, None, None), None, None, False)}
    assert left == {f"r{i}" for i in range(N)} - set(gone)
