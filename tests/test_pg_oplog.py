"""Issue 14, acceptance 2: a catching-up reader never skips a committed oplog change.

Four writer connections change one collection (insert, re-vector, delete), each sleeping a
random 0-4 ms between its change and its commit, so commits land in every order. A reader
polls; whenever the collection's oplog head moved it catches up from its watermark, exactly
as the index cache does (`oplog_changes(cid, watermark)` up to `oplog_head(cid)`), and in
the same snapshot compares its view (key -> vector bytes) with the table. After >= 1,000
commits the view must have equalled the table every time.

The negative control runs the same interleaving against a naive design (one global
`bigserial` sequence, reader advancing to the highest seq it saw, `seq > watermark`) in
plain tables of the same database, and asserts that the reader DOES end up missing a
change: the check is strong enough to catch the out-of-order commit problem.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import numpy as np
import psycopg

from huedb.engine.catalog import DEFAULT_DATABASE_ID
from huedb.engine.postgres_store import PostgresStore
from huedb.engine.postgres_store.connection import PoolSettings
from huedb.options import EngineOptions
from huedb.record_batch import RecordBatch

WRITERS = 4
COMMITS = 1_000
DIM = 4
MAX_DELAY = 0.004


def _writers(
    write_one: Callable[[random.Random, int], None],
) -> tuple[list[threading.Thread], list[int], list[BaseException]]:
    """WRITERS threads calling `write_one(rng, n)` until COMMITS commits were made in all."""
    done = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def loop(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while True:
                with lock:
                    if done[0] >= COMMITS:
                        return
                    done[0] += 1
                    n = done[0]
                write_one(rng, n)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(seed,)) for seed in range(WRITERS)]
    return threads, done, errors


def test_reader_never_skips_a_change_with_per_collection_counter(pg_url: str) -> None:
    setup = PostgresStore(pg_url, EngineOptions())
    with setup.write() as db:
        db.ensure_defaults("default_tenant", "default_database")
        col = db.insert_collection(DEFAULT_DATABASE_ID, "interleaved", None, {})
    stores = [
        PostgresStore(pg_url, EngineOptions(), PoolSettings(max_size=1)) for _ in range(WRITERS)
    ]
    store_of = {}

    def write_one(rng: random.Random, n: int) -> None:
        store = store_of.setdefault(threading.get_ident(), stores[len(store_of) % WRITERS])
        with store.write() as db:
            cid = db.collection_by_uuid(col.uuid).cid
            action = rng.random()
            keys = db.collection_keys(cid) if action < 0.4 else []
            if keys and action < 0.2:
                db.delete_keys(cid, [rng.choice(keys)])
            elif keys:
                key = rng.choice(keys)
                vector = np.full((1, DIM), n, dtype=np.float32)
                db.update_records(cid, [key], RecordBatch(ids=["?"], embeddings=vector))
            else:
                vector = np.full((1, DIM), n, dtype=np.float32)
                db.insert_records(cid, RecordBatch(ids=[f"r{n}"], embeddings=vector))
            time.sleep(rng.random() * MAX_DELAY)  # between the change and the commit

    threads, done, errors = _writers(write_one)
    view: dict[int, bytes] = {}
    watermark, catch_ups, reader = 0, 0, setup
    for t in threads:
        t.start()
    try:
        while True:
            finished = not any(t.is_alive() for t in threads)
            with reader.read() as db:
                head = db.oplog_head(col.cid)
                if head != watermark:
                    for seq, key, vector in db.oplog_changes(col.cid, watermark):
                        assert seq <= head
                        if vector is None:
                            view.pop(key, None)
                        else:
                            view[key] = vector
                    watermark = head
                    catch_ups += 1
                    table = {
                        int(k): v.tobytes()
                        for keys, vecs in db.vector_chunks(col.cid, DIM, 500)
                        for k, v in zip(keys, vecs, strict=True)
                    }
                    assert view == table, f"after {catch_ups} catch-ups, head {head}"
            if finished:
                break
    finally:
        for t in threads:
            t.join()
        for store in (*stores, setup):
            store.close()
    assert not errors, errors
    assert done[0] >= COMMITS and watermark >= COMMITS
    assert catch_ups >= 20, catch_ups  # the reader caught up many times in between


NAIVE_TABLES = """
CREATE TABLE naive_records (key bigint PRIMARY KEY, vector bytea NOT NULL);
CREATE TABLE naive_log (seq bigserial PRIMARY KEY, key bigint NOT NULL);
"""


def test_naive_global_sequence_reader_does_skip_a_change(pg_url: str) -> None:
    """Negative control: the same interleaving on a global sequence must lose a change."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(NAIVE_TABLES)
    conns = [psycopg.connect(pg_url) for _ in range(WRITERS)]
    conn_of: dict[int, psycopg.Connection] = {}

    def write_one(rng: random.Random, n: int) -> None:
        conn = conn_of.setdefault(threading.get_ident(), conns[len(conn_of) % WRITERS])
        with conn.transaction():  # READ COMMITTED, no lock: the naive writer
            conn.execute("INSERT INTO naive_records VALUES (%s, %s)", (n, str(n).encode()))
            conn.execute("INSERT INTO naive_log (key) VALUES (%s)", (n,))
            time.sleep(rng.random() * MAX_DELAY)

    threads, done, errors = _writers(write_one)
    view: set[int] = set()
    watermark, missed_after = 0, None
    reader = psycopg.connect(pg_url, autocommit=True)
    for t in threads:
        t.start()
    try:
        while missed_after is None:
            finished = not any(t.is_alive() for t in threads)
            with reader.transaction():
                reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                rows = reader.execute(
                    "SELECT seq, key FROM naive_log WHERE seq > %s ORDER BY seq", (watermark,)
                ).fetchall()
                if rows:
                    view.update(key for _, key in rows)
                    watermark = rows[-1][0]
                table = {r[0] for r in reader.execute("SELECT key FROM naive_records")}
                if view != table:
                    missed_after = watermark
            if finished:
                break
    finally:
        for t in threads:
            t.join()
        for conn in (*conns, reader):
            conn.close()
    assert not errors, errors
    # Once a late commit below the watermark is seen in the table, the naive reader can
    # never catch it up: its view stays behind for good.
    assert missed_after is not None, "the naive reader never missed a change: the test is too weak"
