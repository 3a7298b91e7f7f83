"""Chroma's reserved metadata keys (`chroma:...`) and `#document` compared as a metadata key,
side by side with real chromadb 1.5.9: in-process (`PersistentClient` on tmp_path) and over
HTTP (`chroma run` and `huedb run`: chromadb's `HttpClient`, and raw requests for what
chromadb's client refuses to send).

What Chroma does (shared/chroma-compat.md, "Observed 2026-12-05 (thirteenth session)"): it
keeps a record's document and uri as the metadata keys `chroma:document` and `chroma:uri`.
A string written under one of them is the record's document / uri (the `documents` / `uris`
value given for the record wins), a filter on one compares the document / uri, and no
`chroma:` key is ever returned in metadata (other `chroma:` keys are stored and filter as
metadata). chromadb's client refuses only `chroma:document`. `where={"#document": {op: x}}`
with an operator other than $contains, $not_contains, $regex, $not_regex and a number or bool
is a metadata filter on a key no record has.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chromadb
import httpx
import numpy as np
import pytest
from chromadb.config import Settings as ChromaSettings

import huedb
from huedb.engine.catalog import DEFAULT_DATABASE_ID
from huedb.engine.filters import compile_filter
from huedb.record_batch import RecordBatch
from tests import raw_stores, side_by_side

servers = side_by_side.servers
in_process = side_by_side.persistent_pair
store = raw_stores.store

FIELDS = ("metadatas", "documents", "uris")


def _outcome(action: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - compared across targets
            return ("error", type(exc).__name__)


def _records(result: Any) -> list[tuple]:
    """(id, metadata, document, uri) of a get result, by id."""
    rows = zip(result["ids"], *(result[f] for f in FIELDS), strict=True)
    return sorted(rows, key=lambda row: row[0])


@pytest.fixture
def over_http(servers: dict[str, str]) -> dict[str, Any]:
    """chromadb's HttpClient on `chroma run` and on `huedb run`."""
    clients = {}
    for name, url in servers.items():
        port = int(url.rsplit(":", 1)[1])
        clients[name] = chromadb.HttpClient(
            host="127.0.0.1", port=port, settings=ChromaSettings(anonymized_telemetry=False)
        )
    return clients


_names = iter(range(10**6))


def _collection(client: Any, prefix: str) -> Any:
    return client.create_collection(f"{prefix}{next(_names):05d}", embedding_function=None)


def _vectors(count: int) -> list[list[float]]:
    return [[float(i), 1.0] for i in range(count)]


# The writes of the scenario, and the filters run after each stage.
_WHERES = [
    {"chroma:x": 1},
    {"chroma:x": "s"},
    {"chroma:uri": "s3://k"},
    {"chroma:uri": "given"},
    {"chroma:uri": "meta"},
    {"chroma:uri": 5},
    {"chroma:uri": 7},
    {"chroma:uri": {"$ne": "s3://k"}},
    {"chroma:uri": {"$in": ["given", "mm", "newc"]}},
    {"chroma:uri": {"$nin": ["given", "mm"]}},
    {"chroma:document": "da"},
    {"chroma:document": {"$ne": "da"}},
    {"chroma:document": {"$in": ["dc", "dd"]}},
    {"chroma:document": {"$nin": ["dc"]}},
    {"$or": [{"chroma:uri": "U2"}, {"chroma:x": 1}]},
    {"$and": [{"chroma:uri": {"$ne": "hu"}}, {"keep": "y"}]},
]


def _reads(col: Any) -> dict[str, Any]:
    include = list(FIELDS)
    reads: dict[str, Any] = {"get": _outcome(lambda: _records(col.get(include=include)))}
    for where in _WHERES:
        reads[repr(where)] = _outcome(lambda w=where: _records(col.get(where=w, include=include)))
    query = col.query(query_embeddings=[[0.0, 1.0]], n_results=3, include=include)
    reads["query"] = [query["ids"][0], *(query[f][0] for f in FIELDS)]
    return reads


