"""Queries on an index already in memory, confirmed by one store read (engine/confirmed_search.py).

On both stores: a warm unfiltered query makes exactly one store call (`rows_at_head`, one
round trip on PostgreSQL) and no read session; its answers are those of exact search; and
when another engine (another process or node) changed the collection after this engine's
index last caught up, the confirmation fails and the query takes the usual path, so the
change is seen — including a delete of the collection itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from huedb.engine.engine import Engine
from huedb.engine.filters import compile_filter
from huedb.errors import NotFoundError
from huedb.options import EngineOptions
from huedb.record_batch import RecordBatch
from tests import stores
from tests.stores import StoreTarget

store = stores.store

TENANT, DATABASE = "default_tenant", "default_database"
DIM = 16
ALL = compile_filter(None, None, None)


class CountingStore:
    """The engine's real store, counting the calls a query makes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.reads = 0
        self.confirmations = 0

    def read(self) -> Any:
        self.reads += 1
        return self._inner.read()

    def rows_at_head(self, *args: Any) -> Any:
        self.confirmations += 1
        return self._inner.rows_at_head(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _engine(store: StoreTarget, path: Path, exact_max_floats: int | None = None) -> Engine:
    options = {"store": store.url} if store.url else {}
    if exact_max_floats is not None:
        options["exact_max_floats"] = exact_max_floats
    return Engine(path, EngineOptions(**options))


@pytest.fixture
def engines(store: StoreTarget, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one store, as two processes (or nodes) would have."""
    a = _engine(store, tmp_path / "a")
    b = _engine(store, tmp_path / "a" if not store.url else tmp_path / "b")
    yield a, b
    a.close()
    b.close()


def _add(engine: Engine, uuid: str, ids: list[str], vectors: np.ndarray) -> None:
    engine.add(uuid, RecordBatch(ids=ids, embeddings=vectors.astype(np.float32)))


def _query(engine: Engine, uuid: str, queries: np.ndarray, k: int) -> list[list[str]]:
    hits = engine.query(uuid, queries.astype(np.float32), k, ALL, False)
    return [[hits.rows[key][1] for key in keys] for keys in hits.keys]


def _counted(engine: Engine) -> CountingStore:
    counting = CountingStore(engine._store)
    engine._store = counting  # type: ignore[assignment]
    return counting


def test_warm_exact_query_is_one_store_call_with_exact_answers(
    engines: tuple[Engine, Engine],
) -> None:
    a, _ = engines
    col = a.create_collection("warm", None, {}, False, TENANT, DATABASE)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, DIM)).astype(np.float32)
    _add(a, col.uuid, [f"r{i}" for i in range(300)], vectors)
    queries = rng.standard_normal((5, DIM)).astype(np.float32)
    _query(a, col.uuid, queries, 7)  # loads the index if the write did not
    counting = _counted(a)
    hits = a.query(col.uuid, queries, 7, ALL, True)
    assert (counting.confirmations, counting.reads) == (1, 0)
    dists = ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
    for q, (keys, got) in enumerate(zip(hits.keys, hits.distances, strict=True)):
        expected = np.argsort(dists[q], kind="stable")[:7]
        assert [hits.rows[k][1] for k in keys] == [f"r{i}" for i in expected]
        assert np.allclose(got, dists[q][expected], rtol=1e-4)
        for k, i in zip(keys, expected, strict=True):
            assert np.array_equal(np.frombuffer(hits.rows[k][5], np.float32), vectors[i])


def test_warm_graph_query_finds_stored_vectors_exactly(store: StoreTarget, tmp_path: Path) -> None:
    a = _engine(store, tmp_path / "g", exact_max_floats=200 * DIM)
    try:
        col = a.create_collection("graph", None, {}, False, TENANT, DATABASE)
        rng = np.random.default_rng(2)
        vectors = rng.standard_normal((1500, DIM)).astype(np.float32)
        _add(a, col.uuid, [f"r{i}" for i in range(1500)], vectors)
        deadline = time.monotonic() + 60
        while a.indexing_status(col.uuid)["op_indexing_progress"] < 1.0:
            assert time.monotonic() < deadline, "the graph was not built in 60 s"
            time.sleep(0.05)
        _query(a, col.uuid, vectors[:1], 5)  # adopts the finished graph
        counting = _counted(a)
        picks = rng.choice(1500, 40, replace=False)
        hits = a.query(col.uuid, vectors[picks], 5, ALL, False)
        assert (counting.confirmations, counting.reads) == (1, 0)
        for i, keys, dists in zip(picks, hits.keys, hits.distances, strict=True):
            assert hits.rows[keys[0]][1] == f"r{i}" and dists[0] == 0.0
            true = [
                float(((vectors[int(hits.rows[k][1][1:])] - vectors[i]) ** 2).sum()) for k in keys
            ]
            assert np.allclose(dists, true, rtol=1e-4) and dists == sorted(dists)
    finally:
        a.close()


def test_a_change_by_another_engine_is_seen(engines: tuple[Engine, Engine]) -> None:
    a, b = engines
    col = a.create_collection("shared", None, {}, False, TENANT, DATABASE)
    rng = np.random.default_rng(3)
    _add(a, col.uuid, [f"r{i}" for i in range(50)], rng.standard_normal((50, DIM)))
    target = rng.standard_normal((1, DIM)).astype(np.float32)
    assert "new" not in _query(a, col.uuid, target, 3)[0]
    counting = _counted(a)
    _add(b, col.uuid, ["new"], target)
    assert _query(a, col.uuid, target, 3)[0][0] == "new"
    assert counting.confirmations == 1 and counting.reads >= 1  # refused, then the usual path
    b.delete(col.uuid, compile_filter(["new"], None, None), None)
    assert "new" not in _query(a, col.uuid, target, 3)[0]
    b.delete_collection("shared", TENANT, DATABASE)
    with pytest.raises(NotFoundError):
        _query(a, col.uuid, target, 3)
