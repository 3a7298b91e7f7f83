"""The real `chromadb.HttpClient` (and `huedb.HttpClient`) against a real huedb server.

Every scenario runs twice: once through a remote client talking to a `huedb run` process
(module-scoped, one per store: SQLite, then PostgreSQL, `tests/stores.py`) and once through
`huedb.PersistentClient` on a separate directory (always the SQLite store, so the PostgreSQL
server is compared with the SQLite store too). Results are compared field by field, and the
read paths are also checked against the suite's model of Chroma 1.5.9
(`tests/reference_model.py`, chroma-compat.md §3.3, §9), loaded with the same data set, so
that a bug shared by both sides still fails.
"""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import chromadb
import chromadb.errors
import httpx
import numpy as np
import pytest
from chromadb.config import Settings as ChromaSettings

import huedb
import huedb.errors
from tests import stores
from tests.reference_model import ModelClient, ModelCollection, distance, returned_metadata
from tests.servers import RunningServer, huedb_server
from tests.stores import StoreTarget

API = "/api/v2"
DIM = 3
REMOTE_KINDS = ["chromadb", "huedb"]

Metadata = dict[str, Any] | None

# ---------------------------------------------------------------------------------------
# Data set and a model of Chroma's filter semantics
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One record as written; `None` fields were not given."""

    id: str
    embedding: tuple[float, ...]
    document: str | None
    metadata: Metadata
    uri: str | None


def make_records() -> list[Record]:
    """24 records covering missing documents/metadata/uris, list metadata, '' documents."""
    rng = np.random.default_rng(7)
    # Multiples of 0.5: exact in float32, so distances are exact and ties are real ties.
    embeddings = rng.integers(-4, 5, size=(24, DIM)).astype(float) * 0.5
    records = []
    for i in range(24):
        no_fields = 10 <= i <= 13  # a batch written with embeddings only
        if no_fields or i % 5 == 4:
            document = None
        elif i == 7:
            document = ""
        else:
            document = f"doc {i} {'apple' if i % 3 == 0 else 'banana'}"
        metadata: Metadata = None
        if not no_fields and i % 6 != 5:
            metadata = {
                "n": i,
                "f": i / 2,
                "s": ["red", "green", "blue"][i % 3],
                "flag": i % 2 == 0,
                "tags": [["a"], ["a", "b"], ["b", "c"], ["c"]][i % 4],
            }
            if i % 4 == 0:
                metadata["opt"] = i
        uri = f"s3://bucket/{i}" if i % 4 == 1 and not no_fields else None
        vector = tuple(float(x) for x in embeddings[i])
        records.append(Record(f"r{i:02d}", vector, document, metadata, uri))
    return records


RECORDS = make_records()


WHERES: list[tuple[str, Any]] = [
    ("none", None),
    ("eq", {"s": "red"}),
    ("ne-missing", {"opt": {"$ne": 4}}),
    ("in", {"n": {"$in": [1, 2, 3, 15, 99]}}),
    ("gt", {"f": {"$gt": 5}}),
    ("gte-float", {"n": {"$gte": 20.0}}),
    ("and", {"$and": [{"flag": True}, {"n": {"$lt": 12}}]}),
    ("or", {"$or": [{"s": "blue"}, {"opt": {"$gte": 8}}]}),
    ("contains-list", {"tags": {"$contains": "b"}}),
    ("nin", {"s": {"$nin": ["red", "green"]}}),
]

WHERE_DOCUMENTS: list[tuple[str, Any]] = [
    ("none", None),
    ("contains", {"$contains": "apple"}),
    ("not-contains", {"$not_contains": "apple"}),
    ("regex", {"$regex": "^doc 1[0-9]"}),
]

ALL_INCLUDE = ["documents", "embeddings", "metadatas", "uris"]
GET_INCLUDES: list[list[str] | None] = [None, [], ["embeddings", "uris"], ALL_INCLUDE]
PAGES: list[tuple[int | None, int | None]] = [
    (None, None),
    (0, None),
    (1, None),
    (3, 2),
    (None, 5),
    (3, 100),
]


def model_of(records: list[Record]) -> ModelCollection:
    """The data set in a collection of the reference model, in storage order."""
    col = ModelClient().create_collection("http-compat-model")
    for r in records:
        col.add(
            ids=[r.id],
            embeddings=[list(r.embedding)],
            metadatas=None if r.metadata is None else [r.metadata],
            documents=None if r.document is None else [r.document],
        )
    return col


MODEL = model_of(RECORDS)
BY_ID = {r.id: r for r in RECORDS}


def expected_get(
    where: Any,
    where_document: Any,
    limit: int | None,
    offset: int | None,
    ids: list[str] | None = None,
) -> list[Record]:
    """The records Chroma returns, as the reference model selects them (storage order,
    filters ANDed, then offset/limit)."""
    got = MODEL.get(
        ids=ids,
        where=where,
        where_document=where_document,
        limit=limit,
        offset=offset,
        include=[],
    )
    return [BY_ID[i] for i in got["ids"]]


# ---------------------------------------------------------------------------------------
# Result comparison
# ---------------------------------------------------------------------------------------


def _rows(embeddings: Any) -> list[list[float]]:
    """Embeddings of a result as plain rows ([] for chroma's `array([])`)."""
    arr = np.asarray(embeddings, dtype=np.float64)
    return [] if arr.size == 0 else arr.reshape(len(arr), -1).tolist()


def assert_same_get(got: Any, ref: Any, where: str) -> None:
    """Two GetResults are equal: ids, documents, metadatas, uris exactly; embeddings ±1e-6."""
    assert list(got["ids"]) == list(ref["ids"]), where
    for key in ("documents", "metadatas", "uris"):
        assert got[key] == ref[key], f"{where}: {key}"
    if ref["embeddings"] is None:
        assert got["embeddings"] is None, f"{where}: embeddings"
    else:
        g, r = _rows(got["embeddings"]), _rows(ref["embeddings"])
        assert len(g) == len(r), f"{where}: embeddings"
        if r:
            np.testing.assert_allclose(g, r, atol=1e-6, err_msg=where)
    assert list(got["included"]) == list(ref["included"]), f"{where}: included"


def returned(record: Record, attr: str) -> Any:
    """A record's field as Chroma returns it (see `reference_model.returned_metadata`)."""
    value = getattr(record, attr)
    return returned_metadata(value, record.uri) if attr == "metadata" else value


def assert_get_matches_model(
    got: Any, expected: list[Record], include: list[str], where: str
) -> None:
    """A GetResult holds exactly `expected`, with only the included fields filled."""
    assert list(got["ids"]) == [r.id for r in expected], where
    fields = {"documents": "document", "metadatas": "metadata", "uris": "uri"}
    for key, attr in fields.items():
        if key in include:
            assert got[key] == [returned(r, attr) for r in expected], f"{where}: {key}"
        else:
            assert got[key] is None, f"{where}: {key}"
    if "embeddings" in include:
        rows = _rows(got["embeddings"])
        assert len(rows) == len(expected), where
        if expected:
            np.testing.assert_allclose(rows, [r.embedding for r in expected], atol=1e-6)
    else:
        assert got["embeddings"] is None, f"{where}: embeddings"


def sq_l2(a: Any, b: Any) -> float:
    """Chroma's l2 distance (squared), as the reference model computes it."""
    return distance("l2", a, b)


def assert_query_matches_model(
    got: Any,
    queries: list[list[float]],
    candidates: list[Record],
    n_results: int,
    include: list[str],
    where: str,
) -> None:
    """Each per-query list is a valid top-n of `candidates` (ties in any order)."""
    assert len(got["ids"]) == len(queries), where
    for qi, q in enumerate(queries):
        ids = list(got["ids"][qi])
        ctx = f"{where} q{qi}"
        want = sorted(sq_l2(q, r.embedding) for r in candidates)[:n_results]
        assert len(ids) == len(want) == len(set(ids)), ctx
        by_id = {r.id: r for r in candidates}
        assert all(i in by_id for i in ids), ctx
        recs = [by_id[i] for i in ids]
        dists = [sq_l2(q, r.embedding) for r in recs]
        assert dists == pytest.approx(want, abs=1e-5), ctx
        if "distances" in include:
            assert got["distances"][qi] == pytest.approx(dists, abs=1e-5), ctx
        else:
            assert got["distances"] is None, ctx
        for key, attr in {"documents": "document", "metadatas": "metadata", "uris": "uri"}.items():
            if key in include:
                assert got[key][qi] == [returned(r, attr) for r in recs], f"{ctx}: {key}"
            else:
                assert got[key] is None, f"{ctx}: {key}"
        if "embeddings" in include:
            rows = _rows(got["embeddings"][qi])
            assert len(rows) == len(recs), ctx
            if recs:
                np.testing.assert_allclose(rows, [r.embedding for r in recs], atol=1e-6)
        else:
            assert got["embeddings"] is None, ctx


def assert_same_query(got: Any, ref: Any, where: str) -> None:
    """Two QueryResults agree; results at exactly equal distance may come in any order."""
    assert len(got["ids"]) == len(ref["ids"]), where
    for qi in range(len(ref["ids"])):
        ctx = f"{where} q{qi}"
        g_ids, r_ids = list(got["ids"][qi]), list(ref["ids"][qi])
        assert len(g_ids) == len(r_ids), ctx
        if ref["distances"] is not None:
            assert got["distances"][qi] == pytest.approx(ref["distances"][qi], abs=1e-5), ctx

        def rows_by_id(res: Any, ids: list[str], qi: int = qi) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for pos, i in enumerate(ids):
                row: dict[str, Any] = {}
                for key in ("documents", "metadatas", "uris"):
                    row[key] = None if res[key] is None else res[key][qi][pos]
                emb = None if res["embeddings"] is None else _rows(res["embeddings"][qi])[pos]
                row["embeddings"] = emb
                out[i] = row
            return out

        if ref["distances"] is not None and r_ids:
            # Ids may differ only inside the group tied with the last returned distance.
            last = ref["distances"][qi][-1]

            def before_last(ids: list[str], dists: list[float], last: float = last) -> set[str]:
                return {i for i, d in zip(ids, dists, strict=True) if abs(d - last) > 1e-5}

            assert before_last(g_ids, got["distances"][qi]) == before_last(
                r_ids, ref["distances"][qi]
            ), ctx
        gb, rb = rows_by_id(got, g_ids), rows_by_id(ref, r_ids)
        for i in gb.keys() & rb.keys():
            for key in ("documents", "metadatas", "uris"):
                assert gb[i][key] == rb[i][key], f"{ctx}: {i} {key}"
            if rb[i]["embeddings"] is None:
                assert gb[i]["embeddings"] is None, ctx
            else:
                np.testing.assert_allclose(gb[i]["embeddings"], rb[i]["embeddings"], atol=1e-6)
    assert list(got["included"]) == list(ref["included"]), where


# ---------------------------------------------------------------------------------------
# Fixtures: one server, remote clients of two kinds, a reference PersistentClient
# ---------------------------------------------------------------------------------------


@dataclass
class Server:
    """The running huedb server, its data directory and the store it runs on."""

    running: RunningServer
    data: Path
    store: StoreTarget

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def port(self) -> int:
        return self.running.port


@dataclass
class Remote:
    """A client of the server plus the error module its exceptions come from."""

    kind: str
    client: Any
    errors: ModuleType
    server: Server
    tenant: str
    database: str
    opened: list[Any] = field(default_factory=list)

    def connect(self, tenant: str = "default_tenant", database: str = "default_database") -> Any:
        """Another client of the same kind, on another tenant/database."""
        client = make_remote_client(self.kind, self.server, tenant, database)
        self.opened.append(client)
        return client

    def raw(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A raw HTTP request below /api/v2."""
        return httpx.request(method, f"{self.server.url}{API}{path}", json=body, timeout=30)

    def data_path(self, collection: Any, op: str) -> str:
        """/tenants/T/databases/D/collections/{id}/{op} for a collection of this database."""
        return f"/tenants/{self.tenant}/databases/{self.database}/collections/{collection.id}/{op}"


@dataclass
class Pair:
    """A remote client and a reference PersistentClient on the same tenant/database name."""

    remote: Remote
    ref: Any

    def both(self) -> list[Any]:
        return [self.remote.client, self.ref]


def make_remote_client(kind: str, server: Server, tenant: str, database: str) -> Any:
    """chromadb.HttpClient or huedb.HttpClient for the server."""
    if kind == "chromadb":
        return chromadb.HttpClient(
            host="127.0.0.1",
            port=server.port,
            settings=ChromaSettings(anonymized_telemetry=False),
            tenant=tenant,
            database=database,
        )
    return huedb.HttpClient(host="127.0.0.1", port=server.port, tenant=tenant, database=database)


module_store = stores.module_store  # the fixture: each store in turn, for the module


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, module_store: StoreTarget) -> Iterator[Server]:
    """One `huedb run` process on each store for the whole module."""
    data = tmp_path_factory.mktemp("http-compat-server") / "data"
    with huedb_server(data, *module_store.cli_args()) as running:
        yield Server(running, data, module_store)


@pytest.fixture(scope="module")
def ref_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Directory of the reference huedb.PersistentClient."""
    yield tmp_path_factory.mktemp("http-compat-ref") / "db"


_counter = itertools.count()


@pytest.fixture(params=REMOTE_KINDS)
def pair(request: pytest.FixtureRequest, server: Server, ref_root: Path) -> Iterator[Pair]:
    """A fresh database (same name) on the server and in the reference store."""
    kind = request.param
    database = f"db-{kind}-{next(_counter)}"
    resp = httpx.post(
        f"{server.url}{API}/tenants/default_tenant/databases", json={"name": database}
    )
    assert resp.status_code == 200, resp.text
    client = make_remote_client(kind, server, "default_tenant", database)
    errors = chromadb.errors if kind == "chromadb" else huedb.errors
    remote = Remote(kind, client, errors, server, "default_tenant", database)
    admin = huedb.PersistentClient(path=ref_root)
    admin.create_database(database)
    admin.close()
    ref = huedb.PersistentClient(path=ref_root, database=database)
    try:
        yield Pair(remote, ref)
    finally:
        for c in [client, *remote.opened]:
            c.close()
        ref.close()


def add_dataset(collection: Any, records: list[Record]) -> None:
    """collection.add with every field given (None entries where a record lacks one)."""
    collection.add(
        ids=[r.id for r in records],
        embeddings=[list(r.embedding) for r in records],
        documents=[r.document for r in records],
        metadatas=[r.metadata for r in records],
        uris=[r.uri for r in records],
    )


def b64(vector: Any) -> str:
    """An embedding as Chroma's wire base64 (packed little-endian float32)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def raw_write_body(records: list[Record], encode: Callable[[Any], Any]) -> dict[str, Any]:
    """add/upsert/update request body with the given embedding encoding."""
    return {
        "ids": [r.id for r in records],
        "embeddings": [encode(r.embedding) for r in records],
        "documents": [r.document for r in records],
        "metadatas": [r.metadata for r in records],
        "uris": [r.uri for r in records],
    }


def populate(pair: Pair, name: str) -> tuple[Any, Any]:
    """The data set in a new collection on both sides, the remote one via four write paths.

    Remote: r00-r09 via the client's add (base64 for chromadb), r10-r13 via the client's add
    with embeddings only, r14-r18 via a raw POST with JSON float arrays, r19-r23 via a raw
    POST with base64 strings. Reference: the same records via collection.add.
    """
    remote_col = pair.remote.client.create_collection(name, embedding_function=None)
    ref_col = pair.ref.create_collection(name, embedding_function=None)
    add_dataset(remote_col, RECORDS[:10])
    remote_col.add(
        ids=[r.id for r in RECORDS[10:14]], embeddings=[list(r.embedding) for r in RECORDS[10:14]]
    )
    for chunk, encode in ((RECORDS[14:19], list), (RECORDS[19:], b64)):
        resp = pair.remote.raw(
            "POST", pair.remote.data_path(remote_col, "add"), raw_write_body(chunk, encode)
        )
        assert resp.status_code == 201, resp.text
        assert resp.json() == {}
    add_dataset(ref_col, RECORDS[:10])
    ref_col.add(
        ids=[r.id for r in RECORDS[10:14]], embeddings=[list(r.embedding) for r in RECORDS[10:14]]
    )
    add_dataset(ref_col, RECORDS[14:])
    return remote_col, ref_col


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------


def test_server_speaks_chroma_startup_protocol(server: Server) -> None:
    """Heartbeat, version, identity and pre-flight answers the chromadb client relies on."""
    get = lambda p: httpx.get(f"{server.url}{API}{p}")  # noqa: E731
    assert isinstance(get("/heartbeat").json()["nanosecond heartbeat"], int)
    assert isinstance(get("/version").json(), str)
    assert set(get("/auth/identity").json()) <= {"user_id", "tenant", "databases", "attributes"}
    checks = get("/pre-flight-checks").json()
    assert checks["max_batch_size"] > 0
    assert checks["supports_base64_encoding"] is True
    client = make_remote_client("chromadb", server, "default_tenant", "default_database")
    try:
        assert client.heartbeat() > 0
        assert client.get_max_batch_size() == checks["max_batch_size"]
    finally:
        client.close()


def test_collection_lifecycle_matches_reference(pair: Pair) -> None:
    """create/get/list/count/modify/get_or_create/delete agree with the reference client."""
    errors = pair.remote.errors
    for client in pair.both():
        is_remote = client is pair.remote.client
        errs = errors if is_remote else huedb.errors
        a = client.create_collection("life-a", metadata={"k": "v", "n": 1}, embedding_function=None)
        b = client.create_collection(
            "life-cos", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        client.create_collection("life-c", embedding_function=None)
        assert a.name == "life-a" and a.metadata == {"k": "v", "n": 1}
        assert b.configuration_json["hnsw"]["space"] == "cosine"
        assert client.get_collection("life-a").id == a.id
        assert client.get_collection_by_id(a.id).name == "life-a"
        assert sorted(c.name for c in client.list_collections()) == [
            "life-a",
            "life-c",
            "life-cos",
        ]
        assert client.count_collections() == 3
        pages = [client.list_collections(limit=1, offset=k) for k in range(4)]
        assert [len(p) for p in pages] == [1, 1, 1, 0]
        assert sorted(p[0].name for p in pages[:3]) == ["life-a", "life-c", "life-cos"]
        same = client.get_or_create_collection(
            "life-a", metadata={"other": 2}, embedding_function=None
        )
        assert same.id == a.id and same.metadata == {"k": "v", "n": 1}

        a.modify(name="life-b", metadata={"z": 2})
        renamed = client.get_collection("life-b")
        assert renamed.id == a.id and renamed.metadata == {"z": 2}
        with pytest.raises(errs.NotFoundError):
            client.get_collection("life-a")

        b.add(ids=["x", "y"], embeddings=[[1.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
        res = b.query(query_embeddings=[[1.0, 1.0, 0.0]], n_results=2, include=["distances"])
        assert res["ids"] == [["y", "x"]]
        assert res["distances"][0] == pytest.approx([1 - 7 / (5 * 2**0.5), 1 - 2**-0.5], abs=1e-5)

        client.delete_collection("life-b")
        with pytest.raises(errs.NotFoundError):
            client.get_collection("life-b")
        with pytest.raises(errs.NotFoundError):
            client.delete_collection("life-b")
        with pytest.raises(errs.NotFoundError):
            a.count()
        assert client.count_collections() == 2

    remote_cols = {c.name: c for c in pair.remote.client.list_collections()}
    ref_cols = {c.name: c for c in pair.ref.list_collections()}
    assert remote_cols.keys() == ref_cols.keys()
    for name, col in remote_cols.items():
        assert col.metadata == ref_cols[name].metadata
        assert col.configuration_json["hnsw"] == ref_cols[name].configuration_json["hnsw"]


def test_get_every_include_where_where_document_limit_offset(pair: Pair) -> None:
    """get over the product of include × where × where_document × limit/offset."""
    remote_col, ref_col = populate(pair, "grid")
    assert remote_col.count() == ref_col.count() == len(RECORDS)
    nonempty = 0
    combos = itertools.product(GET_INCLUDES, WHERES, WHERE_DOCUMENTS, PAGES)
    for include, (wlabel, where), (dlabel, wdoc), (limit, offset) in combos:
        kwargs: dict[str, Any] = {"where": where, "where_document": wdoc}
        kwargs.update(limit=limit, offset=offset)
        if include is not None:
            kwargs["include"] = include
        ctx = f"include={include} where={wlabel} doc={dlabel} limit={limit} offset={offset}"
        got = remote_col.get(**kwargs)
        ref = ref_col.get(**kwargs)
        assert_same_get(got, ref, ctx)
        expected = expected_get(where, wdoc, limit, offset)
        effective = ["metadatas", "documents"] if include is None else include
        assert_get_matches_model(got, expected, effective, ctx)
        nonempty += bool(expected)
    assert nonempty > 300  # the grid is not trivially empty

    # ids select (storage order, missing ids dropped) and combine with the filters.
    wanted = ["r03", "r01", "nope", "r12", "r20"]
    for (wlabel, where), (dlabel, wdoc) in itertools.product(WHERES, WHERE_DOCUMENTS):
        kwargs = {"ids": wanted, "where": where, "where_document": wdoc, "include": ALL_INCLUDE}
        got, ref = remote_col.get(**kwargs), ref_col.get(**kwargs)
        ctx = f"ids where={wlabel} where_document={dlabel}"
        assert_same_get(got, ref, ctx)
        assert_get_matches_model(
            got, expected_get(where, wdoc, None, None, wanted), ALL_INCLUDE, ctx
        )

    peeks = [remote_col.peek(4), ref_col.peek(4)]
    for peek in peeks:
        want = expected_get(None, None, 4, None)
        assert_get_matches_model(peek, want, ALL_INCLUDE[:3], "peek")


def test_query_every_include_where_where_document_n_results(pair: Pair) -> None:
    """query over include × where × where_document × n_results × ids restriction."""
    remote_col, ref_col = populate(pair, "qgrid")
    queries = [[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]]
    includes: list[list[str] | None] = [None, ["distances"], [*ALL_INCLUDE, "distances"], []]
    wheres = [WHERES[0], WHERES[1], WHERES[2], WHERES[8]]
    wdocs = [WHERE_DOCUMENTS[0], WHERE_DOCUMENTS[2], WHERE_DOCUMENTS[3]]
    id_sets: list[list[str] | None] = [None, ["r01", "r02", "r10", "r20", "r21"]]
    combos = itertools.product(includes, wheres, wdocs, (1, 4, 50), id_sets)
    for include, (wlabel, where), (dlabel, wdoc), n, ids in combos:
        kwargs: dict[str, Any] = {
            "query_embeddings": queries,
            "n_results": n,
            "where": where,
            "where_document": wdoc,
            "ids": ids,
        }
        if include is not None:
            kwargs["include"] = include
        ctx = f"include={include} where={wlabel} where_document={dlabel} n={n} ids={ids}"
        got, ref = remote_col.query(**kwargs), ref_col.query(**kwargs)
        assert_same_query(got, ref, ctx)
        candidates = expected_get(where, wdoc, None, None, ids)
        effective = ["metadatas", "documents", "distances"] if include is None else include
        assert_query_matches_model(got, queries, candidates, n, effective, ctx)

    # A single query vector, and a query on an empty collection (any dimension).
    one = remote_col.query(query_embeddings=[0.5, 0.5, 0.5], n_results=3)
    assert_same_query(one, ref_col.query(query_embeddings=[0.5, 0.5, 0.5], n_results=3), "single")
    empty_remote = pair.remote.client.create_collection("qempty", embedding_function=None)
    empty = empty_remote.query(
        query_embeddings=[[1.0, 2.0]], n_results=5, include=[*ALL_INCLUDE, "distances"]
    )
    assert empty["ids"] == [[]] and empty["distances"] == [[]] and empty["documents"] == [[]]


def test_update_upsert_delete_count_match_reference(pair: Pair) -> None:
    """A write sequence gives identical state on both sides after every step."""
    cols = [c.create_collection("writes", embedding_function=None) for c in pair.both()]
    remote_col, ref_col = cols
    steps: list[tuple[str, Callable[[Any], Any]]] = [
        ("add", lambda c: add_dataset(c, RECORDS[:14])),
        (
            "update with embeddings, merge and None",
            lambda c: c.update(
                ids=["r01", "r02", "missing"],
                embeddings=[[9.0, 9.0, 9.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]],
                metadatas=[{"n": 100, "s": None}, None, {"x": 1}],
                documents=["new one", None, "ghost"],
            ),
        ),
        (
            "update metadata only",
            lambda c: c.update(ids="r13", metadatas={"tags": ["z"], "new": True}),
        ),
        ("update uri only", lambda c: c.update(ids=["r12"], uris=["file:///tmp/r12"])),
        (
            "update removes every key",
            lambda c: c.update(ids=["r08"], metadatas=[dict.fromkeys(RECORDS[8].metadata or {})]),
        ),
        (
            "upsert existing and new",
            lambda c: c.upsert(
                ids=["r05", "n1", "n2"],
                embeddings=[[0.0, 0.0, 1.0], [2.0, 2.0, 2.0], [-1.0, 0.0, 1.0]],
                metadatas=[{"s": "pink", "n": None}, {"s": "x", "gone": None}, None],
                documents=["up five", None, "n2 doc"],
            ),
        ),
        (
            "add existing is a no-op",
            lambda c: c.add(
                ids=["r10", "n3"], embeddings=[[7, 7, 7], [1, 1, 1]], documents=["nope", "n3"]
            ),
        ),
        ("delete ids", lambda c: c.delete(ids=["r06", "nope"])),
        ("delete where", lambda c: c.delete(where={"s": "green"})),
        ("delete where_document", lambda c: c.delete(where_document={"$contains": "apple"})),
        ("delete where limit", lambda c: c.delete(where={"flag": True}, limit=1)),
        (
            "re-add deleted id",
            lambda c: c.add(ids=["r06"], embeddings=[[1.5, 1.5, 1.5]], documents=["back"]),
        ),
    ]
    for label, step in steps:
        got, ref = step(remote_col), step(ref_col)
        assert got == ref, label
        if label == "delete where limit":
            assert got == {"deleted": 1}
        assert remote_col.count() == ref_col.count(), label
        assert_same_get(
            remote_col.get(include=ALL_INCLUDE), ref_col.get(include=ALL_INCLUDE), label
        )
        q = {
            "query_embeddings": [[1.0, 1.0, 1.0]],
            "n_results": 5,
            "include": [*ALL_INCLUDE, "distances"],
        }
        assert_same_query(remote_col.query(**q), ref_col.query(**q), label)

    final = remote_col.get(include=ALL_INCLUDE)
    rows = {
        i: (d, m, u)
        for i, d, m, u in zip(
            final["ids"], final["documents"], final["metadatas"], final["uris"], strict=True
        )
    }
    assert final["ids"][-1] == "r06"  # delete + re-add moves it to the end
    assert "missing" not in rows and "ghost" not in final["documents"]
    assert rows["r10"][0] is None  # add of an existing id kept the old record
    assert rows["n3"][0] == "n3"
    assert rows["r01"][1] == {"n": 100, "f": 0.5, "flag": False, "tags": ["a", "b"]}
    assert rows["r01"][0] == "new one"
    assert rows["r13"][1] == {"tags": ["z"], "new": True}
    assert rows["r12"][2] == "file:///tmp/r12"
    assert rows["r05"] == ("up five", {"s": "pink"}, RECORDS[5].uri)
    assert rows["r08"][1] is None  # every key removed -> None, not {}
    assert rows["n1"][1] == {"s": "x"} and rows["n1"][0] is None
    assert rows["n2"][0] == "n2 doc"
    assert all(m is None or m.get("s") != "green" for _, m, _ in rows.values())
    assert all(d is None or "apple" not in d for d, _, _ in rows.values())
    deleted = remote_col.delete(where={"n": {"$gte": 0}})
    assert deleted == {"deleted": sum(1 for _, m, _ in rows.values() if m and "n" in m)}


def test_json_and_base64_writes_read_back_identically(pair: Pair) -> None:
    """add/update/upsert bodies with JSON float arrays and base64 strings are equivalent."""
    remote = pair.remote
    col = remote.client.create_collection("wire", embedding_function=None)
    vectors = [[0.1, -2.5, 3.25], [1e-3, 12345.678, -0.0], [1.0, 2.0, 3.0]]
    for tag, encode in (("json", list), ("b64", b64)):
        body = {
            "ids": [f"{tag}{i}" for i in range(3)],
            "embeddings": [encode(v) for v in vectors],
            "documents": [f"{tag} doc {i}" for i in range(3)],
            "metadatas": [{"enc": tag, "i": i} for i in range(3)],
            "uris": None,
        }
        resp = remote.raw("POST", remote.data_path(col, "add"), body)
        assert resp.status_code == 201, resp.text
        assert resp.json() == {}
    got = col.get(include=ALL_INCLUDE)
    assert list(got["ids"]) == ["json0", "json1", "json2", "b640", "b641", "b642"]
    rows = _rows(got["embeddings"])
    # Each value is the stored float32 (written in its shortest decimal, as Chroma writes it).
    want32 = np.asarray(vectors, dtype=np.float32)
    assert np.asarray(rows[:3], dtype=np.float32).tobytes() == want32.tobytes()
    np.testing.assert_allclose(rows[3:], rows[:3], rtol=0, atol=0)
    assert b64([1.0, 2.0, 3.0]) == "AACAPwAAAEAAAEBA"

    # update and upsert over both encodings, including an update without embeddings.
    updates = [
        ("update", "json", {"ids": ["json0"], "embeddings": [[5.0, 5.0, 5.0]], "documents": ["J"]}),
        (
            "update",
            "b64",
            {"ids": ["b640"], "embeddings": [b64([5.0, 5.0, 5.0])], "documents": ["J"]},
        ),
        (
            "update",
            "none",
            {"ids": ["json1", "b641"], "embeddings": None, "metadatas": [{"u": 1}, {"u": 1}]},
        ),
        ("upsert", "json", {"ids": ["json2", "jsonN"], "embeddings": [[0.5, 0.25, 0.125]] * 2}),
        ("upsert", "b64", {"ids": ["b642", "b64N"], "embeddings": [b64([0.5, 0.25, 0.125])] * 2}),
    ]
    for op, tag, body in updates:
        full = {"ids": [], "embeddings": None, "documents": None, "metadatas": None, "uris": None}
        full.update(body)
        resp = remote.raw("POST", remote.data_path(col, op), full)
        assert resp.status_code == 200, f"{op} {tag}: {resp.text}"
        assert resp.json() == {}
    got = col.get(include=ALL_INCLUDE)
    by = {
        i: (e, d, m)
        for i, e, d, m in zip(
            got["ids"], _rows(got["embeddings"]), got["documents"], got["metadatas"], strict=True
        )
    }
    for a, b in (("json0", "b640"), ("json1", "b641"), ("json2", "b642"), ("jsonN", "b64N")):
        assert by[a][0] == by[b][0], (a, b)
        doc_a = None if by[a][1] is None else by[a][1].replace("json", "b64")
        assert doc_a == by[b][1], (a, b)
        ma = None if by[a][2] is None else {k: v for k, v in by[a][2].items() if k != "enc"}
        mb = None if by[b][2] is None else {k: v for k, v in by[b][2].items() if k != "enc"}
        assert ma == mb, (a, b)
    assert by["json0"][0] == [5.0, 5.0, 5.0] and by["json0"][1] == "J"
    assert by["json1"][2] == {"enc": "json", "i": 1, "u": 1}
    assert by["jsonN"][0] == [0.5, 0.25, 0.125]

    # The same data through the reference client reads back the same.
    ref_col = pair.ref.create_collection("wire", embedding_function=None)
    ref_col.add(
        ids=list(got["ids"]),
        embeddings=_rows(got["embeddings"]),
        documents=list(got["documents"]),
        metadatas=list(got["metadatas"]),
    )
    assert_same_get(col.get(include=ALL_INCLUDE), ref_col.get(include=ALL_INCLUDE), "wire")

    # A client-driven add in the remote kind's own encoding agrees with the raw ones.
    col.add(ids=["client0"], embeddings=[vectors[0]])
    np.testing.assert_array_equal(
        _rows(col.get(ids=["client0"], include=["embeddings"])["embeddings"])[0], rows[0]
    )


def test_default_database_route_accepts_both_encodings(server: Server) -> None:
    """Raw add to /tenants/default_tenant/databases/default_database/... (JSON and base64)."""
    client = make_remote_client("chromadb", server, "default_tenant", "default_database")
    try:
        col = client.get_or_create_collection("wire-default", embedding_function=None)
        path = f"/tenants/default_tenant/databases/default_database/collections/{col.id}/add"
        for ids, emb in ((["j"], [[0.25, 0.5]]), (["b"], [b64([0.25, 0.5])])):
            resp = httpx.post(f"{server.url}{API}{path}", json={"ids": ids, "embeddings": emb})
            assert resp.status_code == 201, resp.text
        got = col.get(include=["embeddings", "documents", "metadatas"])
        assert list(got["ids"]) == ["j", "b"]
        np.testing.assert_array_equal(got["embeddings"], [[0.25, 0.5], [0.25, 0.5]])
        assert got["documents"] == [None, None] and got["metadatas"] == [None, None]
    finally:
        client.delete_collection("wire-default")
        client.close()


def test_persistent_client_on_server_directory_sees_remote_writes(pair: Pair) -> None:
    """huedb.PersistentClient on the server's store (and data dir) and the remote client see
    each other."""
    remote_col, _ = populate(pair, "xvis")
    server = pair.remote.server
    local = server.store.client(server.data, database=pair.remote.database)
    try:
        local_col = local.get_collection("xvis")
        assert local_col.id == remote_col.id
        assert local_col.count() == remote_col.count() == len(RECORDS)
        for include in (None, ALL_INCLUDE):
            kwargs = {} if include is None else {"include": include}
            assert_same_get(remote_col.get(**kwargs), local_col.get(**kwargs), f"get {include}")
        q = {"query_embeddings": [[1.0, 0.0, -1.0]], "n_results": 6, "where": {"opt": {"$ne": 4}}}
        assert_same_query(remote_col.query(**q), local_col.query(**q), "query")

        local_col.add(
            ids=["local1"],
            embeddings=[[0.0, 0.0, 0.25]],
            documents=["from disk"],
            metadatas=[{"w": "local"}],
        )
        local_col.update(ids=["r00"], metadatas=[{"n": -1}])
        remote_col.delete(ids=["r23"])
        assert remote_col.count() == local_col.count() == len(RECORDS)
        got = remote_col.get(where={"w": "local"}, include=ALL_INCLUDE)
        assert list(got["ids"]) == ["local1"] and got["documents"] == ["from disk"]
        assert remote_col.get(ids=["r00"])["metadatas"][0]["n"] == -1
        assert_same_get(
            remote_col.get(include=ALL_INCLUDE), local_col.get(include=ALL_INCLUDE), "after writes"
        )
        names = {c.name for c in pair.remote.client.list_collections()}
        local.create_collection("made-locally", embedding_function=None)
        assert {c.name for c in pair.remote.client.list_collections()} == names | {"made-locally"}
    finally:
        local.close()


def test_error_mapping(pair: Pair) -> None:
    """Error classes and messages as Chroma's HTTP server produces them."""
    client, errors, remote = pair.remote.client, pair.remote.errors, pair.remote
    with pytest.raises(errors.NotFoundError, match="does not exist"):
        client.get_collection("no-such-collection")
    with pytest.raises(errors.NotFoundError):
        client.delete_collection("no-such-collection")

    col = client.create_collection("errs", embedding_function=None)
    with pytest.raises(errors.ChromaError, match="already exists") as exc_info:
        client.create_collection("errs", embedding_function=None)
    assert type(exc_info.value) is errors.ChromaError  # not UniqueConstraintError
    resp = remote.raw(
        "POST",
        f"/tenants/{remote.tenant}/databases/{remote.database}/collections",
        {"name": "errs", "metadata": None, "configuration": None, "get_or_create": False},
    )
    assert resp.status_code == 409
    assert resp.json()["error"] == "ChromaError" and "already exists" in resp.json()["message"]
    assert "chroma-trace-id" in resp.headers

    col.add(ids=["a", "b"], embeddings=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    bad: list[Callable[[], Any]] = [
        lambda: col.add(ids=["c"], embeddings=[[1.0, 2.0]]),
        lambda: col.upsert(ids=["a"], embeddings=[[1.0, 2.0, 3.0, 4.0]]),
        lambda: col.update(ids=["a"], embeddings=[[1.0]]),
        lambda: col.query(query_embeddings=[[1.0, 2.0]], n_results=1),
    ]
    for call in bad:
        with pytest.raises(errors.InvalidArgumentError, match="dimension"):
            call()
    with pytest.raises(errors.DuplicateIDError):
        col.add(ids=["d", "d"], embeddings=[[1.0, 2.0, 3.0]] * 2)
    with pytest.raises(errors.InvalidArgumentError):
        col.add(ids=["n"], embeddings=[[float("nan"), 0.0, 0.0]])
    with pytest.raises(errors.InvalidArgumentError):
        col.get(where_document={"$regex": "[unclosed"})
    assert col.count() == 2  # nothing from the rejected writes landed

    base = f"/tenants/{remote.tenant}/databases/{remote.database}/collections"
    resp = remote.raw("POST", f"{base}/{uuid.uuid4()}/get", {"include": []})
    assert resp.status_code == 404 and resp.json()["error"] == "NotFoundError"
    resp = remote.raw("POST", f"{base}/not-a-uuid/get", {"include": []})
    assert resp.status_code == 400 and resp.json()["error"] == "InvalidArgumentError"
    resp = remote.raw("POST", f"{base}/{col.id}/add", {"ids": ["x"], "embeddings": [[1.0, 2.0]]})
    assert resp.status_code == 400 and "dimension" in resp.json()["message"]
    assert "chroma-trace-id" in resp.headers

    client.delete_collection("errs")
    with pytest.raises(errors.NotFoundError):
        col.add(ids=["z"], embeddings=[[1.0, 2.0, 3.0]])


def test_tenants_and_databases_isolate_collections(pair: Pair) -> None:
    """create/get/list/delete tenants and databases; clients on different ones are isolated."""
    kind, server, errors = pair.remote.kind, pair.remote.server, pair.remote.errors
    tenant = f"tenant-{pair.remote.database}"
    if kind == "chromadb":
        admin: Any = chromadb.AdminClient(
            ChromaSettings(
                chroma_api_impl="chromadb.api.fastapi.FastAPI",
                chroma_server_host="127.0.0.1",
                chroma_server_http_port=server.port,
                anonymized_telemetry=False,
            )
        )
    else:
        admin = pair.remote.client
    ref_admin = pair.ref
    for adm, errs in ((admin, errors), (ref_admin, huedb.errors)):
        adm.create_tenant(tenant)
        assert adm.get_tenant(tenant)["name"] == tenant
        with pytest.raises(errs.ChromaError, match="already exists"):
            adm.create_tenant(tenant)
        adm.create_database("db-two", tenant=tenant)
        adm.create_database("db-one", tenant=tenant)
        with pytest.raises(errs.ChromaError, match="already exists"):
            adm.create_database("db-one", tenant=tenant)
        assert [d["name"] for d in adm.list_databases(tenant=tenant)] == ["db-one", "db-two"]
        assert [d["name"] for d in adm.list_databases(tenant=tenant, limit=1, offset=1)] == [
            "db-two"
        ]
        info = adm.get_database("db-one", tenant=tenant)
        assert info["name"] == "db-one" and info["tenant"] == tenant
        with pytest.raises(errs.NotFoundError):
            adm.get_database("db-three", tenant=tenant)

    def open_(remote: bool, database: str) -> Any:
        if remote:
            return pair.remote.connect(tenant, database)
        return huedb.PersistentClient(
            path=pair.ref.get_settings().persist_directory, tenant=tenant, database=database
        )

    results: dict[bool, list[Any]] = {}
    for remote in (True, False):
        one, two = open_(remote, "db-one"), open_(remote, "db-two")
        c1 = one.create_collection("shared", embedding_function=None)
        c2 = two.create_collection("shared", embedding_function=None)
        assert c1.id != c2.id
        c1.add(ids=["x"], embeddings=[[1.0, 0.0]], documents=["in one"])
        c2.add(
            ids=["y", "z"], embeddings=[[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]], documents=["in two", "z"]
        )
        assert one.count_collections() == two.count_collections() == 1
        assert [c.name for c in one.list_collections()] == ["shared"]
        results[remote] = [
            one.get_collection("shared").get(include=ALL_INCLUDE),
            two.get_collection("shared").get(include=ALL_INCLUDE),
        ]
        assert list(results[remote][0]["ids"]) == ["x"]
        assert list(results[remote][1]["ids"]) == ["y", "z"]
        default_db = pair.remote.client if remote else pair.ref
        with pytest.raises((errors if remote else huedb.errors).NotFoundError):
            default_db.get_collection("shared")
        if not remote:
            one.close()
            two.close()
    for got, ref in zip(results[True], results[False], strict=True):
        assert_same_get(got, ref, "tenant isolation")

    for adm, remote in ((admin, True), (ref_admin, False)):
        adm.delete_database("db-two", tenant=tenant)
        assert [d["name"] for d in adm.list_databases(tenant=tenant)] == ["db-one"]
        errs = errors if remote else huedb.errors
        with pytest.raises(errs.NotFoundError):
            open_(remote, "db-two")
    with pytest.raises(errors.NotFoundError):
        pair.remote.connect("no-such-tenant", "default_database")
    with pytest.raises(errors.NotFoundError):
        pair.remote.connect(tenant, "no-such-db")


def test_version_is_what_chroma_server_reports(server: Server) -> None:
    """Chroma's Rust server answers GET /version with "1.0.0" (chroma-compat.md §1.2, §8.15)."""
    assert httpx.get(f"{server.url}{API}/version").json() == "1.0.0"
    client = make_remote_client("chromadb", server, "default_tenant", "default_database")
    try:
        assert client.get_version() == "1.0.0"
    finally:
        client.close()


def test_modify_configuration_through_remote_client(pair: Pair) -> None:
    """modify(configuration=...) works through the client and persists (chroma-compat.md §4.2).

    The chromadb client patches its cached Schema after a successful modify, so the server's
    collection JSON must carry a usable `schema` (Chroma's server always sends one).
    """
    for client in pair.both():
        col = client.create_collection("cfg", embedding_function=None)
        col.modify(configuration={"hnsw": {"ef_search": 50}})
        assert col.configuration_json["hnsw"]["ef_search"] == 50
        assert client.get_collection("cfg").configuration_json["hnsw"]["ef_search"] == 50


def test_peek_included_matches_chroma(server: Server, tmp_path: Path) -> None:
    """peek() reports included ["metadatas", "documents", "embeddings"], as chromadb's does.

    chromadb's peek passes `IncludeMetadataDocumentsEmbeddings` (chromadb/api/types.py), so
    both the HTTP client and chromadb's own PersistentClient report that order.
    """
    clients = [
        make_remote_client("chromadb", server, "default_tenant", "default_database"),
        make_remote_client("huedb", server, "default_tenant", "default_database"),
        huedb.PersistentClient(path=tmp_path / "peek"),
    ]
    try:
        for n, client in enumerate(clients):
            col = client.create_collection(f"peek-{n}", embedding_function=None)
            col.add(ids=["a"], embeddings=[[1.0, 2.0]], documents=["d"], metadatas=[{"k": 1}])
            got = list(col.peek()["included"])
            assert got == ["metadatas", "documents", "embeddings"], [
                "chromadb-http",
                "huedb-http",
                "huedb-local",
            ][n]
    finally:
        for client in clients:
            client.close()
