"""The PostgreSQL store against a real PostgreSQL (`pg_url`), compared with the SQLite store.

Store level (`engine/store.py`): the catalog raises the SQLite store's errors; records round
trip bit for bit with their metadata types; every filter operator answers exactly as on
SQLite over a randomised corpus (differential, the same operations on both stores); the
time budget stops a statement; a stopped PostgreSQL gives StorageUnavailableError quickly
and the same store object works again once it is back; a copy is a SQLite store file the
SQLite store opens with equal records, and loads back into PostgreSQL.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg_pool import ConnectionPool

import huedb
from huedb.engine import oplog_read
from huedb.engine.catalog import DEFAULT_DATABASE_ID, CollectionRow
from huedb.engine.filters import compile_filter
from huedb.engine.postgres_store import PostgresStore
from huedb.engine.postgres_store import oplog as pg_oplog
from huedb.engine.postgres_store.connection import PoolSettings
from huedb.engine.postgres_store.statistics import (
    CHECK_EVERY_ROWS,
    RECHECK_AFTER_S,
    StatisticsRefresher,
)
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.engine.sqlite_store.store import SQLiteStore
from huedb.engine.store import Store
from huedb.errors import QueryTimeoutError, StorageUnavailableError
from huedb.options import EngineOptions
from huedb.record_batch import RecordBatch
from tests.pg_cluster import PgCluster

TENANT, DATABASE = "default_tenant", "default_database"
DIM = 8


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_url, EngineOptions(), PoolSettings(timeout=3.0))
    with store.write() as db:
        db.ensure_defaults(TENANT, DATABASE)
    yield store
    store.close()


@pytest.fixture
def sqlite_store() -> Iterator[SQLiteStore]:
    store = SQLiteStore(None, EngineOptions())
    with store.write() as db:
        db.ensure_defaults(TENANT, DATABASE)
    yield store
    store.close()


def _outcome(call: Any) -> tuple[str, str]:
    """What a call did: ("ok", repr of its result) or (error class, message)."""
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - the outcome is compared, whatever it is
        return type(exc).__name__, str(exc)
    return "ok", repr(result)


def _catalog_script(store: Store) -> list[tuple[str, str]]:
    """The same catalog operations, each in its own write or read session."""
    outcomes = []

    def step(write: bool, action: Any) -> None:
        def call() -> Any:
            with store.write() if write else store.read() as db:
                return action(db)

        outcomes.append(_outcome(call))

    def names(rows: list) -> list[str]:
        return [r.name for r in rows]

    db_id = DEFAULT_DATABASE_ID
    step(True, lambda db: db.create_tenant("t-one"))
    step(True, lambda db: db.create_tenant("t-one"))
    step(False, lambda db: db.get_tenant("t-missing"))
    step(True, lambda db: db.create_database("d-one", "t-missing"))
    step(True, lambda db: db.create_database("d-one", "t-one"))
    step(True, lambda db: db.create_database("d-one", "t-one"))
    step(False, lambda db: [d["name"] for d in db.list_databases("t-one", None, None)])
    step(False, lambda db: db.get_database("d-missing", "t-one"))
    step(True, lambda db: db.insert_collection(db_id, "alpha", {"m": 1}, {"c": 1}).name)
    step(True, lambda db: db.insert_collection(db_id, "alpha", None, {}))
    step(True, lambda db: db.insert_collection(db_id, "beta", None, {}).name)
    step(True, lambda db: db.set_alias(db_id, "alpha", "beta", True))
    step(True, lambda db: db.set_alias(db_id, "al", "missing", True))
    step(True, lambda db: db.set_alias(db_id, "al", "alpha", False))
    step(True, lambda db: db.set_alias(db_id, "al", "alpha", True))
    step(True, lambda db: db.set_alias(db_id, "al", "alpha", True))
    step(True, lambda db: db.insert_collection(db_id, "al", None, {}))
    step(False, lambda db: db.collection_by_name(db_id, "al").name)
    step(False, lambda db: db.collection_by_name(db_id, "al", follow_alias=False))
    step(True, lambda db: db.set_alias(db_id, "al", "beta", False))
    step(False, lambda db: db.list_aliases(db_id)[0]["collection"])

    def rename(db: Any, old: str, new: str) -> None:
        db.update_collection(db.collection_by_name(db_id, old), new, None, None)

    step(True, lambda db: rename(db, "alpha", "beta"))
    step(True, lambda db: rename(db, "alpha", "al"))
    step(True, lambda db: rename(db, "alpha", "gamma"))
    step(
        False,
        lambda db: names(db.list_collections(db_id, None, None)) and db.count_collections(db_id),
    )
    step(False, lambda db: sorted(names(db.list_collections(db_id, 1, 1))) != [])
    step(True, lambda db: db.delete_alias(db_id, "nope"))
    step(True, lambda db: db.delete_alias(db_id, "al"))
    step(False, lambda db: db.aliases_of(db.collection_by_name(db_id, "beta").cid))
    step(False, lambda db: db.collection_by_uuid("00000000-0000-0000-0000-00000000abcd"))
    step(True, lambda db: len(db.delete_database("d-one", "t-one")))
    step(True, lambda db: db.delete_database("d-one", "t-one"))
    return outcomes


def test_catalog_errors_as_sqlite(pg_store: PostgresStore, sqlite_store: SQLiteStore) -> None:
    pg, lite = _catalog_script(pg_store), _catalog_script(sqlite_store)
    assert pg == lite
    assert sum(kind != "ok" for kind, _ in pg) >= 14  # the script exercises the errors


def _metadata_corpus(rng: random.Random, n: int) -> list[dict[str, Any] | None]:
    words = ["a", "b", "ab", "x%y", "u_v", "back\\slash", "ünï", "日本", ""]
    out: list[dict[str, Any] | None] = []
    for _ in range(n):
        if rng.random() < 0.1:
            out.append(None)
            continue
        m: dict[str, Any] = {}
        if rng.random() < 0.8:
            m["i"] = rng.choice([rng.randint(-5, 5), 2**63 - 1, -(2**63), 2**53 + 1])
        if rng.random() < 0.7:
            m["f"] = rng.choice([rng.randint(-5, 5) / 2, 0.1, 0.1 + 0.2, 2.0**53, -0.0, 1e300])
        if rng.random() < 0.5:
            m["b"] = rng.random() < 0.5
        if rng.random() < 0.7:
            m["s"] = rng.choice(words)
        if rng.random() < 0.6:  # one key, every type
            m["m"] = rng.choice([1, 1.0, True, False, 0, "1", "true", 2.5])
        if rng.random() < 0.5:
            m["ai"] = [rng.randint(0, 4) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.4:
            m["as"] = [rng.choice(words[:4]) for _ in range(rng.randint(1, 3))]
        out.append(m or None)
    return out


def _documents(rng: random.Random, n: int) -> list[str | None]:
    vocab = ["hello", "Hello", "world", "foo_bar", "50%", "a\\b", "naïve", "ab", "abc", "xyzzy"]
    return [
        None
        if rng.random() < 0.1
        else " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 5)))
        for _ in range(n)
    ]


def _load(
    store: Store, batches: list[RecordBatch], deletes: list[str], updates: RecordBatch
) -> int:
    with store.write() as db:
        cid = db.insert_collection(DEFAULT_DATABASE_ID, "corpus", None, {}).cid
    for batch in batches:
        with store.write() as db:
            db.insert_records(cid, batch)
    with store.write() as db:
        keys = db.existing_keys(cid, updates.ids)
        db.update_records(cid, [keys[i] for i in updates.ids], updates)
    with store.write() as db:
        keys = db.existing_keys(cid, deletes)
        db.delete_keys(cid, sorted(keys.values()))
    return cid


def _random_where(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and rng.random() < 0.35:
        op = rng.choice(["$and", "$or"])
        return {op: [_random_where(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if rng.random() < 0.2:
        return {"#document": _random_document(rng, depth + 1)}
    key = rng.choice(["i", "f", "b", "s", "m", "ai", "as", "missing"])
    scalars = [0, 1, -1, 2, 2.0, 0.5, 0.1, 0.1 + 0.2, 0.30000000000000004, 2**63 - 1, 2**53,
               2**53 + 1, 9007199254740992.0, -0.0, 1e300, True, False, "a", "ab", "1", "true",
               "ünï", "", "x%y", "u_v"]  # fmt: skip
    op = rng.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains",
                     "$not_contains", "plain"])  # fmt: skip
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return {key: {op: rng.choice([v for v in scalars if type(v) in (int, float)])}}
    if op in ("$in", "$nin"):
        kind = rng.choice([(int, float), (str,), (bool,)])
        pool = [v for v in scalars if type(v) in kind]
        values = rng.sample(pool, rng.randint(1, min(4, len(pool))))
        # floats first: a list starting with an int may not hold a float (Chroma's server
        # reads a list by its first value; engine/filters.ints_then_a_float)
        values.sort(key=lambda v: type(v) is int)
        return {key: {op: values}}
    value = rng.choice([v for v in scalars if v != ""] if op.endswith("contains") else scalars)
    return {key: value} if op == "plain" else {key: {op: value}}


def _random_document(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and rng.random() < 0.3:
        op = rng.choice(["$and", "$or"])
        return {op: [_random_document(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    op = rng.choice(["$contains", "$not_contains", "$regex", "$not_regex"])
    if op.endswith("contains"):
        text = rng.choice(["hello", "Hello", "o w", "_", "%", "50%", "a\\b", "ï", "ab", "abc",
                           "lo wor", "xyzzy foo", "hello hello"])  # fmt: skip
    else:
        text = rng.choice([r"^hel+o", r"(?i)HELLO", r"\bab\b", r"\d+%", r"[[:alpha:]]+_",
                           r"^$", r"\w{5}\s\w", r"na\u{ef}ve", r"(foo|xyz)+", r"z$"])  # fmt: skip
    return {op: text}


@pytest.fixture
def corpus_pair(pg_store: PostgresStore, sqlite_store: SQLiteStore) -> tuple[int, int]:
    rng = random.Random(14)
    n = 600
    ids = [f"id{i}" for i in range(n)]
    vectors = np.random.default_rng(14).standard_normal((n, DIM)).astype(np.float32)
    metadatas, documents = _metadata_corpus(rng, n), _documents(rng, n)
    batches = [
        RecordBatch(
            ids=ids[s : s + 200],
            embeddings=vectors[s : s + 200],
            metadatas=metadatas[s : s + 200],
            documents=documents[s : s + 200],
        )
        for s in range(0, n, 200)
    ]
    chosen = rng.sample(ids, 60)
    updates = RecordBatch(
        ids=chosen[:40],
        embeddings=vectors[:40] * 2,
        metadatas=[{"s": "ab", "i": None, "new": 1.5} for _ in range(40)],
        documents=["hello updated"] * 40,
    )
    cids = (_load(pg_store, batches, chosen[40:], updates),)
    return cids[0], _load(sqlite_store, batches, chosen[40:], updates)


def _answers(store: Store, cid: int, flt: Any) -> tuple[list[str], list[str], int]:
    with store.read() as db:
        rows = db.fetch_rows(cid, flt, None, None, False)
        allowed = db.allowed_keys(cid, flt)
        by_key = {
            r[0]: r[1] for r in db.fetch_by_keys(cid, [int(k) for k in allowed], False).values()
        }
        page = db.select_keys(cid, flt, 7, 3)
    return [r[1] for r in rows], sorted(by_key.values()), len(page)


def test_filters_equal_sqlite_on_random_corpus(
    pg_store: PostgresStore, sqlite_store: SQLiteStore, corpus_pair: tuple[int, int]
) -> None:
    pg_cid, lite_cid = corpus_pair
    rng = random.Random(2026)
    nonempty = 0
    for n in range(400):
        where = _random_where(rng) if rng.random() < 0.8 else None
        where_document = _random_document(rng) if rng.random() < 0.35 else None
        ids = rng.sample([f"id{i}" for i in range(620)], 50) if rng.random() < 0.15 else None
        flt = compile_filter(ids, where, where_document)
        pg, lite = _answers(pg_store, pg_cid, flt), _answers(sqlite_store, lite_cid, flt)
        assert pg == lite, f"filter {n}: where={where!r} where_document={where_document!r}"
        nonempty += bool(pg[0])
    assert nonempty > 150  # the filters select something, not only empty answers


def test_every_operator_is_exercised_on_both_stores(
    pg_store: PostgresStore, sqlite_store: SQLiteStore, corpus_pair: tuple[int, int]
) -> None:
    pg_cid, lite_cid = corpus_pair
    cases = [
        ({"i": 2**63 - 1}, None),
        ({"i": {"$gt": 2**53}}, None),  # 2**53 + 1 is above, exactly
        ({"f": {"$eq": 0.30000000000000004}}, None),
        ({"f": 0.3}, None),  # selects nothing: 0.1 + 0.2 != 0.3 on both
        ({"m": 1}, None),  # 1 and 1.0, not True
        ({"m": True}, None),
        ({"m": {"$ne": 1}}, None),
        ({"m": {"$nin": ["1", "true"]}}, None),
        ({"ai": {"$contains": 3}}, None),
        ({"ai": {"$not_contains": 3}}, None),
        ({"as": {"$contains": "ab"}}, None),
        ({"$or": [{"#document": {"$regex": "^hel+o"}}, {"s": "a"}]}, None),
        ({"$and": [{"s": {"$ne": "a"}}, {"#document": {"$not_regex": "(?i)hello"}}]}, None),
        ({"$or": [{"#document": {"$not_contains": "hello"}}, {"i": {"$lt": 0}}]}, None),
        (None, {"$contains": "50%"}),
        (None, {"$contains": "_"}),
        (None, {"$not_contains": "a\\b"}),
        (None, {"$or": [{"$regex": r"\d+%"}, {"$not_contains": "o"}]}),
    ]
    for where, where_document in cases:
        flt = compile_filter(None, where, where_document)
        pg, lite = _answers(pg_store, pg_cid, flt), _answers(sqlite_store, lite_cid, flt)
        assert pg == lite, f"where={where!r} where_document={where_document!r}"
        assert len(pg[0]) < 580, f"where={where!r} selects every record"
        assert pg[0] or where == {"f": 0.3}, f"where={where!r} selects nothing"


def test_records_round_trip_bit_exact(pg_store: PostgresStore) -> None:
    vectors = np.array(
        [[0.1, -0.0, np.float32(1e-45), 3.4028235e38, -1.5, 2.0, np.nan, np.inf]] * 3,
        dtype=np.float32,
    )
    vectors[1] *= -1
    metadatas = [
        {"i": 2**63 - 1, "neg": -(2**63), "f": 0.1 + 0.2, "b": True, "s": "ünï \\ %", "l": [1, 2]},
        {"big": 2**64, "nan": float("nan"), "ls": ["x", "y"], "lb": [True, False], "lf": [0.5]},
        None,
    ]
    batch = RecordBatch(
        ids=["r0", "r1", "r2"],
        embeddings=vectors,
        metadatas=metadatas,
        documents=["doc ö", None, ""],
        uris=["u0", None, "u2"],
    )
    with pg_store.write() as db:
        col = db.insert_collection(DEFAULT_DATABASE_ID, "rt", None, {})
        db.insert_records(col.cid, batch)
    flt = compile_filter(None, None, None)
    with pg_store.read() as db:
        rows = db.fetch_rows(col.cid, flt, None, None, True)
        chunks = list(db.vector_chunks(col.cid, DIM, 2))
        exact = db.keys_with_vector(col.cid, vectors[1])
        changes = list(db.oplog_changes(col.cid, 0))
        head = db.oplog_head(col.cid)
    assert [r[1] for r in rows] == ["r0", "r1", "r2"]
    assert [r[2] for r in rows] == ["doc ö", None, ""]
    assert [r[3] for r in rows] == ["u0", None, "u2"]
    assert b"".join(r[5] for r in rows) == vectors.tobytes()
    assert np.concatenate([v for _, v in chunks]).tobytes() == vectors.tobytes()
    assert exact == [rows[1][0]]
    import json

    stored = [json.loads(r[4]) if r[4] else None for r in rows]
    assert stored[0] == metadatas[0]
    assert type(stored[0]["i"]) is int and type(stored[0]["f"]) is float
    assert stored[1] == {"big": float(2**64), "ls": ["x", "y"], "lb": [True, False], "lf": [0.5]}
    assert head == 3 and [c[0] for c in changes] == [1, 2, 3]
    assert [c[2] for c in changes] == [vectors[i].tobytes() for i in range(3)]


def _collection_of(store: Store, name: str, vectors: np.ndarray) -> CollectionRow:
    """A new collection `name` holding one record per vector (ids "r0", "r1", ...)."""
    with store.write() as db:
        col = db.insert_collection(DEFAULT_DATABASE_ID, name, None, {})
        ids = [f"r{i}" for i in range(len(vectors))]
        db.insert_records(col.cid, RecordBatch(ids=ids, embeddings=vectors))
    return col


@pytest.mark.parametrize("kind", ["pg", "sqlite"])
def test_count_changes_and_changed_keys_agree_with_oplog_changes(
    kind: str, pg_store: PostgresStore, sqlite_store: SQLiteStore
) -> None:
    """After inserts, updates (one key twice) and deletes, `count_changes(cid, w)` is the
    length of `oplog_changes(cid, w)` and `changed_keys(cid, w)` its distinct keys in
    order, at every watermark; 0 past the head."""
    store: Store = pg_store if kind == "pg" else sqlite_store
    vectors = np.random.default_rng(7).standard_normal((6, DIM)).astype(np.float32)
    col = _collection_of(store, "counted", vectors)
    with store.read() as db:
        keys = [
            r[0]
            for r in db.fetch_rows(col.cid, compile_filter(None, None, None), None, None, False)
        ]
    for changed in ([keys[1], keys[2]], [keys[1]]):
        with store.write() as db:
            batch = RecordBatch(ids=["x"] * len(changed), embeddings=vectors[: len(changed)] + 1)
            db.update_records(col.cid, changed, batch)
    with store.write() as db:
        db.delete_keys(col.cid, [keys[4]])
    with store.read() as db:
        head = db.oplog_head(col.cid)
        seqs = [c[0] for c in db.oplog_changes(col.cid, 0)]
        assert len(seqs) == 10
        for watermark in [0, *seqs]:
            expected = list(db.oplog_changes(col.cid, watermark))
            assert db.count_changes(col.cid, watermark) == len(expected), watermark
            assert db.changed_keys(col.cid, watermark) == sorted({c[1] for c in expected})
        assert db.count_changes(col.cid, head) == 0


@pytest.mark.parametrize("chunk", [3, 8_192])
@pytest.mark.parametrize("kind", ["pg", "sqlite"])
def test_changes_read_a_chunk_at_a_time_are_the_oplogs(
    kind: str,
    chunk: int,
    pg_store: PostgresStore,
    sqlite_store: SQLiteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`oplog_read.read_changes` (the rows read `chunk` at a time into one matrix) gives,
    at every watermark, what the oplog's rows say: each changed key once, in the order of
    its first entry, gone or with its current vector, and the number of entries; after
    random adds, updates (some keys several times) and deletes."""
    monkeypatch.setattr(oplog_read, "CHUNK_ROWS", chunk)
    store: Store = pg_store if kind == "pg" else sqlite_store
    rng = random.Random(11)
    vectors = np.random.default_rng(11).standard_normal((40, DIM)).astype(np.float32)
    col = _collection_of(store, "chunked", vectors[:30])
    with store.read() as db:
        everything = compile_filter(None, None, None)
        keys = [r[0] for r in db.fetch_rows(col.cid, everything, None, None, False)]
    for step in range(12):
        with store.write() as db:
            picked = rng.sample(keys, 3)
            if step % 4 == 3:
                db.delete_keys(col.cid, picked[:1])
                keys.remove(picked[0])
            else:
                batch = RecordBatch(ids=["x"] * 3, embeddings=vectors[30 + step % 7 :][:3])
                db.update_records(col.cid, picked, batch)
    with store.read() as db:
        seqs = [c[0] for c in db.oplog_changes(col.cid, 0)]
        assert len(seqs) > 3 * chunk or chunk > len(seqs)
        for watermark in [0, *seqs[::5], seqs[-1]]:
            rows = list(db.oplog_changes(col.cid, watermark))
            latest: dict[int, bytes | None] = {}
            for _, key, vector in rows:
                latest[key] = vector
            got = oplog_read.read_changes(db, col.cid, watermark, DIM)
            assert got.entries == len(rows)
            assert got.removed.tolist() == [k for k, v in latest.items() if v is None]
            assert got.keys.tolist() == [k for k, v in latest.items() if v is not None]
            assert got.vectors.dtype == np.float32 and got.vectors.flags.c_contiguous
            present = [v for v in latest.values() if v is not None]
            assert got.vectors.tobytes() == b"".join(present)


