"""Queries on an index already in memory, confirmed by one store read (engine/confirmed_search.py).

On both stores: a warm unfiltered query makes exactly one store call (`rows_at_head`, one
round trip on PostgreSQL) and no read session; its answers are those of exact search; and
when another engine (another process or node) changed the collection after this engine's
index last caught up, the confirmation fails and the query takes the usual path, so the
change is seen — including a delete of the collection itself.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from huedb.engine.engine import Engine
from huedb.engine.filters import compile_filter
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.engine.sqlite_store.schema import DIGEST_TABLES
from huedb.errors import NotFoundError
from huedb.record_batch import RecordBatch
from tests import stores
from tests.graph_wait import wait_for_engine_graph
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
        self.filtered = 0

    def read(self) -> Any:
        self.reads += 1
        return self._inner.read()

    def rows_at_head(self, *args: Any) -> Any:
        self.confirmations += 1
        return self._inner.rows_at_head(*args)

    def confirm_at_head(self, *args: Any) -> Any:
        self.confirmations += 1
        return self._inner.confirm_at_head(*args)

    def read_filtered(self, *args: Any) -> Any:
        self.filtered += 1
        return self._inner.read_filtered(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


engines = stores.engines


def _add(engine: Engine, uuid: str, ids: list[str], vectors: np.ndarray) -> None:
    metadatas = [{"b": int(i[1:]) % 10} if i[1:].isdigit() else {"b": -1} for i in ids]
    batch = RecordBatch(ids=ids, embeddings=vectors.astype(np.float32), metadatas=metadatas)
    engine.add(uuid, batch)


def _query(
    engine: Engine, uuid: str, queries: np.ndarray, k: int, flt: Any = ALL
) -> list[list[str]]:
    hits = engine.query(uuid, queries.astype(np.float32), k, flt, False)
    return [[hits.rows[key][1] for key in keys] for keys in hits.keys]


def _settle(engine: Engine, uuid: str, query: Any) -> None:
    """Query (`query()`) until one is answered warm (no store read) with no background job
    on the index of `uuid` running or waiting to be taken up. The last of them may have
    recorded a snapshot (pruning the oplog changes the collection's row): the next query
    must still answer warm (`IndexCache.pruned`; without it this test failed every run,
    and 2 runs in 15 on a busy machine when it queried only once before counting)."""
    deadline = time.monotonic() + 60
    counting = _counted(engine)
    try:
        while True:
            reads = counting.reads
            query()
            states = [s for s in engine._indexes._states.values() if s.col.uuid == uuid]
            jobs = [j for s in states for j in (s.build, s.calibrating, s.backlog_pass, s.saving)]
            idle = all(j is None for j in jobs) and all(s.saved_at is None for s in states)
            if idle and counting.reads == reads:
                return
            assert time.monotonic() < deadline, "background index work did not settle in 60 s"
            time.sleep(0.02)
    finally:
        engine._store = counting._inner  # type: ignore[assignment]


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
    a = stores.engine(store, tmp_path / "g", exact_max_floats=200 * DIM)
    try:
        col = a.create_collection("graph", None, {}, False, TENANT, DATABASE)
        rng = np.random.default_rng(2)
        vectors = rng.standard_normal((1500, DIM)).astype(np.float32)
        _add(a, col.uuid, [f"r{i}" for i in range(1500)], vectors)
        wait_for_engine_graph(a, col.uuid)
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


@pytest.mark.parametrize("plan", ["filtered_exact", "filtered_graph"])
def test_warm_filtered_query_reads_once_and_answers_exactly(
    store: StoreTarget, tmp_path: Path, plan: str
) -> None:
    small = 10**9 if plan == "filtered_exact" else 10 * DIM  # allowed x dim below: exact
    a = stores.engine(
        store, tmp_path / "f", exact_max_floats=200 * DIM, filtered_exact_max_floats=small
    )
    try:
        col = a.create_collection("filtered", None, {}, False, TENANT, DATABASE)
        rng = np.random.default_rng(4)
        vectors = rng.standard_normal((1500, DIM)).astype(np.float32)
        _add(a, col.uuid, [f"r{i}" for i in range(1500)], vectors)
        wait_for_engine_graph(a, col.uuid)
        where = compile_filter(None, {"b": {"$in": [3, 7]}}, None)
        _settle(a, col.uuid, lambda: _query(a, col.uuid, vectors[:1], 5, where))  # adopts
        counting = _counted(a)  # the graph (with its vectors) and its snapshot
        picks = [i for i in rng.choice(1500, 60, replace=False) if i % 10 in (3, 7)][:10]
        hits = a.query(col.uuid, vectors[picks], 5, where, False)
        assert (counting.filtered, counting.reads) == (1, 0)
        assert hits.plan == plan
        allowed = [i for i in range(1500) if i % 10 in (3, 7)]
        for i, keys, dists in zip(picks, hits.keys, hits.distances, strict=True):
            got = [int(hits.rows[k][1][1:]) for k in keys]
            assert got[0] == i and dists[0] == 0.0 and set(got) <= set(allowed)
            true = ((vectors[allowed] - vectors[i]) ** 2).sum(-1)
            if plan == "filtered_exact":
                assert got == [allowed[j] for j in np.argsort(true, kind="stable")[:5]]
            assert np.allclose(
                dists, [((vectors[g] - vectors[i]) ** 2).sum() for g in got], rtol=1e-4
            )
    finally:
        a.close()


def test_a_change_by_another_engine_is_seen_by_a_filtered_query(
    engines: tuple[Engine, Engine],
) -> None:
    a, b = engines
    col = a.create_collection("shared-f", None, {}, False, TENANT, DATABASE)
    rng = np.random.default_rng(5)
    _add(a, col.uuid, [f"r{i}" for i in range(50)], rng.standard_normal((50, DIM)))
    where = compile_filter(None, {"b": -1}, None)
    target = rng.standard_normal((1, DIM)).astype(np.float32)
    assert _query(a, col.uuid, target, 3, where) == [[]]
    counting = _counted(a)
    _add(b, col.uuid, ["new"], target)  # metadata b = -1: allowed by the filter
    assert _query(a, col.uuid, target, 3, where) == [["new"]]
    assert counting.filtered == 1 and counting.reads >= 1  # refused, then the usual path
    regex = compile_filter(None, None, {"$regex": "x"})  # PostgreSQL: evaluated in Python
    assert _query(a, col.uuid, target, 3, regex) == [[]]


def _forge_digest(store: StoreTarget, path: Path, like: str, victim: str) -> dict[str, int]:
    """Give record `victim` the vector digest of record `like` (a 64-bit collision cannot be
    found), straight in the store; returns every record's key by id."""
    if store.url:
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE embeddings SET digest = (SELECT e.digest FROM embeddings e "
                "JOIN records r ON r.key = e.key WHERE r.id = %s) WHERE key = "
                "(SELECT key FROM records WHERE id = %s)",
                (like, victim),
            )
            return dict(conn.execute("SELECT id, key FROM records").fetchall())
    with contextlib.closing(sqlite3.connect(path / DB_FILENAME)) as conn, conn:
        keys = dict(conn.execute("SELECT id, key FROM records").fetchall())
        digest = conn.execute(
            " UNION ALL ".join(f"SELECT digest FROM {t} WHERE key = ?" for t in DIGEST_TABLES),
            (keys[like],) * len(DIGEST_TABLES),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO digests_recent (digest, key) VALUES (?, ?)", (digest, keys[victim])
        )
    return keys


def test_probe_counts_a_digest_match_only_when_the_vector_is_equal(
    store: StoreTarget, tmp_path: Path
) -> None:
    """A warm read finds the records holding a query vector through its digest and compares
    the vectors that come back: a record whose digest collides with the query's but holds
    another vector is not an exact match (under the session's budget and another alike)."""
    a = stores.engine(store, tmp_path / "d")
    try:
        col = a.create_collection("digests", None, {}, False, TENANT, DATABASE)
        rng = np.random.default_rng(7)
        vectors = rng.standard_normal((20, DIM)).astype(np.float32)
        _add(a, col.uuid, [f"r{i}" for i in range(20)], vectors)
        keys = _forge_digest(store, tmp_path / "d", "r3", "r4")
        col = a.get_collection_by_uuid(col.uuid)
        timeout = a.options.query_timeout
        for budget in (timeout, timeout + 1.5):
            seen = a._store.rows_at_head(col, [keys["r9"]], vectors[3:4], False, budget)
            assert seen.same_vector == [[keys["r3"]]]
            assert set(seen.rows) == {keys["r9"], keys["r3"]}
            assert seen.rows[keys["r3"]][1] == "r3" and seen.head > 0
        hits = a.query(col.uuid, vectors[3:4], 3, ALL, False)
        dists = ((vectors - vectors[3]) ** 2).sum(-1)
        expected = np.argsort(dists, kind="stable")[:3]
        assert [hits.rows[k][1] for k in hits.keys[0]] == [f"r{i}" for i in expected]
    finally:
        a.close()


def test_warm_query_on_a_loaded_snapshot_ranks_with_stored_vectors(
    store: StoreTarget, tmp_path: Path
) -> None:
    """A graph loaded from another engine's snapshot holds no float32 vectors: the one
    store call then reads the candidates' vectors, which rank them (exact distances)."""
    a = stores.engine(store, tmp_path / "s", exact_max_floats=200 * DIM)
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((1500, DIM)).astype(np.float32)
    try:
        col = a.create_collection("snap", None, {}, False, TENANT, DATABASE)
        _add(a, col.uuid, [f"r{i}" for i in range(1500)], vectors)
        wait_for_engine_graph(a, col.uuid)
        _query(a, col.uuid, vectors[:1], 5)  # adopts the graph and writes its snapshot
    finally:
        a.close()
    b = stores.engine(store, tmp_path / "s", exact_max_floats=200 * DIM)
    try:
        _query(b, col.uuid, vectors[:1], 5)  # loads the snapshot
        index = b._indexes.warm(col.uuid)[1]
        assert index.uses_graph and not index.has_vectors
        counting = _counted(b)
        queries = rng.standard_normal((6, DIM)).astype(np.float32)
        hits = b.query(col.uuid, queries, 5, ALL, False)
        assert (counting.confirmations, counting.reads) == (1, 0)
        dists = ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
        for q, (keys, got) in enumerate(zip(hits.keys, hits.distances, strict=True)):
            true = [float(dists[q][int(hits.rows[k][1][1:])]) for k in keys]
            assert np.allclose(got, true, rtol=1e-4) and got == sorted(got)
            assert got[0] == pytest.approx(float(dists[q].min()), rel=1e-4)
    finally:
        b.close()


def test_a_collection_change_by_another_engine_is_not_confirmed(
    engines: tuple[Engine, Engine],
) -> None:
    """A warm read remembers the collection's decoded row; when another engine changed the
    row (here its metadata and name), the read returns the new row, so the confirmation
    fails and the usual path answers with the collection as it now is."""
    a, b = engines
    col = a.create_collection("meta", None, {}, False, TENANT, DATABASE)
    rng = np.random.default_rng(8)
    _add(a, col.uuid, [f"r{i}" for i in range(30)], rng.standard_normal((30, DIM)))
    target = rng.standard_normal((1, DIM)).astype(np.float32)
    first = _query(a, col.uuid, target, 3)
    counting = _counted(a)
    assert _query(a, col.uuid, target, 3) == first
    assert (counting.confirmations, counting.reads) == (1, 0)
    b.update_collection(col.uuid, "renamed", {"v": 2}, None)
    assert _query(a, col.uuid, target, 3) == first
    assert counting.confirmations == 2 and counting.reads == 1  # refused, then the usual path
    held = a._indexes.warm(col.uuid)
    assert held is not None and held[0].name == "renamed" and held[0].metadata == {"v": 2}
    assert _query(a, col.uuid, target, 3) == first
    assert counting.confirmations == 3 and counting.reads == 1  # current again: confirmed


def test_repeated_filters_see_every_record_change_by_another_engine(
    store: StoreTarget, engines: tuple[Engine, Engine]
) -> None:
    """Both stores keep the keys a filter allowed while the store's version stays put
    (engine/allowed_keys_cache.py: PostgreSQL's collection head, SQLite's data_version and
    total_changes); a change that logs no oplog entry (metadata or document only), by
    another engine or by this one, must still move it, or the kept keys would hide it.
    Each answer is compared with an exact search over what the filter allows after the
    change."""
    a, b = engines
    col = a.create_collection("kept", None, {}, False, TENANT, DATABASE)
    rng = np.random.default_rng(9)
    vectors = rng.standard_normal((60, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(60)]
    batch = RecordBatch(
        ids=ids,
        embeddings=vectors,
        metadatas=[{"b": i % 3} for i in range(60)],
        documents=[f"doc {'red' if i % 4 == 0 else 'blue'}" for i in range(60)],
    )
    a.add(col.uuid, batch)
    meta = {i: i % 3 for i in range(60)}
    docs = {i: "red" if i % 4 == 0 else "blue" for i in range(60)}
    where = compile_filter(None, {"b": 0}, None)
    contains = compile_filter(None, None, {"$contains": "red"})
    target = rng.standard_normal((1, DIM)).astype(np.float32)
    dists = ((vectors - target) ** 2).sum(-1)

    def expected(allowed: set[int]) -> list[list[str]]:
        ranked = [i for i in np.argsort(dists, kind="stable") if i in allowed]
        return [[f"r{i}" for i in ranked[:60]]]

    def check() -> None:
        assert _query(a, col.uuid, target, 60, where) == expected(
            {i for i, v in meta.items() if v == 0}
        )
        assert _query(a, col.uuid, target, 60, contains) == expected(
            {i for i, d in docs.items() if d == "red"}
        )

    check()
    check()  # warm now: PostgreSQL reads the allowed keys and keeps them
    if store.url:  # PostgreSQL: the kept keys' queries read once, as unfiltered ones
        warm = a._store._warm  # type: ignore[attr-defined]
        counted = CountingStore(warm)
        a._store._warm = counted  # type: ignore[attr-defined]
        check()
        assert counted.confirmations == 2
        a._store._warm = warm  # type: ignore[attr-defined]
    else:  # SQLite: the kept keys' queries read no keys
        session = a._store._session  # type: ignore[attr-defined]
        reads = []
        read_keys = session.keys_selected
        session.keys_selected = lambda sql, params: reads.append(sql) or read_keys(sql, params)
        check()
        assert reads == []
        del session.keys_selected
    for step in range(12):
        i = int(rng.integers(60))
        writer = b if step < 6 else a  # another engine (process, node), then this one
        if step % 2 == 0:
            meta[i] = 0 if meta[i] else 1  # into the filter or out of it
            writer.update(col.uuid, RecordBatch(ids=[f"r{i}"], metadatas=[{"b": meta[i]}]))
        else:
            docs[i] = "blue" if docs[i] == "red" else "red"
            writer.update(col.uuid, RecordBatch(ids=[f"r{i}"], documents=[f"doc {docs[i]}"]))
        check()
        check()


def test_rows_a_node_keeps_follow_every_change(engines: tuple[Engine, Engine]) -> None:
    """A writer's node keeps the rows it wrote (PostgreSQL: postgres_store/row_cache.py), so
    its warm queries read no rows; every later change, by it or another node (documents,
    metadata, deletes, inserts), is seen by its next query."""
    a, b = engines
    col = a.create_collection("kept", None, {}, False, TENANT, DATABASE)
    rng = np.random.default_rng(8)
    vectors = rng.standard_normal((40, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(40)]
    a.add(col.uuid, RecordBatch(ids=ids, embeddings=vectors, documents=[f"d{i}" for i in ids]))
    target = vectors[5:6]

    def top() -> tuple[str, str | None, str | None]:
        hits = a.query(col.uuid, target, 1, ALL, False)
        row = hits.rows[hits.keys[0][0]]
        return row[1], row[2], row[4]  # id, document, stored metadata

    full_reads = 0
    if a._store.kind == "postgresql":  # count the reads that fetch rows from the database
        warm = a._store._warm  # type: ignore[attr-defined]
        inner = warm.rows_at_head

        def counted(*args: Any) -> Any:
            nonlocal full_reads
            full_reads += 1
            return inner(*args)

        warm.rows_at_head = counted
    assert top() == ("r5", "dr5", None)
    assert top() == ("r5", "dr5", None)
    assert full_reads == 0  # the rows this node wrote answered (SQLite: nothing counted)
    b.update(col.uuid, RecordBatch(ids=["r5"], documents=["by b"]))
    assert top() == ("r5", "by b", None)
    b.update(col.uuid, RecordBatch(ids=["r5"], metadatas=[{"m": 1}]))
    assert top() == ("r5", "by b", '{"m":1}')
    a.update(col.uuid, RecordBatch(ids=["r5"], documents=["by a"]))
    assert top() == ("r5", "by a", '{"m":1}')
    b.delete(col.uuid, compile_filter(["r5"], None, None), None)
    assert top()[0] != "r5"
    b.add(col.uuid, RecordBatch(ids=["n"], embeddings=target, documents=["new"]))
    assert top() == ("n", "new", None)
    a.add(col.uuid, RecordBatch(ids=["m"], embeddings=target * 1.0001, documents=["mine"]))
    assert top()[0] in ("n", "m")
