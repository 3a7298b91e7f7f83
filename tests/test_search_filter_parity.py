"""Search filters (and a few other bodies) as Chroma 1.5.9's server reads them.

Chroma parses a search's `filter` with `get`'s where parser, so it accepts what huedb once
refused: `$and: []` (every record), `$or: []` (none), the key "", `#document` with a number
or bool (a metadata key no record has), `#document` `$contains ""`, `#id` with `$contains`
or a number; a string compared with `#document` is its 400. Each body is posted to the real
`chroma run` (which answers 501 for a search it accepted: its local executor has none) and
to `huedb run`; what huedb answers is checked in-process too, against `get` where `get`
takes the same condition. Also: non-finite numbers in-process as over HTTP (JSON carries
them as null), `$exp` / `$log` rounded as Rust's f32 functions, and the statuses of a rank
`{}`, a rank of two keys, a string rank and odd `read_level`s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
import httpx
import numpy as np
import pytest
from chromadb.execution.expression import Val as ChromaVal

import huedb
from huedb import K, Knn, Search
from huedb.errors import ChromaError, InvalidArgumentError
from huedb.execution.expression import Val
from tests import side_by_side

servers = side_by_side.servers

COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"
IDS = ["a", "b", "c", "d"]
EMBEDDINGS = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
DOCUMENTS = ["apple pie", "banana", "cherry", None]
METADATAS = [{"k": 1, "s": "x"}, {"k": 2, "s": "y"}, {"k": 3}, None]
KNN = {"$knn": {"query": [1.0, 0.0, 0.0], "limit": 16}}
ALL = IDS

# filter -> the ids it lets through (insertion order). Chroma's server accepts each one.
ACCEPTED: list[tuple[Any, list[str]]] = [
    ({"$and": []}, ALL),
    ({"$or": []}, []),
    ({"$and": [{"$or": []}, {"k": 1}]}, []),
    ({"$or": [{"$and": []}, {"k": 1}]}, ALL),
    ({"$or": [{"$or": []}, {"k": 1}]}, ["a"]),
    ({"$and": [{"$and": []}, {"k": {"$gte": 2}}]}, ["b", "c"]),
    ({"": 1}, []),
    ({"": {"$ne": 1}}, ALL),
    ({"": {"$in": ["x"]}}, []),
    ({"": {"$nin": ["x"]}}, ALL),
    ({"#document": {"$eq": 1}}, []),
    ({"#document": 1}, []),
    ({"#document": {"$ne": 1}}, ALL),
    ({"#document": {"$gt": 1}}, []),
    ({"#document": {"$lte": 2.5}}, []),
    ({"#document": {"$in": [1, 2]}}, []),
    ({"#document": {"$nin": [1.5, 2]}}, ALL),
    ({"#document": {"$eq": True}}, []),
    ({"#document": {"$ne": False}}, ALL),
    ({"#document": {"$contains": ""}}, ["a", "b", "c"]),
    ({"#document": {"$not_contains": ""}}, ["d"]),
    ({"#document": {"$regex": ""}}, ["a", "b", "c"]),
    ({"#document": {"$not_regex": ""}}, ["d"]),
    ({"#id": {"$contains": "a"}}, ["a"]),
    ({"#id": {"$not_contains": "a"}}, ["b", "c", "d"]),
    ({"#id": {"$eq": 1}}, []),
    ({"#id": 1}, []),
    ({"#id": {"$ne": 1}}, ALL),
    ({"#id": {"$gt": 1}}, []),
    ({"#id": {"$lt": 2.5}}, []),
    ({"#id": {"$in": [1, 2]}}, []),
    ({"#id": {"$nin": [1.5, 2]}}, ALL),
    ({"#id": {"$eq": True}}, []),
    ({"#id": {"$ne": True}}, ALL),
    ({"#id": {"$contains": 1}}, []),
    ({"#id": {"$not_contains": 1}}, ALL),
    ({"#id": {"$not_contains": True}}, ALL),
    ({"$and": [{"#id": {"$ne": 1}}, {"k": {"$gte": 2}}]}, ["b", "c"]),
    ({"$or": [{"#id": {"$eq": 1}}, {"#id": "c"}]}, ["c"]),
    ({"$or": [{"#id": {"$contains": "a"}}, {"k": 3}]}, ["a", "c"]),
    ({"$and": [{"#id": {"$in": [1]}}, {"k": 1}]}, []),
]

# The conditions `get` takes as the search does: the same records.
SAME_AS_GET = [
    {"": 1},
    {"": {"$ne": 1}},
    {"#document": {"$eq": 1}},
    {"#document": {"$ne": 1}},
    {"#document": {"$gt": 1}},
    {"#document": {"$in": [1, 2]}},
    {"#document": {"$nin": [1, 2]}},
    {"#document": {"$eq": True}},
    {"#document": {"$contains": ""}},
    {"#document": {"$not_contains": ""}},
]

DOCUMENT_STRINGS = [
    {"#document": "banana"},
    {"#document": {"$eq": "banana"}},
    {"#document": {"$ne": "banana"}},
    {"#document": {"$in": ["banana"]}},
    {"#document": {"$nin": ["banana", "x"]}},
    {"$or": [{"k": 1}, {"#document": {"$eq": "banana"}}]},
    {"$or": [{"$and": []}, {"#document": "banana"}]},
]

# Filters Chroma refuses (422 `Invalid where clause`).
REFUSED = [
    {"#id": {"$gt": "a"}},
    {"#id": {"$regex": "a"}},
    {"#id": {"$in": []}},
    {"#id": {"$in": ["a", 1]}},
    {"#id": {"$in": [1, "a"]}},
    {"#id": {"$in": "a"}},
    {"#id": {"$gt": True}},
    {"#id": {"$regex": 1}},
    {"#document": {"$contains": 3}},
    {"#document": {"$regex": 1}},
    {"#document": {"$gt": "x"}},
    {"#document": {"$in": ["x", 1]}},
    {"#document": {"$and": [{"$contains": "x"}]}},
    {"#document": {"$contains": "x", "$regex": "y"}},
    {"#document": None},
    {"": {"$regex": "a"}},
    {"$and": {}},
    {"$and": [[]]},
    {"$or": [{"k": 1}, {"k": {"$gt": "a"}}]},
    {"k": {"$eq": 2**63}},
    {"k": {"$in": [1, 2**63]}},
    {"k": {"$in": [1, 2.5]}},
    {"k": {"$contains": [1]}},
    {"k": None},
]

# Whole bodies: ranks and read levels whose statuses (400 or 422) follow serde's reading.
BODIES = [
    {"searches": [{"rank": {}}]},
    {"searches": [{"rank": {"$val": 1, "$abs": {"$val": 1}}}]},
    {"searches": [{"rank": {"$val": 1, "$foo": 1}}]},
    {"searches": [{"rank": {"$val": "x", "$abs": 1}}]},
    {"searches": [{"rank": {"$foo": 1, "$val": 1}}]},
    {"searches": [{"rank": {"$abs": {}}}]},
    {"searches": [{"rank": {"$sum": [{"$val": 1}, {}]}}]},
    {"searches": [{"rank": "$val"}]},
    {"searches": [{"rank": "$knn"}]},
    {"searches": [{"rank": "$sub"}]},
    {"searches": [{"rank": "$sum"}]},
    {"searches": [{"rank": "$foo"}]},
    {"searches": [{"rank": {"$abs": "$val"}}]},
    {"searches": [{"rank": {"$sub": {"left": "$div", "right": {"$val": 1}}}}]},
    {"searches": [{"rank": {"$abs": "$foo"}}]},
    {"searches": [{}], "read_level": None},
    {"read_level": None, "searches": [{"rank": {}}]},
    {"searches": [{"rank": {}}], "read_level": None},
    {"searches": [{}], "read_level": 5},
    {"searches": [{}], "read_level": True},
    {"searches": [{}], "read_level": []},
    {"searches": [{}], "read_level": {}},
    {"searches": [{}], "read_level": {"index_only": None}},
    {"searches": [{}], "read_level": {"index_only": 1}},
    {"searches": [{}], "read_level": {"foo": None}},
    {"searches": [{}], "read_level": "foo"},
    {"searches": [{}], "read_level": "index_only"},
]


def _payloads(where: Any) -> list[dict[str, Any]]:
    return [{"filter": where}, {"filter": where, "rank": KNN}]


@pytest.fixture(scope="module")
def targets(servers: dict[str, str]) -> Iterator[dict[str, tuple[httpx.Client, str]]]:
    """The records in a collection of each server: (HTTP client, the collection's search URL)."""
    out = {}
    for name, base in servers.items():
        http = httpx.Client(base_url=base, timeout=60)
        made = http.post(COLLECTIONS, json={"name": "parity", "get_or_create": True})
        cid = made.json()["id"]
        record = {"ids": IDS, "embeddings": EMBEDDINGS}
        record |= {"documents": DOCUMENTS, "metadatas": METADATAS}
        assert http.post(f"{COLLECTIONS}/{cid}/upsert", json=record).status_code == 200
        out[name] = (http, f"{COLLECTIONS}/{cid}/search")
    yield out
    for http, _ in out.values():
        http.close()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Any]:
    """The records in-process (PersistentClient): its collection."""
    client = huedb.PersistentClient(path=tmp_path / "data")
    col = client.create_collection("parity", embedding_function=None)
    col.add(ids=IDS, embeddings=EMBEDDINGS, documents=DOCUMENTS, metadatas=METADATAS)
    yield col
    client.close()


