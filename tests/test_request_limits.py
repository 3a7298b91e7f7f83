"""Per-request limits and the time budget of engine reads (issue 13 item 2).

The probe's requests (2,000 query vectors x n_results 20,000; a `$or` of 19,999 terms; a
2 MB literal regex; `$in` with 1M values) are refused at once with Chroma's `QuotaError`
(422), each limit admits a request exactly at it, and a read that outlives its time budget
is stopped, frees the engine for another client's count and changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import chromadb
import httpx
import numpy as np
import pytest

import huedb
from huedb.options import SERVER_DEFAULTS, EngineOptions
from tests.servers import RunningServer, huedb_server

DIM = 8
LIMITS = EngineOptions(**SERVER_DEFAULTS)  # what `huedb run` starts from
FAST = 5.0  # seconds: a refusal takes milliseconds; this only catches a request that ran


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A default server with one collection of 300 records."""
    with huedb_server(tmp_path_factory.mktemp("limits") / "data") as running:
        client = huedb.HttpClient(host=running.url)
        col = client.create_collection("limited")
        rng = np.random.default_rng(0)
        col.add(
            ids=[f"r{i}" for i in range(300)],
            embeddings=rng.random((300, DIM), dtype=np.float32),
            metadatas=[{"i": i, "s": f"v{i}"} for i in range(300)],
            documents=[f"document {i} about apples" for i in range(300)],
        )
        client.close()
        yield running


def _post(server: RunningServer, route: str, body: dict) -> tuple[int, dict, float]:
    base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    with httpx.Client(timeout=120) as http:
        cid = http.get(f"{base}/limited").json()["id"]
        started = time.monotonic()
        response = http.post(f"{base}/{cid}/{route}", json=body)
        return response.status_code, response.json(), time.monotonic() - started


def _vectors(n: int) -> list[list[float]]:
    return np.random.default_rng(n).random((n, DIM)).round(3).tolist()


def _or_of(n: int) -> dict:
    """A `$or` with `n` conditions: n + 1 terms."""
    return {"$or": [{"s": f"none-{k}"} for k in range(n)]}


def _regexes(n: int) -> dict:
    """A `where_document` with `n` regex conditions (and one `$and` term when n > 1)."""
    terms = [{"$regex": f"zz{k}"} for k in range(n)]
    return terms[0] if n == 1 else {"$and": terms}


