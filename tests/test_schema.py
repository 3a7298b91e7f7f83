"""Chroma's collection `Schema`, compared with chromadb 1.5.9 for every behaviour of issue 12.

Each behaviour runs on three targets: chromadb's own in-process client (Chroma's Rust core,
the reference), huedb in-process, and the real `chromadb.HttpClient` against `huedb run`:
- a schema's space decides the distances, and its embedding function is kept and used;
- the echoed configuration and schema are Chroma's;
- filters on a key/type whose inverted index is disabled, and document filters when
  full-text search is disabled, are refused with Chroma's errors (get, query, delete);
- a sparse-vector index is refused (not in local Chroma; huedb has no sparse index yet);
- a collection created with `embedding_function=None` reports Chroma's identity, so
  `query_texts` falls back to the default model as in Chroma.
Raw HTTP bodies are compared with the real `chroma run` server. Rules: docs/chroma-schema.md.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from chromadb.api.types import (
    BoolInvertedIndexConfig,
    DefaultEmbeddingFunction,
    FloatInvertedIndexConfig,
    FtsIndexConfig,
    IntInvertedIndexConfig,
    Schema,
    SparseVectorIndexConfig,
    StringInvertedIndexConfig,
    VectorIndexConfig,
)

import huedb
from huedb.record_batch import RecordBatch
from tests import side_by_side
from tests.cli import child_env
from tests.servers import chroma_run
from tests.side_by_side import each, fresh_name, same
from tests.test_space_precedence import CosineEmbedder

API = "/api/v2/tenants/default_tenant/databases/default_database/collections"


chroma, server, clients = side_by_side.chroma, side_by_side.server, side_by_side.clients
_each, _same = each, same


def _schema_of(col: Any) -> dict[str, Any]:
    model = col._model
    if hasattr(model, "serialized_schema"):
        return model.serialized_schema
    return model.to_json()["schema"]


# -- space and embedding function from the schema -----------------------------------------


def test_cosine_schema_gives_cosine_distances(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        schema = Schema().create_index(config=VectorIndexConfig(space="cosine"))
        col = client.create_collection(name, schema=schema, embedding_function=None)
        col.add(ids=["a", "b"], embeddings=[[3.0, 4.0], [1.0, 0.0]])
        got = col.query(query_embeddings=[[6.0, 8.0]], n_results=2, include=["distances"])
        fetched = client.get_collection(name, embedding_function=None)
        distances = [round(d, 5) for d in got["distances"][0]]
        space = fetched.configuration_json["hnsw"]["space"]
        return col.configuration_json["hnsw"]["space"], got["ids"], distances, space

    space, ids, distances, fetched_space = _same(_each(clients, make))
    assert (space, fetched_space, ids, distances[0]) == ("cosine", "cosine", [["a", "b"]], 0.0)


def test_schema_embedding_function_is_kept_and_used(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        schema = Schema().create_index(
            config=VectorIndexConfig(space="cosine", embedding_function=CosineEmbedder(3))
        )
        col = client.create_collection(name, schema=schema)
        col.add(ids=["x", "y"], documents=["ab", "abcdef"])
        again = client.get_collection(name)  # chromadb rebuilds the function from the schema
        # huedb's own client has no registry to rebuild a function from its name: the
        # collection returned by create embeds with the schema's function object.
        user = col if isinstance(client, huedb.Client) else again
        got = user.query(query_texts=["abc"], n_results=2, include=["embeddings"])
        vector = _schema_of(again)["keys"]["#embedding"]["float_list"]["vector_index"]
        return (
            col.configuration_json,
            vector["config"].get("embedding_function"),
            np.asarray(got["embeddings"][0]).shape,
        )

    config, ef, shape = _same(_each(clients, make))
    assert ef == {"type": "known", "name": "huedb_test_cosine", "config": {"dim": 3}}
    assert config["embedding_function"] == ef
    assert shape == (2, 3)


def test_schema_json_accepted_in_process(tmp_path: Path) -> None:
    client = huedb.PersistentClient(path=tmp_path / "data")
    schema = Schema().create_index(config=VectorIndexConfig(space="ip", embedding_function=None))
    col = client.create_collection("from-json", schema=schema.serialize_to_json())
    assert col.configuration_json["hnsw"]["space"] == "ip"
    with pytest.raises(huedb.errors.InvalidArgumentError, match="missing field `defaults`"):
        client.create_collection("bad-json", schema={"keys": {}})
    client.close()


SCHEMAS: dict[str, Callable[[], Schema]] = {
    "default": Schema,
    "fts-off": lambda: Schema().delete_index(config=FtsIndexConfig(), key="#document"),
    "key-off": lambda: Schema().delete_index(config=StringInvertedIndexConfig(), key="k"),
    "ints-off": lambda: Schema().delete_index(config=IntInvertedIndexConfig()),
    "mixed": lambda: (
        Schema()
        .delete_index(config=StringInvertedIndexConfig())
        .create_index(config=StringInvertedIndexConfig(), key="tag")
        .delete_index(config=FloatInvertedIndexConfig(), key="score")
        .delete_index(config=BoolInvertedIndexConfig(), key="flag")
        .create_index(config=VectorIndexConfig(space="ip"))
    ),
}


@pytest.mark.parametrize("kind", SCHEMAS)
def test_echoed_configuration_and_schema_match_chroma(clients: dict[str, Any], kind: str) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, schema=SCHEMAS[kind]())
        fetched = client.get_collection(name)
        return col.configuration_json, _schema_of(col), _schema_of(fetched)

    created, schema, fetched = _same(_each(clients, make))
    assert schema == fetched


def test_sparse_vector_index_refused_by_chroma_local_only(clients: dict[str, Any]) -> None:
    """Chroma's local server refuses a sparse index; huedb accepts it in every mode, as
    Chroma's hosted service does (tests/test_sparse_vectors.py)."""

    def make(client: Any, name: str) -> Any:
        schema = Schema().create_index(config=SparseVectorIndexConfig(), key="sparse")
        return client.create_collection(name, schema=schema).name

    outcome = _each(clients, make)
    assert outcome["chroma"][:2] == ("error", "InvalidArgumentError")
    assert "Sparse vector indexing is not enabled in local" in outcome["chroma"][2]
    assert all(isinstance(outcome[t], str) for t in ("huedb-local", "huedb-http")), outcome


