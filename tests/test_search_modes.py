"""Issue 16, acceptance 1: every captured request body, in every mode, equals the brute force.

The 24 bodies chromadb 1.5.9 sent (shared/search-api-captures.json, plus capture 11 with a
looser filter) run on the seeded records of tests/search_reference.py (dense vectors, two
sparse-vector keys, scalar metadata, documents) in:

- `ephemeral`, `persistent` and `persistent-postgresql`: `huedb.EphemeralClient()`,
  `huedb.PersistentClient(path)` on SQLite and on a PostgreSQL store, each body turned into
  huedb's builder objects (`huedb.Search(where=..., rank=...)`, the dicts read by
  `Where.from_dict` / `Rank.from_dict`, and `huedb.Knn(query=dict)` for the plain-dict
  sparse query of capture 05, which `Rank.from_dict` refuses as chromadb's does);
- `http-raw`: the body exactly as captured, posted with httpx to `huedb run`'s v2 search
  route, the response read by chromadb's own `SearchResult`;
- `http-chromadb`: the same searches built with chromadb's classes and run by the real
  `chromadb.HttpClient`'s `collection.search`;
- `http-huedb`: huedb's builders through `huedb.HttpClient` on the same server.

A collection has at most one sparse index (Chroma 1.5.9's rule), so each mode holds the
records twice: `plain` (a sparse index on `sparse_embedding`, plain dot product) and `bm25`
(a sparse index with `bm25: true` on `bm25_sparse`, query-time IDF); a body runs on the one
indexing the sparse key it searches. Scores are compared with `search_reference.close`
(relative and absolute 2e-5: huedb evaluates in float32, the reference in float64); rows
may swap only where their reference scores are that close.

Also over HTTP through chromadb.HttpClient: the reference's worked examples (acceptance 2:
rank algebra, RRF, IDF, the BM25 score; its group_by example is in test_search_execution)
exactly at float32, and every row of its error table (acceptance 4). And random searches
(hypothesis) as wire JSON, over HTTP or in-process, against the same brute force.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import chromadb
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import huedb
from tests import stores
from tests.search_reference import (
    BODIES,
    SPARSE_RECORDS,
    BruteForce,
    add_records,
    assert_matches,
    has_sparse,
    page_of,
    payloads,
    search_object,
)
from tests.servers import RunningServer, huedb_server
from tests.test_search_expressions import DETAIL_DIFFERS, LIVE_ERRORS

PLAIN_KEY, BM25_KEY = "sparse_embedding", "bm25_sparse"
REFERENCE = {
    "plain": BruteForce(SPARSE_RECORDS),
    "bm25": BruteForce(SPARSE_RECORDS, bm25_keys=(BM25_KEY,)),
}
WIRE_MODES = [
    "ephemeral-wire",
    "persistent-wire",
    "persistent-postgresql-wire",
    "http-raw",
]
MODES = [
    "ephemeral",
    "persistent",
    "persistent-postgresql",
    "http-raw",
    "http-chromadb",
    "http-huedb",
]
SPARSE_BODIES = sorted(name for name, body in BODIES.items() if has_sparse(body))


def collection_for(body: dict[str, Any]) -> str:
    """`bm25` for a body searching the BM25 key, else `plain`."""
    return "bm25" if BM25_KEY in json.dumps(body) else "plain"


def schema_of(module: Any, name: str) -> Any:
    """A `Schema` of huedb or chromadb with the sparse index of collection `name`."""
    schema = module.Schema()
    key = BM25_KEY if name == "bm25" else PLAIN_KEY
    schema.create_index(config=module.SparseVectorIndexConfig(bm25=name == "bm25"), key=key)
    return schema


def as_module(value: Any, module: Any) -> Any:
    """A metadata value with sparse vectors as `module.SparseVector` (huedb's and chromadb's
    are distinct classes that never compare equal; a raw response holds the wire dict)."""
    if isinstance(value, dict) and value.get("#type") == "sparse_vector":
        return module.SparseVector(value["indices"], value["values"], value.get("tokens"))
    if hasattr(value, "indices"):
        return module.SparseVector(value.indices, value.values, value.labels)
    return value


def records_of(module: Any) -> list[dict[str, Any]]:
    """The seeded records, their sparse vectors `module`'s."""
    return [
        {**r, "meta": {k: as_module(v, module) for k, v in r["meta"].items()}}
        for r in SPARSE_RECORDS
    ]


def as_huedb_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose metadata sparse vectors are huedb's, to compare with the reference."""
    return [
        {**row, "metadata": {k: as_module(v, huedb) for k, v in row["metadata"].items()}}
        if row.get("metadata")
        else row
        for row in rows
    ]