def _answer(targets: dict[str, Any], target: str, body: dict[str, Any]) -> tuple[int, Any]:
    """(status, ids) of a search, or (status, error, message) without serde's position."""
    http, url = targets[target]
    resp = http.post(url, json=body)
    if resp.status_code == 200:
        return 200, resp.json()["ids"]
    out = resp.json()
    return resp.status_code, out["error"], re.sub(r" at line \d+ column \d+", "", out["message"])


def _as_chroma(targets: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any]:
    """Chroma's answer and huedb's: the same refusal, or Chroma's 501 and huedb's 200."""
    chroma, ours = _answer(targets, "chroma", body), _answer(targets, "huedb", body)
    if chroma[0] == 501:
        assert chroma[2].endswith("Search operation is not implemented for local executor")
        assert ours[0] == 200, ours
    else:
        assert ours == chroma
    return ours


def _local_ids(col: Any, body: dict[str, Any]) -> list[list[str]]:
    return col._client.search(col._target_id(), body)["ids"]


@pytest.mark.parametrize(("where", "expected"), ACCEPTED, ids=[repr(w) for w, _ in ACCEPTED])
def test_filters_chroma_accepts_are_accepted_with_their_meaning(
    targets: dict[str, Any], local: Any, where: Any, expected: list[str]
) -> None:
    body = {"searches": _payloads(where)}
    status, ids = _as_chroma(targets, body)
    assert status == 200
    assert ids[0] == expected
    assert sorted(ids[1]) == sorted(expected)  # the same records, in the rank's order
    assert _local_ids(local, body) == ids