def _scenario(client: Any) -> list[Any]:
    """Writes with `chroma:` keys (add, update, upsert), reading back after each stage."""
    col = _collection(client, "reserved")
    steps: list[Any] = []
    steps.append(
        _outcome(
            lambda: col.add(
                ids=["a", "b", "c", "d", "e", "f"],
                embeddings=_vectors(6),
                metadatas=[
                    {"chroma:x": 1, "keep": "y"},
                    {"chroma:uri": "s3://k"},
                    {"chroma:uri": 5, "z": 1},
                    {"chroma:uri": "meta"},
                    None,
                    {"chroma:uri": "mm", "chroma:x": "s"},
                ],
                documents=["da", None, "dc", "dd", "de", None],
                uris=[None, None, None, "given", "onlyuri", None],
            )
        )
    )
    steps.append(_reads(col))
    # chromadb's client refuses chroma:document (ValueError), in every write.
    for op in ("add", "update", "upsert"):
        steps.append(
            _outcome(
                lambda op=op: getattr(col, op)(
                    ids=["g"], embeddings=_vectors(1), metadatas=[{"chroma:document": "x"}]
                )
            )
        )
    steps.append(_outcome(lambda: col.update(ids=["a"], metadatas=[{"chroma:x": None}])))
    steps.append(_outcome(lambda: col.update(ids=["c"], metadatas=[{"chroma:uri": "newc"}])))
    steps.append(
        _outcome(
            lambda: col.update(ids=["d"], uris=["U2"], metadatas=[{"chroma:uri": "M2", "n": 1}])
        )
    )
    steps.append(_outcome(lambda: col.update(ids=["e"], uris=["U3"])))
    steps.append(_outcome(lambda: col.update(ids=["f"], metadatas=[{"other": 1}])))
    steps.append(
        _outcome(
            lambda: col.upsert(
                ids=["h", "b"],
                embeddings=[[9.0, 1.0], [1.0, 1.0]],
                metadatas=[{"chroma:uri": "hu", "chroma:y": True}, {"chroma:uri": "s3://b2"}],
            )
        )
    )
    steps.append(_reads(col))
    # A `chroma:uri` left in an update's metadata patch without a string (None, a delete, or
    # another type) clears the uri, as in Chroma; an upsert's new record gets none.
    steps.append(_outcome(lambda: col.update(ids=["d"], metadatas=[{"chroma:uri": None}])))
    steps.append(
        _outcome(
            lambda: col.upsert(
                ids=["e", "k"],
                embeddings=[[4.0, 1.0], [8.0, 1.0]],
                metadatas=[{"chroma:uri": None}, {"chroma:uri": None, "w": 1}],
            )
        )
    )
    steps.append(_outcome(lambda: col.update(ids=["h"], metadatas=[{"chroma:uri": 7}])))
    steps.append(_reads(col))
    return steps


def test_reserved_keys_in_process(in_process: dict[str, Any]) -> None:
    """chromadb's and huedb's in-process clients: `chroma:uri` is the uri, `chroma:` keys are
    stored and filter as metadata but are never returned, filters on `chroma:document` /
    `chroma:uri` compare the document / uri."""
    expected = _scenario(in_process["chroma"])
    assert _scenario(in_process["huedb"]) == expected
    assert expected[0] is None  # the add with chroma:uri is accepted


def test_reserved_keys_over_http(over_http: dict[str, Any]) -> None:
    """The same through chromadb's HttpClient, on `chroma run` and on `huedb run`."""
    expected = _scenario(over_http["chroma"])
    assert _scenario(over_http["huedb"]) == expected


