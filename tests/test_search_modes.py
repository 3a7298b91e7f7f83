"""Issue 16, acceptance 1: every captured request body, in every mode, equals the brute force.

The 24 bodies chromadb 1.5.9 sent (shared/search-api-captures.json, plus capture 11 with a
looser filter) run on the seeded records of tests/search_reference.py (dense vectors, two
sparse-vector keys, scalar metadata, documents) in:

- `ephemeral` and `persistent`: `huedb.EphemeralClient()` / `huedb.PersistentClient(path)`,
  each body turned into huedb's builder objects (`huedb.Search(where=..., rank=...)`, the
  dicts read by `Where.from_dict` / `Rank.from_dict`, and `huedb.Knn(query=dict)` for the
  plain-dict sparse query of capture 05, which `Rank.from_dict` refuses as chromadb's does);
- `http-raw`: the body exactly as captured, posted with httpx to `huedb run`'s v2 search
  route, the response read by chromadb's own `SearchResult`;
- `http-chromadb`: the same searches built with chromadb's classes and run by the real
  `chromadb.HttpClient`'s `collection.search`.

A collection has at most one sparse index (Chroma 1.5.9's rule), so each mode holds the
records twice: `plain` (a sparse index on `sparse_embedding`, plain dot product) and `bm25`
(a sparse index with `bm25: true` on `bm25_sparse`, query-time IDF); a body runs on the one
indexing the sparse key it searches. Scores are compared with `search_reference.close`
(relative and absolute 2e-5: huedb evaluates in float32, the reference in float64); rows
may swap only where their reference scores are that close.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import chromadb
import httpx
import pytest

import huedb
from tests.search_reference import (
    BODIES,
    SPARSE_RECORDS,
    BruteForce,
    add_records,
    assert_matches,
    has_sparse,
    search_object,
)
from tests.servers import huedb_server

PLAIN_KEY, BM25_KEY = "sparse_embedding", "bm25_sparse"
REFERENCE = {
    "plain": BruteForce(SPARSE_RECORDS),
    "bm25": BruteForce(SPARSE_RECORDS, bm25_keys=(BM25_KEY,)),
}
MODES = ["ephemeral", "persistent", "http-raw", "http-chromadb"]
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
def runners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Runner]]:
    """mode -> a function running a request body on collection `plain` or `bm25`, giving
    the rows of each search. One server for the module, its collections filled once."""
    data = tmp_path_factory.mktemp("search-modes")
    clients = {
        "ephemeral": huedb.EphemeralClient,
        "persistent": lambda: huedb.PersistentClient(path=str(data / "persistent")),
    }
    with huedb_server(data / "server") as server, httpx.Client(timeout=30) as http:
        remote = fill(chromadb.HttpClient(host=server.host, port=server.port), chromadb)
        base = f"{server.url}/api/v2/tenants/default_tenant/databases/default_database"

        def in_process(mode: str) -> Runner:
            def run(name: str, body: dict[str, Any]) -> list[list[dict[str, Any]]]:
                searches = [builder_search(huedb, p) for p in body["searches"]]
                level = huedb.ReadLevel(body.get("read_level", "index_and_wal"))
                return opened(clients[mode]())[name].search(searches, level).rows()

            return run

        def raw(name: str, body: dict[str, Any]) -> list[list[dict[str, Any]]]:
            resp = http.post(f"{base}/collections/{remote[name].id}/search", json=body)
            assert resp.status_code == 200, resp.text
            return chromadb.api.types.SearchResult(resp.json()).rows()

        def real_client(name: str, body: dict[str, Any]) -> list[list[dict[str, Any]]]:
            searches = [builder_search(chromadb, p) for p in body["searches"]]
            level = chromadb.api.types.ReadLevel(body.get("read_level", "index_and_wal"))
            return remote[name].search(searches, level).rows()

        yield {
            "ephemeral": in_process("ephemeral"),
            "persistent": in_process("persistent"),
            "http-raw": raw,
            "http-chromadb": real_client,
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