@pytest.mark.parametrize("where", SAME_AS_GET, ids=repr)
def test_filters_get_takes_match_what_get_matches(local: Any, where: Any) -> None:
    body = {"searches": [{"filter": where}]}
    assert _local_ids(local, body) == [local.get(where=where)["ids"]]


@pytest.mark.parametrize("where", DOCUMENT_STRINGS, ids=repr)
def test_a_string_compared_with_document_is_chromas_400(
    targets: dict[str, Any], local: Any, where: Any
) -> None:
    message = (
        "Cannot filter using metadata key '#document' with type 'Str' because indexing is disabled"
    )
    for payload in _payloads(where):
        body = {"searches": [payload]}
        assert _as_chroma(targets, body) == (400, "InvalidArgumentError", message)
        with pytest.raises(InvalidArgumentError, match=re.escape(message)):
            _local_ids(local, body)
    assert local.count() == 4


@pytest.mark.parametrize("where", REFUSED, ids=repr)
def test_filters_chroma_refuses_stay_refused(
    targets: dict[str, Any], local: Any, where: Any
) -> None:
    body = {"searches": [{"filter": where}]}
    message = (
        "Failed to deserialize the JSON body into the target type: searches[0].filter: "
        "Invalid where clause"
    )
    assert _as_chroma(targets, body) == (422, "ChromaError", message)
    with pytest.raises(ChromaError, match=re.escape(message)):
        _local_ids(local, body)


