"""The sparse index (posting lists, live document frequencies for BM25's IDF) against a
brute-force scan of what the store holds, on each store.

The reference reads every record with `get()` and scores it in float64 in the test
(`brute_force`): `idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))` over the live records,
`1 - sum_t q_t idf_t d_t` cast to float32, ascending, ties in storage order. It must equal
the index's answer exactly after random interleaved add/update/upsert/delete (metadata-only
updates that set, change or drop the sparse value; deletes by id and by `where`), with and
without `bm25` and with a filter; also while a second process writes; and a reopened store
loads the index's snapshot instead of scanning the collection again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import subprocess
import sys
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import huedb
from huedb import K, Knn, Search
from huedb.engine import sparse_kernel
from huedb.engine.filters import RecordFilter
from huedb.engine.sparse_postings import PostingColumn
from tests import stores
from tests.cli import child_env
from tests.knobs import knob
from tests.snapshot_files import with_payload
from tests.stores import StoreTarget

store = stores.store
KEY = "sp"
TERMS = 12
IDS = [f"r{i}" for i in range(14)]
EXAMPLES = int(knob("HUEDB_HYPOTHESIS_EXAMPLES", "150"))
REPO_ROOT = Path(__file__).resolve().parent.parent
_names = count()


# The two ways a column scores a query: numba's compiled loop (`make test` installs numba,
# so its absence fails here) and numpy.
SCORING = ["compiled", "numpy"]


@contextlib.contextmanager
def scoring_by(kind: str) -> Iterator[None]:
    """Columns score with the compiled loop, or with numpy as they do without numba."""
    if kind == "compiled":
        assert sparse_kernel.kernel() is not None, "numba is missing or failed to compile"
        yield
        return
    with mock.patch.object(sparse_kernel, "kernel", lambda: None):
        yield


# -- the reference -------------------------------------------------------------------------


def brute_force(
    col: Any, query: tuple[list[int], list[float]], bm25: bool, limit: int, cat: str | None
) -> list[tuple[str, np.float32]]:
    """(id, measure) of the `limit` nearest records, by a scan of `col.get()`."""
    got = col.get(include=["metadatas"])
    records = list(zip(got["ids"], got["metadatas"], strict=True))
    vectors = {}
    for rid, meta in records:
        value = (meta or {}).get(KEY)
        if value is not None:
            vectors[rid] = dict(zip(value.indices, (float(v) for v in value.values), strict=True))
    n = len(records)
    weights = {}
    for t, q in zip(*query, strict=True):
        n_t = sum(t in v for v in vectors.values())
        weights[t] = float(np.float32(q)) * (
            math.log(1 + (n - n_t + 0.5) / (n_t + 0.5)) if bm25 else 1.0
        )
    scored = []
    for position, (rid, meta) in enumerate(records):
        vector = vectors.get(rid)
        if vector is None or (cat is not None and (meta or {}).get("cat") != cat):
            continue
        shared = sorted(set(vector) & set(weights))
        if not shared:
            continue
        dot = 0.0
        for t in shared:
            dot += weights[t] * vector[t]
        scored.append((np.float32(1.0 - dot), position, rid))
    scored.sort()
    return [(rid, measure) for measure, _, rid in scored[:limit]]


def searched(
    col: Any, query: tuple[list[int], list[float]], limit: int, cat: str | None
) -> list[tuple[str, np.float32]]:
    """(id, score) of a BM25 sparse Knn through `Collection.search`."""
    knn = Knn(query=huedb.SparseVector(*query), key=KEY, limit=limit)
    search = Search().rank(knn).limit(limit).select(K.SCORE)
    if cat is not None:
        search = search.where(K("cat") == cat)
    return [(row["id"], np.float32(row["score"])) for row in col.search(search).rows()[0]]


def plain(col: Any, query: tuple[list[int], list[float]], limit: int) -> list[tuple[str, Any]]:
    """(id, measure) of a sparse Knn without IDF, from the engine."""
    weights = {t: float(np.float32(q)) for t, q in zip(*query, strict=True)}
    engine = col._client.engine
    found, rows = engine.sparse_knn(str(col.id), KEY, weights, False, limit, RecordFilter(None))
    return [(rows[k][1], np.float32(m)) for k, m in found]


def assert_agrees(col: Any, query: tuple[list[int], list[float]], limit: int) -> None:
    """The index answers each kind of search as the brute-force scan does."""
    for cat in (None, "a"):
        assert searched(col, query, limit, cat) == brute_force(col, query, True, limit, cat)
    assert plain(col, query, limit) == brute_force(col, query, False, limit, None)


def new_collection(client: Any) -> Any:
    schema = huedb.Schema().create_index(config=huedb.SparseVectorIndexConfig(bm25=True), key=KEY)
    return client.create_collection(
        f"sparse-{next(_names)}", schema=schema, embedding_function=None
    )


# -- random operations ---------------------------------------------------------------------

VALUES = [0.25, 0.5, 1.0, 1.5, 3.0, 0.0, -1.0]
_values = st.sampled_from(VALUES)
_sparse = st.one_of(
    st.none(),
    st.lists(st.integers(0, TERMS - 1), min_size=1, max_size=5, unique=True).flatmap(
        lambda terms: st.tuples(
            st.just(sorted(terms)), st.lists(_values, min_size=len(terms), max_size=len(terms))
        )
    ),
)
_record = st.tuples(st.sampled_from(IDS), _sparse, st.sampled_from("ab"), st.integers(0, 2))
_batch = st.lists(_record, min_size=1, max_size=4, unique_by=lambda r: r[0])
_op = st.one_of(
    st.tuples(st.sampled_from(["add", "upsert", "update", "update_meta"]), _batch),
    st.tuples(
        st.just("drop_sparse"), st.lists(st.sampled_from(IDS), min_size=1, max_size=3, unique=True)
    ),
    st.tuples(
        st.just("delete"), st.lists(st.sampled_from(IDS), min_size=1, max_size=3, unique=True)
    ),
    st.tuples(st.just("delete_where"), st.sampled_from("ab")),
)
_query = st.lists(st.integers(0, TERMS - 1), min_size=1, max_size=4, unique=True).flatmap(
    lambda terms: st.tuples(
        st.just(sorted(terms)), st.lists(_values, min_size=len(terms), max_size=len(terms))
    )
)


def apply(col: Any, op: tuple[str, Any]) -> None:
    """Run one operation (the JSON-able form `_op` draws) on a collection."""
    kind, arg = op
    if kind == "delete":
        col.delete(ids=list(arg))
        return
    if kind == "search":  # hold a dense and a sparse index (so this process prunes)
        if col.count():
            col.query(query_embeddings=[[0.0, 1.0, 0.5]], n_results=1)
        searched(col, ([1, 2], [1.0, 1.0]), 3, None)
        return
    if kind == "delete_where":
        col.delete(where={"cat": arg})
        return
    if kind == "drop_sparse":
        col.update(ids=list(arg), metadatas=[{KEY: None} for _ in arg])
        return
    ids = [r[0] for r in arg]
    metadatas = [
        {"cat": cat} if sparse is None else {"cat": cat, KEY: huedb.SparseVector(*sparse)}
        for _, sparse, cat, _ in arg
    ]
    embeddings = [[float(v), 1.0, 0.5] for *_, v in arg]
    if kind == "update_meta":  # no vector: only the metadata (and so the sparse value) moves
        col.update(ids=ids, metadatas=metadatas)
    else:
        getattr(col, kind)(ids=ids, embeddings=embeddings, metadatas=metadatas)


def random_op(rng: random.Random) -> tuple[str, Any]:
    """One operation of the kinds `_op` draws, from a seeded generator (for another process)."""
    kind = rng.choice(["add", "upsert", "update", "update_meta", "drop_sparse", "delete", "where"])
    ids = rng.sample(IDS, rng.randint(1, 4))
    if kind in ("drop_sparse", "delete"):
        return kind, ids
    if kind == "where":
        return "delete_where", rng.choice("ab")

    def sparse() -> tuple[list[int], list[float]] | None:
        terms = sorted(rng.sample(range(TERMS), rng.randint(1, 5)))
        return None if rng.random() < 0.2 else (terms, [rng.choice(VALUES) for _ in terms])

    return kind, [(rid, sparse(), rng.choice("ab"), rng.randint(0, 2)) for rid in ids]


# -- tests ---------------------------------------------------------------------------------


def test_random_writes_equal_brute_force(store: StoreTarget, tmp_path: Path) -> None:
    """After every step of random writes, BM25 (with and without a filter) and plain sparse
    Knn equal the brute-force scan. A small snapshot cadence makes the process snapshot and
    prune the oplog as it goes (a dense query keeps a dense index held), so the sparse index
    is also caught up, snapshotted and pruned under."""
    client = store.client(tmp_path / "data", settings={"huedb_snapshot_every": 3})
    examples = max(3, EXAMPLES // 5) if store.is_postgres else max(5, EXAMPLES // 2)

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(ops=st.lists(_op, min_size=1, max_size=14), query=_query, limit=st.integers(1, 6))
    def run(ops: list[tuple[str, Any]], query: tuple[list[int], list[float]], limit: int) -> None:
        col = new_collection(client)
        for op in ops:
            apply(col, op)
            if col.count():
                col.query(query_embeddings=[[0.0, 1.0, 0.5]], n_results=1)
            assert_agrees(col, query, limit)

    run()
    client.close()


def _child() -> None:
    """A second process: opens the store, then runs the operation batches it reads from
    stdin (one JSON line each) and answers `ok` after each."""
    args = json.loads(sys.stdin.readline())
    client = huedb.PersistentClient(path=args["path"], settings=huedb.Settings(**args["settings"]))
    col = client.get_collection(args["name"])
    print("ready", flush=True)
    for line in sys.stdin:
        for op in json.loads(line):
            apply(col, (op[0], op[1]))
        print("ok", flush=True)
    client.close()


def _start_child() -> subprocess.Popen:
    """A second process running `_child`, spoken to line by line (`_tell`)."""
    return subprocess.Popen(
        [sys.executable, "-c", "from tests.test_sparse_index import _child; _child()"],
        cwd=REPO_ROOT,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _tell(child: subprocess.Popen, message: Any) -> str:
    """Send the child one JSON line; its one-line answer."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(message) + "\n")
    child.stdin.flush()
    return child.stdout.readline().strip()


