"""An empty where_document operand over HTTP, on each store, answers as Chroma's server.

Chroma's Python client refuses `{"$contains": ""}` before sending it, but its server (and so
its JS client, which does not check) treats "" as occurring in every document, the empty
document included; a record without a document matches only the negations. Observed on
`chroma run` 1.5.9 (`test_chroma_run_parity.py::test_an_empty_document_operand` compares
the two servers on SQLite); here each of huedb's stores gives those answers.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests import stores
from tests.servers import huedb_server
from tests.stores import StoreTarget

store = stores.store
DB = "/api/v2/tenants/default_tenant/databases/default_database"

# a: "hello", b: "" (an empty document), c: no document
EXPECTED = {
    '{"$contains": ""}': ["a", "b"],
    '{"$not_contains": ""}': ["c"],
    '{"$regex": ""}': ["a", "b"],
    '{"$not_regex": ""}': ["c"],
    '{"$and": [{"$contains": ""}, {"$not_contains": "hel"}]}': ["b"],
}


def test_empty_operands_on_each_store(store: StoreTarget, tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", *store.cli_args()) as server:
        made = httpx.post(f"{server.url}{DB}/collections", json={"name": "docs"}, timeout=30)
        path = f"{server.url}{DB}/collections/{made.json()['id']}"
        body = {
            "ids": ["a", "b", "c"],
            "embeddings": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
            "documents": ["hello", "", None],
        }
        httpx.post(f"{path}/add", json=body, timeout=30).raise_for_status()
        for text, expected in EXPECTED.items():
            got = httpx.post(
                f"{path}/get",
                content=f'{{"where_document": {text}, "include": []}}',
                headers={"content-type": "application/json"},
                timeout=30,
            )
            assert got.status_code == 200, (text, got.text)
            assert sorted(got.json()["ids"]) == expected, text
            query = httpx.post(
                f"{path}/query",
                content=f'{{"where_document": {text}, "query_embeddings": [[1.0, 0.0]], '
                '"n_results": 3, "include": []}',
                headers={"content-type": "application/json"},
                timeout=30,
            )
            assert sorted(query.json()["ids"][0]) == expected, text
        gone = httpx.post(f"{path}/delete", json={"where_document": {"$regex": ""}}, timeout=30)
        assert gone.status_code == 200
        left = httpx.post(f"{path}/get", json={"include": []}, timeout=30).json()["ids"]
        assert left == ["c"]


def test_a_non_string_operand_is_still_refused(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data") as server:
        made = httpx.post(f"{server.url}{DB}/collections", json={"name": "docs"}, timeout=30)
        path = f"{server.url}{DB}/collections/{made.json()['id']}"
        for operand in (1, None, ["x"], {"$contains": "x"}):
            body = {"where_document": {"$contains": operand}}
            got = httpx.post(f"{path}/get", json=body, timeout=30)
            assert got.status_code == 400, operand
            assert got.json()["error"] == "InvalidArgumentError"