def test_modify_configuration_updates_the_schema(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        col.modify(configuration={"hnsw": {"ef_search": 42, "batch_size": 50}})
        fetched = client.get_collection(name, embedding_function=None)
        return fetched.configuration_json, _schema_of(fetched)

    config, schema = _same(_each(clients, make))
    assert config["hnsw"]["ef_search"] == 42


# -- filters refused on disabled indexes -------------------------------------------------

FILTERS: list[tuple[str, dict[str, Any]]] = [
    ("where_document", {"where_document": {"$contains": "hello"}}),
    ("regex", {"where_document": {"$regex": "h.*"}}),
    ("str-eq", {"where": {"s": "x"}}),
    ("str-ne", {"where": {"s": {"$ne": "x"}}}),
    ("str-in", {"where": {"s": {"$in": ["x", "z"]}}}),
    ("str-key-int-value", {"where": {"s": 1}}),
    ("int", {"where": {"i": 1}}),
    ("int-key-float-value", {"where": {"i": {"$gt": 0.5}}}),
    ("float", {"where": {"f": {"$gte": 1.0}}}),
    ("bool", {"where": {"b": True}}),
    ("enabled-string", {"where": {"t": "y"}}),
    ("and", {"where": {"$and": [{"t": "y"}, {"i": {"$gt": 0}}]}}),
    ("or", {"where": {"$or": [{"t": "y"}, {"b": False}]}}),
    ("array-contains", {"where": {"arr": {"$contains": 1}}}),
    ("both", {"where": {"i": 1}, "where_document": {"$contains": "hello"}}),
    ("enabled-and-document", {"where": {"t": "y"}, "where_document": {"$contains": "h"}}),
    ("ids-only", {"ids": ["1"]}),
]


def _restricted_schema() -> Schema:
    return (
        Schema()
        .delete_index(config=FtsIndexConfig(), key="#document")
        .delete_index(config=StringInvertedIndexConfig(), key="s")
        .delete_index(config=IntInvertedIndexConfig())
        .delete_index(config=BoolInvertedIndexConfig(), key="b")
    )


RECORDS: dict[str, Any] = {
    "ids": ["1", "2"],
    "embeddings": [[1.0, 2.0], [2.0, 3.0]],
    "documents": ["hello", "world"],
    "metadatas": [
        {"s": "x", "i": 1, "f": 1.5, "b": True, "t": "y", "arr": [1, 2]},
        {"s": "z", "t": "w", "b": False},
    ],
}


@pytest.mark.parametrize("op", ["get", "query", "delete"])
def test_filters_on_disabled_indexes_refused_as_chroma(clients: dict[str, Any], op: str) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, schema=_restricted_schema(), embedding_function=None)
        col.add(**RECORDS)
        out = {}
        for label, kwargs in FILTERS:
            try:
                if op == "get":
                    out[label] = col.get(**kwargs)["ids"]
                elif op == "query":
                    out[label] = col.query(query_embeddings=[[1.0, 2.0]], **kwargs)["ids"]
                else:
                    col.delete(**kwargs)
                    out[label] = "deleted"
                    col.upsert(**RECORDS)
            except Exception as exc:  # noqa: BLE001 - compared with chroma's
                out[label] = (type(exc).__name__, str(exc))
        return out

    outcome = _same(_each(clients, make))
    assert outcome["int"] == (
        "InvalidArgumentError",
        "Cannot filter using metadata key 'i' with type 'Int' because indexing is disabled",
    )
    assert outcome["where_document"] == (
        "InvalidArgumentError",
        "Cannot filter using full-text search because FTS indexing is disabled",
    )
    assert not isinstance(outcome["enabled-string"], tuple)