class _Raw:
    """A collection of a server, by raw requests (what chromadb's client refuses to send)."""

    def __init__(self, url: str, name: str) -> None:
        base = f"{url}/api/v2/tenants/default_tenant/databases/default_database"
        self.http = httpx.Client(base_url=base, timeout=30)
        created = self.http.post("/collections", json={"name": name})
        assert created.status_code == 200, created.text
        self.path = f"/collections/{created.json()['id']}"

    def post(self, op: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = self.http.post(f"{self.path}/{op}", json=body)
        return response.status_code, response.json()

    def get(self, **body: Any) -> Any:
        status, answer = self.post("get", {"include": list(FIELDS), **body})
        return _records(answer) if status == 200 else (status, answer["error"])


def _raw_document_scenario(raw: _Raw) -> list[Any]:
    steps: list[Any] = [
        raw.post(
            "add",
            {
                "ids": ["a", "b", "c", "d", "e"],
                "embeddings": _vectors(5),
                "metadatas": [
                    {"chroma:document": "MD"},
                    {"chroma:document": "MD2"},
                    {"chroma:x": 7},
                    None,
                    {"chroma:uri": ["l1", "l2"]},
                ],
                "documents": [None, "DOC", None, "plain", None],
            },
        )[0],
        raw.get(),
    ]
    for where in (
        {"chroma:document": "MD"},
        {"chroma:document": "MD2"},
        {"chroma:document": "DOC"},
        {"chroma:document": {"$ne": "plain"}},
        {"chroma:uri": {"$contains": "l1"}},
        {"chroma:x": 7},
    ):
        steps.append(raw.get(where=where))
    steps.append(raw.get(where_document={"$contains": "MD"}))
    steps.append(
        raw.post("update", {"ids": ["c"], "metadatas": [{"chroma:document": "cdoc", "m": 2}]})[0]
    )
    steps.append(
        raw.post(
            "upsert",
            {
                "ids": ["f", "d"],
                "embeddings": _vectors(2),
                "metadatas": [{"chroma:document": "fdoc", "chroma:z": None}, {"chroma:uri": ""}],
                "documents": [None, "newd"],
            },
        )[0]
    )
    steps.append(raw.get())
    steps.append(raw.get(where_document={"$contains": "doc"}))
    steps.append(raw.get(where={"chroma:uri": ""}))
    status, answer = raw.post(
        "query", {"query_embeddings": _vectors(1), "n_results": 6, "include": list(FIELDS)}
    )
    # Some records are at the same distance: compared by id.
    steps.append((status, _records({k: answer[k][0] for k in ("ids", *FIELDS)})))
    return steps


def test_chroma_document_key_over_raw_http(servers: dict[str, str]) -> None:
    """Over raw HTTP (chromadb's client refuses `chroma:document`), a string `chroma:document`
    is the record's document on both servers: returned as the document (not in metadata),
    found by `where_document` and by a `where` on the key."""
    results = {name: _raw_document_scenario(_Raw(url, "rawdocs")) for name, url in servers.items()}
    assert results["huedb"] == results["chroma"]
    assert results["chroma"][1][0] == ("a", None, "MD", None)


def test_non_string_document_refused(servers: dict[str, str]) -> None:
    """What Chroma cannot do sanely, huedb refuses (InvalidArgumentError, the record kept):
    a non-string `chroma:document` (Chroma's server answers 201, then its compactor panics on
    the record and every later write of the database fails with "Error sending message to
    compactor": not run here)."""
    raw = _Raw(servers["huedb"], "refused")
    assert raw.post("add", {"ids": ["a"], "embeddings": _vectors(1)})[0] == 201
    for op, value in (("add", 7), ("update", None), ("update", ["x"]), ("upsert", True)):
        body = {"ids": ["a"], "embeddings": _vectors(1), "metadatas": [{"chroma:document": value}]}
        status, answer = raw.post(op, body)
        assert (status, answer["error"]) == (400, "InvalidArgumentError"), (op, value)
        assert "chroma:document" in answer["message"]
    assert raw.get() == [("a", None, None, None)]


def test_values_stored_before_the_move_read_as_chroma(tmp_path: Path) -> None:
    """Records whose stored metadata holds `chroma:` keys (as huedb stored them before it moved
    them: written here to the engine directly) read as Chroma reads such records: a string
    `chroma:document` / `chroma:uri` is the document / uri when the record has none, the
    keys are not returned, and filters on them find the records."""
    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    col = client.create_collection("stored", embedding_function=None)
    metadatas = [
        {"chroma:uri": "s3://k", "chroma:document": "kept", "keep": "y"},
        {"chroma:uri": "meta", "chroma:x": 1},
        {"chroma:document": "only"},
    ]
    batch = RecordBatch(
        ids=["a", "b", "c"],
        embeddings=np.asarray(_vectors(3), dtype=np.float32),
        metadatas=metadatas,
        documents=[None, "column", None],
        uris=[None, "given", None],
    )
    col._client.engine.add(str(col.id), batch.filled())
    got = col.get(include=list(FIELDS))
    assert _records(got) == [
        ("a", {"keep": "y"}, "kept", "s3://k"),
        ("b", {}, "column", "given"),
        ("c", None, "only", None),
    ]
    assert col.get(where={"chroma:uri": "s3://k"})["ids"] == ["a"]
    assert col.get(where={"chroma:document": "only"})["ids"] == ["c"]
    assert col.get(where={"chroma:document": {"$nin": ["kept", "column"]}})["ids"] == ["c"]
    client.close()


# `#document` compared with a number or bool is a metadata filter on a key no record has.
_DOCUMENT_CLAUSES: list[Any] = [
    {"$gt": 1},
    {"$gte": 0},
    {"$lt": 5.5},
    {"$lte": -1},
    {"$eq": 1},
    {"$ne": 1},
    {"$eq": True},
    {"$ne": False},
    {"$in": [1]},
    {"$in": [1.5, 2.0]},
    {"$nin": [1]},
    {"$nin": [True]},
    1,
    True,
    # Strings, document operators and malformed clauses keep their errors.
    {"$eq": "x"},
    {"$ne": "x"},
    {"$in": ["x"]},
    "x",
    {"$gt": "x"},
    {"$contains": 1},
    {"$contains": "x"},
    {"$not_contains": "x"},
    {"$in": [1, "x"]},
    {"$foo": 1},
]


def _document_operands(client: Any) -> list[Any]:
    col = _collection(client, "docops")
    col.add(
        ids=["a", "b", "c"],
        embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        documents=["x", "1", None],
        metadatas=[{"k": 1}, None, {"k": 2}],
    )
    out = []
    for clause in _DOCUMENT_CLAUSES:
        where = {"#document": clause}
        out.append(_outcome(lambda w=where: sorted(col.get(where=w)["ids"])))
        out.append(
            _outcome(
                lambda w=where: col.query(query_embeddings=[[1.0, 0.0]], n_results=3, where=w)[
                    "ids"
                ]
            )
        )
    for where in (
        {"$and": [{"#document": {"$gt": 1}}, {"k": 1}]},
        {"$or": [{"#document": {"$gt": 1}}, {"k": 1}]},
        {"$or": [{"#document": {"$nin": [2]}}, {"k": 1}]},
    ):
        out.append(_outcome(lambda w=where: sorted(col.get(where=w)["ids"])))
    out.append(_outcome(lambda: col.delete(where={"#document": {"$gt": 1}})))
    out.append(col.count())
    return out


def test_document_compared_with_numbers_in_process(in_process: dict[str, Any]) -> None:
    expected = _document_operands(in_process["chroma"])
    assert _document_operands(in_process["huedb"]) == expected
    assert expected[0] == [] and expected[10] == ["a", "b", "c"]  # $gt 1: none; $ne 1: all


def test_document_compared_with_numbers_over_http(over_http: dict[str, Any]) -> None:
    expected = _document_operands(over_http["chroma"])
    assert _document_operands(over_http["huedb"]) == expected


def test_document_compared_with_numbers_over_raw_http(servers: dict[str, str]) -> None:
    """Chroma's server parses the clause itself (no client checks): the same answers."""
    results = {}
    for name, url in servers.items():
        raw = _Raw(url, "rawdocops")
        raw.post("add", {"ids": ["a", "b"], "embeddings": _vectors(2), "documents": ["x", "1"]})
        results[name] = [
            raw.get(where={"#document": clause})
            for clause in ({"$gt": 1}, {"$ne": 1}, {"$in": [1.5]}, 1, {"$nin": [False]})
        ]
    assert results["huedb"] == results["chroma"]
    assert results["chroma"][0] == []


# -- both stores render the new terms: SQLite and PostgreSQL ----------------------------


def _store_answers(store: Any, cid: int, flt: Any) -> tuple[list[str], list[str], list[str]]:
    """The ids a filter selects in each way a store reads: rows, allowed keys, a key page."""
    with store.read() as db:
        rows = sorted(r[1] for r in db.fetch_rows(cid, flt, None, None, False))
        allowed = db.allowed_keys(cid, flt)
        by_key = db.fetch_by_keys(cid, [int(k) for k in allowed], False)
        page = db.select_keys(cid, flt, None, None)
        paged = db.fetch_by_keys(cid, [int(k) for k in page], False)
    return rows, sorted(r[1] for r in by_key.values()), sorted(r[1] for r in paged.values())


_STORE_FILTERS: list[tuple[Any, list[str]]] = [
    ({"chroma:uri": "u1"}, ["a"]),
    ({"chroma:uri": "stored"}, ["d"]),  # a string kept in metadata (written before the move)
    ({"chroma:uri": {"$ne": "u1"}}, ["b", "c", "d", "e"]),
    ({"chroma:uri": {"$in": ["u1", "u2", "stored"]}}, ["a", "b", "d"]),
    ({"chroma:uri": {"$nin": ["u1", "stored"]}}, ["b", "c", "e"]),
    ({"chroma:uri": 5}, ["e"]),
    ({"chroma:document": "doc a"}, ["a"]),
    ({"chroma:document": {"$ne": "doc a"}}, ["b", "c", "d", "e"]),
    ({"chroma:document": {"$in": ["doc a", "doc c"]}}, ["a", "c"]),
    ({"chroma:document": {"$nin": ["doc a"]}}, ["b", "c", "d", "e"]),
    ({"$or": [{"chroma:uri": "u2"}, {"chroma:document": "doc c"}]}, ["b", "c"]),
    ({"$and": [{"chroma:uri": {"$ne": "u2"}}, {"k": 1}]}, ["a", "c"]),
    ({"#document": {"$gt": 1}}, []),
    ({"#document": {"$ne": 1}}, ["a", "b", "c", "d", "e"]),
    ({"#document": {"$in": [True]}}, []),
]


def _store_corpus(store: Any) -> int:
    with store.write() as db:
        db.ensure_defaults("default_tenant", "default_database")
        cid = db.insert_collection(DEFAULT_DATABASE_ID, "reserved", None, {}).cid
        db.insert_records(
            cid,
            RecordBatch(
                ids=["a", "b", "c", "d", "e"],
                embeddings=np.asarray(_vectors(5), dtype=np.float32),
                metadatas=[
                    {"k": 1},
                    {"k": 2},
                    {"k": 1},
                    {"chroma:uri": "stored"},
                    {"chroma:uri": 5},
                ],
                documents=["doc a", None, "doc c", None, "doc e"],
                uris=["u1", "u2", None, None, None],
            ),
        )
    return cid


def test_field_terms_on_both_stores(store: Any) -> None:
    """`chroma:uri` / `chroma:document` filters and `#document` compared with numbers, as each
    store renders them (predicate, allowed keys, key page): the same ids on both."""
    cid = _store_corpus(store)
    for where, ids in _STORE_FILTERS:
        got = _store_answers(store, cid, compile_filter(None, where, None))
        assert got == (ids, ids, ids), where


def test_uri_cleared_on_both_stores(store: Any) -> None:
    """An update whose metadata patch holds `chroma:uri` without a uri given clears the uri
    column on both stores; a uri given is written; other records keep theirs."""
    cid = _store_corpus(store)
    patch = RecordBatch(
        ids=["a", "b", "c"],
        metadatas=[{"chroma:uri": None}, {"chroma:uri": 9}, {"chroma:uri": None}],
        uris=[None, None, "u3"],
    )
    with store.write() as db:
        keys = db.existing_keys(cid, patch.ids)
        db.update_records(cid, [keys[i] for i in patch.ids], patch)
    with store.read() as db:
        rows = db.fetch_rows(cid, compile_filter(None, None, None), None, None, False)
        uris = {row[1]: row[3] for row in rows}
    assert uris == {"a": None, "b": None, "c": "u3", "d": None, "e": None}
    assert _store_answers(store, cid, compile_filter(None, {"chroma:uri": 9}, None))[0] == ["b"]
