"""The rows an SQLite insert derives from the records it has just written.

A batch of plain metadata whose names hold no NUL gets its integer and bool `record_meta`
rows from the metadata JSON stored in `records` (strings too when no float or NUL is in
the batch's values, else strings and floats bound), and every insert gets its
`digests_recent` rows from the `embeddings` rows it wrote. Random batches
(names with quotes, backslashes, control characters, non-BMP characters or a NUL; int64
edges, bools, floats, strings holding a NUL) are inserted on one session; `record_meta`
must hold, in insertion order, the rows built here in Python from the batch (integer and
bool rows of every record, then the string and float rows) with the stored SQLite types,
and `digests_recent` each new vector's `vector_digest`; once `digests_recent` reaches
DIGEST_MERGE_AT its digests move to `digests_mid`, and from there to `digests` once the
middle level reaches `mid_limit`; a duplicate's lookup finds them on every level.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huedb.engine.record_values import KIND_BOOL, KIND_NUMBER, KIND_STR, vector_digest
from huedb.engine.sqlite_store import records
from huedb.engine.sqlite_store.connection import open_connection, write_transaction
from huedb.engine.sqlite_store.session import SQLiteSession
from huedb.record_batch import INT64_MAX, INT64_MIN, RecordBatch, plain_metadatas

DIM = 3

names = st.sampled_from(["a", 'q"\\', "line\nfeed", "\x01c", "é😀", "n\x00ul"])
numbers = st.one_of(
    st.integers(-3, 3), st.sampled_from([INT64_MAX, INT64_MIN, 2**53 + 1]), st.booleans()
)
texts = st.text(alphabet='x"\\\n\x01é😀', max_size=3)
scalars = st.one_of(
    numbers,
    # -0.0 is left to the cleaning (stored as 0.0), not this fast path's plain batches
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: v + 0.0),
    st.text(alphabet="x\x00é"),
)


def _batches(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list]:
    metadata = st.dictionaries(names, values, min_size=1, max_size=4)
    return st.lists(st.one_of(st.none(), metadata), min_size=1, max_size=6)


# Batches of any scalar, and batches without floats or NULs in strings (their strings are
# read from the stored JSON too).
batches = st.one_of(_batches(st.one_of(scalars, texts)), _batches(st.one_of(numbers, texts)))


@pytest.fixture(scope="module")
def session() -> Iterator[tuple[SQLiteSession, int]]:
    conn = open_connection(None, "full")
    db = SQLiteSession(conn)
    with write_transaction(conn):
        cid = db.insert_collection("x", "c", None, {}).cid
    yield db, cid
    conn.close()


def _expected(first: int, cid: int, batch: list[dict[str, Any] | None]) -> list[tuple]:
    """Integer and bool rows whose name holds no NUL, then the others, in batch order."""
    numbers, bound = [], []
    for key, metadata in enumerate(batch, start=first):
        for name, value in (metadata or {}).items():
            if type(value) is bool:
                row = (key, cid, name, KIND_BOOL, 0, int(value), "integer")
            elif type(value) is int:
                row = (key, cid, name, KIND_NUMBER, 0, value, "integer")
            elif type(value) is float:
                row = (key, cid, name, KIND_NUMBER, 0, value, "real")
            else:
                row = (key, cid, name, KIND_STR, 0, value, "text")
            is_number = type(value) is bool or type(value) is int
            (numbers if is_number and "\x00" not in name else bound).append(row)
    return numbers + bound


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=batches)
def test_insert_rows_match_batch(session: tuple[SQLiteSession, int], batch: list) -> None:
    db, cid = session
    conn = db._conn
    assert plain_metadatas(batch)
    rng = np.random.default_rng(len(batch))
    vectors = rng.standard_normal((len(batch), DIM)).astype(np.float32)
    with write_transaction(conn):
        start = conn.execute("SELECT max(rowid) FROM record_meta").fetchone()[0] or 0
        first = (conn.execute("SELECT max(key) FROM records").fetchone()[0] or 0) + 1
        ids = [f"id{first + i}" for i in range(len(batch))]
        db.insert_records(cid, RecordBatch(ids=ids, embeddings=vectors, metadatas=batch))
    rows = conn.execute(
        "SELECT key, cid, name, kind, is_array, value, typeof(value) FROM record_meta "
        "WHERE rowid > ? ORDER BY rowid",
        (start,),
    ).fetchall()
    assert rows == _expected(first, cid, batch)
    digests = conn.execute(
        "SELECT key, digest FROM digests_recent WHERE key >= ? ORDER BY key", (first,)
    ).fetchall()
    assert digests == [(first + i, vector_digest(v.tobytes())) for i, v in enumerate(vectors)]


def _levels(conn: Any) -> list[set[tuple[int, int]]]:
    """The (key, digest) entries of each digest level, largest level first."""
    return [
        set(conn.execute(f"SELECT key, digest FROM {table}").fetchall())
        for table in records.DIGEST_TABLES
    ]


def test_digests_move_down_the_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    """`digests_recent` moves to `digests_mid` at DIGEST_MERGE_AT entries, and the middle level
    to `digests` at `mid_limit`; lookups find a vector on every level."""
    monkeypatch.setattr(records, "DIGEST_MERGE_AT", 5)
    monkeypatch.setattr(records, "DIGEST_MID_MIN", 10)
    conn = open_connection(None, "full")
    db = SQLiteSession(conn)
    vectors = np.arange(12 * DIM, dtype=np.float32).reshape(12, DIM)
    entries = [(k + 1, vector_digest(v.tobytes())) for k, v in enumerate(vectors)]
    with write_transaction(conn):
        cid = db.insert_collection("x", "c", None, {}).cid
        db.insert_records(cid, RecordBatch(ids=["a", "b", "c"], embeddings=vectors[:3]))
    assert _levels(conn) == [set(), set(), set(entries[:3])]
    with write_transaction(conn):  # recent reaches 6: to the middle level (limit 10)
        db.insert_records(cid, RecordBatch(ids=list("def"), embeddings=vectors[3:6]))
    assert _levels(conn) == [set(), set(entries[:6]), set()]
    assert db.keys_with_vector(cid, vectors[4]) == [5]
    with write_transaction(conn):  # 6 more: the middle level holds 12, past its limit
        db.insert_records(cid, RecordBatch(ids=list("ghijkl"), embeddings=vectors[6:]))
    assert records.mid_limit(12) == 10
    assert _levels(conn) == [set(entries), set(), set()]
    assert [db.keys_with_vector(cid, v) for v in vectors] == [[k] for k, _ in entries]
    conn.close()


def test_mid_limit() -> None:
    """The middle level's limit: its floor below ~260k keys, then sqrt(2 x 32,768 x keys)."""
    assert records.mid_limit(0) == records.mid_limit(100_000) == records.DIGEST_MID_MIN
    assert records.mid_limit(1_000_000) == 256_000
    assert records.mid_limit(10_000_000) == 809_543
    limits = [records.mid_limit(n) for n in range(0, 20_000_000, 100_003)]
    assert limits == sorted(limits)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 9), min_size=1, max_size=25), st.integers(2, 6))