def test_second_process_writes_while_index_is_warm(store: StoreTarget, tmp_path: Path) -> None:
    """Another process's writes (inserts, vector and metadata-only updates, deletes) reach
    this process's warm index through the oplog: every answer equals the scan."""
    data = tmp_path / "data"
    client = store.client(data)
    col = new_collection(client)
    rng = random.Random(16)
    rounds = [[random_op(rng) for _ in range(rng.randint(3, 8))] for _ in range(6)]
    apply(col, ("add", [(rid, ([1, 2], [1.0, 0.5]), "a", 0) for rid in IDS[:6]]))
    query = ([1, 2, 5], [1.0, 0.5, 3.0])
    assert_agrees(col, query, 5)  # the index is now warm in this process
    child = _start_child()
    try:
        args = {"path": str(data), "settings": store.settings, "name": col.name}
        assert _tell(child, args) == "ready"
        for ops in rounds:
            assert _tell(child, ops) == "ok"
            assert_agrees(col, query, 5)
            assert_agrees(col, ([0, 3, 7, 11], [0.5, 1.0, 1.5, 3.0]), 3)
    finally:
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    client.close()


def test_other_process_prunes_and_this_one_reloads_its_snapshot(
    store: StoreTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A second process that searches too snapshots its sparse index and prunes the oplog
    past this process's watermark: this process then loads that snapshot (no second scan)
    and answers as the scan."""
    data = tmp_path / "data"
    settings = {**store.settings, "huedb_snapshot_every": 3}
    client = huedb.PersistentClient(path=str(data), settings=huedb.Settings(**settings))
    col = new_collection(client)
    rng = random.Random(61)
    apply(col, ("add", [(rid, ([1, 2], [1.0, 0.5]), "a", 0) for rid in IDS]))
    query = ([1, 2, 5], [1.0, 0.5, 3.0])
    child = _start_child()
    try:
        with caplog.at_level(logging.INFO, logger="huedb.engine.sparse_index"):
            assert_agrees(col, query, 5)
            args = {"path": str(data), "settings": settings, "name": col.name}
            assert _tell(child, args) == "ready"
            for _ in range(5):
                ops = [("search", None)] + [
                    ("upsert", [(rid, ([rng.randrange(TERMS)], [1.5]), "a", 1)])
                    for rid in rng.sample(IDS, 6)
                ]
                assert _tell(child, ops) == "ok"
                assert_agrees(col, query, 5)
    finally:
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    assert caplog.text.count("by a scan") == 1
    assert "from its snapshot" in caplog.text
    client.close()


def test_reopened_store_loads_the_snapshot(
    store: StoreTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first sparse search scans the collection once and snapshots the index; a
    reopened store loads that snapshot (no scan) and catches up on later writes."""
    data = tmp_path / "data"
    client = store.client(data)
    col = new_collection(client)
    rng = np.random.default_rng(7)
    batch = [
        (
            f"d{i}",
            (sorted(rng.choice(TERMS, 3, replace=False).tolist()), [1.0, 0.5, 1.5]),
            "ab"[i % 2],
            i,
        )
        for i in range(300)
    ]
    col.add(
        ids=[r[0] for r in batch],
        embeddings=[[float(r[3]), 1.0, 0.5] for r in batch],
        metadatas=[{"cat": r[2], KEY: huedb.SparseVector(*r[1])} for r in batch],
    )
    query = ([0, 4, 9], [1.0, 1.5, 0.5])
    with caplog.at_level(logging.INFO, logger="huedb.engine.sparse_index"):
        assert_agrees(col, query, 10)
    assert "by a scan" in caplog.text
    assert (data / "index" / f"{col.id}.sparse").exists()
    client.close()
    caplog.clear()
    client = store.client(data)
    col = client.get_collection(col.name)
    with caplog.at_level(logging.INFO, logger="huedb.engine.sparse_index"):
        assert_agrees(col, query, 10)
        apply(col, ("update_meta", [("d3", ([0, 4], [3.0, 3.0]), "a", 0)]))
        apply(col, ("delete", ["d5", "d8"]))
        assert_agrees(col, query, 10)
    assert "from its snapshot" in caplog.text
    assert "by a scan" not in caplog.text
    client.close()


@pytest.mark.parametrize("damage", ["bytes-flipped", "checksummed-garbage"])
def test_a_refused_snapshot_is_replaced(
    store: StoreTarget, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """A damaged sparse snapshot (its payload's bytes flipped under an intact header, or a
    payload that is no index under matching checksums) is refused and the collection
    scanned; the snapshot written after that scan replaces it (same watermark), so the
    next open loads it instead of scanning again."""
    data = tmp_path / "data"
    client = store.client(data)
    col = new_collection(client)
    col.add(
        ids=[f"d{i}" for i in range(50)],
        embeddings=[[float(i), 1.0, 0.5] for i in range(50)],
        metadatas=[
            {"cat": "a", KEY: huedb.SparseVector([i % 11, 11], [1.0, 0.5])} for i in range(50)
        ],
    )
    query = ([0, 11], [1.0, 1.0])
    assert_agrees(col, query, 10)
    client.close()
    path = data / "index" / f"{col.id}.sparse"
    raw = bytearray(path.read_bytes())
    if damage == "bytes-flipped":
        middle = len(raw) - 40
        raw[middle : middle + 8] = bytes(b ^ 0xFF for b in raw[middle : middle + 8])
    else:
        raw = bytearray(with_payload(bytes(raw), b"not a sparse index"))
    path.write_bytes(bytes(raw))
    for round_ in range(2):
        caplog.clear()
        client = store.client(data)
        with caplog.at_level(logging.INFO, logger="huedb.engine"):
            assert_agrees(client.get_collection(col.name), query, 10)
        client.close()
        scanned = "by a scan" in caplog.text
        assert scanned == (round_ == 0), caplog.text


@pytest.mark.parametrize("scoring", SCORING)
@settings(max_examples=max(20, EXAMPLES), deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 30), _sparse, st.booleans()), min_size=1, max_size=60),
    query=_query,
    limit=st.integers(1, 8),
    allowed=st.one_of(st.none(), st.sets(st.integers(0, 30))),
)
def test_posting_column_equals_a_dict(
    scoring: str,
    steps: list[tuple[int, Any, bool]],
    query: tuple[list[int], list[float]],
    limit: int,
    allowed: set[int] | None,
) -> None:
    """Replacing vectors record by record, compacting at random points (a snapshot does,
    and so does a quarter of dead or delta entries), answers as a dict of the live vectors."""
    column = PostingColumn()
    model: dict[int, dict[int, float]] = {}
    for key, sparse, compact in steps:
        parts = None
        if sparse is not None:
            parts = (np.asarray(sparse[0], np.int64), np.asarray(sparse[1], np.float32))
            model[key] = dict(zip(sparse[0], sparse[1], strict=True))
        else:
            model.pop(key, None)
        column.replace([key], [parts])
        if compact:
            column.compact()
    assert len(column) == len(model)
    n = len(model) + 3  # three live records without a vector under the key
    weights = {t: float(np.float32(q)) for t, q in zip(*query, strict=True)}
    keys = None if allowed is None else np.asarray(sorted(allowed), dtype=np.int64)
    with scoring_by(scoring):
        got = column.search(weights, n, limit, keys)
    assert [(k, np.float32(m)) for k, m in got] == dict_search(model, weights, n, allowed)[:limit]


