"""Metadata lists as Chroma takes them: in-process, chromadb's client refuses a list whose
items are not all of one exact type (`[1, 2.5]`, `[True, 1]`, numpy scalars) with its
message; over HTTP, Chroma's server reads `[1, 2.5]` as a float list (JavaScript writes
the float list [1.0, 2.5] so), and so does a Parquet import."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import chromadb
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chromadb.config import Settings as ChromaSettings

import huedb
from huedb.api.client import clear_system_cache
from tests import side_by_side
from tests.cli import check_cli

servers = side_by_side.servers

DB = "/api/v2/tenants/default_tenant/databases/default_database"

LISTS = {
    "ints and a float": [1, 2.5],
    "a float then an int": [2.5, 1],
    "bool and int": [True, 1],
    "int and str": [1, "a"],
    "empty": [],
    "numpy floats": [np.float64(1.5), np.float64(2.5)],
    "floats": [1.0, 2.5],
    "ints": [1, 2],
    "bools": [True, False],
    "strings": ["a", "b"],
}


def _outcome(client: Any, value: list[Any]) -> Any:
    collection = client.get_or_create_collection("lists")
    try:
        collection.upsert(ids=["r"], embeddings=[[1.0, 2.0]], metadatas=[{"l": value}])
    except Exception as exc:  # compared by type and message
        return type(exc).__name__, str(exc)
    got = collection.get(ids=["r"], include=["metadatas"])["metadatas"][0]["l"]
    return [(type(v).__name__, v) for v in got]


@pytest.mark.parametrize("case", sorted(LISTS))
def test_in_process_lists_as_chromadb(tmp_path: Path, case: str) -> None:
    theirs = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    ours = huedb.PersistentClient(path=tmp_path / "huedb")
    try:
        assert _outcome(ours, LISTS[case]) == _outcome(theirs, LISTS[case])
    finally:
        ours.close()
        clear_system_cache()


def _over_http(base: str, name: str, op: str, value: Any) -> tuple[int, Any]:
    with httpx.Client(base_url=base, timeout=30) as http:
        cid = http.post(f"{DB}/collections", json={"name": name}).json()["id"]
        body = {"ids": ["r"], "embeddings": [[1.0, 2.0]], "metadatas": [{"l": value}]}
        if op == "update":
            http.post(f"{DB}/collections/{cid}/add", json={**body, "metadatas": None})
        written = http.post(f"{DB}/collections/{cid}/{op}", json=body)
        if written.status_code >= 300:
            error = written.json()
            # serde's " at line L column C" suffix is a known difference (chroma-compat.md)
            message = re.sub(r" at line \d+ column \d+$", "", error["message"])
            return written.status_code, (error["error"], message)
        got = http.post(f"{DB}/collections/{cid}/get", json={"include": ["metadatas"]})
        return written.status_code, got.json()["metadatas"][0]["l"]


HTTP_LISTS = [[1, 2.5], [2.5, 1], [1, 2], [1.0, 2.0], [True, 1], [1, "a"], [None], [[1]]]


@pytest.mark.parametrize("op", ["add", "update", "upsert"])
@pytest.mark.parametrize("case", range(len(HTTP_LISTS)), ids=[str(v) for v in HTTP_LISTS])
def test_http_lists_as_chroma_run(servers: dict[str, str], op: str, case: int) -> None:
    value, name = HTTP_LISTS[case], f"lists-{op}-{case}"
    ours = _over_http(servers["huedb"], name, op, value)
    theirs = _over_http(servers["chroma"], name, op, value)
    assert ours == theirs
    if ours[0] < 300:  # the JSON types too: [1.0, 2.5], not [1, 2.5]
        assert [type(v) for v in ours[1]] == [type(v) for v in theirs[1]]


def test_parquet_import_reads_mixed_numbers_as_floats(tmp_path: Path) -> None:
    path = tmp_path / "mixed.parquet"
    metadata = ['{"l": [1, 2.5]}', '{"l": [3, 4]}']
    pq.write_table(
        pa.table({"id": ["a", "b"], "embedding": [[1.0, 2.0]] * 2, "metadata": metadata}), path
    )
    data = tmp_path / "data"
    check_cli("import", str(path), "--path", str(data), "--collection", "mixed")
    client = huedb.PersistentClient(path=data)
    try:
        got = client.get_collection("mixed").get(include=["metadatas"])["metadatas"]
        assert [[(type(v), v) for v in m["l"]] for m in got] == [
            [(float, 1.0), (float, 2.5)],
            [(int, 3), (int, 4)],
        ]
    finally:
        client.close()
        clear_system_cache()


def _get_where(base: str, name: str, where: dict[str, Any]) -> tuple[int, Any]:
    with httpx.Client(base_url=base, timeout=30) as http:
        cid = http.post(f"{DB}/collections", json={"name": name}).json()["id"]
        records = {
            "ids": ["i", "f"],
            "embeddings": [[1.0, 2.0], [2.0, 1.0]],
            "metadatas": [{"n": 1}, {"n": 2.5}],
        }
        assert http.post(f"{DB}/collections/{cid}/add", json=records).status_code == 201
        got = http.post(f"{DB}/collections/{cid}/get", json={"where": where})
        body = got.json()
        return got.status_code, body.get("error") or sorted(body["ids"])


@pytest.mark.parametrize(
    "values",
    [[1, 2.5], [2.5, 1], [1, 2], [2.5, 3.5]],
    ids=["int first", "float first", "ints", "floats"],
)
@pytest.mark.parametrize("op", ["$in", "$nin"])
def test_http_in_lists_of_numbers_as_chroma_run(
    servers: dict[str, str], op: str, values: list[Any]
) -> None:
    """Chroma's server reads a list by its first value: `[1, 2.5]` is an integer list
    holding a float (400 'Invalid where clause'), `[2.5, 1]` a float list."""
    name = f"in-{op[1:]}-{'-'.join(type(v).__name__ for v in values)}-{values[0]}"
    where = {"n": {op: values}}
    assert _get_where(servers["huedb"], name, where) == _get_where(servers["chroma"], name, where)


@pytest.mark.parametrize(
    "flt",
    [{"#id": {"$in": []}}, {"#id": {"$nin": []}}, {"n": {"$in": [1, 2.5]}}],
    ids=["id in empty", "id nin empty", "int then float"],
)
def test_search_filters_chroma_refuses(servers: dict[str, str], flt: dict[str, Any]) -> None:
    """Refused with 422 as Chroma's server refuses them (it parses a search body, then
    answers 501 for a valid one: its Search API runs in its cloud only)."""
    body = {"searches": [{"filter": flt, "limit": {"limit": 5}}]}
    for base in (servers["huedb"], servers["chroma"]):
        with httpx.Client(base_url=base, timeout=30) as http:
            made = http.post(f"{DB}/collections", json={"name": "search-lists"})
            cid = made.json()["id"] if made.status_code == 200 else None
            if cid is None:  # made by an earlier case
                cid = http.get(f"{DB}/collections/search-lists").json()["id"]
            got = http.post(f"{DB}/collections/{cid}/search", json=body)
            assert got.status_code == 422, (base, got.text)


@pytest.mark.parametrize("op", ["add", "update", "upsert"])
def test_empty_record_metadata_refused_as_chromadb(tmp_path: Path, op: str) -> None:
    """An empty metadata dict (LangChain's update_document sends one) is refused with
    chromadb's words ('got 0 metadata attributes', not 'got {}')."""

    def outcome(client: Any) -> tuple[str, str]:
        collection = client.get_or_create_collection("empty-meta")
        collection.add(ids=["a"], embeddings=[[1.0, 2.0]])
        call = getattr(collection, op)
        with pytest.raises(ValueError) as refused:
            if op == "update":
                call(ids=["a"], metadatas=[{}])
            else:
                call(ids=["b"], embeddings=[[1.0, 2.0]], metadatas=[{}])
        return type(refused.value).__name__, str(refused.value)

    theirs = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    ours = huedb.PersistentClient(path=tmp_path / "huedb")
    try:
        assert outcome(ours) == outcome(theirs)
    finally:
        ours.close()
        clear_system_cache()
