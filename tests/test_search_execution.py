"""Search execution (issue 16) against an independent brute-force evaluator.

The brute force (tests/search_reference.py: float64 distances, plain-Python filter, rank
algebra and group_by written from shared/chroma-search-api.md, sections 3.1-3.8) shares no
code with huedb/search. The captured request bodies (copied in tests/test_search_expressions.py) run
through huedb.Client, PersistentClient (SQLite and PostgreSQL), huedb.HttpClient and the
real chromadb.HttpClient against `huedb run`. Here bodies with a sparse `$knn` and the
random searches run at the engine level (`SearchRun` with a schema enabling both sparse
keys at once); tests/test_search_modes.py runs every capture, sparse ones included, on
collections whose schema enables the sparse index, in every mode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings

import huedb
from huedb.bm25 import ChromaBm25EmbeddingFunction
from huedb.record_batch import RecordBatch
from huedb.search import sparse_knn
from huedb.search.evaluate import SearchRun
from huedb.search.parse import parse_search_request
from huedb.search.plan import knn_leaves
from huedb.search.ranks import Domain, evaluate_rank
from huedb.sparse_vector import SparseVector
from tests import stores
from tests.search_reference import (
    BODIES,
    RECORDS,
    SPARSE_KEYS,
    SPARSE_RECORDS,
    BruteForce,
    N,
    add_records,
    assert_matches,
    close,
    has_sparse,
    payloads,
    search_object,
)
from tests.servers import huedb_server
from tests.stores import StoreTarget
from tests.test_search_expressions import LIVE_ACCEPTED, LIVE_ERRORS

store = stores.store
DENSE_CASES = sorted(n for n, b in BODIES.items() if not has_sparse(b))
SPARSE_CASES = sorted(n for n, b in BODIES.items() if has_sparse(b))


# -- the collection --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One `huedb run` for the module, holding the records in collection `docs`."""
    with huedb_server(tmp_path_factory.mktemp("search-exec") / "data") as running:
        http = chromadb.HttpClient(host=running.host, port=running.port)
        add_records(http.create_collection("docs", embedding_function=None), RECORDS)
        yield running


def _collection(mode: str, server: Any) -> Any:
    """The records in `mode` (in-process engines are closed after each test)."""
    if mode == "http":
        return chromadb.HttpClient(host=server.host, port=server.port).get_collection("docs")
    if mode == "huedb-http":
        return huedb.HttpClient(host=server.host, port=server.port).get_collection("docs")
    col = huedb.Client().create_collection("docs", embedding_function=None)
    add_records(col, RECORDS)
    return col


# -- the brute force ---------------------------------------------------------------------------


# -- the captured bodies in three modes --------------------------------------------------------


@pytest.mark.parametrize("mode", ["ephemeral", "http", "huedb-http"])
def test_captured_dense_bodies_equal_brute_force(server: Any, mode: str) -> None:
    """huedb.Client, chromadb.HttpClient and huedb.HttpClient against `huedb run`."""
    _check_dense_captures(_collection(mode, server), chromadb if mode == "http" else huedb)


def test_captured_dense_bodies_persistent_on_each_store(store: StoreTarget, tmp_path: Path) -> None:
    """PersistentClient on SQLite and on PostgreSQL."""
    col = store.client(tmp_path / "data").create_collection("docs", embedding_function=None)
    add_records(col, RECORDS)
    _check_dense_captures(col, huedb)


def _check_dense_captures(col: Any, module: Any) -> None:
    bf = BruteForce(RECORDS)
    for name in DENSE_CASES:
        payloads = BODIES[name]["searches"]
        result = col.search([search_object(module, p) for p in payloads])
        assert len(result.rows()) == len(payloads), name
        for rows, payload in zip(result.rows(), payloads, strict=True):
            assert_matches(rows, payload, bf)