def fill(client: Any, module: Any) -> dict[str, Any]:
    """Both collections of a client, holding the seeded records."""
    out = {}
    for name in REFERENCE:
        col = client.create_collection(
            f"modes-{name}", schema=schema_of(module, name), embedding_function=None
        )
        add_records(col, records_of(module))
        out[name] = col
    return out


def builder_search(module: Any, payload: dict[str, Any]) -> Any:
    """The payload as `module.Search` builder objects (see the module docstring)."""
    knn = (payload.get("rank") or {}).get("$knn")
    if knn is not None and isinstance(knn["query"], dict) and "#type" not in knn["query"]:
        return search_object(module, {**payload, "rank": None}).rank(module.Knn(**knn))
    return search_object(module, payload)


Runner = Callable[[str, dict[str, Any]], list[list[dict[str, Any]]]]


def opened(client: Any) -> dict[str, Any]:
    """Both collections of an in-process client, filled on first use. The suite closes
    every in-process engine after each test (tests/conftest.py), so these clients are
    opened again in every test: an ephemeral one refilled, a persistent one reopened."""
    try:
        return {name: client.get_collection(f"modes-{name}") for name in REFERENCE}
    except huedb.errors.NotFoundError:
        return fill(client, huedb)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The module's one `huedb run`."""
    with huedb_server(tmp_path_factory.mktemp("search-modes-server") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def runners(
    server: RunningServer,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, Runner]]:
    """mode -> a function running a request body on collection `plain` or `bm25`, giving
    the rows of each search. Collections filled once (in-process: see `opened`)."""
    data = tmp_path_factory.mktemp("search-modes")
    with stores.store_target("postgresql", request) as pg, httpx.Client(timeout=30) as http:
        clients = {
            "ephemeral": huedb.EphemeralClient,
            "persistent": lambda: huedb.PersistentClient(path=str(data / "persistent")),
            "persistent-postgresql": lambda: pg.client(data / "postgresql-node"),
        }
        remote = fill(chromadb.HttpClient(host=server.host, port=server.port), chromadb)
        base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database"

        for make in clients.values():
            opened(make())  # filled now: every store exists whatever the tests draw

        def in_process(mode: str) -> Runner:
            def run(name: str, body: dict[str, Any]) -> list[list[dict[str, Any]]]:
                searches = [builder_search(huedb, p) for p in body["searches"]]
                level = huedb.ReadLevel(body.get("read_level", "index_and_wal"))
                return opened(clients[mode]())[name].search(searches, level).rows()

            return run

        def in_process_wire(mode: str) -> Runner:
            def run(name: str, body: dict[str, Any]) -> list[list[dict[str, Any]]]:
                client = clients[mode]()
                answer = client._server.search(str(opened(client)[name].id), body)
                return chromadb.api.types.SearchResult(answer).rows()

            return run

        def raw(name: str, body: dict[str, Any]) -> list[list[dict[str, Any]]]:
            resp = http.post(f"{base}/collections/{remote[name].id}/search", json=body)
            assert resp.status_code == 200, resp.text
            return chromadb.api.types.SearchResult(resp.json()).rows()

        def real_client(name: str, body: dict[str, Any]) -> list[list[dict[str, Any]]]:
            searches = [builder_search(chromadb, p) for p in body["searches"]]
            level = chromadb.api.types.ReadLevel(body.get("read_level", "index_and_wal"))
            return remote[name].search(searches, level).rows()

        ours = huedb.HttpClient(host=server.host, port=server.port)
        ours_remote = {name: ours.get_collection(f"modes-{name}") for name in REFERENCE}

        def huedb_client(name: str, body: dict[str, Any]) -> list[list[dict[str, Any]]]:
            searches = [builder_search(huedb, p) for p in body["searches"]]
            level = huedb.ReadLevel(body.get("read_level", "index_and_wal"))
            return ours_remote[name].search(searches, level).rows()

        yield {
            "ephemeral": in_process("ephemeral"),
            "persistent": in_process("persistent"),
            "persistent-postgresql": in_process("persistent-postgresql"),
            "http-raw": raw,
            "http-chromadb": real_client,
            "http-huedb": huedb_client,
            **{f"{mode}-wire": in_process_wire(mode) for mode in clients},
        }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("capture", sorted(BODIES))
def test_capture_equals_brute_force(runners: dict[str, Runner], capture: str, mode: str) -> None:
    body = BODIES[capture]
    name = collection_for(body)
    results = runners[mode](name, body)
    assert len(results) == len(body["searches"])
    for rows, payload in zip(results, body["searches"], strict=True):
        assert rows or capture == "11_where_operators"  # its filter matches no record
        assert_matches(as_huedb_rows(rows), payload, REFERENCE[name])


