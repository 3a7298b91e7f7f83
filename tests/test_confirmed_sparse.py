"""Sparse Knn on a sparse index already in memory, confirmed by one store read
(engine/confirmed_sparse.py), and searches of ids and scores only, answered from the
index's record ids (engine/sparse_postings.IdMap).

On both stores: a warm unfiltered sparse search makes one store call (`rows_at_head`) and no
read session, and asks it for no record rows when only ids and scores are wanted; after
another engine (another process or node) adds, updates or deletes records, the next search
is not confirmed, takes the usual path and answers exactly the brute-force scan of what the
store holds, ids included, then is confirmed again. A sparse snapshot of the format before
ids (2) is rebuilt by a scan, never read.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import huedb
from huedb import K, Knn, Search
from huedb.engine import snapshot
from huedb.engine.engine import Engine
from huedb.engine.filters import RecordFilter
from huedb.engine.sparse_index import FORMAT, sparse_snapshot_path
from huedb.engine.sparse_postings import IdMap
from huedb.record_batch import RecordBatch
from tests import stores
from tests.stores import StoreTarget

store = stores.store

TENANT, DATABASE = "default_tenant", "default_database"
KEY = "sp"
ALL = RecordFilter(None)
QUERY = {1: 1.0, 4: 0.5, 7: 2.0}


class CountingStore:
    """The engine's real store, recording the calls a search makes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.reads = 0
        self.asked: list[list[int]] = []  # the keys of each rows_at_head call

    def read(self) -> Any:
        self.reads += 1
        return self._inner.read()

    def rows_at_head(self, col: Any, keys: Any, *args: Any) -> Any:
        self.asked.append(list(keys))
        return self._inner.rows_at_head(col, keys, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


engines = stores.engines


def _sparse(i: int) -> dict[str, Any]:
    """Record i's metadata: a sparse vector of three of ten terms, values from i."""
    terms = sorted({i % 10, (3 * i + 1) % 10, (7 * i + 4) % 10})
    values = [0.25 + ((i * (t + 3)) % 7) / 4 for t in terms]
    return {"n": i, KEY: huedb.SparseVector(indices=terms, values=values)}


def _batch(ids: list[str], numbers: list[int]) -> RecordBatch:
    vectors = np.asarray([[float(n), 1.0, 0.5] for n in numbers], dtype=np.float32)
    return RecordBatch(ids=ids, embeddings=vectors, metadatas=[_sparse(n) for n in numbers])


def brute_force(engine: Engine, uuid: str, bm25: bool, limit: int) -> list[tuple[str, float]]:
    """(id, measure) of the `limit` best records by a float64 scan of every stored row."""
    import orjson

    rows = engine.get(uuid, ALL, None, None, False)
    vectors = {}
    for row in rows:
        value = orjson.loads(row[4]).get(KEY) if row[4] else None
        if value is not None:
            vectors[row[1]] = dict(zip(value["indices"], value["values"], strict=True))
    n = len(rows)
    weights = {}
    for t, q in QUERY.items():
        n_t = sum(t in v for v in vectors.values())
        weights[t] = q * (math.log(1 + (n - n_t + 0.5) / (n_t + 0.5)) if bm25 else 1.0)
    scored = []
    for position, row in enumerate(rows):
        vector = vectors.get(row[1], {})
        shared = sorted(set(vector) & set(weights))
        if shared:
            dot = sum(weights[t] * float(np.float32(vector[t])) for t in shared)
            scored.append((float(np.float32(1.0 - dot)), position, row[1]))
    scored.sort()
    return [(rid, measure) for measure, _, rid in scored[:limit]]


def ids_only(engine: Engine, uuid: str, bm25: bool, limit: int) -> list[tuple[str, float]]:
    """(id, measure) of an ids-and-scores sparse search (no record rows wanted)."""
    found, rows = engine.sparse_knn(uuid, KEY, QUERY, bm25, limit, ALL, with_rows=False)
    return [(rows[k][1], m) for k, m in found]


def _collection(engine: Engine) -> str:
    col = engine.create_collection("sparse", None, {}, False, TENANT, DATABASE)
    engine.add(col.uuid, _batch([f"r{i}" for i in range(200)], list(range(200))))
    return col.uuid


def test_warm_ids_only_search_is_one_store_call_reading_no_rows(
    engines: tuple[Engine, Engine],
) -> None:
    a, _ = engines
    uuid = _collection(a)
    assert ids_only(a, uuid, True, 8) == brute_force(a, uuid, True, 8)  # builds the index
    counting = CountingStore(a._store)
    a._store = counting  # type: ignore[assignment]
    for bm25 in (True, False):
        assert ids_only(a, uuid, bm25, 8) == brute_force(a, uuid, bm25, 8)
    assert (counting.reads, counting.asked) == (2, [[], []])  # the reads are brute_force's
    found, rows = a.sparse_knn(uuid, KEY, QUERY, True, 8, ALL)  # rows wanted: read with it
    assert counting.reads == 2 and sorted(counting.asked[-1]) == sorted(k for k, _ in found)
    assert [orjson_metadata(rows[k])["n"] for k, _ in found] == [
        int(rid[1:]) for rid, _ in brute_force(a, uuid, True, 8)
    ]


def orjson_metadata(row: tuple) -> dict[str, Any]:
    import orjson

    return orjson.loads(row[4])


def test_changes_by_another_engine_are_seen_by_ids_only_searches(
    engines: tuple[Engine, Engine],
) -> None:
    """Deletes (of the best records), sparse updates, upserts and new records written by
    engine b: engine a's next ids-only search is not confirmed, catches up and answers the
    scan exactly (new records' ids come from the catch-up), then is confirmed again."""
    a, b = engines
    uuid = _collection(a)
    assert ids_only(a, uuid, True, 10) == brute_force(a, uuid, True, 10)
    confirmed = a._sparse.counts["confirmed"]
    best = [rid for rid, _ in ids_only(a, uuid, True, 3)]
    changes = [
        lambda: b.delete(uuid, RecordFilter(best), None),
        lambda: b.update(uuid, _batch([f"r{i}" for i in range(20, 40)], list(range(60, 80)))),
        lambda: b.add(uuid, _batch([f"new{i}" for i in range(30)], list(range(300, 330)))),
        lambda: b.upsert(uuid, _batch(["r5", "new3", "late"], [301, 7, 302])),
        lambda: b.delete(uuid, RecordFilter([f"new{i}" for i in range(0, 30, 2)]), None),
    ]
    for change in changes:
        change()
        counting = CountingStore(a._store)
        a._store = counting  # type: ignore[assignment]
        got = ids_only(a, uuid, True, 10)
        assert counting.reads == 1  # not confirmed: the usual path caught up
        assert got == brute_force(a, uuid, True, 10)
        assert ids_only(a, uuid, False, 10) == brute_force(a, uuid, False, 10)
        assert counting.reads == 3  # confirmed again (the other reads are brute_force's)
        a._store = counting._inner
    assert a._sparse.counts["confirmed"] == confirmed + 1 + len(changes)


def test_ids_only_search_through_the_client_after_deletes(
    store: StoreTarget, tmp_path: Path
) -> None:
    """`Collection.search` selecting only scores returns the ids the scan does after
    deletes and updates; selecting documents returns the documents of those ids."""
    client = store.client(tmp_path / "data")
    schema = huedb.Schema().create_index(config=huedb.SparseVectorIndexConfig(bm25=True), key=KEY)
    col = client.create_collection("ids-only", schema=schema, embedding_function=None)
    ids = [f"r{i}" for i in range(60)]
    col.add(
        ids=ids,
        embeddings=[[float(i), 1.0, 0.5] for i in range(60)],
        metadatas=[_sparse(i) for i in range(60)],
        documents=[f"doc {i}" for i in range(60)],
    )
    knn = Knn(query=huedb.SparseVector(indices=sorted(QUERY), values=[1.0, 0.5, 2.0]), key=KEY)
    for step in range(3):
        only = col.search(Search().rank(knn).limit(6).select(K.SCORE)).rows()[0]
        full = col.search(Search().rank(knn).limit(6).select(K.SCORE, K.DOCUMENT)).rows()[0]
        assert [r["id"] for r in only] == [r["id"] for r in full]
        assert [r["score"] for r in only] == [r["score"] for r in full]
        assert [r["document"] for r in full] == [f"doc {r['id'][1:]}" for r in full]
        col.delete(ids=[r["id"] for r in only[:2]])
        col.update(ids=[f"r{step}{j}" for j in range(5)], metadatas=[_sparse(99)] * 5)
    client.close()


def test_snapshot_without_ids_is_rebuilt_not_read(
    store: StoreTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sparse snapshot of format 2 (no record ids) is refused and rebuilt by a scan as
    format 3; answers and ids equal the scan's."""
    engine = stores.engine(store, tmp_path / "a")
    uuid = _collection(engine)
    assert ids_only(engine, uuid, True, 8) == brute_force(engine, uuid, True, 8)
    engine.close()
    path = sparse_snapshot_path(tmp_path / "a" / "index", uuid)
    header = snapshot.read_header(path)
    assert header is not None and header["dim"] == FORMAT == 3
    snap = snapshot.read_snapshot(path, header["owner"])
    assert snap is not None
    with np.load(io.BytesIO(bytes(snap.payload))) as arrays:
        old = {name: arrays[name] for name in arrays.files if not name.startswith("__id")}
    snap.payload.release()
    snap.mapping.close()
    payload = io.BytesIO()
    np.savez(payload, **old)
    with snapshot.exclusive_lock(path.parent, uuid):
        snapshot.write_snapshot(
            path, header["owner"], header["watermark"], 2, "sparse", payload.getvalue()
        )
    engine = stores.engine(store, tmp_path / "a")
    with caplog.at_level(logging.INFO, logger="huedb.engine.sparse_index"):
        assert ids_only(engine, uuid, True, 8) == brute_force(engine, uuid, True, 8)
    assert "by a scan" in caplog.text and "from its snapshot" not in caplog.text
    engine.close()
    assert snapshot.read_header(path)["dim"] == 3  # rewritten in the current format


_ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.lists(st.integers(0, 40), max_size=8, unique=True), st.booleans(), _ids),
        max_size=40,
    )
)
def test_id_map_equals_a_dict(steps: list[tuple[list[int], bool, str]]) -> None:
    """Sets and unsets (with the buffer rewritten as it fills with unset ids) give the ids
    a dict gives, before and after a snapshot's arrays round trip."""
    ids, expected = IdMap(), {}
    for keys, setting, text in steps:
        if setting:
            values = [f"{text}-{k}" for k in keys]
            ids.set(keys, values)
            expected.update(zip(keys, values, strict=True))
        else:
            ids.unset(keys)
            for k in keys:
                expected.pop(k, None)
    for held in (ids, IdMap.from_arrays(*ids.arrays())):
        assert held.ids(sorted(expected)) == [expected[k] for k in sorted(expected)]
        assert held.arrays()[0].tolist() == sorted(expected)
        for k in range(41):
            assert held.ids([k]) == ([expected[k]] if k in expected else None)