def test_captured_sparse_bodies_equal_brute_force() -> None:
    """Sparse Knn (plain and bm25 IDF) at the engine level, both sparse keys in one schema
    (collections allow one sparse index: tests/test_search_modes.py runs them per mode)."""
    client = huedb.Client()
    col = client.create_collection("sparse", embedding_function=None)
    engine = client._server.engine
    records = SPARSE_RECORDS
    engine.add(
        str(col.id),
        RecordBatch(
            ids=[r["id"] for r in records],
            embeddings=np.asarray([r["vec"] for r in records], dtype=np.float32),
            metadatas=[r["meta"] for r in records],
            documents=[r["doc"] for r in records],
        ),
    )
    index = {"sparse_vector": {"sparse_vector_index": {"enabled": True, "config": {}}}}
    bm25 = {"sparse_vector": {"sparse_vector_index": {"enabled": True, "config": {"bm25": True}}}}
    schema = {"keys": {"sparse_embedding": index, "bm25_sparse": bm25}}
    bf = BruteForce(records, bm25_keys=("bm25_sparse",))
    for name in SPARSE_CASES:
        body = BODIES[name]
        answer = SearchRun(engine, str(col.id), schema).run(parse_search_request(body))
        result = huedb.search.result.SearchResult.from_response(answer)
        for rows, payload in zip(result.rows(), body["searches"], strict=True):
            assert rows or name.startswith("04"), name  # 04's indices 7, 9 may match none
            _sparse_rows_match(rows, payload, bf)


def _sparse_rows_match(rows: list[dict[str, Any]], payload: dict[str, Any], bf: BruteForce) -> None:
    want = bf.run(payload)
    scores = {w[0]: w[1] for w in want}
    assert len(rows) == len(want)
    for row, (wid, wscore, _) in zip(rows, want, strict=True):
        assert row["id"] == wid or close(scores.get(row["id"]), wscore)
        if "score" in row:
            assert close(row["score"], wscore)


# -- the reference's worked examples ------------------------------------------------------------


def _rank_of(rank: dict[str, Any], lists: list[dict[str, float]], defaults: list[Any]) -> dict:
    plan = parse_search_request({"searches": [{"rank": rank}]}).searches[0]
    assert len(knn_leaves(plan.rank)) == len(lists)
    domains = [
        Domain({k: np.float32(v) for k, v in lst.items()}, None if d is None else np.float32(d))
        for lst, d in zip(lists, defaults, strict=True)
    ]
    return {k: float(v) for k, v in evaluate_rank(plan.rank, domains).items()}


KNN = {"$knn": {"query": [0.0]}}


def test_worked_examples_rank_algebra_and_rrf() -> None:
    dense, sparse = {1: 0.1, 2: 0.2}, {2: -3.0, 3: -1.0}  # a=1, b=2, c=3
    half = {"$sum": [{"$mul": [KNN, {"$val": 0.5}]}, {"$mul": [KNN, {"$val": 0.5}]}]}
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    assert _rank_of(half, [dense, sparse], [None, None]) == {2: f32(-1.4)}
    assert _rank_of(half, [dense, sparse], [None, 10]) == {1: f32(5.05), 2: f32(-1.4)}
    both = _rank_of(half, [dense, sparse], [10, 10])
    assert sorted(both, key=both.get) == [2, 3, 1]
    assert both == {2: f32(-1.4), 3: f32(4.5), 1: f32(5.05)}

    def rrf(w1: float, w2: float) -> dict[str, Any]:
        term = lambda w: {"$div": {"left": {"$val": w}, "right": {"$sum": [{"$val": 60}, KNN]}}}  # noqa: E731
        return {"$mul": [{"$val": -1}, {"$sum": [term(w1), term(w2)]}]}

    ranks_dense, ranks_sparse = {1: 0, 2: 1, 3: 2}, {2: 0, 4: 1}  # a b c / b d
    assert _rank_of(rrf(1, 1), [ranks_dense, ranks_sparse], [None, None]) == {2: f32(-0.03306011)}
    fused = _rank_of(rrf(1, 1), [ranks_dense, ranks_sparse], [1000, 1000])
    assert sorted(fused, key=fused.get) == [2, 1, 4, 3]
    reference = [-0.03306011, -0.017610064, -0.017336838, -0.017072428]
    assert [fused[k] for k in (2, 1, 4, 3)] == [f32(x) for x in reference]
    weighted = _rank_of(rrf(0.7, 0.3), [ranks_dense, ranks_sparse], [None, None])
    assert weighted == {2: f32(-0.01647541)}