# -- acceptance 2: the reference's worked examples over HTTP -----------------------------------

F32 = np.float32
# Squared L2 distances from [0, 0] of exactly float32(0.1), float32(0.2), 1 and 2.25.
EXAMPLE_VECTORS = {
    "a": [0.3162277638912201, 0.0],
    "b": [0.3162277638912201, 0.3162277638912201],
    "c": [1.0, 0.0],
    "d": [1.5, 0.0],
}


def scores_of(col: Any, rank: Any) -> dict[str, float]:
    """id -> score of one search ranked by `rank` on a chromadb collection, as the float32
    the server computed (it writes float32 scores shortest-round-trip, so `-1.4` reads back
    as the float64 -1.4 and float32() recovers the exact value)."""
    found = col.search(chromadb.Search().rank(rank).select(chromadb.K.SCORE)).rows()[0]
    return {row["id"]: float(F32(row["score"])) for row in found}


def ranked_ids(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=scores.__getitem__)


def test_rank_algebra_and_rrf_examples_over_http(server: RunningServer) -> None:
    """Reference 3.3 and 3.4 through chromadb.HttpClient: dense list [a:0.1, b:0.2] (Knn
    limit 2), sparse list [b:-3, c:-1]; RRF over dense ranks a b c and sparse ranks b d."""
    client = chromadb.HttpClient(host=server.host, port=server.port)
    schema = chromadb.Schema().create_index(config=chromadb.SparseVectorIndexConfig(), key="sp")
    col = client.create_collection("worked-examples", schema=schema, embedding_function=None)
    sparse = {"b": ([1, 2], [4.0, 4.0]), "c": ([1], [2.0]), "d": ([2], [2.0])}
    col.add(
        ids=list(EXAMPLE_VECTORS),
        embeddings=list(EXAMPLE_VECTORS.values()),
        metadatas=[
            {"sp": chromadb.SparseVector(*sparse[i])} if i in sparse else {"n": 0}
            for i in EXAMPLE_VECTORS
        ],
    )
    f32 = lambda x: float(F32(x))  # noqa: E731

    def half_and_half(default: float | None, dense_default: float | None = None) -> Any:
        dense = chromadb.Knn(query=[0.0, 0.0], limit=2, default=dense_default)
        sp = chromadb.Knn(query=chromadb.SparseVector([1], [1.0]), key="sp", default=default)
        return dense * 0.5 + sp * 0.5

    assert scores_of(col, half_and_half(None)) == {"b": f32(-1.4)}
    assert scores_of(col, half_and_half(10.0)) == {"a": f32(5.05), "b": f32(-1.4)}
    both = scores_of(col, half_and_half(10.0, 10.0))
    assert ranked_ids(both) == ["b", "c", "a"]
    assert both == {"b": f32(-1.4), "c": f32(4.5), "a": f32(5.05)}

    def rrf(default: float | None = None, weights: list[float] | None = None) -> Any:
        dense = chromadb.Knn(query=[0.0, 0.0], limit=3, return_rank=True, default=default)
        sp = chromadb.Knn(
            query=chromadb.SparseVector([2], [1.0]), key="sp", return_rank=True, default=default
        )
        return chromadb.Rrf([dense, sp], k=60, weights=weights)

    assert scores_of(col, rrf()) == {"b": f32(-0.03306011)}
    fused = scores_of(col, rrf(default=1000.0))
    assert ranked_ids(fused) == ["b", "a", "d", "c"]
    reference = [-0.03306011, -0.017610064, -0.017336838, -0.017072428]
    assert [fused[i] for i in "badc"] == [f32(x) for x in reference]
    assert scores_of(col, rrf(weights=[0.7, 0.3])) == {"b": f32(-0.01647541)}