@pytest.mark.parametrize("body", BODIES, ids=repr)
def test_rank_and_read_level_statuses_are_chromas(targets: dict[str, Any], body: Any) -> None:
    _as_chroma(targets, body)


def test_non_finite_numbers_in_process_as_over_http(
    servers: dict[str, str], tmp_path: Path
) -> None:
    """JSON carries inf and NaN as null (orjson, chromadb's and huedb's HTTP clients): a Knn
    default of inf is no default, a `Val(inf)` the route's 422, a NaN query element too."""
    url = urlparse(servers["huedb"])
    query = [1.0, 0.0, 0.0]
    local = huedb.PersistentClient(path=tmp_path / "data")
    clients = {
        "local": local,
        "huedb-http": huedb.HttpClient(host=url.hostname, port=url.port),
        "chromadb-http": chromadb.HttpClient(host=url.hostname, port=url.port),
    }
    cases = {
        "default_inf": lambda m: m.Search().rank(
            m.Knn(query=query) + m.Knn(query=query, limit=1, default=float("inf"))
        ),
        "lone_default_inf": lambda m: m.Search().rank(
            m.Knn(query=query, limit=1, default=float("inf"))
        ),
        "default_nan": lambda m: m.Search().rank(
            m.Knn(query=query) + m.Knn(query=query, limit=1, default=float("nan"))
        ),
        "val_inf": lambda m: m.Search().rank(m.Knn(query=query) + _val(m)(float("inf"))),
        "val_nan": lambda m: m.Search().rank(m.Knn(query=query) - _val(m)(float("nan"))),
        "query_nan": lambda m: m.Search().rank(m.Knn(query=[float("nan"), 0.0, 0.0])),
        "query_inf_np": lambda m: m.Search().rank(m.Knn(query=np.array([np.inf, 0.0, 0.0]))),
    }
    outcomes: dict[str, dict[str, Any]] = {name: {} for name in cases}
    for target, client in clients.items():
        col = client.get_or_create_collection("nonfinite", embedding_function=None)
        if target == "local":
            col.add(ids=IDS, embeddings=EMBEDDINGS)
        elif target == "huedb-http":
            col.upsert(ids=IDS, embeddings=EMBEDDINGS)
        module = chromadb if target == "chromadb-http" else huedb
        for name, make in cases.items():
            try:
                result = col.search(make(module).select("#score"))
                outcomes[name][target] = (result["ids"], result["scores"])
            except Exception as exc:  # noqa: BLE001 - compared across targets
                outcomes[name][target] = ("error", str(exc))
    local.close()
    for name, results in outcomes.items():
        assert results["local"] == results["huedb-http"] == results["chromadb-http"], name
    assert outcomes["default_inf"]["local"] == ([["a"]], [[0.0]])
    assert outcomes["lone_default_inf"]["local"] == ([["a"]], [[0.0]])
    message = "searches[0].rank.$sum[1].$val: invalid type: null, expected f32"
    assert outcomes["val_inf"]["local"][1].endswith(message)


def _val(module: Any) -> Any:
    return Val if module is huedb else ChromaVal


def test_exp_and_log_are_rounded_as_rusts_f32_functions(local: Any) -> None:
    """Rust's f32::exp / f32::ln (libm: correctly rounded) where numpy's float32 ufuncs are
    an ulp off: exp(1) = 2.7182817 (numpy 2.718282), ln(7) = 1.9459101 (numpy 1.9459102)."""
    knn = Knn(query=[1.0, 0.0, 0.0], limit=1)  # record a, at distance 0
    exp = local.search(Search().rank((knn + 1).exp()).select(K.SCORE))
    log = local.search(Search().rank((knn + 7).log()).select(K.SCORE))
    # Scores are float32's shortest decimals.
    assert exp["scores"] == [[float(str(np.float32(math.exp(1.0))))]] == [[2.7182817]]
    assert log["scores"] == [[float(str(np.float32(math.log(7.0))))]] == [[1.9459101]]
    assert np.exp(np.float32(1.0)) != np.float32(math.exp(1.0))  # what the test tells apart
    assert np.log(np.float32(7.0)) != np.float32(math.log(7.0))