def dict_search(
    model: dict[int, dict[int, float]],
    weights: dict[int, float],
    n: int,
    allowed: set[int] | None,
) -> list[tuple[int, np.float32]]:
    """Every record of `model` sharing a term with the query (among `allowed`), as (key,
    BM25 measure) by ascending measure then key: plain Python, float64 sums in term order."""
    want = []
    for key, vector in model.items():
        shared = sorted(set(vector) & set(weights))
        if shared and (allowed is None or key in allowed):
            w = {
                t: weights[t] * math.log(1 + (n - df + 0.5) / (df + 0.5))
                for t in shared
                for df in [sum(t in v for v in model.values())]
            }
            dot = 0.0
            for t in shared:
                dot += w[t] * vector[t]
            want.append((np.float32(1.0 - dot), key))
    want.sort()
    return [(k, m) for m, k in want]


@pytest.mark.parametrize("scoring", SCORING)
@pytest.mark.parametrize("vocabulary", [6, 5000])
@settings(max_examples=max(10, EXAMPLES // 5), deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    limit=st.one_of(st.integers(1, 12), st.integers(sparse_kernel.MAX_SELECTED - 1, 500)),
    filtered=st.booleans(),
)
def test_many_slots_few_postings_equal_a_dict(
    scoring: str, vocabulary: int, seed: int, limit: int, filtered: bool
) -> None:
    """A query's postings far fewer than the column's slots (numpy sums them by sorting)
    or as many (numpy sums over every slot), limits kept as the loop goes or sorted after it
    (compiled): the same keys and measures, to the bit, as a dict of the vectors; values of
    both signs and zero, some records replaced (dead slots)."""
    rng = random.Random(seed)
    column = PostingColumn()
    model: dict[int, dict[int, float]] = {}
    for key in [rng.randrange(400) for _ in range(rng.randrange(50, 600))]:
        terms = sorted(rng.sample(range(vocabulary), rng.randint(1, min(vocabulary, 8))))
        values = [float(np.float32(rng.choice([rng.uniform(-1, 3), 0.0, 1.5]))) for _ in terms]
        model[key] = dict(zip(terms, values, strict=True))
        column.replace([key], [(np.asarray(terms, np.int64), np.asarray(values, np.float32))])
    query = rng.sample(range(vocabulary), rng.randint(1, min(vocabulary, 6)))
    weights = {t: float(np.float32(rng.uniform(-0.5, 2))) for t in query}
    allowed = set(rng.sample(sorted(model), len(model) // 2)) if filtered else None
    keys = None if allowed is None else np.asarray(sorted(allowed), dtype=np.int64)
    n = len(model)
    with scoring_by(scoring):
        got = column.search(weights, n, limit, keys)
    assert [(k, np.float32(m)) for k, m in got] == dict_search(model, weights, n, allowed)[:limit]


@pytest.mark.parametrize("scoring", ["compiled", "python"])
@settings(deadline=None)  # the first example may compile the loop
@given(
    measures=st.lists(
        st.sampled_from([np.nan, -1.0, 0.0, 0.25, 0.5, 2.0]) | st.floats(-4, 4, width=32),
        max_size=40,
    ),
    limit=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_loop_keeps_the_best_in_order(
    scoring: str, measures: list[float], limit: int, seed: int
) -> None:
    """`take_best` (compiled, and as plain Python) returns what a sort by (measure, key)
    with NaN last returns, ties included, and leaves its working arrays zeroed."""
    take_best = sparse_kernel.take_best
    if scoring == "compiled":
        compiled = sparse_kernel.kernel()
        assert compiled is not None, "numba is missing or failed to compile"
        take_best = compiled.take_best
    rng = random.Random(seed)
    n = len(measures)
    scratch = sparse_kernel.Scratch(n + 1)
    slot_keys = np.asarray(rng.sample(range(1000), n + 1), dtype=np.int64)
    touched = rng.sample(range(n + 1), n)  # the slots, in the order they were met
    for slot, measure in zip(touched, measures, strict=True):
        scratch.acc[slot] = 1.0 - measure
        scratch.seen[slot] = True
    scratch.touched[:n] = touched
    keys, got = take_best(scratch.touched, n, scratch.acc, scratch.seen, slot_keys, limit)
    pairs = [
        (float(np.float32(1.0 - scratch_dot)), int(slot_keys[slot]))
        for slot, measure in zip(touched, measures, strict=True)
        for scratch_dot in [1.0 - measure]
    ]
    pairs.sort(key=lambda p: (math.isnan(p[0]), 0.0 if math.isnan(p[0]) else p[0], p[1]))
    want = pairs[:limit]
    assert keys.tolist() == [k for _, k in want]
    assert np.array_equal(got, np.asarray([m for m, _ in want], np.float32), equal_nan=True)
    assert not scratch.acc.any() and not scratch.seen.any()


def test_the_loop_compiles_without_a_cache_directory() -> None:
    """With nowhere to keep numba's cache (`njit(cache=True)` raises RuntimeError then), the
    loop is compiled for the process alone and scores as the cached one does."""
    import numba

    real_njit = numba.njit

    def njit_without_cache(*args: Any, **options: Any) -> Any:
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(*args, **options)

    with mock.patch.object(numba, "njit", njit_without_cache):
        uncached = sparse_kernel._compile()
    assert uncached is not None
    scratch = sparse_kernel.Scratch(4)
    slots = np.asarray([0, 2, 2, 3], dtype=np.int32)
    values = np.asarray([0.5, 1.0, 2.0, 0.25], dtype=np.float32)
    lo, hi = np.asarray([0, 2], dtype=np.int64), np.asarray([2, 4], dtype=np.int64)
    n = uncached.accumulate(
        slots, values, lo, hi, np.asarray([1.0, 0.5]), np.empty(0, bool), *scratch.arrays()
    )
    keys = np.asarray([10, 11, 12, 13], dtype=np.int64)
    got = uncached.take_best(scratch.touched, n, scratch.acc, scratch.seen, keys, 2)
    assert got[0].tolist() == [12, 10] and got[1].tolist() == [-1.0, 0.5]


def test_filters_of_every_selectivity(store: StoreTarget, tmp_path: Path) -> None:
    """A filter passing half, a tenth, about one in a hundred or none of 600 candidates
    gives the filtered scan's answer, at limits below and above what passes."""
    client = store.client(tmp_path / "data")
    col = new_collection(client)
    rng = np.random.default_rng(3)
    cats = ["a" if i % 2 == 0 else "c" if i % 10 == 1 else f"b{i % 37}" for i in range(600)]
    vectors = [
        ([0, *sorted(rng.choice(range(1, TERMS), 2, replace=False).tolist())], [1.0, 0.5, 1.5])
        for _ in cats
    ]
    col.add(
        ids=[f"d{i}" for i in range(600)],
        embeddings=[[float(i), 1.0, 0.5] for i in range(600)],
        metadatas=[
            {"cat": c, KEY: huedb.SparseVector(*v)} for c, v in zip(cats, vectors, strict=True)
        ],
    )
    query = ([0, 3, 5], [1.0, 0.5, 1.5])
    for cat in ("a", "c", "b5", "none"):
        for limit in (1, 10, 40):
            want = brute_force(col, query, True, limit, cat)
            assert searched(col, query, limit, cat) == want, (cat, limit)
    client.close()


def test_memory_budget_evicts_sparse_indexes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With `index_memory`, the least recently used sparse index is dropped (snapshotted
    first) when another collection's is searched; its next search reloads the snapshot."""
    client = huedb.PersistentClient(
        path=str(tmp_path / "data"), settings=huedb.Settings(huedb_index_memory=20_000)
    )
    cols = [new_collection(client) for _ in range(2)]
    for col in cols:
        apply(
            col,
            (
                "add",
                [(f"x{i}", ([i % (TERMS - 1), TERMS - 1], [1.0, 0.5]), "a", 0) for i in range(300)],
            ),
        )
    query = ([1, TERMS - 1], [1.0, 1.5])
    engine = client._server.engine
    with caplog.at_level(logging.INFO, logger="huedb.engine.sparse_index"):
        assert_agrees(cols[0], query, 5)
        first = engine.index_memory()["sparse_resident_bytes"]
        assert first > 0
        assert_agrees(cols[1], query, 5)
        assert "evicted the sparse index" in caplog.text
        assert engine.index_memory()["sparse_resident_bytes"] <= first * 1.5
        caplog.clear()
        assert_agrees(cols[0], query, 5)
    assert "from its snapshot" in caplog.text
    client.close()


def test_dense_catch_up_skips_sparse_only_entries(tmp_path: Path) -> None:
    """A metadata-only change of sparse values logs the records, and the dense index's
    catch-up finds their vectors unchanged: nothing is applied to it (no graph remove/add,
    no copy of a mapped snapshot); a vector change still is."""
    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    col = new_collection(client)
    apply(col, ("add", [(f"x{i}", ([1, 2], [1.0, 0.5]), "a", i % 3) for i in range(40)]))
    engine = client._server.engine
    col.query(query_embeddings=[[2.0, 1.0, 0.5]], n_results=3)  # the dense index is held
    state = engine._indexes._states[engine.get_collection_by_uuid(str(col.id)).cid]
    before, watermark = state.unsnapshotted, state.watermark
    apply(col, ("update_meta", [(f"x{i}", ([3], [1.5]), "b", i % 3) for i in range(5)]))
    apply(col, ("drop_sparse", ["x7", "x8"]))
    assert state.watermark == watermark + 7  # logged, and caught up
    assert state.unsnapshotted == before
    assert_agrees(col, ([1, 3], [1.0, 2.0]), 6)
    col.update(ids=["x9"], embeddings=[[9.0, 9.0, 9.0]])
    assert state.unsnapshotted == before + 1
    found = col.query(query_embeddings=[[9.0, 9.0, 9.0]], n_results=1)
    assert found["ids"] == [["x9"]]
    client.close()


def test_a_key_without_entries_reopens_from_its_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sparse key no record has entries under (only an empty vector, or none) is written to
    its snapshot in a form its loader takes: a reopen warned "unusable ... rescanning"."""
    schema = huedb.Schema().create_index(config=huedb.SparseVectorIndexConfig(), key="sp")
    query = Search().rank(Knn(query=huedb.SparseVector([1], [1.0]), key="sp"))
    client = huedb.PersistentClient(path=tmp_path)
    col = client.create_collection("emptykey", schema=schema)
    col.add(
        ids=["a", "b"],
        embeddings=[[1.0, 2.0], [3.0, 4.0]],
        metadatas=[{"sp": huedb.SparseVector([], [])}, {"g": 1}],
    )
    assert col.search(query)["ids"] == [[]]
    client.close()
    caplog.set_level(logging.WARNING, logger="huedb")
    for _ in range(2):
        client = huedb.PersistentClient(path=tmp_path)
        assert client.get_collection("emptykey").search(query)["ids"] == [[]]
        client.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