def test_idf_and_bm25_examples_over_http(server: RunningServer) -> None:
    """Reference 4.4 through chromadb.HttpClient: idf for N = 10 and n_t = 1, 5, 10 (a
    one-term query of weight 1 on a document of weight 1 scores 1 - idf), and the BM25
    score of "fox animal" against "the quick brown fox ..." with chromadb's own BM25
    function embedding documents and query client-side (-0.31743; -1.80302 without IDF)."""
    client = chromadb.HttpClient(host=server.host, port=server.port)
    bm25_index = chromadb.SparseVectorIndexConfig(bm25=True)
    col = client.create_collection(
        "idf-example",
        schema=chromadb.Schema().create_index(config=bm25_index, key="bm"),
        embedding_function=None,
    )
    holders = {1: 1, 5: 5, 3: 10}  # index -> number of records holding it
    col.add(
        ids=[f"r{i}" for i in range(10)],
        embeddings=[[float(i), 1.0] for i in range(10)],
        metadatas=[
            {"bm": chromadb.SparseVector(held, [1.0] * len(held))}
            for held in (sorted(t for t, n in holders.items() if i < n) for i in range(10))
        ],
    )
    for index, idf in ((1, 1.99243), (5, 0.69315), (3, 0.04652)):
        scores = scores_of(col, chromadb.Knn(query=chromadb.SparseVector([index], [1.0]), key="bm"))
        assert len(scores) == holders[index]
        assert {round(1 - s, 5) for s in scores.values()} == {idf}, index

    docs = ["the quick brown fox jumps over the lazy dog", "A fast auburn fox", "a cat"]
    bm25 = chromadb.utils.embedding_functions.ChromaBm25EmbeddingFunction()
    for with_idf, expected in ((True, -0.31743), (False, -1.80302)):
        config = chromadb.SparseVectorIndexConfig(
            embedding_function=bm25, source_key="#document", bm25=with_idf
        )
        col = client.create_collection(
            f"bm25-example-{with_idf}".lower(),
            schema=chromadb.Schema().create_index(config=config, key="bm25"),
            embedding_function=None,
        )
        col.add(ids=["d0", "d1", "d2"], documents=docs, embeddings=[[1.0, 0.0]] * 3)
        scores = scores_of(col, chromadb.Knn(query="fox animal", key="bm25", limit=10))
        assert set(scores) == {"d0", "d1"}  # "a cat" shares no term with the query
        assert round(scores["d0"], 5) == expected


# -- acceptance 4: the reference's error table over HTTP -----------------------------------------

SCHEMA_REFUSALS = [
    (
        "filter_on_disabled_index",
        {"searches": [{"filter": {"restricted_tag": {"$eq": "x"}}}]},
        "Cannot filter using metadata key 'restricted_tag' with type 'Str' because indexing "
        "is disabled",
    ),
    (
        "document_filter_without_fts",
        {"searches": [{"filter": {"#document": {"$contains": "a"}}}]},
        "Cannot filter using full-text search because FTS indexing is disabled",
    ),
]


def error_cases(missing: str) -> list[tuple[str, str, dict[str, Any], int, str, str]]:
    """(name, collection id, body, status, error name, message start) of every row of the
    reference's error table (2.5): the refusals Chroma's server gave (steps 1, 3, 5), a
    collection id that is not a UUID (2), a missing collection (4), and the schema's two
    filter refusals (5) on the collection `errors`."""
    cases = [
        (name, "", body, status, error, DETAIL_DIFFERS.get(name, message))
        for name, body, status, error, message in LIVE_ERRORS
    ]
    cases += [(name, "", body, 400, "InvalidArgumentError", m) for name, body, m in SCHEMA_REFUSALS]
    valid = {"searches": [{"rank": {"$knn": {"query": [1.0, 0.0]}}}]}
    cases.append(
        ("not_a_uuid", "nope", valid, 400, "InvalidArgumentError", "Collection ID is not a valid")
    )
    message = f"Collection [{missing}] does not exist."
    cases.append(("missing_collection", missing, valid, 404, "NotFoundError", message))
    return cases


def stored(col: Any) -> list[tuple[Any, ...]]:
    """Every record of a chromadb collection: id, embedding, metadata, document."""
    got = col.get(include=["embeddings", "metadatas", "documents"])
    return [
        (i, list(map(float, e)), m, d)
        for i, e, m, d in zip(
            got["ids"], got["embeddings"], got["metadatas"], got["documents"], strict=True
        )
    ]