@pytest.mark.parametrize("kind", ["pg", "sqlite"])
def test_read_changes_takes_more_rows_than_counted(
    kind: str,
    pg_store: PostgresStore,
    sqlite_store: SQLiteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A count below the rows then read (a PostgreSQL write session reads rows committed
    after it counted) grows the matrix: every vector is kept, in order."""
    monkeypatch.setattr(oplog_read, "CHUNK_ROWS", 3)
    store: Store = pg_store if kind == "pg" else sqlite_store
    vectors = np.random.default_rng(7).standard_normal((50, DIM)).astype(np.float32)
    col = _collection_of(store, "undercounted", vectors)
    with store.read() as db:
        monkeypatch.setattr(db, "count_changes", lambda cid, after_seq: 4)
        got = oplog_read.read_changes(db, col.cid, 0, DIM)
    assert got.entries == 50 and len(got.keys) == 50
    assert got.vectors.tobytes() == vectors.tobytes()


def _oplog_cursors(db: Any) -> list[str]:
    rows = db.run("SELECT name FROM pg_cursors WHERE name LIKE 'huedb_oplog_changes_%'")
    return [row[0] for row in rows.fetchall()]


def test_oplog_changes_stream_from_server_side_cursors(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catch-up's rows come from a cursor on the server, a few at a time (a client-side
    one held every changed vector in libpq at once): two can be open in one session, each
    gives every row in order, and each is closed once read to its end or dropped."""
    monkeypatch.setattr(pg_oplog, "CHANGES_PER_FETCH", 4)
    vectors = np.random.default_rng(5).standard_normal((25, DIM)).astype(np.float32)
    col = _collection_of(pg_store, "streamed", vectors)
    with pg_store.read() as db:
        first, second = db.oplog_changes(col.cid, 0), db.oplog_changes(col.cid, 10)
        head, later = next(iter(first)), next(iter(second))
        assert len(_oplog_cursors(db)) == 2
        rows = [head, *first]
        assert [row[0] for row in rows] == sorted(row[0] for row in rows) and len(rows) == 25
        assert b"".join(row[2] for row in rows) == vectors.tobytes()
        assert later[0] == rows[10][0]
        assert len(_oplog_cursors(db)) == 1  # the one read to its end is closed
        second.close()
        assert _oplog_cursors(db) == []


def test_time_budget_stops_a_statement(pg_store: PostgresStore) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError), pg_store.read() as db, db.time_budget(0.3):
        db.run("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 3
    with pg_store.read() as db:  # the store keeps serving; the budget was local to that block
        with db.time_budget(5):
            db.run("SELECT pg_sleep(0.01)")
        assert db.run("SHOW statement_timeout").fetchone()[0] == "0"


def test_read_sessions_begin_with_the_query_timeout(pg_url: str) -> None:
    store = PostgresStore(pg_url, EngineOptions(query_timeout=0.3))
    try:
        with store.read() as db:  # set with the BEGIN, in the same round trip
            assert db.run("SHOW statement_timeout").fetchone()[0] == "300ms"
        started = time.monotonic()
        with pytest.raises(QueryTimeoutError), store.read() as db, db.time_budget(0.3):
            db.run("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 3
        with store.write() as db:  # writes are not bounded by it
            assert db.run("SHOW statement_timeout").fetchone()[0] == "0"
    finally:
        store.close()


def test_stopped_postgres_is_unavailable_then_recovers(tmp_path: Path) -> None:
    with PgCluster() as cluster:  # its own server: stopping it disturbs no other test
        url = cluster.create_database("outage")
        store = PostgresStore(url, EngineOptions(), PoolSettings(timeout=1.0))
        try:
            with store.write() as db:
                db.ensure_defaults(TENANT, DATABASE)
                cid = db.insert_collection(DEFAULT_DATABASE_ID, "c", None, {}).cid
            cluster.stop("immediate")
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(StorageUnavailableError), store.read() as db:
                    db.count_records(cid)
                assert time.monotonic() - started < 10
            started = time.monotonic()
            with pytest.raises(StorageUnavailableError), store.write() as db:
                db.insert_records(cid, _one_record("lost"))
            assert time.monotonic() - started < 10
            cluster.start()
            with store.write() as db:
                db.insert_records(cid, _one_record("after"))
            with store.read() as db:
                assert [
                    r[1]
                    for r in db.fetch_rows(cid, compile_filter(None, None, None), None, None, False)
                ] == ["after"]
                col = db.collection_by_uuid(db.collection_uuids()[0])
            # A restart while connections idle in the pool: they are broken, and the next
            # sessions start again on new ones instead of failing (no check on checkout).
            cluster.restart("fast")
            with store.read() as db:
                assert db.count_records(cid) == 1
            cluster.restart("fast")
            assert store.rows_at_head(col, [], None, False, 5).head == col_head(store, cid)
            cluster.restart("fast")
            with store.write() as db:
                db.insert_records(cid, _one_record("after-restart"))
        finally:
            store.close()


def col_head(store: PostgresStore, cid: int) -> int:
    with store.read() as db:
        return db.oplog_head(cid)


def _one_record(rid: str) -> RecordBatch:
    return RecordBatch(ids=[rid], embeddings=np.ones((1, DIM), dtype=np.float32))


def _all_rows(store: Store) -> dict[str, list[tuple]]:
    out = {}
    with store.read() as db:
        for uuid in db.collection_uuids():
            col = db.collection_by_uuid(uuid)
            rows = db.fetch_rows(col.cid, compile_filter(None, None, None), None, None, True)
            out[f"{col.name}/{col.uuid}"] = [(r[1], r[2], r[3], r[4], bytes(r[5])) for r in rows]
    return out


def test_copy_to_sqlite_and_back(
    pg_store: PostgresStore, corpus_pair: tuple[int, int], tmp_path: Path, pg_cluster: PgCluster
) -> None:
    with pg_store.write() as db:
        db.set_alias(DEFAULT_DATABASE_ID, "corpus-alias", "corpus", True)
    target_dir = tmp_path / "restored"
    target_dir.mkdir()
    pg_store.copy_to(target_dir / DB_FILENAME)
    lite = SQLiteStore(target_dir, EngineOptions())
    try:
        assert _all_rows(lite) == _all_rows(pg_store)
        assert lite.integrity_problems() == []
        flt = compile_filter(None, {"$or": [{"i": {"$gte": 2}}, {"ai": {"$contains": 1}}]}, None)
        pg_cid, _ = corpus_pair
        with lite.read() as a, pg_store.read() as b:
            lite_cid = a.collection_by_name(DEFAULT_DATABASE_ID, "corpus-alias").cid
            assert [r[1] for r in a.fetch_rows(lite_cid, flt, None, None, False)] == [
                r[1] for r in b.fetch_rows(pg_cid, flt, None, None, False)
            ]
        with lite.write() as db:  # new keys never collide with copied ones
            db.insert_records(lite_cid, _one_record("new-in-sqlite"))
    finally:
        lite.close()
    back = PostgresStore(pg_cluster.create_database("copy_back"), EngineOptions())
    try:
        back.load_from_sqlite(target_dir / DB_FILENAME)
        rows = _all_rows(back)
        rows_pg = _all_rows(pg_store)
        key = next(iter(rows_pg))
        assert rows[key][:-1] == rows_pg[key] and rows[key][-1][0] == "new-in-sqlite"
        assert back.integrity_problems() == []
        with back.read() as db:
            assert db.list_aliases(DEFAULT_DATABASE_ID)[0]["name"] == "corpus-alias"
    finally:
        back.close()
        pg_cluster.drop_database("copy_back")


def test_nul_text_is_a_client_error(pg_store: PostgresStore) -> None:
    from huedb.errors import InvalidArgumentError

    with pg_store.write() as db:
        cid = db.insert_collection(DEFAULT_DATABASE_ID, "nul", None, {}).cid
    with pytest.raises(InvalidArgumentError), pg_store.write() as db:
        db.insert_records(
            cid,
            RecordBatch(ids=["a"], embeddings=np.ones((1, DIM), np.float32), documents=["a\x00b"]),
        )
    with psycopg.connect(pg_store.url) as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 0


def test_a_bulk_load_refreshes_planner_statistics(pg_store: PostgresStore, pg_url: str) -> None:
    """Right after a bulk load the planner had no statistics (autovacuum comes a minute or
    more later) and chose nested loops over whole collections: a query took 42 ms, not 3 ms,
    at 30k records. Nor were the new pages all-visible, so a metadata filter visited a heap
    page per matching record instead of reading its covering index alone: huedb vacuums
    `records` and `record_meta` after bulk inserts."""
    rng = np.random.default_rng(3)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for table in ("records", "record_meta"):  # what huedb does, not what autovacuum does
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    with pg_store.write() as db:
        col = db.insert_collection(DEFAULT_DATABASE_ID, "bulk", None, {})
    for start in range(0, 24_000, 2_000):
        ids = [f"r{i}" for i in range(start, start + 2_000)]
        batch = RecordBatch(
            ids=ids,
            embeddings=rng.random((2_000, DIM), dtype=np.float32),
            metadatas=[{"bucket": i % 100} for i in range(start, start + 2_000)],
        )
        with pg_store.write() as db:
            db.insert_records(col.cid, batch)
        time.sleep(0.2)  # table counters are published at most once a second
    visibility = (
        "SELECT relname, relallvisible::float / greatest(relpages, 1) FROM pg_class "
        "WHERE relname IN ('records', 'record_meta')"
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        deadline = time.monotonic() + 30  # the refresher's thread works after the commits
        while True:
            analysed = conn.execute(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relid = 'records'::regclass"
            ).fetchone()[0]
            visible = dict(conn.execute(visibility).fetchall())
            # All but the rows inserted since the last vacuum (< 5,000 + a check's worth).
            vacuumed = visible["records"] >= 0.5 and visible["record_meta"] >= 0.5
            if (analysed and vacuumed) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert analysed, "no ANALYZE after 24,000 inserted records"
        assert vacuumed, visible


def _collection_of_random_records(
    store: PostgresStore, name: str, n: int, rng: np.random.Generator
) -> CollectionRow:
    """A new collection holding `n` records a0.. with random vectors, written in one write."""
    with store.write() as db:
        col = db.insert_collection(DEFAULT_DATABASE_ID, name, None, {})
        ids = [f"a{i}" for i in range(n)]
        db.insert_records(
            col.cid, RecordBatch(ids=ids, embeddings=rng.random((n, DIM), np.float32))
        )
    return col


def test_a_check_that_found_nothing_due_looks_again(pg_store: PostgresStore, pg_url: str) -> None:
    """Table counters lag (a backend publishes its own at most once a second, or 10 s after
    it went idle): a check that found ANALYZE not due runs once more RECHECK_AFTER_S later.
    Here the rows that make it due arrive unseen by huedb (inserted by SQL), so only that
    second look can analyse them: the last check of a bulk load used to see the counters
    of a few batches and nothing ever looked again."""
    rng = np.random.default_rng(6)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # An autovacuum analysing the table first would leave huedb nothing due to do.
        conn.execute("ALTER TABLE records SET (autovacuum_enabled = false)")
    col = _collection_of_random_records(pg_store, "lagging", 5_000, rng)  # ANALYZE not due
    analysed = (
        "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = 'records'::regclass"
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        time.sleep(2)  # the check ran (at once, after the commit)
        assert not conn.execute(analysed).fetchone()[0]
        conn.execute(
            "INSERT INTO records (key, cid, id) "
            "SELECT 1000000 + g, %s, 'sql' || g FROM generate_series(1, 20000) g",
            (col.cid,),
        )
        conn.execute("SELECT pg_stat_force_next_flush()")
        deadline = time.monotonic() + RECHECK_AFTER_S + 15
        while not conn.execute(analysed).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert conn.execute(analysed).fetchone()[0], "no second look at the counters"


def test_a_table_lock_held_elsewhere_does_not_hold_up_close(pg_url: str) -> None:
    """Another session holds a lock ANALYZE and VACUUM wait for (SHARE UPDATE EXCLUSIVE: a
    DBA's VACUUM, CREATE INDEX CONCURRENTLY) and huedb's writes do not. The refresher
    waits on its thread; closing the store cancels that wait (shutdown hung for as long as
    the other session held its lock)."""
    store = PostgresStore(pg_url, EngineOptions(), PoolSettings(timeout=3.0))
    with store.write() as db:
        db.ensure_defaults(TENANT, DATABASE)
    col = _collection_of_random_records(store, "locked", 10, np.random.default_rng(8))
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'ANALYZE%%' AND pid <> pg_backend_pid()"
    )

    def wait_for(count: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while conn.execute(waiting).fetchone()[0] != count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    try:
        with (
            psycopg.connect(pg_url) as other,
            psycopg.connect(pg_url, autocommit=True) as conn,
        ):
            other.execute("LOCK TABLE records IN SHARE UPDATE EXCLUSIVE MODE")
            conn.execute(
                "INSERT INTO records (key, cid, id) "
                "SELECT 1000000 + g, %s, 'sql' || g FROM generate_series(1, 20000) g",
                (col.cid,),
            )
            conn.execute("SELECT pg_stat_force_next_flush()")
            store._statistics.inserted(CHECK_EVERY_ROWS)  # the check a bulk write makes
            assert wait_for(1, 15), "the refresher never tried ANALYZE"
            started = time.monotonic()
            store.close()
            assert time.monotonic() - started < 5
            assert wait_for(0, 5), "ANALYZE still waits for the lock after close"
            other.rollback()
    finally:
        store.close()


def test_a_refresher_thread_that_cannot_start_fails_nothing(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the process's thread limit the refresher cannot start: the write that prompted it
    still returns (it raised after committing), and close releases every connection (it
    raised before closing the pool)."""
    start = threading.Thread.start

    def refused(thread: threading.Thread) -> None:
        if thread.name == "huedb-pg-statistics":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refused)
    store = PostgresStore(pg_url, EngineOptions(), PoolSettings(timeout=3.0))
    with store.write() as db:
        db.ensure_defaults(TENANT, DATABASE)
    rng = np.random.default_rng(9)
    col = _collection_of_random_records(store, "nothread", CHECK_EVERY_ROWS, rng)
    with store.read() as db:
        assert db.collection_sizes(col.cid)[0] == CHECK_EVERY_ROWS
    store.close()
    assert store._pool.closed


def test_statistics_are_refreshed_after_the_write_commits(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """ANALYZE holds SHARE UPDATE EXCLUSIVE on the record tables until its transaction ends:
    run inside a write, it serialised writers of every collection. A write that finds the
    statistics due holds no such lock; they are refreshed once it committed."""
    rng = np.random.default_rng(4)
    col = _collection_of_random_records(pg_store, "due", 12_000, rng)
    state = (
        "SELECT n_mod_since_analyze, last_analyze IS NOT NULL FROM pg_stat_user_tables "
        "WHERE relid = 'records'::regclass"
    )
    held = (
        "SELECT count(*) FROM pg_locks WHERE relation = 'records'::regclass "
        "AND mode = 'ShareUpdateExclusiveLock' AND granted"
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        deadline = time.monotonic() + 60  # table counters are published within ~10 s
        while True:
            changed, analysed = conn.execute(state).fetchone()
            if changed >= 12_000 or analysed or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert changed >= 12_000 or analysed, "the inserts never reached the table counters"
        batch = RecordBatch(
            ids=[f"b{i}" for i in range(6_000)],
            embeddings=rng.random((6_000, DIM), dtype=np.float32),
        )
        with pg_store.write() as db:
            db.insert_records(col.cid, batch)
            assert conn.execute(held).fetchone()[0] == 0, "ANALYZE ran inside the write"
        deadline = time.monotonic() + 30  # on the refresher's thread, after the commit
        while not conn.execute(state).fetchone()[1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.execute(state).fetchone()[1], "no ANALYZE once the write committed"


def test_record_updates_move_the_head_for_any_writer(pg_store: PostgresStore, pg_url: str) -> None:
    """Every update of record rows advances the collection's oplog head (the trigger of
    schema.py), also one made outside huedb's write path as an older huedb node would make
    it, and a store opened on a database that lacks the trigger (made by an older huedb)
    creates it."""
    with pg_store.write() as db:
        col = db.insert_collection(DEFAULT_DATABASE_ID, "heads", None, {})
        other = db.insert_collection(DEFAULT_DATABASE_ID, "untouched", None, {})
        batch = RecordBatch(
            ids=["a", "b"], embeddings=np.zeros((2, DIM), np.float32), metadatas=[{"x": 1}, None]
        )
        db.insert_records(col.cid, batch)
        db.insert_records(other.cid, batch)

    def heads(conn: psycopg.Connection) -> tuple[int, int]:
        found = dict(conn.execute("SELECT cid, log_seq FROM collections").fetchall())
        return found[col.cid], found[other.cid]

    with psycopg.connect(pg_url, autocommit=True) as conn:
        before = heads(conn)
        with pg_store.write() as db:  # metadata only: no vector, so no oplog entry
            keys = db.existing_keys(col.cid, ["a"])
            db.update_records(col.cid, [keys["a"]], RecordBatch(ids=["a"], metadatas=[{"x": 2}]))
        after_huedb = heads(conn)
        assert after_huedb[0] > before[0] and after_huedb[1] == before[1]
        conn.execute("UPDATE records SET document = 'raw' WHERE cid = %s", (col.cid,))
        assert heads(conn)[0] > after_huedb[0]
        conn.execute("DROP TRIGGER records_changed_move_head ON records")
        PostgresStore(pg_url, EngineOptions(), PoolSettings(timeout=3.0)).close()
        moved = heads(conn)[0]
        conn.execute("UPDATE records SET uri = 'u' WHERE cid = %s", (col.cid,))
        assert heads(conn)[0] > moved
        # A writer whose search_path finds another `collections` first still moves huedb's.
        moved = heads(conn)[0]
        conn.execute("CREATE SCHEMA decoy")
        conn.execute("CREATE TABLE decoy.collections (cid bigint, log_seq bigint)")
        conn.execute("SET search_path = decoy, public")
        conn.execute("UPDATE public.records SET uri = 'v' WHERE cid = %s", (col.cid,))
        conn.execute("SET search_path = public")
        assert heads(conn)[0] > moved


def test_warm_queries_survive_their_connections_being_dropped(pg_url: str, tmp_path: Path) -> None:
    """A warm query sends its confirming statement before it searches (rows_at_head.py):
    when the server dropped that connection, the query still answers, from a fresh one."""
    from huedb.engine.engine import Engine

    engine = Engine(tmp_path, EngineOptions(store=pg_url))
    try:
        col = engine.create_collection("dropped", None, {}, False, TENANT, DATABASE)
        vectors = np.random.default_rng(3).standard_normal((30, DIM)).astype(np.float32)
        ids = [f"r{i}" for i in range(30)]
        engine.add(col.uuid, RecordBatch(ids=ids, embeddings=vectors, documents=ids))
        everything = compile_filter(None, None, None)

        def answer() -> list[tuple[str, str]]:
            hits = engine.query(col.uuid, vectors[:3], 4, everything, False)
            return [(hits.rows[k][1], hits.rows[k][2]) for keys in hits.keys for k in keys]

        expected = answer()
        assert [pair[0] for pair in expected[::4]] == ["r0", "r1", "r2"]
        store = engine._store
        assert isinstance(store, PostgresStore)
        assert store._row_cache.likely(col.cid, col_head(store, col.cid))  # sent early
        for _ in range(2):
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            assert answer() == expected
    finally:
        engine.close()


def test_a_reading_node_keeps_what_it_read(pg_url: str, tmp_path: Path) -> None:
    """A node that only reads keeps the rows its queries read: a repeated query needs no
    read of rows; new answers are read (the early statement's connection is drained and
    reused, not dropped), and every answer is right."""
    from huedb.engine.engine import Engine

    writer = Engine(tmp_path / "w", EngineOptions(store=pg_url))
    reader = Engine(tmp_path / "r", EngineOptions(store=pg_url))
    try:
        col = writer.create_collection("read", None, {}, False, TENANT, DATABASE)
        vectors = np.random.default_rng(4).standard_normal((60, DIM)).astype(np.float32)
        ids = [f"r{i}" for i in range(60)]
        writer.add(col.uuid, RecordBatch(ids=ids, embeddings=vectors, documents=ids))
        everything = compile_filter(None, None, None)
        store = reader._store
        assert isinstance(store, PostgresStore)
        full_reads = []
        inner = store._warm.rows_at_head
        store._warm.rows_at_head = lambda *a: full_reads.append(1) or inner(*a)  # type: ignore[method-assign]
        opened = store._warm._pool.get_stats()["connections_num"]
        for i in list(range(20)) + list(range(20)):
            hits = reader.query(col.uuid, vectors[i : i + 1], 3, everything, False)
            row = hits.rows[hits.keys[0][0]]
            assert (row[1], row[2]) == (f"r{i}", f"r{i}")
        assert 20 <= len(full_reads) <= 21  # the second round found every row kept
        assert store._warm._pool.get_stats()["connections_num"] - opened <= 1
    finally:
        writer.close()
        reader.close()


def test_a_refresh_while_postgresql_is_away_logs_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL down when a refresh is due: one warning naming the failure, without a
    traceback (an outage is an operational condition the connection layer reports)."""
    with PgCluster() as cluster:
        url = cluster.create_database("away")
        pool = ConnectionPool(
            url, min_size=0, max_size=1, timeout=1.0, open=True, kwargs={"autocommit": True}
        )
        refresher = StatisticsRefresher(pool, check_every=1)
        cluster.stop("immediate")
        name = "huedb.engine.postgres_store.statistics"
        with caplog.at_level(logging.WARNING, logger=name):
            refresher.inserted(1)
            deadline = time.monotonic() + 15
            while not _records_of(caplog, name) and time.monotonic() < deadline:
                time.sleep(0.05)
            refresher.close()
        pool.close()
    records = _records_of(caplog, name)
    assert [r.levelno for r in records] == [logging.WARNING], caplog.text
    assert "could not refresh the record tables' statistics: " in records[0].message
    assert records[0].exc_info is None


def _records_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


def test_no_collection_is_created_in_a_database_deleted_meanwhile(
    pg_store: PostgresStore, pg_url: str
) -> None:
    """A create that read the database's row while another node's `delete_database` was
    still open waits for it, then is refused (NotFoundError): it committed into the deleted
    database, a collection no name reaches (found by a two-node race)."""
    from huedb.errors import NotFoundError

    with pg_store.write() as db:
        db.create_database("doomed", TENANT)
    other = PostgresStore(pg_url, EngineOptions(), PoolSettings(timeout=3.0))
    deleting = threading.Event()
    outcome: list[object] = []

    def create() -> None:
        deleting.wait()
        try:
            with other.write() as db:
                db_id = db.database_id(TENANT, "doomed")  # waits for the delete's commit
                outcome.append(db.insert_collection(db_id, "newc", None, {}).uuid)
        except Exception as exc:  # the outcome is asserted below
            outcome.append(exc)

    creator = threading.Thread(target=create)
    creator.start()
    try:
        with pg_store.write() as db:
            db.delete_database("doomed", TENANT)
            deleting.set()
            time.sleep(0.5)  # the creator has read the row and waits for the lock
        creator.join(10)
    finally:
        other.close()
    assert len(outcome) == 1 and isinstance(outcome[0], NotFoundError), outcome
    with psycopg.connect(pg_url) as conn:
        orphans = conn.execute(
            "SELECT name FROM collections c WHERE NOT EXISTS "
            "(SELECT 1 FROM databases d WHERE d.id = c.database_id)"
        ).fetchall()
    assert orphans == []


def test_a_node_opening_removes_snapshots_of_collections_deleted_elsewhere(
    pg_url: str, tmp_path: Path
) -> None:
    """A collection deleted through another node leaves this node's snapshot files behind
    while it is away; an embedded client's open (as a server's start) removes them, and
    keeps those of collections that still exist."""
    from huedb.engine.engine import Engine

    options = EngineOptions(store=pg_url, exact_max_floats=100)
    vectors = np.random.default_rng(5).standard_normal((60, DIM)).astype(np.float32)
    everything = compile_filter(None, None, None)
    node_a, node_b = tmp_path / "a", tmp_path / "b"
    engine = Engine(node_a, options)
    try:
        kept = engine.create_collection("kept", None, {}, False, TENANT, DATABASE)
        gone = engine.create_collection("gone", None, {}, False, TENANT, DATABASE)
        for col in (kept, gone):
            ids = [f"r{i}" for i in range(len(vectors))]
            engine.add(col.uuid, RecordBatch(ids=ids, embeddings=vectors))
            engine.query(col.uuid, vectors[:1], 3, everything, False)
    finally:
        engine.close()  # writes the graphs' snapshots

    def snapshot_owners() -> set[str]:
        return {p.name.split(".")[0] for p in (node_a / "index").iterdir()}

    assert {kept.uuid, gone.uuid} <= snapshot_owners()
    other = Engine(node_b, options)
    try:
        other.delete_collection("gone", TENANT, DATABASE)
    finally:
        other.close()
    assert gone.uuid in snapshot_owners()  # node A was away
    client = huedb.PersistentClient(path=node_a, settings=huedb.Settings(huedb_store=pg_url))
    try:
        assert gone.uuid not in snapshot_owners()
        assert kept.uuid in snapshot_owners()
    finally:
        client.close()


def test_a_node_without_a_snapshot_of_its_own_builds_without_a_warning(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """snapshot_seq is shared by every node: a node that never snapshotted a collection
    another node did has nothing missing, so it builds the graph with an INFO line, not
    the 'missing or unusable' warning (kept for a snapshot this node lost)."""
    from huedb.engine.engine import Engine

    options = EngineOptions(store=pg_url, exact_max_floats=100)
    vectors = np.random.default_rng(6).standard_normal((60, DIM)).astype(np.float32)
    everything = compile_filter(None, None, None)
    first = Engine(tmp_path / "a", options)
    try:
        col = first.create_collection("shared", None, {}, False, TENANT, DATABASE)
        first.add(col.uuid, RecordBatch(ids=[f"r{i}" for i in range(60)], embeddings=vectors))
        first.query(col.uuid, vectors[:1], 3, everything, False)
    finally:
        first.close()  # writes its snapshot: snapshot_seq > 0
    caplog.set_level(logging.INFO, logger="huedb.engine.index_cache")
    second = Engine(tmp_path / "b", options)
    try:
        second.query(col.uuid, vectors[:1], 3, everything, False)
    finally:
        second.close()
    lines = [r for r in caplog.records if r.name == "huedb.engine.index_cache"]
    assert not [r for r in lines if r.levelno >= logging.WARNING], [r.message for r in lines]
    assert any("no index snapshot of collection" in r.getMessage() for r in lines)


def test_opening_a_current_store_waits_for_no_writer(pg_url: str) -> None:
    """Opening ran every `CREATE ... IF NOT EXISTS` of the schema, and `CREATE INDEX` takes
    a SHARE lock on its table even when the index exists: a node or worker starting while
    others wrote waited for them, and could deadlock with one (a 503 in a crash test). A
    store whose schema is current is now only read at open."""
    PostgresStore(pg_url, EngineOptions(), PoolSettings(timeout=3.0)).close()  # creates it
    with psycopg.connect(pg_url) as writer:  # a writer's open transaction on the tables
        for table in ("records", "embeddings", "record_meta", "collections"):
            writer.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")
        opened: list[BaseException | None] = []

        def open_store() -> None:
            try:
                PostgresStore(pg_url, EngineOptions(), PoolSettings(timeout=3.0)).close()
                opened.append(None)
            except BaseException as exc:  # noqa: BLE001 - reported below
                opened.append(exc)

        thread = threading.Thread(target=open_store, daemon=True)
        thread.start()
        thread.join(10)
        opened_meanwhile = list(opened)
        writer.rollback()
    thread.join(15)
    assert opened_meanwhile == [None], "opening the store waited for the writer's transaction"
