"""Sparse vectors as record metadata values, through every mode and both stores.

Modes: `local` (huedb.PersistentClient), `http` (huedb.HttpClient against `huedb run`),
`chroma_http` (the real chromadb.HttpClient against `huedb run`) and `bridge` (chromadb's
own client in-process on huedb's engine). Each writes sparse vectors with add, update and
upsert, deletes a key with None, and reads them back with get and query: indices, labels
(wire `tokens`) and float32 values bit for bit, as the client's own `SparseVector` class.
Invalid wire forms get Chroma's status (422 unparseable, 400 invalid) and change nothing; a
schema with a BM25 sparse index is accepted, echoed, and fills its key from `#document`.
One `huedb run` per store serves the module.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import huedb
from huedb.bm25 import ChromaBm25EmbeddingFunction
from huedb.errors import ChromaError, InvalidArgumentError
from tests import stores
from tests.http_checks import chroma_client as chroma_http_client
from tests.servers import RunningServer, huedb_server
from tests.stores import StoreTarget

module_store = stores.module_store
MODES = ("local", "http", "chroma_http", "bridge")
_names = itertools.count()

# Values that float32 cannot hold exactly, the extremes it can, ints, and a negative zero.
VALUES = [0.1, 1 / 3, 1e-30, 3.0e38, -2.5, 7, -0.0]
INDICES = [0, 3, 17, 4096, 65_537, 2**31, 2**32 - 1]
BM25_KEY = "bm25_sparse"
BM25_CONFIG = {
    "embedding_function": {
        "name": "chroma_bm25",
        "type": "known",
        "config": {
            "k": 1.2,
            "b": 0.75,
            "avg_doc_length": 256.0,
            "token_max_length": 40,
            "include_tokens": False,
        },
    },
    "source_key": "#document",
    "bm25": True,
}


@dataclass
class Setup:
    """One store, the module's server on it, and a directory for in-process clients."""

    store: StoreTarget
    server: RunningServer
    local_dir: Path
    http: httpx.Client