def test_default_collections_filter_as_before(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        col.add(**RECORDS)
        return [col.get(**kwargs)["ids"] for _, kwargs in FILTERS]

    _same(_each(clients, make))


# -- keys discovered from written metadata ------------------------------------------------


def test_written_metadata_keys_appear_in_the_schema(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        col.add(ids=["1"], embeddings=[[1.0, 2.0]], metadatas=[{"topic": "a", "n": 1}])
        return sorted(_schema_of(client.get_collection(name, embedding_function=None))["keys"])

    assert _same(_each(clients, make)) == ["#document", "#embedding", "n", "topic"]


def _fetched_schema(client: Any, name: str) -> dict[str, Any]:
    """The schema get_collection echoes, checked equal to list_collections'."""
    schema = _schema_of(client.get_collection(name, embedding_function=None))
    listed = [c for c in client.list_collections() if c.name == name]
    assert [_schema_of(c) for c in listed] == [schema]
    return schema


def _try(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - compared with chroma's
        return type(exc).__name__, str(exc)


def test_written_keys_follow_chromas_rules(clients: dict[str, Any]) -> None:
    """Which writes add which (key, type), with which index settings, step by step: every
    scalar and array type; a key written with a second type; keys of deleted records stay;
    update and upsert add theirs (not a None value, not an update of a missing id); an add
    of an existing id and a refused write add nothing; Chroma's reserved `chroma:` keys are
    never added."""
    vec = [[1.0, 2.0]]

    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        steps: list[Any] = []
        writes: list[Callable[[], Any]] = [
            lambda: col.add(
                ids=["1"],
                embeddings=vec,
                metadatas=[
                    {"s": "a", "i": 1, "f": 1.5, "b": True}
                    | {"as": ["x"], "ai": [1], "af": [0.5], "ab": [False]}
                ],
            ),
            lambda: col.add(ids=["2"], embeddings=vec, metadatas=[{"s": 3, "i": 2.5}]),
            lambda: col.delete(ids=["1", "2"]),
            lambda: col.add(ids=["3"], embeddings=vec, metadatas=[{"x": 1}]),
            lambda: col.update(ids=["3"], metadatas=[{"upd": "v", "x": None, "none": None}]),
            lambda: col.update(ids=["missing"], metadatas=[{"upd_missing": "v"}]),
            lambda: col.upsert(
                ids=["3", "4"], embeddings=vec * 2, metadatas=[{"up_old": 1}, {"up_new": 1.0}]
            ),
            lambda: col.add(ids=["3"], embeddings=vec, metadatas=[{"add_existing": 1}]),
            lambda: col.add(ids=["9"], embeddings=[[1.0, 2.0, 3.0]], metadatas=[{"bad": 1}]),
            lambda: col.add(ids=["5"], embeddings=vec, metadatas=[{"chroma:x": "v", "hnsw:M": 4}]),
        ]
        for write in writes:
            outcome = _try(write)
            steps.append(
                (outcome if isinstance(outcome, tuple) else None, _fetched_schema(client, name))
            )
        return steps

    steps = _same(_each(clients, make))
    last = steps[-1][1]["keys"]
    assert sorted(last["s"]) == ["int", "string"] and sorted(last["i"]) == ["float", "int"]
    assert last["s"]["string"] == {
        "fts_index": {"enabled": False, "config": {}},
        "string_inverted_index": {"enabled": True, "config": {}},
    }
    assert {"as", "ai", "af", "ab", "upd", "up_old", "up_new", "hnsw:M"} <= set(last)
    assert not {"none", "upd_missing", "add_existing", "bad", "chroma:x"} & set(last)


def test_written_keys_copy_the_schemas_defaults(clients: dict[str, Any]) -> None:
    """A key whose type's indexes are off by default is added with them off (and its
    filters are refused); a key the user configured keeps its settings and gains the new
    type with the defaults."""

    def make(client: Any, name: str) -> Any:
        schema = (
            Schema()
            .delete_index(config=IntInvertedIndexConfig())
            .delete_index(config=StringInvertedIndexConfig(), key="s")
        )
        col = client.create_collection(name, schema=schema, embedding_function=None)
        col.add(
            ids=["1", "2"],
            embeddings=[[1.0, 2.0], [2.0, 1.0]],
            metadatas=[{"s": 1, "i": 2, "t": "x"}, {"s": "q"}],
        )
        filters = [{"i": 2}, {"s": 1}, {"s": "q"}, {"t": "x"}]
        return _fetched_schema(client, name), [
            _try(lambda w=w: col.get(where=w)["ids"]) for w in filters
        ]

    schema, filtered = _same(_each(clients, make))
    assert schema["keys"]["i"] == {"int": {"int_inverted_index": {"enabled": False, "config": {}}}}
    assert schema["keys"]["s"]["string"] == {
        "string_inverted_index": {"enabled": False, "config": {}}
    }
    assert filtered[3] == ["1"] and filtered[0][0] == "InvalidArgumentError"


def test_written_keys_of_cleaned_values_in_process(chroma: Any, tmp_path: Path) -> None:
    """NaN and infinite values are dropped (no key); an int beyond int64 is stored, and
    added, as a float. (Over HTTP chromadb's client refuses these values itself.)"""
    local = huedb.PersistentClient(path=tmp_path / "data")
    try:
        results = {}
        for target, client in (("chroma", chroma), ("huedb", local)):
            name = fresh_name()
            col = client.create_collection(name, embedding_function=None)
            metadatas = [{"nan": float("nan"), "k": "v"}, {"inf": float("inf")}, {"big": 2**70}]
            col.add(ids=["1", "2", "3"], embeddings=[[1.0, 2.0]] * 3, metadatas=metadatas)
            results[target] = _fetched_schema(client, name)["keys"]
        assert results["huedb"] == results["chroma"]
        assert sorted(results["huedb"]) == ["#document", "#embedding", "big", "k"]
        assert list(results["huedb"]["big"]) == ["float"]
    finally:
        local.close()


_WRITER = """
import sys, time
from pathlib import Path
import huedb
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = huedb.PersistentClient(path=path)
col = client.get_collection("shared", embedding_function=None)
ready = Path(path).parent / f"ready-{tag}"
ready.touch()
while len(list(Path(path).parent.glob("ready-*"))) < 2:
    time.sleep(0.01)  # a start barrier, so the two writers overlap
for i in range(n):
    value = i if i % 2 else f"v{i}"
    col.add(ids=[f"{tag}-{i}"], embeddings=[[float(i), 1.0]], metadatas=[{f"{tag}_{i}": value}])
client.close()
"""


def test_keys_written_by_two_processes_all_appear(tmp_path: Path) -> None:
    """Two processes add records with different new keys to one store at the same time:
    every key is in the schema (recorded in each write's transaction, none lost)."""
    path = tmp_path / "store" / "data"
    client = huedb.PersistentClient(path=path)
    client.create_collection("shared", embedding_function=None)
    n = 40
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), tag, str(n)],
            env=child_env(),
            stderr=subprocess.PIPE,
        )
        for tag in ("a", "b")
    ]
    for proc in writers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    keys = _schema_of(client.get_collection("shared", embedding_function=None))["keys"]
    client.close()
    expected = {f"{tag}_{i}": "int" if i % 2 else "string" for tag in "ab" for i in range(n)}
    assert {k: next(iter(v)) for k, v in keys.items() if not k.startswith("#")} == expected