def test_worked_examples_idf_and_bm25_score() -> None:
    assert [round(sparse_knn.idf(10, n), 5) for n in (0, 1, 5, 10)] == [
        3.09104,
        1.99243,
        0.69315,
        0.04652,
    ]
    ef = ChromaBm25EmbeddingFunction()
    docs = ["the quick brown fox jumps over the lazy dog", "A fast auburn fox", "a cat"]
    vectors = ef(docs)
    query = ef.embed_query(["fox animal"])[0]
    column = sparse_knn.SparseColumn(
        [(i, {"sp": v.to_dict()}) for i, v in enumerate(vectors)], "sp"
    )
    counts = column.document_frequencies(set(query.indices))
    idf_of = {t: sparse_knn.idf(len(docs), n) for t, n in counts.items()}
    plan = parse_search_request(
        {"searches": [{"rank": {"$knn": {"query": query.to_dict(), "key": "sp"}}}]}
    ).searches[0]
    q = plan.rank.query
    with_idf = dict(column.measures(sparse_knn.query_weights(q, idf_of)))
    plain = dict(column.measures(sparse_knn.query_weights(q, None)))
    assert round(with_idf[0], 5) == -0.31743
    assert round(plain[0], 5) == -1.80302
    assert 2 not in plain  # "a cat" shares no term with the query: not a candidate


# -- refusals over HTTP ------------------------------------------------------------------------


def _live_cases() -> list[tuple[str, dict[str, Any], int, str, str]]:
    """(name, request, status, error name, message start) of every request the captures sent
    to Chroma's server: its refusals as they were; the ones it accepted (501 there: not
    executed) answer 200 here, except a dense query of the wrong dimension or on another key
    (huedb's decisions, docs/search-api.md)."""
    cases = [(name, req, status, error, "") for name, req, status, error, _ in LIVE_ERRORS]
    for i, req in enumerate(LIVE_ACCEPTED):
        knn = (req["searches"][0].get("rank") or {}).get("$knn") or {} if req["searches"] else {}
        if len(knn.get("query", [])) == 3:
            message = "Collection expecting embedding with dimension of 2, got 3"
            cases.append((f"accepted{i}", req, 400, "InvalidArgumentError", message))
        elif knn.get("key", "#embedding") != "#embedding":
            message = "A dense $knn query searches '#embedding'"
            cases.append((f"accepted{i}", req, 400, "InvalidArgumentError", message))
        else:
            cases.append((f"accepted{i}", req, 200, "", ""))
    return cases


def test_live_requests_get_chroma_status_and_data_is_unchanged(server: Any) -> None:
    client = chromadb.HttpClient(host=server.host, port=server.port)
    col = client.create_collection("live2d", embedding_function=None)
    col.add(ids=["a", "b"], embeddings=[[1, 0], [0, 1]], metadatas=[{"n": 1}, {"n": 2}])
    url = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    cases = _live_cases()
    assert len(cases) == 46
    with httpx.Client(timeout=30) as http:
        for name, request, status, error, message in cases:
            resp = http.post(f"{url}/{col.id}/search", json=request)
            assert resp.status_code == status, (name, resp.text)
            if error:
                assert resp.json()["error"] == error, name
                assert resp.json()["message"].startswith(message), name
        assert col.count() == 2
        # In-process, the same requests through the server API `Collection.search` calls.
        local = huedb.Client()
        target = local.create_collection("live2d", embedding_function=None)
        target.add(ids=["a", "b"], embeddings=[[1, 0], [0, 1]], metadatas=[{"n": 1}, {"n": 2}])
        for name, request, status, error, _ in cases:
            if status == 200:
                local._server.search(str(target.id), request)
                continue
            with pytest.raises(huedb.errors.ChromaError) as refused:
                local._server.search(str(target.id), request)
            assert (refused.value.code(), refused.value.name()) == (status, error), name
        assert target.count() == 2
        nowhere = f"{url}/{'0' * 8}-0000-4000-8000-{'0' * 12}/search"
        missing = http.post(nowhere, json={"searches": []})
        assert (missing.status_code, missing.json()["error"]) == (404, "NotFoundError")
        bad_id = http.post(f"{url}/nope/search", json={"searches": []})
        assert (bad_id.status_code, bad_id.json()["error"]) == (400, "InvalidArgumentError")


