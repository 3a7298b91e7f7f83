"""Raw HTTP requests answered as the real `chroma run` (chromadb 1.5.9's server) answers them.

Each case is sent to both servers on collections made the same way, and the answers must be
equal: status, and the JSON body (`error` and `message` of a refusal). The cases come from
reading Chroma's server-side validation (rust/types/src/validators.rs and api_types.rs at
1.5.9) and probing both servers: names with a topology prefix (`topo+name`), the rules of a
records delete, and a Search API `group_by` whose aggregate names no key. Differences kept
on purpose are listed in docs/chroma-compat.md's notes and tested elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import chroma_run, huedb_server

DB = "/api/v2/tenants/default_tenant/databases/default_database"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Base URLs of a `chroma run` and a `huedb run`, each with a collection `parity`
    holding records a, b, c (its id under "<name>-collection")."""
    with (
        chroma_run(tmp_path_factory.mktemp("chroma")) as chroma,
        huedb_server(tmp_path_factory.mktemp("huedb") / "data") as huedb,
    ):
        urls = {"chroma": chroma, "huedb": huedb.url}
        for name, url in list(urls.items()):
            made = httpx.post(f"{url}{DB}/collections", json={"name": "parity"}, timeout=30)
            made.raise_for_status()
            cid = made.json()["id"]
            body = {"ids": ["a", "b", "c"], "embeddings": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]}
            httpx.post(f"{url}{DB}/collections/{cid}/add", json=body, timeout=30).raise_for_status()
            urls[f"{name}-collection"] = cid
        yield urls


def _answer(servers: dict[str, str], which: str, method: str, path: str, body: Any) -> Any:
    url = servers[which] + path.replace("{collection}", servers[f"{which}-collection"])
    resp = httpx.request(method, url, json=body, timeout=30)
    data = resp.json() if resp.content else None
    if isinstance(data, dict) and "id" in data:  # a new collection or database: its own id
        data = {k: v for k, v in data.items() if k not in ("id", "configuration_json")}
    return resp.status_code, data


NAMES = ["top+coll", "t1+t2+coll", "abc+d", "x" * 300 + "+" + "y" * 300, "a..bc", "10.0.0.1"]
DELETES = {
    "empty-ids": {"ids": []},
    "ids-and-limit": {"ids": ["a"], "limit": 1},
    "limit-alone": {"limit": 1},
    "nothing": {},
}
GROUPED = {
    "searches": [
        {
            "rank": {"$knn": {"query": [1.0, 0.0]}},
            "group_by": {"keys": ["a"], "aggregate": {"$min_k": {"keys": [], "k": 1}}},
        }
    ]
}


@pytest.mark.parametrize("name", NAMES, ids=lambda n: n[:12])
def test_collection_and_database_names(servers: dict[str, str], name: str) -> None:
    for path, body in (
        (f"{DB}/collections", {"name": name}),
        ("/api/v2/tenants/default_tenant/databases", {"name": name}),
    ):
        theirs = _answer(servers, "chroma", "POST", path, body)
        assert _answer(servers, "huedb", "POST", path, body) == theirs, path


@pytest.mark.parametrize("case", DELETES)
def test_record_deletes(servers: dict[str, str], case: str) -> None:
    path = f"{DB}/collections/{{collection}}/delete"
    theirs = _answer(servers, "chroma", "POST", path, DELETES[case])
    assert _answer(servers, "huedb", "POST", path, DELETES[case]) == theirs
    count = f"{DB}/collections/{{collection}}/count"
    assert _answer(servers, "huedb", "GET", count, None) == (200, 3)  # nothing was deleted


def test_a_group_by_aggregate_without_keys(servers: dict[str, str]) -> None:
    path = f"{DB}/collections/{{collection}}/search"
    theirs = _answer(servers, "chroma", "POST", path, GROUPED)
    assert theirs[0] == 400  # refused before Chroma's local server says it cannot search
    assert _answer(servers, "huedb", "POST", path, GROUPED) == theirs


ZERO_RESULTS = {
    "plain": {"query_embeddings": [[1.0, 0.0], [0.0, 1.0]], "n_results": 0},
    "filtered": {
        "query_embeddings": [[1.0, 0.0]],
        "n_results": 0,
        "where": {"$or": [{"x": 1}, {"x": {"$ne": 1}}]},
        "include": ["distances", "documents"],
    },
}


DEFAULT_INCLUDES = {
    "query": {"query_embeddings": [[1.0, 0.0]], "n_results": 1},
    "get": {"ids": ["a"]},
}


@pytest.mark.parametrize("route", DEFAULT_INCLUDES)
def test_a_body_without_include(servers: dict[str, str], route: str) -> None:
    path = f"{DB}/collections/{{collection}}/{route}"
    theirs = _answer(servers, "chroma", "POST", path, DEFAULT_INCLUDES[route])
    assert _answer(servers, "huedb", "POST", path, DEFAULT_INCLUDES[route]) == theirs


@pytest.mark.parametrize("case", ZERO_RESULTS)
def test_a_query_for_no_results(servers: dict[str, str], case: str) -> None:
    """`n_results: 0` (the JS client sends it, e.g. `Math.min(k, count)` on an empty
    collection) answers empty lists, one per query."""
    path = f"{DB}/collections/{{collection}}/query"
    theirs = _answer(servers, "chroma", "POST", path, ZERO_RESULTS[case])
    assert theirs[0] == 200 and theirs[1]["ids"] == [[]] * len(
        ZERO_RESULTS[case]["query_embeddings"]
    )
    assert _answer(servers, "huedb", "POST", path, ZERO_RESULTS[case]) == theirs