def test_a_rolled_back_write_leaves_no_key_known(tmp_path: Path) -> None:
    """A write whose transaction rolls back after its keys were recorded leaves no trace:
    the next write of the same key still adds it (the per-connection cache of known keys
    rolls back with the transaction)."""
    client = huedb.PersistentClient(path=tmp_path / "data")
    col = client.create_collection("rollback", embedding_function=None)
    engine = client._server.engine
    batch = RecordBatch(
        ids=["1"], embeddings=np.array([[1.0, 2.0]], dtype=np.float32), metadatas=[{"k": 1}]
    )
    cid = engine.get_collection_by_uuid(str(col.id)).cid
    with pytest.raises(RuntimeError), engine._lock, engine._store.write() as db:
        db.insert_records(cid, batch)
        raise RuntimeError("fail after the keys were recorded")
    assert "k" not in _fetched_schema(client, "rollback")["keys"]
    col.add(ids=["2"], embeddings=[[2.0, 1.0]], metadatas=[{"k": 2}])
    assert list(_fetched_schema(client, "rollback")["keys"]["k"]) == ["int"]
    client.close()


def test_keys_added_to_a_collection_stored_without_a_schema(tmp_path: Path) -> None:
    """A collection stored before schemas were kept (configuration without `schema`) gets
    the derived schema plus the keys written since; its configuration is unchanged."""
    path = tmp_path / "data"
    client = huedb.PersistentClient(path=path)
    col = client.create_collection("old", configuration={"hnsw": {"space": "ip"}})
    expected = _fetched_schema(client, "old")
    config = col.configuration_json
    client.close()
    with sqlite3.connect(path / "huedb.sqlite3") as conn:
        conn.execute("UPDATE collections SET configuration = ?", (json.dumps(config),))
    client = huedb.PersistentClient(path=path)
    col = client.get_collection("old")
    col.add(ids=["1"], embeddings=[[1.0, 2.0]], metadatas=[{"k": "v"}])
    expected["keys"]["k"] = {
        "string": {
            "fts_index": {"enabled": False, "config": {}},
            "string_inverted_index": {"enabled": True, "config": {}},
        }
    }
    assert _fetched_schema(client, "old") == expected
    assert client.get_collection("old").configuration_json == config
    client.close()