def test_digest_levels_hold_every_vector_once(sizes: list[int], merge_at: int) -> None:
    """Any run of batches: every vector's entry is on exactly one level, `digests_recent`
    stays under DIGEST_MERGE_AT after each commit, and every vector is found by lookup."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(records, "DIGEST_MERGE_AT", merge_at)
        patch.setattr(records, "DIGEST_MID_MIN", 2 * merge_at)
        conn = open_connection(None, "full")
        db = SQLiteSession(conn)
        rng = np.random.default_rng(len(sizes) * 31 + merge_at)
        vectors = rng.standard_normal((sum(sizes), DIM)).astype(np.float32)
        with write_transaction(conn):
            cid = db.insert_collection("x", "c", None, {}).cid
        start = 0
        for size in sizes:
            ids = [f"r{start + i}" for i in range(size)]
            with write_transaction(conn):
                db.insert_records(cid, RecordBatch(ids=ids, embeddings=vectors[start:][:size]))
            start += size
            levels = _levels(conn)
            assert len(levels[2]) < merge_at
            assert sum(map(len, levels)) == len(set.union(*levels)) == start
        assert set.union(*_levels(conn)) == {
            (k + 1, vector_digest(v.tobytes())) for k, v in enumerate(vectors)
        }
        assert [db.keys_with_vector(cid, v) for v in vectors] == [
            [k + 1] for k in range(len(vectors))
        ]
        conn.close()