class _LengthEmbedder:
    """The captures' embedding function: [len(text), 2, 0, 0]."""

    def __call__(self, input: list[str]) -> list[list[float]]:  # noqa: A002 (Chroma's name)
        return [[float(len(t)), 2.0, 0.0, 0.0] for t in input]


def test_string_query_is_embedded_and_rows_have_chromadb_shape() -> None:
    col = huedb.Client().create_collection("strings", embedding_function=_LengthEmbedder())
    col.add(ids=["x", "y"], embeddings=[[11.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    result = col.search(huedb.Search().rank(huedb.Knn(query="hello world")).select(huedb.K.SCORE))
    assert result.rows() == [[{"id": "x", "score": 0.0}, {"id": "y", "score": 126.0}]]
    body = {
        "ids": [["doc1", "doc2"]],
        "documents": [["a fox", None]],
        "embeddings": [[[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]]],
        "metadatas": [
            [
                {
                    "category": "science",
                    "tags": ["x", "y"],
                    "bm25_sparse": {
                        "#type": "sparse_vector",
                        "indices": [1, 5],
                        "values": [0.5, 1.5],
                        "tokens": None,
                    },
                },
                None,
            ]
        ],
        "scores": [[0.012, 0.5]],
        "select": [["#document", "#embedding", "#metadata", "#score"]],
    }
    rows = huedb.search.result.SearchResult.from_response(body).rows()
    sparse = SparseVector([1, 5], [0.5, 1.5])
    metadata = {"category": "science", "tags": ["x", "y"], "bm25_sparse": sparse}
    assert rows == [  # the rows chromadb 1.5.9 gave for this body (the captures' response test)
        [
            {
                "id": "doc1",
                "document": "a fox",
                "embedding": [0.1, 0.2, 0.3, 0.4],
                "metadata": metadata,
                "score": 0.012,
            },
            {"id": "doc2", "embedding": [0.5, 0.5, 0.5, 0.5], "score": 0.5},
        ]
    ]
    assert chromadb.api.types.SearchResult(body).rows()[0][1] == rows[0][1]


def _groupmake_records() -> tuple[list[str], list[list[float]], list[dict[str, Any]]]:
    """The reference's group_by example: 3 categories x 4 records moving away from
    [1, 0, 0, 0] along their own axis, two per year, with priorities."""
    ids, vectors, metadatas = [], [], []
    priorities = {"sci": [1, 2, 1, 3], "tech": [2, 1, 1, 2], "arts": [3, 1, 2, 1]}
    for axis, (short, category) in enumerate(
        (("sci", "science"), ("tech", "tech"), ("arts", "arts"))
    ):
        for j in range(4):
            year = 2023 if j < 2 else 2024
            vector = [0.0] * 4
            vector[axis], vector[axis + 1] = 1.0 - 0.1 * j, 0.1 * j
            ids.append(f"{short}_{year}_{j % 2 + 1}")
            vectors.append(vector)
            metadatas.append({"category": category, "year": year, "priority": priorities[short][j]})
    return ids, vectors, metadatas


# (group keys, aggregate keys, k) -> the six records kept (shared/chroma-search-api.md, 3.6)
GROUP_EXPECTED = [
    (
        ["category"],
        ["#score"],
        2,
        {"sci_2023_1", "sci_2023_2", "tech_2024_2", "tech_2024_1", "arts_2024_2", "arts_2024_1"},
    ),
    (
        ["category", "year"],
        ["#score"],
        1,
        {"sci_2023_1", "sci_2024_1", "tech_2023_2", "tech_2024_2", "arts_2023_2", "arts_2024_2"},
    ),
    (
        ["category"],
        ["priority", "#score"],
        2,
        {"sci_2023_1", "sci_2024_1", "tech_2024_1", "tech_2023_2", "arts_2024_2", "arts_2023_2"},
    ),
]


@pytest.mark.parametrize("mode", ["ephemeral", "http"])
def test_group_by_example(server: Any, mode: str) -> None:
    if mode == "http":
        client: Any = chromadb.HttpClient(host=server.host, port=server.port)
        module: Any = chromadb
    else:
        client, module = huedb.Client(), huedb
    from_module = module.execution.expression
    col = client.get_or_create_collection("groups", embedding_function=None)
    ids, vectors, metadatas = _groupmake_records()
    col.upsert(ids=ids, embeddings=vectors, metadatas=metadatas)
    for keys, agg_keys, k, expected in GROUP_EXPECTED:
        grouping = from_module.GroupBy(
            keys=[module.Key(x) for x in keys],
            aggregate=from_module.MinK(keys=[module.Key(x) for x in agg_keys], k=k),
        )
        knn = module.Knn(query=[1.0, 0.0, 0.0, 0.0], limit=12)
        found = col.search(module.Search().rank(knn).group_by(grouping).limit(12))["ids"][0]
        assert len(found) == 6 and set(found) == expected, (keys, agg_keys, found)


# -- random searches against the brute force ----------------------------------------------------

_payloads = payloads(SPARSE_KEYS)


@pytest.fixture(scope="module")
def sparse_run() -> Iterator[Any]:
    """A function running one payload on the sparse records at the engine level."""
    client = huedb.Client()
    col = client.create_collection("sparse-prop", embedding_function=None)
    engine = client._server.engine
    records = SPARSE_RECORDS
    engine.add(
        str(col.id),
        RecordBatch(
            ids=[r["id"] for r in records],
            embeddings=np.asarray([r["vec"] for r in records], dtype=np.float32),
            metadatas=[r["meta"] for r in records],
            documents=[r["doc"] for r in records],
        ),
    )
    index = {"sparse_vector": {"sparse_vector_index": {"enabled": True, "config": {}}}}
    bm25 = {"sparse_vector": {"sparse_vector_index": {"enabled": True, "config": {"bm25": True}}}}
    schema = {"keys": {"sparse_embedding": index, "bm25_sparse": bm25}}

    def run(payload: dict[str, Any]) -> list[dict[str, Any]]:
        request = parse_search_request({"searches": [payload]})
        answer = SearchRun(engine, str(col.id), schema).run(request)
        return huedb.search.result.SearchResult.from_response(answer).rows()[0]

    yield run


# Three records tie at exactly 2.0 in float32 (d + 2 - d); the page holds the third by
# offset id, while the float64 reference ordered them by rounding noise (seed 5 found it).
_TIED_AT_THE_PAGE_EDGE = {
    "filter": None,
    "rank": {
        "$sub": {
            "left": {
                "$sub": {
                    "left": {"$knn": {"query": [0.25, 0.625, 0.625, 0.25], "limit": 3}},
                    "right": {"$val": -2.0},
                }
            },
            "right": {"$knn": {"query": [0.25, 0.625, 0.625, 0.25], "limit": 3}},
        }
    },
    "group_by": {},
    "limit": {"offset": 2},
    "select": {"keys": ["#score", "#metadata", "#document"]},
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_payloads)
@example(payload=_TIED_AT_THE_PAGE_EDGE)
def test_random_searches_equal_brute_force(sparse_run: Any, payload: dict[str, Any]) -> None:
    """Random rank trees of dense and sparse (plain, bm25) Knn with filters, group_by and
    pages, at the engine level. Where huedb's page holds another record than the
    reference's, that record's score in the whole ranking must tie with the expected one
    (float32 against float64 rounding decides such ties either way), and the page must be
    the same slice of huedb's own whole ranking."""
    rows = sparse_run(payload)
    reference = BruteForce(SPARSE_RECORDS, bm25_keys=("bm25_sparse",))
    want = reference.run(payload)
    everywhere = {w[0]: w[1] for w in reference.run({**payload, "limit": {"offset": 0}})}

    def close(a: float | None, b: float | None) -> bool:
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-3)

    assert len(rows) == len(want), ([r["id"] for r in rows], [w[0] for w in want])
    # huedb's page is the same slice of its own whole ranking, without repeats.
    page = payload.get("limit") or {}
    start = page.get("offset", 0)
    end = None if page.get("limit") is None else start + page["limit"]
    whole = sparse_run({**payload, "limit": {"offset": 0}})
    ids = [r["id"] for r in rows]
    assert ids == [r["id"] for r in whole[start:end]] and len(set(ids)) == len(ids), ids
    for row, (wid, wscore, rec) in zip(rows, want, strict=True):
        assert row["id"] == wid or close(everywhere.get(row["id"]), wscore), (row["id"], wid)
        assert close(row["score"], wscore), (row["id"], row["score"], wscore)
        if row["id"] == wid:
            assert row.get("document") == rec["doc"]


def test_bounds_are_quota_errors(server: Any) -> None:
    """More searches, Knn or candidates than huedb serves per request: 422 QuotaError."""
    col = chromadb.HttpClient(host=server.host, port=server.port).get_collection("docs")
    url = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    knn = {"$knn": {"query": [0.5] * 4, "limit": 3}}
    too_many: list[tuple[list[dict[str, Any]], str]] = [
        ([{}] * 101, "101 searches"),
        ([{"rank": {"$sum": [knn] * 33}}], "33 $knn"),
        ([{"rank": {"$sum": [knn] * 32}}] * 9, "more than 256 $knn"),
        ([{"rank": {"$knn": {"query": [0.5] * 4, "limit": 10_001}}}], "limit 10001"),
    ]
    with httpx.Client(timeout=30) as http:
        for searches, what in too_many:
            resp = http.post(f"{url}/{col.id}/search", json={"searches": searches})
            assert (resp.status_code, resp.json()["error"]) == (422, "QuotaError"), what
        at_most = [{"rank": {"$sum": [knn] * 32}}] * 8
        resp = http.post(f"{url}/{col.id}/search", json={"searches": [{}] * 100})
        assert resp.status_code == 200
        resp = http.post(f"{url}/{col.id}/search", json={"searches": at_most})
        assert resp.status_code == 200 and len(resp.json()["ids"]) == 8
    assert col.count() == N


def test_dense_query_refusals() -> None:
    """Decisions 3 and 4 (docs/search-api.md): 400 for an empty dense query, one beyond
    float32, a wrong dimension, or a dense query on a key other than #embedding."""
    client = huedb.Client()
    col = client.create_collection("refusals", embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0, 2.0]])
    refused = {
        "must not be empty": {"query": []},
        "finite float32": {"query": [1e39, 0.0]},
        "dimension of 2, got 3": {"query": [1.0, 0.0, 0.0]},
        "searches '#embedding', got key 'sp'": {"query": [1.0, 0.0], "key": "sp"},
    }
    for message, knn in refused.items():
        with pytest.raises(huedb.errors.InvalidArgumentError, match=re.escape(message)):
            client._server.search(str(col.id), {"searches": [{"rank": {"$knn": knn}}]})
    assert col.count() == 1