# -- embedding_function=None --------------------------------------------------------------


def _fake_default(self: Any, input: list[str]) -> list[np.ndarray]:
    return [np.array([float(len(text)), 1.0], dtype=np.float32) for text in input]


def test_embedding_function_none_identity_and_default_fallback(
    clients: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chroma records no function and its schema carries none, so chromadb's collection
    falls back to the default model for `query_texts` (replaced here by a fake: no model
    download in tests). huedb used to report a legacy function, and the query failed."""
    monkeypatch.setattr(DefaultEmbeddingFunction, "__call__", _fake_default)

    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        col.add(ids=["a", "b"], embeddings=[[2.0, 1.0], [9.0, 1.0]])
        vector = _schema_of(col)["keys"]["#embedding"]["float_list"]["vector_index"]
        ids = None
        if not isinstance(client, huedb.Client):  # huedb's own client uses its own model
            ids = col.query(query_texts=["xy"], n_results=1)["ids"]
        return col.configuration_json["embedding_function"], vector["config"], ids

    results = _each(clients, make)
    results["huedb-local"] = (*results["huedb-local"][:2], results["chroma"][2])
    ef, vector, ids = _same(results)
    assert ef is None and "embedding_function" not in vector and ids == [["a"]]


# -- raw HTTP bodies, compared with the real `chroma run` ----------------------------------


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_run(tmp_path_factory.mktemp("chroma-run")) as url:
        yield url


# (A sparse index, refused by `chroma run`, is accepted by huedb: tests/test_sparse_vectors.py.)
RAW_BODIES: dict[str, dict[str, Any]] = {
    "conflict": {
        "configuration": {"hnsw": {"space": "ip"}},
        "schema": Schema()
        .create_index(config=VectorIndexConfig(space="cosine"))
        .serialize_to_json(),
    },
    "hnsw-and-spann": {"configuration": {"hnsw": {"space": "ip"}, "spann": {"space": "l2"}}},
    "minimal-cosine": {
        "schema": {
            "defaults": {},
            "keys": {
                "#embedding": {
                    "float_list": {"vector_index": {"enabled": True, "config": {"space": "cosine"}}}
                }
            },
        }
    },
    "disable-key": {
        "schema": {
            "defaults": {},
            "keys": {"k": {"string": {"string_inverted_index": {"enabled": False, "config": {}}}}},
        }
    },
    "unknown-value-type": {"schema": {"defaults": {"date": {}}, "keys": {}}},
    "metadata-space": {"metadata": {"hnsw:space": "ip"}},
    "metadata-and-default-config": {
        "metadata": {"hnsw:space": "cosine"},
        "configuration": {"hnsw": {"space": "l2"}},
    },
}


def _schema_with(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """The client's default schema JSON, changed by `change`."""
    schema = Schema().serialize_to_json()
    change(schema)
    return {"schema": schema}


def _enable(types: dict[str, Any], value_type: str, index: str) -> None:
    types.setdefault(value_type, {})[index] = {"enabled": True, "config": {}}


# Each breaks one rule of Chroma's server-side schema validation (its `validate_schema`):
# refused with a 400 and Chroma's message.
RAW_BODIES |= {
    "reserved-key": _schema_with(
        lambda s: _enable(s["keys"].setdefault("#invalid_key", {}), "string", "fts_index")
    ),
    "vector-index-by-default": _schema_with(
        lambda s: s["defaults"]["float_list"]["vector_index"].update(enabled=True)
    ),
    "hnsw-and-spann-by-default": _schema_with(
        lambda s: s["defaults"]["float_list"]["vector_index"]["config"].update(hnsw={}, spann={})
    ),
    "fts-by-default": _schema_with(lambda s: _enable(s["defaults"], "string", "fts_index")),
    "document-int": _schema_with(
        lambda s: _enable(s["keys"]["#document"], "int", "int_inverted_index")
    ),
    "embedding-string": _schema_with(
        lambda s: _enable(s["keys"]["#embedding"], "string", "string_inverted_index")
    ),
    "vector-index-elsewhere": _schema_with(
        lambda s: _enable(s["keys"].setdefault("vec", {}), "float_list", "vector_index")
    ),
    "vector-source-elsewhere": _schema_with(
        lambda s: s["keys"]["#embedding"]["float_list"]["vector_index"]["config"].update(
            source_key="title"
        )
    ),
    "fts-elsewhere": _schema_with(
        lambda s: _enable(s["keys"].setdefault("title", {}), "string", "fts_index")
    ),
    "document-inverted-index": _schema_with(
        lambda s: _enable(s["keys"]["#document"], "string", "string_inverted_index")
    ),
    "attached-function": _schema_with(lambda s: s.update(source_attached_function_id="f")),
    "cmek-pattern": _schema_with(lambda s: s.update(cmek={"gcp": 'projects/p/keys/"k"'})),
}


def _raw(base: str, name: str, body: dict[str, Any]) -> Any:
    resp = httpx.post(base + API, json={"name": name, **body}, timeout=30)
    data = resp.json()
    if resp.status_code != 200:
        return resp.status_code, data
    return data["configuration_json"], data["schema"], data["metadata"]


@pytest.mark.parametrize("case", RAW_BODIES)
def test_raw_http_bodies_match_chroma_run(case: str, chroma_server: str, server: Any) -> None:
    name = f"raw-{case}"
    assert _raw(server.url, name, RAW_BODIES[case]) == _raw(chroma_server, name, RAW_BODIES[case])


def test_schema_rules_hold_in_process(tmp_path: Path, server: Any) -> None:
    """The embedded client refuses the same schemas with the server's messages: one check
    for both (`collection_schema.check_schema_rules`)."""
    client = huedb.PersistentClient(path=tmp_path / "data")
    checked = 0
    try:
        for case, body in RAW_BODIES.items():
            status, answer = _raw(server.url, f"raw-{case}", body)[:2]
            if status != 400 or set(body) != {"schema"}:
                continue
            with pytest.raises(huedb.errors.InvalidArgumentError) as caught:
                client.create_collection(f"in-{case}", schema=body["schema"])
            assert str(caught.value) == answer["message"], case
            checked += 1
    finally:
        client.close()
    assert checked >= 12
