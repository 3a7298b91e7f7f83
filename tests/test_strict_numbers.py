"""Numbers given as strings or booleans are refused, as Chroma refuses them: in-process by
chromadb's embedding checks (compared with chromadb's own client), over HTTP by the strict
JSON types of Chroma's server (compared with `chroma run`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from tests import side_by_side
from tests.side_by_side import each, same

chroma, server, servers, clients = (
    side_by_side.chroma,
    side_by_side.server,
    side_by_side.servers,
    side_by_side.clients,
)

DB = "/api/v2/tenants/default_tenant/databases/default_database"
DESERIALIZE_PREFIX = "Failed to deserialize the JSON body into the target type: "


def _add(embeddings: Any) -> Callable[[Any, str], Any]:
    def run(client: Any, name: str) -> Any:
        collection = client.create_collection(name)
        collection.add(ids=[f"r{i}" for i in range(len(embeddings))], embeddings=embeddings)
        return collection.get(include=["embeddings"])["embeddings"].tolist()

    return run


def _query(embeddings: Any) -> Callable[[Any, str], Any]:
    def run(client: Any, name: str) -> Any:
        collection = client.create_collection(name)
        collection.add(ids=["r0"], embeddings=[[1.0, 2.0, 3.0]])
        return collection.query(query_embeddings=embeddings, n_results=1)["ids"]

    return run


REFUSED = {
    "string rows": [["0", "0", "0"], ["1.2", "2.24", "3.2"]],
    "bool rows": [[True, False, True]],
    "one bool row": [True, False, True],
    "one string row": ["1", "2", "3"],
    "numpy scalars": [[np.float32(1), np.float32(2), np.float32(3)]],
    "bool array": np.array([[True, False, True]]),
    "int8 array": np.array([[1, 2, 3]], dtype=np.int8),
    "list of uint8 arrays": [np.array([1, 2, 3], dtype=np.uint8)],
    "string array": np.array([["1", "2", "3"]]),
    "object array": np.array([[1.0, 2.0, 3.0]], dtype=object),
    "empty columns": np.zeros((1, 0), dtype=np.float32),
    "tuple row": [(1.0, 2.0, 3.0)],
    "later value not a number": [[1.0, "x", 3.0]],
}


@pytest.mark.parametrize("embeddings", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize("call", [_add, _query], ids=["add", "query"])
def test_embeddings_refused_as_chromadb_refuses_them(
    clients: dict[str, Any], call: Callable[[Any], Any], embeddings: Any
) -> None:
    result = same(each(clients, call(embeddings)))
    assert result[0] == "error" and result[1] == "ValueError"


ACCEPTED = {
    "ints": [[1, 2, 3]],
    "float64 scalars": [[np.float64(1), 2.5, 3]],
    "int32 array": np.array([[1, 2, 3]], dtype=np.int32),
    "float16 arrays": [np.array([1, 2, 3], dtype=np.float16)],
    # chromadb looks at the first value only and converts the rest with numpy
    "string after a number": [[1.0, "2", 3.0]],
    "bool array after a list": [[1.0, 2.0, 3.0], np.array([True, False, True])],
}


@pytest.mark.parametrize("embeddings", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_embeddings_accepted_as_chromadb_accepts_them(
    clients: dict[str, Any], embeddings: Any
) -> None:
    stored = same(each(clients, _add(embeddings)))
    assert np.asarray(stored).shape == (len(embeddings), 3)


def _post(base: str, path: str, body: str) -> httpx.Response:
    return httpx.post(
        base + path, content=body, headers={"content-type": "application/json"}, timeout=30
    )


def _outcome(response: httpx.Response) -> tuple[int, str | None, str]:
    """Status, error name and message (serde's position left out) of one answer."""
    payload = response.json()
    if not isinstance(payload, dict) or "error" not in payload:
        return response.status_code, None, ""
    return (
        response.status_code,
        payload["error"],
        re.sub(r" at line \d+ column \d+$", "", payload["message"]),
    )


@pytest.fixture(scope="module")
def collection_paths(servers: dict[str, str]) -> dict[str, str]:
    """Per server, the path of a collection holding two 2-d records."""
    paths = {}
    for target, base in servers.items():
        created = _post(base, DB + "/collections", '{"name":"strict-numbers"}').json()
        path = f"{DB}/collections/{created['id']}"
        added = _post(base, path + "/add", '{"ids":["a","b"],"embeddings":[[1,2],[3,4]]}')
        assert added.status_code == 201, added.text
        paths[target] = path
    return paths


REFUSED_BODIES = [
    ("add", '{"ids":["s"],"embeddings":[["1.5","2"]]}', "embeddings"),
    ("add", '{"ids":["t"],"embeddings":[[true,false]]}', "embeddings"),
    ("upsert", '{"ids":["u"],"embeddings":[["1",2]]}', "embeddings"),
    ("update", '{"ids":["a"],"embeddings":[[true,2]]}', "embeddings"),
    ("query", '{"query_embeddings":[[1,2]],"n_results":"1"}', "n_results"),
    ("query", '{"query_embeddings":[[1,2]],"n_results":true}', "n_results"),
    ("query", '{"query_embeddings":[[1,2]],"n_results":1.0}', "n_results"),
    ("query", '{"query_embeddings":[["1","2"]],"n_results":1}', "query_embeddings"),
    ("query", '{"query_embeddings":[[true,2]],"n_results":1}', "query_embeddings"),
    ("get", '{"limit":"1"}', "limit"),
    ("get", '{"limit":1.0}', "limit"),
    ("get", '{"limit":true}', "limit"),
    ("get", '{"offset":"1"}', "offset"),
    ("get", '{"offset":false}', "offset"),
    ("delete", '{"where":{"k":"v"},"limit":true}', "limit"),
]


@pytest.mark.parametrize(("op", "body", "field"), REFUSED_BODIES)
def test_http_wrong_number_types_refused_as_chroma_run(
    servers: dict[str, str], collection_paths: dict[str, str], op: str, body: str, field: str
) -> None:
    answers = {
        target: _outcome(_post(base, f"{collection_paths[target]}/{op}", body))
        for target, base in servers.items()
    }
    for status, name, message in answers.values():
        assert (status, name) == (422, "ChromaError")
        assert message.startswith(DESERIALIZE_PREFIX)
    chroma_detail = answers["chroma"][2].removeprefix(DESERIALIZE_PREFIX)
    huedb_detail = answers["huedb"][2].removeprefix(DESERIALIZE_PREFIX)
    assert chroma_detail.startswith(field) and huedb_detail.startswith(field)
    if field != "query_embeddings":  # serde's own words, but pydantic's for its elements
        assert huedb_detail == chroma_detail


ACCEPTED_BODIES = [
    ("add", '{"ids":["i"],"embeddings":[[1,2]]}', 201),
    ("add", '{"ids":["f"],"embeddings":[[1.5,-2e3]]}', 201),
    ("add", '{"ids":["b64"],"embeddings":["AACAPwAAAEA="]}', 201),
    ("update", '{"ids":["a"],"embeddings":null,"documents":["x"]}', 200),
    ("update", '{"ids":["a"],"embeddings":[null],"documents":["y"]}', 200),
    ("query", '{"query_embeddings":[[1,2]],"n_results":null}', 200),
    ("query", '{"query_embeddings":[[1.0,2]],"n_results":4294967295}', 200),
    ("get", '{"limit":null,"offset":null}', 200),
    ("get", '{"limit":0,"offset":1}', 200),
]


@pytest.mark.parametrize(("op", "body", "status"), ACCEPTED_BODIES)
def test_http_numbers_chroma_takes_still_accepted(
    servers: dict[str, str], collection_paths: dict[str, str], op: str, body: str, status: int
) -> None:
    for target, base in servers.items():
        response = _post(base, f"{collection_paths[target]}/{op}", body)
        assert response.status_code == status, (target, response.text)


def test_http_null_n_results_means_ten(
    servers: dict[str, str], collection_paths: dict[str, str]
) -> None:
    body = '{"ids":["n%d"],"embeddings":[[%d,0]]}'
    answers = {}
    for target, base in servers.items():
        for i in range(12):
            _post(base, f"{collection_paths[target]}/upsert", body % (i, i))
        query = '{"query_embeddings":[[0,0]],"n_results":null,"include":[]}'
        answers[target] = _post(base, f"{collection_paths[target]}/query", query).json()["ids"]
    assert len(answers["huedb"][0]) == len(answers["chroma"][0]) == 10


def test_http_create_collection_get_or_create_must_be_a_bool(servers: dict[str, str]) -> None:
    body = '{"name":"strict-bool","get_or_create":"true"}'
    answers = {
        target: _outcome(_post(base, DB + "/collections", body)) for target, base in servers.items()
    }
    assert answers["huedb"][:2] == answers["chroma"][:2] == (422, "ChromaError")