def test_a_deleted_collection_is_404_before_any_other_error(tmp_path: Path) -> None:
    """The route reads a collection's schema once; after the collection is deleted (by
    another client on the same path), every search of it is a 404 first, as before it was
    cached: a schema refusal, a dense refusal, a search reading nothing (limit 0) and a valid
    one; on the living collection the schema refusal and the answer are unchanged."""
    path = str(tmp_path / "data")
    schema = (
        huedb.Schema()
        .create_index(config=huedb.SparseVectorIndexConfig(), key="sp")
        .delete_index(config=huedb.StringInvertedIndexConfig(), key="tag")
    )
    client = huedb.PersistentClient(path=path)
    col = client.create_collection("gone", schema=schema, embedding_function=None)
    col.add(
        ids=["a", "b"],
        embeddings=[[1.0, 0.0], [0.0, 1.0]],
        metadatas=[{"tag": "x", "sp": SparseVector([1, 2], [1.0, 0.5])}, {"tag": "y"}],
    )
    sparse = {"rank": {"$knn": {"query": {"indices": [1], "values": [1.0]}, "key": "sp"}}}
    bodies = {
        "schema refusal": {"searches": [{"filter": {"tag": {"$eq": "x"}}}]},
        "dense refusal": {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0], "key": "sp"}}}]},
        "reads nothing": {"searches": [{"limit": {"limit": 0}}]},
        "valid": {"searches": [sparse]},
    }
    server = client._server
    assert server.search(str(col.id), bodies["valid"])["ids"] == [["a"]]
    with pytest.raises(huedb.errors.InvalidArgumentError, match="indexing is disabled"):
        server.search(str(col.id), bodies["schema refusal"])
    assert server.search(str(col.id), bodies["reads nothing"])["ids"] == [[]]
    other = huedb.PersistentClient(path=path)
    other.delete_collection("gone")
    for body in bodies.values():
        with pytest.raises(huedb.errors.NotFoundError, match="does not exist"):
            server.search(str(col.id), body)
    other.close()
    client.close()