def test_error_table_over_http_with_raw_bodies_and_the_real_client(server: RunningServer) -> None:
    """Every row gets the reference's status, error name and message (up to the detail of
    DETAIL_DIFFERS) from raw httpx, the exception class of that name from chromadb's client,
    never a 500, and the collection's records are unchanged."""
    client = chromadb.HttpClient(host=server.host, port=server.port)
    schema = (
        chromadb.Schema()
        .create_index(config=chromadb.SparseVectorIndexConfig(), key="indexed_sp")
        .delete_index(config=chromadb.StringInvertedIndexConfig(), key="restricted_tag")
        .delete_index(config=chromadb.FtsIndexConfig(), key="#document")
    )
    col = client.create_collection("errors", schema=schema, embedding_function=None)
    col.add(
        ids=["a", "b"],
        embeddings=[[1.0, 0.0], [0.0, 1.0]],
        metadatas=[{"restricted_tag": "x", "indexed_sp": chromadb.SparseVector([1], [1.0])}, None],
        documents=["a doc", None],
    )
    before = stored(col)
    missing = f"{'0' * 8}-0000-4000-8000-{'0' * 12}"
    cases = error_cases(missing)
    assert len(cases) == len(LIVE_ERRORS) + 4
    base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    transport = client._server  # chromadb's FastAPI client: its request and error mapping
    with httpx.Client(timeout=30) as http:
        for name, target, body, status, error, message in cases:
            path = f"/collections/{target or col.id}/search"
            resp = http.post(f"{base}/{target or col.id}/search", json=body)
            assert (resp.status_code, resp.json()["error"]) == (status, error), (name, resp.text)
            assert resp.json()["message"].startswith(message), (name, resp.text)
            with pytest.raises(chromadb.errors.ChromaError) as raised:
                transport._make_request(
                    "post", "/tenants/default_tenant/databases/default_database" + path, json=body
                )
            assert type(raised.value) is chromadb.errors.error_types[error], name
            assert str(raised.value).startswith(message), name
    # The schema refusals through the real client's own builders and collection.search.
    by_builder = [
        chromadb.Search().where(chromadb.K("restricted_tag") == "x"),
        chromadb.Search().where(chromadb.K.DOCUMENT.contains("a")),
        chromadb.Search().rank(chromadb.Knn(query=chromadb.SparseVector([1], [1.0]), key="sp")),
    ]
    refusals = [m for _, _, m in SCHEMA_REFUSALS]
    refusals.append(
        "Cannot filter using metadata key 'sp' with type 'SparseVector' because indexing is "
        "disabled"
    )
    for search, message in zip(by_builder, refusals, strict=True):
        with pytest.raises(chromadb.errors.InvalidArgumentError, match=re.escape(message)):
            col.search(search)
    assert stored(col) == before


# -- random searches in every mode --------------------------------------------------------------

_random_cases = st.sampled_from(sorted(REFERENCE)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        payloads((BM25_KEY if name == "bm25" else PLAIN_KEY,)),
        st.sampled_from(WIRE_MODES),
    )
)


# Every row of the Knn scores d - |-2 - d| = -2 up to float32 rounding, so which two a
# group keeps is decided by rounding: a row the reference drops is known by its score.
KNN_6 = {"$knn": {"query": [0.25, 1.0, 0.125, 0.125], "key": "#embedding", "limit": 6}}
NEAR_TIES_IN_A_GROUP = {
    "filter": None,
    "rank": {
        "$sub": {
            "left": KNN_6,
            "right": {"$abs": {"$sub": {"left": {"$val": -2.0}, "right": KNN_6}}},
        }
    },
    "group_by": {"keys": ["category"], "aggregate": {"$min_k": {"keys": ["#score"], "k": 2}}},
    "limit": {"offset": 0},
    "select": {"keys": ["#score", "#metadata", "#document"]},
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_random_cases)
@example(case=("plain", NEAR_TIES_IN_A_GROUP, "ephemeral-wire"))
def test_random_searches_equal_brute_force(
    runners: dict[str, Runner], case: tuple[str, dict[str, Any], str]
) -> None:
    """Random rank trees of dense and sparse Knn (plain or BM25 collection), filters,
    group_by and pages, in a random mode, sent as wire JSON (the builders refuse some of
    them client-side, e.g. a one-item `$sum`): over HTTP, or in-process through the server
    API `Collection.search` calls (`LocalAPI.search`). Tolerance rel 1e-4 / abs 1e-3: float32 error
    grows through products and sums of several lists (see test_search_execution)."""
    name, payload, mode = case
    (rows,) = runners[mode](name, {"searches": [payload]})
    ranked = REFERENCE[name].ranked(payload)
    want = page_of(payload, ranked)
    scores = REFERENCE[name].scores(payload)

    def near(a: float | None, b: float | None) -> bool:
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-3)

    assert len(rows) == len(want), ([r["id"] for r in rows], [w[0] for w in want])
    assert len({r["id"] for r in as_huedb_rows(rows)}) == len(rows), "a row served twice"
    for row, (wid, wscore, rec) in zip(as_huedb_rows(rows), want, strict=True):
        assert row["id"] == wid or near(scores.get(row["id"]), wscore), (row["id"], wid)
        assert near(row["score"], scores.get(row["id"], wscore))
        if row["id"] == wid:
            assert row.get("document") == rec["doc"]
            assert row.get("metadata") == rec["meta"]