# Each limit: a body exactly at it (admitted) and one just over (refused), and the option.
at_and_over = [
    (
        "query",
        {"query_embeddings": _vectors(LIMITS.max_query_embeddings), "n_results": 1},
        {"query_embeddings": _vectors(LIMITS.max_query_embeddings + 1), "n_results": 1},
        "max_query_embeddings",
    ),
    (  # 40 x 250 results of the 300 records, and 40 x 251
        "query",
        {"query_embeddings": _vectors(40), "n_results": LIMITS.max_query_results // 40},
        {"query_embeddings": _vectors(40), "n_results": LIMITS.max_query_results // 40 + 1},
        "max_query_results",
    ),
    (
        "get",
        {"where": _or_of(LIMITS.max_filter_terms - 1)},
        {"where": _or_of(LIMITS.max_filter_terms)},
        "max_filter_terms",
    ),
    (
        "get",
        {"where": {"s": {"$in": [f"v{k}" for k in range(LIMITS.max_in_values)]}}},
        {"where": {"s": {"$nin": [f"v{k}" for k in range(LIMITS.max_in_values + 1)]}}},
        "max_in_values",
    ),
    (
        "get",
        {"where_document": {"$contains": "é" * (LIMITS.max_pattern_bytes // 2)}},
        {"where_document": {"$not_contains": "é" * (LIMITS.max_pattern_bytes // 2) + "x"}},
        "max_pattern_bytes",
    ),
    (
        "get",
        {"where_document": _regexes(LIMITS.max_regex_terms)},
        {"where_document": _regexes(LIMITS.max_regex_terms + 1)},
        "max_regex_terms",
    ),
    (
        "delete",
        {"ids": [f"gone-{k}" for k in range(LIMITS.max_ids)]},
        {"ids": [f"gone-{k}" for k in range(LIMITS.max_ids + 1)]},
        "max_ids",
    ),
]


@pytest.mark.parametrize(
    ("route", "at", "over", "option"), at_and_over, ids=[c[3] for c in at_and_over]
)
def test_each_limit_admits_its_value_and_refuses_one_more(
    server: RunningServer, route: str, at: dict, over: dict, option: str
) -> None:
    status, body, _ = _post(server, route, at)
    assert status == 200, body
    status, body, seconds = _post(server, route, over)
    assert status == 422, body
    assert body["error"] == "QuotaError"
    # Chroma's quota message start, by which its JS client raises ChromaQuotaExceededError
    assert body["message"].startswith("Quota exceeded: "), body
    assert option in body["message"] and f"--{option.replace('_', '-')}" in body["message"]
    assert seconds < FAST


@pytest.mark.serial  # bounds time: a 1M-id body parses slowly beside other tests
@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("query", {"query_embeddings": _vectors(2000), "n_results": 20_000}),
        ("get", {"where": _or_of(19_999)}),
        ("delete", {"where": _or_of(19_999)}),
        ("get", {"where": {"s": {"$in": [f"v{k}" for k in range(1_000_000)]}}}),
        ("get", {"where_document": {"$regex": "a" * 2_000_000}}),
        ("get", {"where_document": {"$contains": "a" * 2_000_000}}),
        ("get", {"ids": [f"r{k}" for k in range(1_000_000)]}),
    ],
    ids=[
        "query_2000x20000",
        "or_19999",
        "delete_or_19999",
        "in_1M",
        "regex_2MB",
        "contains_2MB",
        "ids_1M",
    ],
)
def test_the_probe_requests_are_refused_at_once(
    server: RunningServer, route: str, body: dict
) -> None:
    """The issue's probe: these ran 20 s to 120 s+ (and grew the server to 4.28 GiB)."""
    status, answer, seconds = _post(server, route, body)
    assert 400 <= status < 500, answer
    assert answer["error"] in ("QuotaError", "InvalidArgumentError")
    assert seconds < FAST


def test_a_huge_n_results_counts_only_the_records_there_are(server: RunningServer) -> None:
    """As in Chroma, n_results beyond the collection returns it all: 30 x 2^31 asks for
    30 x 300 results, under the limit."""
    status, body, _ = _post(server, "query", {"query_embeddings": _vectors(30), "n_results": 2**31})
    assert status == 200, body
    assert [len(ids) for ids in body["ids"]] == [300] * 30
    status, body, _ = _post(
        server,
        "query",
        {"query_embeddings": _vectors(30), "n_results": 2**31, "where": {"i": {"$lt": 10}}},
    )
    assert status == 200 and [len(ids) for ids in body["ids"]] == [10] * 30, body
    status, body, _ = _post(server, "query", {"query_embeddings": _vectors(34), "n_results": 2**31})
    assert status == 422 and "34 x 300" in body["message"], body


def test_chromadb_client_raises_quota_error(server: RunningServer) -> None:
    client = chromadb.HttpClient(host=server.host, port=server.port)
    col = client.get_collection("limited")
    with pytest.raises(chromadb.errors.QuotaError, match="max_query_results"):
        col.query(query_embeddings=_vectors(100), n_results=101)
    with pytest.raises(chromadb.errors.QuotaError, match="max_filter_terms"):
        col.get(where=_or_of(LIMITS.max_filter_terms))


# -- the time budget ---------------------------------------------------------------------


def _slow_filter(n: int) -> dict:
    """`n` regexes that match nothing: each scans every document (~10 us a row)."""
    return {"$and": [{"$not_regex": f"zz{k}q"} for k in range(n)]}


def _fill_slow(col: huedb.Collection, n: int) -> None:
    rng = np.random.default_rng(1)
    for start in range(0, n, 2500):
        ids = range(start, min(n, start + 2500))
        col.add(
            ids=[f"s{i}" for i in ids],
            embeddings=rng.random((len(ids), DIM), dtype=np.float32),
            documents=[f"lorem ipsum dolor sit amet {i} " * 20 for i in ids],
        )


def test_a_read_over_its_budget_is_stopped_and_frees_the_engine(tmp_path: Path) -> None:
    """A get of 1,000 regexes over 5,000 documents (~60 s of work) is stopped at its 1 s
    budget with QuotaError naming query_timeout; meanwhile another client's count on another
    collection of the same worker answers within 3 s every time; a delete with the same
    filter is stopped too and deletes nothing."""
    args = ("--query-timeout", "1", "--max-regex-terms", "5000", "--max-filter-terms", "5000")
    with huedb_server(tmp_path / "data", *args) as server:
        client = huedb.HttpClient(host=server.url)
        slow = client.create_collection("slow")
        _fill_slow(slow, 5000)
        other = client.create_collection("other")
        other.add(ids=["a"], embeddings=[[0.5] * DIM])
        latencies: list[float] = []
        stop = threading.Event()

        def count_other() -> None:
            counter = huedb.HttpClient(host=server.url).get_collection("other")
            while not stop.is_set():
                started = time.monotonic()
                assert counter.count() == 1
                latencies.append(time.monotonic() - started)

        watcher = threading.Thread(target=count_other)
        watcher.start()
        try:
            started = time.monotonic()
            with pytest.raises(huedb.errors.QuotaError, match="query_timeout") as refused:
                slow.get(where_document=_slow_filter(1000), include=[])
            cut_after = time.monotonic() - started
            with pytest.raises(huedb.errors.QuotaError, match="time budget of 1 s"):
                slow.delete(where_document=_slow_filter(1000))
            with pytest.raises(huedb.errors.QuotaError, match="query_timeout"):
                slow.query(query_embeddings=_vectors(3), where_document=_slow_filter(1000))
        finally:
            stop.set()
            watcher.join(timeout=60)
        assert "--query-timeout" in str(refused.value)
        assert cut_after < 10, cut_after
        assert latencies and max(latencies) < 3, (len(latencies), max(latencies, default=None))
        assert slow.count() == 5000  # the delete changed nothing
        assert len(slow.get(where_document={"$not_regex": "zzq"}, include=[])["ids"]) == 5000
        client.close()


def test_embedded_budget_rolls_back_and_releases_the_lock(tmp_path: Path) -> None:
    """In-process: a stopped read leaves the engine usable from another thread at once, and
    a stopped delete deletes nothing."""
    settings = huedb.Settings(
        huedb_query_timeout=0.3, huedb_max_regex_terms=5000, huedb_max_filter_terms=5000
    )
    client = huedb.PersistentClient(path=tmp_path / "db", settings=settings)
    col = client.create_collection("slow")
    _fill_slow(col, 3000)
    for attempt in (
        lambda: col.get(where_document=_slow_filter(1000)),
        lambda: col.delete(where_document=_slow_filter(1000)),
        lambda: col.query(query_embeddings=_vectors(2), where_document=_slow_filter(1000)),
    ):
        with pytest.raises(huedb.errors.QueryTimeoutError):
            attempt()
        answered: list[int] = []
        reader = threading.Thread(target=lambda out=answered: out.append(col.count()))
        reader.start()
        reader.join(timeout=5)
        assert answered == [3000]
    assert len(col.get(ids=["s0", "s2999"])["ids"]) == 2


def test_budget_checked_between_slow_documents(tmp_path: Path) -> None:
    """A `$regex` that costs ~0.5 s per document (a counted class over 100 KB documents,
    RE2's slow path) on a few documents: SQLite's progress handler looks at the clock only
    every 10,000 steps (many rows), so the regex function itself stops the read between
    documents once the budget is spent; it ran to its end (~6 s here) before."""
    settings = huedb.Settings(huedb_query_timeout=0.5)
    client = huedb.PersistentClient(path=tmp_path / "db", settings=settings)
    col = client.create_collection("hog")
    rng = np.random.default_rng(4)
    documents = ["".join(rng.choice(list("ab"), 100_000)) for _ in range(12)]
    col.add(
        ids=[f"h{i}" for i in range(12)],
        embeddings=rng.random((12, DIM), dtype=np.float32),
        documents=documents,
    )
    started = time.monotonic()
    with pytest.raises(huedb.errors.QueryTimeoutError):
        col.get(where_document={"$regex": "a[ab]{1000}c"}, include=[])
    assert time.monotonic() - started < 3
    assert col.count() == 12


def test_embedded_clients_are_bounded_only_by_the_ceilings(tmp_path: Path) -> None:
    """In-process code answers to itself, as with Chroma: no server limits, no time budget."""
    client = huedb.PersistentClient(path=tmp_path / "db")
    col = client.create_collection("many")
    col.add(ids=[str(i) for i in range(50)], embeddings=np.random.default_rng(1).random((50, 4)))
    queries = np.random.default_rng(2).random((LIMITS.max_query_embeddings + 1, 4))
    found = col.query(query_embeddings=queries, n_results=10)
    assert len(found["ids"]) == len(queries) and all(len(ids) == 10 for ids in found["ids"])
    wide = {"$or": [{"k": i} for i in range(LIMITS.max_filter_terms + 1)]}
    assert col.get(where=wide)["ids"] == []
    in_force = client._server.engine.options  # the options the store was opened with
    assert in_force.query_timeout == 0
    client.close()


def _searches(filters: list[dict]) -> dict:
    page = {"offset": 0, "limit": 1}
    return {"searches": [{"filter": f, "limit": page, "select": {"keys": []}} for f in filters]}


def test_a_search_request_is_held_to_the_limits_as_a_whole(server: RunningServer) -> None:
    """Each search of a search request was checked alone: 100 searches of 4 regexes each
    held a worker for 32 s past its 30 s budget, 100 of 10,000 `$in` values were served.
    Regexes, `$in` values and ids are now counted over the request; each search's own
    filter may still be as large as one read's (review, 2026-12-08)."""
    regex = {"#document": {"$regex": "apples"}}
    at = _searches([regex] * LIMITS.max_regex_terms)
    status, body, _ = _post(server, "search", at)
    assert status == 200, body
    status, body, took = _post(server, "search", _searches([regex] * (LIMITS.max_regex_terms + 1)))
    assert (status, body["error"]) == (422, "QuotaError") and took < FAST, body
    assert "max_regex_terms" in body["message"]

    half = LIMITS.max_in_values // 2
    in_filter = {"i": {"$in": list(range(half))}}
    assert _post(server, "search", _searches([in_filter] * 2))[0] == 200
    status, body, _ = _post(server, "search", _searches([in_filter] * 3))
    assert (status, body["error"]) == (422, "QuotaError") and "max_in_values" in body["message"]

    # conditions count per search: 100 searches of a filter at the limit are served
    wide = {"$or": [{"s": f"none-{k}"} for k in range(LIMITS.max_filter_terms - 1)]}
    status, body, _ = _post(server, "search", _searches([wide] * 100))
    assert status == 200, body


def test_a_search_request_shares_one_time_budget(tmp_path: Path) -> None:
    """Each search's read had a budget of its own, so a request of 100 searches could hold
    the engine 100 budgets long; a search starting after the request's budget is spent now
    stops it with QueryTimeoutError."""
    settings = huedb.Settings(
        huedb_query_timeout=0.1, huedb_max_regex_terms=5000, huedb_max_filter_terms=5000
    )
    client = huedb.PersistentClient(path=tmp_path / "db", settings=settings)
    col = client.create_collection("slow-searches")
    _fill_slow(col, 3000)
    search = huedb.Search().where(huedb.K.DOCUMENT.regex("zz0q")).limit(1)  # matches none
    started = time.monotonic()
    col.search([search])  # one is served
    single = time.monotonic() - started
    assert 0.002 < single < 0.1  # 100 take at least 0.2 s: past the request's 0.1 s
    searches = [search] * 100
    started = time.monotonic()
    with pytest.raises(huedb.errors.QueryTimeoutError):
        col.search(searches)
    assert time.monotonic() - started < 0.1 + 2 * single + 1.0
    client.close()