EMPTY_DOCUMENT_OPERANDS = [
    {"$contains": ""},
    {"$not_contains": ""},
    {"$regex": ""},
    {"$not_regex": ""},
    {"$or": [{"$contains": ""}, {"$contains": "hel"}]},
]


def _documents_collection(servers: dict[str, str], which: str) -> str:
    """A fresh collection on `which` holding a ("hello"), b ("") and c (no document)."""
    url = servers[which]
    made = httpx.post(
        f"{url}{DB}/collections", json={"name": "docs-parity", "get_or_create": True}, timeout=30
    )
    made.raise_for_status()
    cid = made.json()["id"]
    body = {
        "ids": ["a", "b", "c"],
        "embeddings": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        "documents": ["hello", "", None],
    }
    httpx.post(f"{url}{DB}/collections/{cid}/upsert", json=body, timeout=30).raise_for_status()
    return cid


@pytest.mark.parametrize("where_document", EMPTY_DOCUMENT_OPERANDS, ids=str)
def test_an_empty_document_operand(servers: dict[str, str], where_document: Any) -> None:
    """An empty `$contains` / `$regex` operand (the JS client sends one as typed) occurs in
    every document, "" included; records without a document match only the negations."""
    answers = {}
    for which in ("chroma", "huedb"):
        cid = _documents_collection(servers, which)
        path = f"{servers[which]}{DB}/collections/{cid}"
        got = httpx.post(
            f"{path}/get", json={"where_document": where_document, "include": []}, timeout=30
        )
        answers[which] = got.status_code, sorted(got.json()["ids"])
    assert answers["huedb"] == answers["chroma"]
    assert answers["huedb"][0] == 200


def test_a_delete_by_an_empty_document_operand(servers: dict[str, str]) -> None:
    answers = {}
    for which in ("chroma", "huedb"):
        cid = _documents_collection(servers, which)
        path = f"{servers[which]}{DB}/collections/{cid}"
        body = {"where_document": {"$contains": ""}}
        assert httpx.post(f"{path}/delete", json=body, timeout=30).status_code == 200
        left = httpx.post(f"{path}/get", json={"include": []}, timeout=30).json()["ids"]
        answers[which] = sorted(left)
    assert answers["huedb"] == answers["chroma"] == ["c"]


MODIFIES = {
    "short-name": {"new_name": "a"},
    "bad-name": {"new_name": "bad name!"},
    "empty-metadata": {"new_metadata": {}},
    "dollar-key": {"new_metadata": {"$a": 1}},
}


@pytest.mark.parametrize("case", MODIFIES)
def test_a_refused_modify(servers: dict[str, str], case: str) -> None:
    """Refusals name the request's fields as Chroma does (`new_name`, `new_metadata`)."""
    path = f"{DB}/collections/{{collection}}"
    theirs = _answer(servers, "chroma", "PUT", path, MODIFIES[case])
    assert theirs[0] == 400
    assert _answer(servers, "huedb", "PUT", path, MODIFIES[case]) == theirs


NOT_JSON = {
    "get-truncated": ("/collections/{collection}/get", b'{"ids": ["a"]'),
    "get-empty": ("/collections/{collection}/get", b""),
    "get-trailing-comma": ("/collections/{collection}/get", b'{"ids": ["a"],}'),
    "get-lone-surrogate": ("/collections/{collection}/get", b'{"where": {"k": "\\ud800"}}'),
    "add-truncated": ("/collections/{collection}/add", b'{"ids": ["z"], "embeddings": [[1'),
    "create-truncated": ("/collections", b'{"name": '),
}


@pytest.mark.parametrize("case", NOT_JSON)
def test_a_body_that_is_not_json(servers: dict[str, str], case: str) -> None:
    """A body that does not parse is a 400 InvalidArgumentError on both servers (a body of
    the wrong shape is a 422); the parser's own wording differs, the start does not."""
    route, raw = NOT_JSON[case]
    answers = {}
    for which in ("chroma", "huedb"):
        path = DB + route.replace("{collection}", servers[f"{which}-collection"])
        headers = {"content-type": "application/json"}
        resp = httpx.post(servers[which] + path, content=raw, headers=headers, timeout=30)
        body = resp.json()
        answers[which] = resp.status_code, body["error"], body["message"].split(":")[0]
    assert answers["huedb"] == answers["chroma"]
    assert answers["huedb"][:2] == (400, "InvalidArgumentError")
    count = f"{DB}/collections/{{collection}}/count"
    assert _answer(servers, "huedb", "GET", count, None) == (200, 3)


BAD_CONFIGURATIONS = {
    "unknown-field": {"hnsw": {"bogus": 1}},
    "negative": {"hnsw": {"ef_search": -1}},
    "function-text": {"embedding_function": "garbage"},
    "function-variant": {"embedding_function": {"type": "bogus"}},
    "spann-number": {"spann": 5},
    "unknown-space": {"hnsw": {"space": "xx"}},
}


@pytest.mark.parametrize("case", BAD_CONFIGURATIONS)
def test_a_malformed_configuration_on_create(servers: dict[str, str], case: str) -> None:
    """Chroma's 422 naming the field (`configuration.hnsw.bogus: unknown field ...`); serde's
    ` at line L column C` is left out (huedb does not reproduce it)."""
    answers = {}
    for which in ("chroma", "huedb"):
        body = {"name": f"badconf-{case}", "configuration": BAD_CONFIGURATIONS[case]}
        status, data = _answer(servers, which, "POST", f"{DB}/collections", body)
        data["message"] = re.sub(r" at line \d+ column \d+", "", data["message"])
        answers[which] = status, data
    assert answers["huedb"] == answers["chroma"]
    assert answers["huedb"][0] == 422