@pytest.fixture(scope="module")
def setup(module_store: StoreTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp(f"sparse-{module_store.kind}")
    with (
        huedb_server(root / "served", *module_store.cli_args()) as server,
        httpx.Client(timeout=30) as http,
    ):
        yield Setup(module_store, server, root / "local", http)


def open_client(mode: str, setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client of `mode` on the setup's store."""
    if mode == "local":
        return setup.store.client(setup.local_dir)
    if mode == "http":
        return huedb.HttpClient(host="127.0.0.1", port=setup.server.port)
    if mode == "chroma_http":
        return chroma_http_client(setup.server.port)
    from chromadb.api.shared_system_client import SharedSystemClient

    from huedb.chroma_bridge import chroma_client

    for name, value in setup.store.env().items():
        monkeypatch.setenv(name, value)
    SharedSystemClient.clear_system_cache()
    return chroma_client(setup.local_dir, allow_reset=True)


def sparse_class(mode: str) -> type:
    """The `SparseVector` class the mode's client takes and returns."""
    if mode in ("chroma_http", "bridge"):
        from chromadb.base_types import SparseVector

        return SparseVector
    return huedb.SparseVector


def f32_bits(values: list[float]) -> list[int]:
    return np.asarray(values, dtype=np.float32).view(np.uint32).tolist()


def assert_same_vector(got: Any, sent: Any, cls: type) -> None:
    """`got` is a `cls` with `sent`'s indices and labels, values equal as float32 and given
    as the shortest decimal of that float32 (what Chroma's server answers)."""
    assert type(got) is cls
    assert got.indices == list(sent.indices)
    assert got.labels == sent.labels
    assert f32_bits(got.values) == f32_bits(sent.values)
    assert got.values == [float(str(np.float32(v))) for v in sent.values]


def schema_of(collection: Any) -> dict[str, Any]:
    """The schema JSON a collection was read with (chromadb's or huedb's model)."""
    model = collection.get_model()
    return getattr(model, "serialized_schema", None) or model.schema


def new_collection(client: Any, **kwargs: Any) -> Any:
    return client.create_collection(f"sp{next(_names)}", embedding_function=None, **kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_round_trip(mode: str, setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """add/get/query, update and upsert replacing the whole vector, None deleting the key;
    the sparse key is not filterable (where on it matches as a missing key) and is echoed
    in the schema as a `sparse_vector` key."""
    client = open_client(mode, setup, monkeypatch)
    sv = sparse_class(mode)
    col = new_collection(client)
    a = sv(INDICES, VALUES, [f"t{i}" for i in range(len(INDICES))])
    b = sv([5], [0.7])
    empty = sv([], [])
    col.add(
        ids=["a", "b", "c"],
        embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        metadatas=[{"sp": a, "n": 1}, {"sp": b}, {"sp": empty, "n": 3}],
    )
    got = col.get(ids=["a", "b", "c"])["metadatas"]
    for meta, sent in zip(got, (a, b, empty), strict=True):
        assert_same_vector(meta["sp"], sent, sv)
    assert got[0]["n"] == 1
    hits = col.query(query_embeddings=[[1.0, 0.0]], n_results=3)
    assert hits["ids"][0][0] == "a"
    assert_same_vector(hits["metadatas"][0][0]["sp"], a, sv)

    replaced = sv([1, 2], [0.25, 1e-3])
    col.update(ids=["a"], metadatas=[{"sp": replaced}])
    col.upsert(ids=["b"], embeddings=[[0.0, 1.0]], metadatas=[{"sp": sv([9], [2.0], ["x"])}])
    col.update(ids=["c"], metadatas=[{"sp": None}])
    got = col.get(ids=["a", "b", "c"])["metadatas"]
    assert_same_vector(got[0]["sp"], replaced, sv)
    assert got[0]["n"] == 1
    assert_same_vector(got[1]["sp"], sv([9], [2.0], ["x"]), sv)
    assert got[2] == {"n": 3}

    assert col.get(where={"sp": {"$eq": 1}})["ids"] == []
    assert sorted(col.get(where={"sp": {"$ne": 1}})["ids"]) == ["a", "b", "c"]
    schema = schema_of(client.get_collection(col.name))
    assert schema["keys"]["sp"]["sparse_vector"] == {
        "sparse_vector_index": {
            "enabled": False,
            "config": {"embedding_function": {"type": "unknown"}, "bm25": False},
        }
    }


def test_chroma_client_wire_form(setup: Setup) -> None:
    """What the real chromadb client sends is stored and answered unchanged: `#type`,
    indices, shortest float32 values and `tokens` (null without labels)."""
    from chromadb.base_types import SparseVector

    col = new_collection(chroma_http_client(setup.server.port))
    col.add(
        ids=["x", "y"],
        embeddings=[[1.0], [2.0]],
        metadatas=[
            {"sp": SparseVector([1, 7], [0.1, 2.0], ["a", "b"])},
            {"sp": SparseVector([], [])},
        ],
    )
    body = raw(setup, col.id, "get", {"ids": ["x", "y"], "include": ["metadatas"]}).json()
    assert body["metadatas"] == [
        {
            "sp": {
                "#type": "sparse_vector",
                "indices": [1, 7],
                "values": [0.1, 2.0],
                "tokens": ["a", "b"],
            }
        },
        {"sp": {"#type": "sparse_vector", "indices": [], "values": [], "tokens": None}},
    ]


def raw(setup: Setup, collection_id: Any, op: str, body: dict[str, Any]) -> httpx.Response:
    """POST `body` (as JSON) to a record route of the collection."""
    url = (
        f"{setup.server.url}/api/v2/tenants/default_tenant/databases/default_database/"
        f"collections/{collection_id}/{op}"
    )
    return setup.http.post(url, content=json.dumps(body))


def _sv(**fields: Any) -> dict[str, Any]:
    return {"#type": "sparse_vector", **fields}


# (metadata value, status): 422 when Chroma's server cannot parse it, 400 when it is invalid.
INVALID_WIRE = [
    (_sv(indices=[1], values=[1.0], **{"#type": "dense"}), 422),
    ({"#type": "sparse_vector", "indices": [1]}, 422),
    (_sv(indices=[True], values=[1.0]), 422),
    (_sv(indices=[-1], values=[1.0]), 422),
    (_sv(indices=[2**32], values=[1.0]), 422),
    (_sv(indices=[1.5], values=[1.0]), 422),
    (_sv(indices=[1], values=["1"]), 422),
    (_sv(indices=[1], values=[False]), 422),
    (_sv(indices=[1], values=[1.0], tokens=[1]), 422),
    (_sv(indices="1", values=[1.0]), 422),
    ({"a": 1}, 422),
    (_sv(indices=[1, 2], values=[1.0]), 400),
    (_sv(indices=[2, 1], values=[1.0, 1.0]), 400),
    (_sv(indices=[1, 1], values=[1.0, 1.0]), 400),
    (_sv(indices=[1], values=[1e39]), 400),
    (_sv(indices=[1], values=[1.0], tokens=["a", "b"]), 400),
]


def test_invalid_wire_forms(setup: Setup) -> None:
    """Each invalid sparse value, in the second record of an add and in an update, gets
    Chroma's status and error class and leaves the collection unchanged; the old form
    without `#type` is a sparse vector."""
    client = huedb.HttpClient(host="127.0.0.1", port=setup.server.port)
    col = new_collection(client)
    col.add(ids=["keep"], embeddings=[[1.0]], metadatas=[{"sp": huedb.SparseVector([1], [1.0])}])
    before = raw(setup, col.id, "get", {"include": ["metadatas"]}).json()
    for value, status in INVALID_WIRE:
        for op, body in (
            (
                "add",
                {
                    "ids": ["ok", "new"],
                    "embeddings": [[1.0], [2.0]],
                    "metadatas": [{"n": 1}, {"sp": value}],
                },
            ),
            ("update", {"ids": ["new", "keep"], "metadatas": [{"n": 1}, {"sp": value}]}),
        ):
            resp = raw(setup, col.id, op, body)
            assert resp.status_code == status, (value, op, resp.text)
            error = resp.json()
            if status == 400:
                assert error == {
                    "error": "InvalidArgumentError",
                    "message": "Validation error: metadatas: Invalid metadata at index 1",
                }
            else:
                assert error["error"] == "ChromaError"
                assert "metadatas[1].sp" in error["message"], error
    assert raw(setup, col.id, "get", {"include": ["metadatas"]}).json() == before
    resp = raw(
        setup,
        col.id,
        "update",
        {"ids": ["keep"], "metadatas": [{"sp": {"indices": [4], "values": [0.5]}}]},
    )
    assert resp.status_code == 200, resp.text
    assert col.get(ids=["keep"])["metadatas"] == [{"sp": huedb.SparseVector([4], [0.5])}]


@pytest.mark.parametrize("mode", ["local", "http"])
def test_invalid_client_values(mode: str, setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """huedb's clients: a malformed `#type` dict is chromadb's ValueError (in add.); a
    SparseVector the client accepts but Chroma's server cannot store (index beyond u32,
    value not finite in float32) is InvalidArgumentError; nothing is written. A wellformed
    `#type` dict is taken as the vector."""
    col = new_collection(open_client(mode, setup, monkeypatch))
    with pytest.raises(ValueError, match="sorted in strictly ascending order.* in add"):
        col.add(
            ids=["x"], embeddings=[[1.0]], metadatas=[{"sp": _sv(indices=[2, 1], values=[1, 1])}]
        )
    # In-process these are the server-side check's 400; over HTTP the index and the NaN
    # (JSON null) cannot be parsed (422 ChromaError), the overflow is the same 400.
    unparsed = (ChromaError, "untagged enum MetadataValue") if mode == "http" else None
    for bad, refused in (
        (huedb.SparseVector([2**32], [1.0]), unparsed),
        (huedb.SparseVector([1], [float("nan")]), unparsed),
        (huedb.SparseVector([1], [1e39]), None),
    ):
        error, message = refused or (InvalidArgumentError, "Invalid metadata at index 0")
        with pytest.raises(error, match=message) as caught:
            col.add(ids=["x"], embeddings=[[1.0]], metadatas=[{"sp": bad}])
        assert type(caught.value) is error
    assert col.count() == 0
    col.add(
        ids=["x"],
        embeddings=[[1.0]],
        metadatas=[{"sp": _sv(indices=[3], values=[0.5], tokens=["t"])}],
    )
    assert col.get()["metadatas"] == [{"sp": huedb.SparseVector([3], [0.5], ["t"])}]


def bm25_schema(mode: str) -> Any:
    """A schema with a BM25 sparse index on `bm25_sparse` filled from `#document`: the
    chromadb `Schema` for chromadb's clients, the JSON it sends for huedb's."""
    if mode in ("chroma_http", "bridge"):
        from chromadb import Schema, SparseVectorIndexConfig
        from chromadb.utils.embedding_functions import ChromaBm25EmbeddingFunction as Bm25

        index = SparseVectorIndexConfig(
            embedding_function=Bm25(), source_key="#document", bm25=True
        )
        return Schema().create_index(config=index, key=BM25_KEY)
    return {
        "defaults": {},
        "keys": {
            BM25_KEY: {
                "sparse_vector": {"sparse_vector_index": {"enabled": True, "config": BM25_CONFIG}}
            }
        },
    }


@pytest.mark.parametrize("mode", MODES)
def test_bm25_schema(mode: str, setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collection with a BM25 sparse index is created, persisted and echoed (a new client
    reads it back), and add/update/upsert fill `bm25_sparse` with exactly huedb's BM25
    vectors of the documents; a vector given explicitly is kept."""
    client = open_client(mode, setup, monkeypatch)
    sv = sparse_class(mode)
    col = new_collection(client, schema=bm25_schema(mode))
    docs = ["the quick brown fox jumps over the lazy dog", "Usain Bolt's top speed", "fox animal"]
    given = sv([11], [0.5])
    col.add(
        ids=["a", "b", "c"],
        embeddings=[[1.0], [2.0], [3.0]],
        documents=docs,
        metadatas=[{"n": 1}, None, {BM25_KEY: given}],
    )
    col.update(ids=["b"], embeddings=[[2.0]], documents=["running runs ran foxes Foxes"])
    col.upsert(ids=["d"], embeddings=[[4.0]], documents=["space-time continuum"])
    bm25 = ChromaBm25EmbeddingFunction()
    expected = (
        bm25([docs[0], "running runs ran foxes Foxes"]) + [given] + bm25(["space-time continuum"])
    )
    got = col.get(ids=["a", "b", "c", "d"])["metadatas"]
    for meta, want in zip(got, expected, strict=True):
        assert_same_vector(meta[BM25_KEY], sv(want.indices, want.values, want.labels), sv)
    assert got[0]["n"] == 1

    schema = schema_of(open_client(mode, setup, monkeypatch).get_collection(col.name))
    index = schema["keys"][BM25_KEY]["sparse_vector"]["sparse_vector_index"]
    assert index == {"enabled": True, "config": BM25_CONFIG}


SCHEMA_ERRORS = [
    (
        {
            "defaults": {"sparse_vector": {"sparse_vector_index": {"enabled": True, "config": {}}}},
            "keys": {},
        },
        "Sparse vector index cannot be enabled by default",
    ),
    (
        {
            "defaults": {},
            "keys": {
                k: {"sparse_vector": {"sparse_vector_index": {"enabled": True, "config": {}}}}
                for k in ("s2", "s1")
            },
        },
        'At most one sparse vector index is allowed for the collection: ["s1", "s2"]',
    ),
    (
        {
            "defaults": {},
            "keys": {
                "s": {
                    "sparse_vector": {
                        "sparse_vector_index": {
                            "enabled": True,
                            "config": {"source_key": "#document"},
                        }
                    }
                }
            },
        },
        "If source_key is provided then embedding_function must also be provided",
    ),
    (
        {
            "defaults": {},
            "keys": {
                "s": {
                    "sparse_vector": {
                        "sparse_vector_index": {
                            "enabled": True,
                            "config": {**BM25_CONFIG, "source_key": "#meta"},
                        }
                    }
                }
            },
        },
        "source_key cannot begin with '#'",
    ),
]


@pytest.mark.parametrize("mode", ["local", "http"])
def test_schema_errors(mode: str, setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma's schema rules for sparse indexes, with its 400 messages."""
    client = open_client(mode, setup, monkeypatch)
    for schema, message in SCHEMA_ERRORS:
        with pytest.raises(InvalidArgumentError) as caught:
            new_collection(client, schema=schema)
        assert str(caught.value).startswith("Validation error: schema: " + message.split(":")[0])
        assert message in str(caught.value)


# -- properties against a reference model ---------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=3)
_json_scalars |= st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_wire_index = st.integers(-2, 2**32 + 1) | st.sampled_from([True, 1.0, "1", None])
_wire_value = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**40), 2**40)
_wire_value |= st.sampled_from([False, "1", None, 3.5e38, -1e39])
_wire_sparse = st.fixed_dictionaries(
    {},
    optional={
        "#type": st.sampled_from(["sparse_vector", "dense", 1]),
        "indices": st.lists(_wire_index, max_size=4) | _json,
        "values": st.lists(_wire_value, max_size=4) | _json,
        "tokens": st.none() | st.lists(st.text(max_size=2) | st.integers(), max_size=4),
        "other": _json,
    },
)


def expected_answer(value: dict[str, Any]) -> int | dict[str, Any]:
    """The reference: Chroma's parse (422), then validation (400), then the answered form."""
    indices, values, tokens = value.get("indices"), value.get("values"), value.get("tokens")
    parsed = (
        value.get("#type", "sparse_vector") == "sparse_vector"
        and isinstance(indices, list)
        and all(type(i) is int and 0 <= i < 2**32 for i in indices)
        and isinstance(values, list)
        and all(type(v) in (int, float) for v in values)
        and (tokens is None or (isinstance(tokens, list) and all(type(t) is str for t in tokens)))
    )
    if not parsed:
        return 422
    with np.errstate(over="ignore"):
        f32 = np.asarray(values, dtype=np.float32)
    if (
        len(values) != len(indices)
        or (tokens is not None and len(tokens) != len(indices))
        or any(b <= a for a, b in zip(indices, indices[1:], strict=False))
        or not np.isfinite(f32).all()
    ):
        return 400
    shortest = [float(str(v)) for v in f32]
    return {"#type": "sparse_vector", "indices": indices, "values": shortest, "tokens": tokens}


def test_wire_values_against_reference(setup: Setup) -> None:
    """Arbitrary sparse-like objects posted as metadata values: the status (and, when stored,
    the answered value) is the reference's; never a 500."""
    col = new_collection(huedb.HttpClient(host="127.0.0.1", port=setup.server.port))
    ids = itertools.count()

    @settings(max_examples=60, deadline=None)
    @given(value=_wire_sparse)
    @example(
        value={"#type": "sparse_vector", "indices": [1, 5], "values": [0.1, 2], "tokens": None}
    )
    @example(value={"indices": [2**32 - 1], "values": [1e-40], "tokens": ["t"], "other": 1})
    def check(value: dict[str, Any]) -> None:
        record = f"r{next(ids)}"
        body = {"ids": [record], "embeddings": [[1.0]], "metadatas": [{"sp": value}]}
        resp = raw(setup, col.id, "upsert", body)
        want = expected_answer(value)
        if isinstance(want, int):
            assert resp.status_code == want, (value, resp.text)
            return
        assert resp.status_code == 200, (value, resp.text)
        got = raw(setup, col.id, "get", {"ids": [record], "include": ["metadatas"]}).json()
        assert got["metadatas"] == [{"sp": want}]

    check()


def _sparse_of(pairs: list[tuple[int, float]]) -> huedb.SparseVector:
    ordered = sorted(pairs)
    return huedb.SparseVector([i for i, _ in ordered], [v for _, v in ordered])


_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
_vectors = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), _f32), max_size=5, unique_by=lambda pair: pair[0]
).map(_sparse_of)
_writes = st.lists(
    st.tuples(
        st.sampled_from(["add", "update", "upsert"]),
        st.sampled_from(["a", "b"]),
        st.dictionaries(st.sampled_from(["s1", "s2", "n"]), st.none() | _vectors, min_size=1),
    ),
    min_size=1,
    max_size=6,
)


def test_writes_against_reference(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Random add/update/upsert sequences of sparse (and None) values in-process on SQLite:
    every get equals a dict model where update/upsert replace a key's whole vector and None
    deletes it (add of an existing id changes nothing)."""
    client = huedb.PersistentClient(path=tmp_path_factory.mktemp("sparse-model"))

    @settings(max_examples=40, deadline=None)
    @given(writes=_writes)
    @example(
        writes=[("add", "a", {"s1": huedb.SparseVector([1], [0.1])}), ("update", "a", {"s1": None})]
    )
    def check(writes: list[tuple[str, str, dict[str, Any]]]) -> None:
        col = new_collection(client)
        model: dict[str, dict[str, Any]] = {}
        for op, record, meta in writes:
            if op == "add" and any(v is None for v in meta.values()):
                continue  # None values are refused in add
            exists = record in model
            if op == "update" and not exists:
                continue
            if op == "add" and exists:
                continue
            getattr(col, op)(ids=[record], embeddings=[[1.0]], metadatas=[meta])
            merged = {**model.get(record, {}), **meta}
            model[record] = {k: v for k, v in merged.items() if v is not None}
        got = col.get(include=["metadatas"])
        stored = dict(zip(got["ids"], got["metadatas"], strict=True))
        for record, meta in model.items():
            want = {
                k: huedb.SparseVector(v.indices, [float(str(np.float32(x))) for x in v.values])
                for k, v in meta.items()
            }
            assert (stored[record] or {}) == want
        client.delete_collection(col.name)

    check()


@pytest.mark.parametrize("mode", ["local", "http"])
def test_parquet_export_import(
    mode: str, setup: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`huedb export`/`import` (in-process: stored form; over HTTP: read as SparseVector)
    carry sparse vectors unchanged."""
    from huedb.ops.parquet import export_collection, import_collection

    client = open_client(mode, setup, monkeypatch)
    col = new_collection(client)
    sent = [huedb.SparseVector([1, 9], [0.1, 1e-30], ["a", "b"]), huedb.SparseVector([], [])]
    col.add(ids=["a", "b"], embeddings=[[1.0], [2.0]], metadatas=[{"sp": v} for v in sent])
    export_collection(col, tmp_path / "out.parquet", show_progress=False)
    name = f"sp{next(_names)}"
    import_collection(client, tmp_path / "out.parquet", collection_name=name, show_progress=False)
    got = client.get_collection(name).get(ids=["a", "b"])["metadatas"]
    for meta, want in zip(got, sent, strict=True):
        assert_same_vector(meta["sp"], want, huedb.SparseVector)


@pytest.mark.parametrize("mode", ["local", "http"])
def test_parquet_round_trip_keeps_records_without_bm25_vectors(
    mode: str, setup: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A huedb file holds each record as stored: its import writes no BM25 vector the record
    did not have (one removed with `{"bm25": None}`), so the imported collection's records
    and BM25 scores equal the exported one's. A record written after the import still gets
    its vector filled from its document."""
    from huedb.ops.parquet import export_collection, import_collection

    client = open_client(mode, setup, monkeypatch)
    function = ChromaBm25EmbeddingFunction(include_tokens=True)
    schema = huedb.Schema().create_index(
        config=huedb.SparseVectorIndexConfig(
            embedding_function=function, source_key="#document", bm25=True
        ),
        key="bm25",
    )
    col = client.create_collection(f"bm{next(_names)}", schema=schema)
    docs = ["the quick brown fox", "lazy dog sleeps", "fox and dog", "stock markets"]
    col.add(
        ids=[f"i{n}" for n in range(4)],
        embeddings=[[n + 1.0, 1.0] for n in range(4)],
        documents=docs,
        metadatas=[{"g": n} for n in range(4)],
    )
    col.update(ids=["i1"], metadatas=[{"bm25": None}])
    search = huedb.Search().rank(huedb.Knn(query="fox dog", key="bm25")).select(huedb.K.SCORE)
    export_collection(col, tmp_path / "out.parquet", show_progress=False)
    name = f"bm{next(_names)}"
    import_collection(client, tmp_path / "out.parquet", collection_name=name, show_progress=False)
    copy = client.get_collection(name)
    assert copy.get(include=["metadatas"]) == col.get(include=["metadatas"])
    assert copy.search(search)["scores"] == col.search(search)["scores"]
    copy.add(ids=["new"], embeddings=[[9.0, 1.0]], documents=["fox"])
    assert copy.get(ids=["new"], include=["metadatas"])["metadatas"][0]["bm25"] is not None


def test_parquet_import_into_a_bm25_collection_fills_missing_vectors(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A huedb file of a collection without sparse indexes, imported into an existing one
    with a BM25 index: its records get their vectors, as a client's upsert would give them
    (written as stored, they had none)."""
    from huedb.ops.parquet import export_collection, import_collection

    client = open_client("local", setup, monkeypatch)
    plain = client.create_collection(f"pl{next(_names)}")
    plain.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=["fox", "dog"])
    export_collection(plain, tmp_path / "plain.parquet", show_progress=False)
    schema = huedb.Schema().create_index(
        config=huedb.SparseVectorIndexConfig(
            embedding_function=ChromaBm25EmbeddingFunction(), source_key="#document"
        ),
        key="bm25",
    )
    name = f"bm{next(_names)}"
    client.create_collection(name, schema=schema)
    import_collection(client, tmp_path / "plain.parquet", collection_name=name, show_progress=False)
    got = client.get_collection(name).get(include=["metadatas"])["metadatas"]
    assert all(m and m.get("bm25") is not None for m in got), got
