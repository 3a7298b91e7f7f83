"""A schema's shape checked as Chroma's serde checks it, and sparse embedding functions
registered by the user (docs/chroma-schema.md, section 2; docs/hybrid-search.md, "Sparse
indexes in the schema").

- Raw HTTP bodies are compared with the real `chroma run` (status and answer, serde's
  ` at line L column C` left out): a sparse index config whose `source_key` is not a string
  was a 500 (`AttributeError`), bodies Chroma refuses with 422 were stored or refused with
  400.
- The same schemas in-process are compared with chromadb's `PersistentClient`.
- A sparse function registered with `register_sparse_embedding_function` (huedb's, or
  chromadb's when the program loaded chromadb) is applied by huedb's in-process client where
  chromadb's client applies it: chromadb's `HttpClient` against `huedb run` (chromadb's
  in-process client and `chroma run` refuse an enabled sparse index). One that cannot be
  rebuilt gets chromadb's warning and no vectors, as there.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
import httpx
import pytest
from chromadb.api.types import SparseEmbeddingFunction as ChromaSparseEmbeddingFunction
from chromadb.config import Settings as ChromaSettings
from chromadb.utils import embedding_functions as chroma_efs

import huedb
from huedb.utils import embedding_functions as huedb_efs
from tests import side_by_side

servers = side_by_side.servers

API = "/api/v2/tenants/default_tenant/databases/default_database/collections"
BM25 = {"type": "known", "name": "chroma_bm25", "config": {}}
GCP = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
_names = itertools.count()


def _sparse(config: Any, enabled: Any = True) -> dict[str, Any]:
    return _sparse_index({"enabled": enabled, "config": config})


def _sparse_index(index: Any) -> dict[str, Any]:
    return {"defaults": {}, "keys": {"sp": {"sparse_vector": {"sparse_vector_index": index}}}}


def _embedding_index(index: Any) -> dict[str, Any]:
    return {"defaults": {}, "keys": {"#embedding": {"float_list": {"vector_index": index}}}}


# Schemas Chroma's serde refuses (422, or 400 `expected value` for the enums).
REFUSED: dict[str, Any] = {
    "source_key_int_with_function": _sparse({"embedding_function": BM25, "source_key": 5}),
    "source_key_int": _sparse({"source_key": 5}),
    "source_key_int_disabled": _sparse({"source_key": 5}, enabled=False),
    "source_key_list": _sparse({"source_key": [1]}, enabled=False),
    "no_defaults": {"keys": {"sp": {"sparse_vector": {"sparse_vector_index": {"enabled": True}}}}},
    "no_keys": {"defaults": {}},
    "neither": {},
    "defaults_null": {"defaults": None, "keys": {}},
    "keys_null": {"defaults": {}, "keys": None},
    "keys_list": {"defaults": {}, "keys": []},
    "keys_and_key_overrides": {"defaults": {}, "keys": {}, "key_overrides": {}},
    "key_overrides_path": {
        "defaults": {},
        "key_overrides": {
            "sp": {
                "sparse_vector": {"sparse_vector_index": {"enabled": False, "config": {"bm25": 1}}}
            }
        },
    },
    "aliases_in_path": {
        "defaults": {},
        "keys": {
            "sp": {
                "#sparse_vector": {
                    "$sparse_vector_index": {"enabled": False, "config": {"bm25": 1}}
                }
            }
        },
    },
    "defaults_path": {
        "defaults": {
            "sparse_vector": {"sparse_vector_index": {"enabled": False, "config": {"bm25": 1}}}
        },
        "keys": {},
    },
    "key_null": {"defaults": {}, "keys": {"sp": None}},
    "value_type_twice": {"defaults": {"string": None, "#string": {}}, "keys": {}},
    "index_twice": {
        "defaults": {"string": {"fts_index": None, "$fts_index": {"enabled": False, "config": {}}}},
        "keys": {},
    },
    "value_type_not_object": {"defaults": {"string": 5}, "keys": {}},
    "no_enabled": _sparse_index({"config": {}}),
    "no_enabled_no_config": _sparse_index({}),
    "enabled_str": _sparse({}, enabled="yes"),
    "enabled_null": _sparse({}, enabled=None),
    "config_missing": _sparse_index({"enabled": True}),
    "config_missing_disabled": _sparse_index({"enabled": False}),
    "config_null": _sparse_index({"enabled": False, "config": None}),
    "config_error_before_missing_enabled": _sparse_index({"config": {"bm25": "x"}}),
    "enabled_error_before_config_error": _sparse_index({"enabled": 1, "config": {"bm25": "x"}}),
    "config_error_before_enabled_error": _sparse_index({"config": {"bm25": "x"}, "enabled": 1}),
    "keys_error_before_missing_defaults": {"keys": {"sp": 5}},
    "bm25_str": _sparse({"bm25": "yes"}),
    "bm25_int": _sparse({"bm25": 1}),
    "algorithm_unknown": _sparse({"algorithm": "nope"}),
    "algorithm_empty": _sparse({"algorithm": ""}, enabled=False),
    "algorithm_object_unknown": _sparse({"algorithm": {"nope": None}}, enabled=False),
    "algorithm_object_value": _sparse({"algorithm": {"wand": 1}}, enabled=False),
    "algorithm_null": _sparse({"algorithm": None}, enabled=False),
    "algorithm_int": _sparse({"algorithm": 1}, enabled=False),
    "algorithm_list": _sparse({"algorithm": ["wand"]}, enabled=False),
    "algorithm_object_empty": _sparse({"algorithm": {}}, enabled=False),
    "algorithm_object_two": _sparse(
        {"algorithm": {"wand": None, "max_score": None}}, enabled=False
    ),
    "sparse_unknown_field": _sparse({"foo": 1}),
    "sparse_function_not_object": _sparse({"embedding_function": 5}, enabled=False),
    "sparse_function_bad_type": _sparse({"embedding_function": {"type": "zz"}}, enabled=False),
    "sparse_function_no_name": _sparse(
        {"embedding_function": {"type": "known", "config": {}}}, enabled=False
    ),
    "fts_config_field": {
        "defaults": {},
        "keys": {"#document": {"string": {"fts_index": {"enabled": True, "config": {"x": 1}}}}},
    },
    "fts_config_missing": {
        "defaults": {},
        "keys": {"#document": {"string": {"fts_index": {"enabled": True}}}},
    },
    "int_config_field": {
        "defaults": {"int": {"int_inverted_index": {"enabled": True, "config": {"a": 1}}}},
        "keys": {},
    },
    "vector_config_missing": _embedding_index({"enabled": True}),
    "vector_config_null": _embedding_index({"enabled": True, "config": None}),
    "vector_source_key_int": _embedding_index({"enabled": True, "config": {"source_key": 5}}),
    "vector_space_unknown": _embedding_index({"enabled": True, "config": {"space": "x"}}),
    "vector_unknown_field": _embedding_index({"enabled": True, "config": {"zz": 1}}),
    "vector_hnsw_negative": _embedding_index(
        {"enabled": True, "config": {"hnsw": {"ef_search": -1}}}
    ),
    "vector_hnsw_not_object": _embedding_index({"enabled": True, "config": {"hnsw": 5}}),
    "vector_hnsw_unknown_field": _embedding_index({"enabled": True, "config": {"hnsw": {"zz": 1}}}),
    "vector_function_no_config": _embedding_index(
        {"enabled": True, "config": {"embedding_function": {"type": "known", "name": "x"}}}
    ),
    "cmek_name_only": {"defaults": {}, "keys": {}, "cmek": "gcp"},
    "cmek_unknown_name": {"defaults": {}, "keys": {}, "cmek": "aws"},
    "cmek_unknown_variant": {"defaults": {}, "keys": {}, "cmek": {"zzz": 1}},
    "cmek_resource_int": {"defaults": {}, "keys": {}, "cmek": {"gcp": 5}},
    "cmek_int": {"defaults": {}, "keys": {}, "cmek": 5},
    "cmek_empty": {"defaults": {}, "keys": {}, "cmek": {}},
    "cmek_two": {"defaults": {}, "keys": {}, "cmek": {"gcp": GCP, "x": 1}},
    "source_attached_function_id_int": {
        "defaults": {},
        "keys": {},
        "source_attached_function_id": 5,
    },
}

# Schemas Chroma's serde reads (the echoes compared).
ACCEPTED: dict[str, Any] = {
    "algorithm_wand": _sparse({"algorithm": "wand"}, enabled=False),
    "algorithm_max_score": _sparse({"algorithm": "max_score"}, enabled=False),
    "algorithm_object_wand": _sparse({"algorithm": {"wand": None}}, enabled=False),
    "algorithm_object_max_score": _sparse({"algorithm": {"max_score": None}}, enabled=False),
    "nulls": _sparse({"source_key": None, "bm25": None, "embedding_function": None}, enabled=False),
    "sparse_disabled_with_function": _sparse(
        {"embedding_function": BM25, "source_key": "title", "bm25": True}, enabled=False
    ),
    "index_extra_field": _sparse_index({"enabled": False, "config": {}, "zzz": 1}),
    "value_type_null": {"defaults": {}, "keys": {"sp": {"sparse_vector": None}}},
    "index_null": {
        "defaults": {},
        "keys": {"sp": {"sparse_vector": {"sparse_vector_index": None}}},
    },
    "unknown_schema_field": {"defaults": {}, "keys": {}, "zzz": 5},
    "cmek_null": {"defaults": {}, "keys": {}, "cmek": None},
    "cmek": {"defaults": {}, "keys": {}, "cmek": {"gcp": GCP}},
}

# The 400 `expected value` refusals: in-process chromadb says serde_json's bare `expected
# value`, huedb the HTTP message (docs/chroma-schema.md), so not compared in-process.
EXPECTED_VALUE = {
    "algorithm_null",
    "algorithm_int",
    "algorithm_list",
    "algorithm_object_empty",
    "algorithm_object_two",
    "cmek_int",
    "cmek_empty",
    "cmek_two",
}


def _strip(text: str) -> str:
    return re.sub(r" at line \d+ column \d+", "", text)


def _create(base: str, schema: Any) -> tuple[int, Any]:
    """POST a create with `schema` on a fresh connection: (status, answer) with the
    schema echo for a created collection (its id and name left out)."""
    name = f"sparse-fix-{next(_names):04d}"
    with httpx.Client(base_url=base, timeout=60) as http:
        response = http.post(API, json={"name": name, "schema": schema})
        if response.status_code >= 300:
            return response.status_code, _strip(response.text)
        http.delete(f"{API}/{name}")
        return response.status_code, response.json()["schema"]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_schema_bodies_match_chroma_run(servers: dict[str, str], case: str) -> None:
    ours, theirs = (
        _create(servers["huedb"], REFUSED[case]),
        _create(servers["chroma"], REFUSED[case]),
    )
    assert ours == theirs
    expected = 400 if case in EXPECTED_VALUE else 422
    assert theirs[0] == expected, theirs


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_accepted_schema_bodies_match_chroma_run(servers: dict[str, str], case: str) -> None:
    ours, theirs = (
        _create(servers["huedb"], ACCEPTED[case]),
        _create(servers["chroma"], ACCEPTED[case]),
    )
    assert theirs[0] == 200, theirs
    assert ours == theirs


def test_source_key_not_a_string_is_422_and_keeps_the_connection(servers: dict[str, str]) -> None:
    """The reviewer's body: a sparse index with Chroma's BM25 function and `source_key` 5
    was a 500 `AttributeError`; now Chroma's 422, and the client's connection serves on."""
    body = {"name": "sparse-srckey", "schema": REFUSED["source_key_int_with_function"]}
    with httpx.Client(base_url=servers["huedb"], timeout=60) as http:
        response = http.post(API, json=body)
        assert response.status_code == 422
        assert response.json() == {
            "error": "ChromaError",
            "message": "Failed to deserialize the JSON body into the target type: "
            "schema.keys.sp.sparse_vector.sparse_vector_index.config.source_key: "
            "invalid type: integer `5`, expected a string",
        }
        assert http.get("/api/v2/heartbeat").status_code == 200
        assert http.get(f"{API}/sparse-srckey").status_code == 404


# -- in-process ----------------------------------------------------------------------------


class _JsonSchema:
    """A schema object serializing to the given JSON (chromadb's clients take the schema
    as `serialize_to_json()`; its in-process client takes no dict)."""

    def __init__(self, json_data: Any) -> None:
        self.json_data = json_data

    def serialize_to_json(self) -> Any:
        return self.json_data


@pytest.fixture(scope="module")
def local_clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """chromadb's and huedb's in-process clients, each persistent on its own directory."""
    chroma = chromadb.PersistentClient(
        path=str(tmp_path_factory.mktemp("chroma-local")),
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    ours = huedb.PersistentClient(path=tmp_path_factory.mktemp("huedb-local"))
    yield {"chroma": chroma, "huedb": ours}
    ours.close()


def _local_outcome(client: Any, schema: Any) -> Any:
    name = f"sparse-fix-{next(_names):04d}"
    try:
        client.create_collection(name, schema=schema, embedding_function=None)
    except Exception as exc:  # noqa: BLE001 - compared with chromadb's
        return type(exc).__name__, _strip(str(exc))
    client.delete_collection(name)
    return "created"


@pytest.mark.parametrize("case", sorted(set(REFUSED) - EXPECTED_VALUE))
def test_refused_schema_json_in_process_as_chromadb(
    local_clients: dict[str, Any], case: str
) -> None:
    schema = _JsonSchema(REFUSED[case])
    theirs = _local_outcome(local_clients["chroma"], schema)
    assert theirs[0] == "InvalidArgumentError", theirs
    assert _local_outcome(local_clients["huedb"], schema) == theirs


def test_source_key_not_a_string_as_json_in_process(tmp_path: Path) -> None:
    """The reviewer's in-process call (huedb takes the JSON itself too): Chroma's
    InvalidArgumentError, not an AttributeError."""
    client = huedb.PersistentClient(path=tmp_path / "data")
    with pytest.raises(huedb.errors.InvalidArgumentError) as raised:
        client.create_collection("srckey", schema=REFUSED["source_key_int_with_function"])
    assert str(raised.value) == "invalid type: integer `5`, expected a string"
    assert client.list_collections() == []
    client.close()


@pytest.mark.parametrize(
    "kwargs", [{"bm25": "yes"}, {"bm25": 1}, {"algorithm": "nope"}, {"source_key": 5}]
)
def test_schema_objects_still_checked_client_side_as_chromadb(kwargs: dict[str, Any]) -> None:
    """Guard: chromadb's `Schema` classes check their fields with pydantic before anything
    is sent (coercing `bm25`, dropping `algorithm`, refusing a non-string `source_key`);
    huedb's classes do the same, so a `Schema` object never reaches the JSON checks above."""

    def build(lib: Any) -> Any:
        try:
            config = lib.SparseVectorIndexConfig(**kwargs)
        except Exception as exc:  # noqa: BLE001 - compared with chromadb's
            return type(exc).__name__, str(exc).splitlines()[0]
        return lib.Schema().create_index(config=config, key="sp").serialize_to_json()

    assert build(huedb) == build(chromadb)


# -- sparse embedding functions registered by the user --------------------------------------


def _vector_of(text: str) -> tuple[list[int], list[float]]:
    """Each distinct character's code, weighed by its count."""
    codes = sorted(set(text))
    return [ord(c) for c in codes], [float(text.count(c)) for c in codes]


def _function_class(name: str, base: Any, vector: Any, fails: bool = False) -> Any:
    """A sparse embedding function named `name` on `base` (huedb's or chromadb's protocol)
    giving `vector` objects (huedb's or chromadb's `SparseVector`)."""

    class CharSparse(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            pass

        def __call__(self, input: Any) -> Any:  # noqa: A002 - chromadb's signature
            return [vector(*_vector_of(text)) for text in input]

        def embed_query(self, input: Any) -> Any:  # noqa: A002
            return self(input)

        @staticmethod
        def name() -> str:
            return name

        def get_config(self) -> dict[str, Any]:
            return {}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> Any:
            if fails:
                raise RuntimeError("cannot build this one")
            return CharSparse()

    return CharSparse


def _http_client(servers: dict[str, str]) -> Any:
    url = urlparse(servers["huedb"])
    return chromadb.HttpClient(
        host=url.hostname, port=url.port, settings=ChromaSettings(anonymized_telemetry=False)
    )


def _use(lib: Any, client: Any, function: Any, vector: Any = None) -> Any:
    """Create a collection whose schema (`lib`'s classes) has a sparse index on `sp` with
    `function` from the documents, write (one vector given, a `vector`, by default `lib`'s
    `SparseVector`), read the vectors back and search `sp` with a string: the vectors as
    (indices, values), the search's outcome, and the warnings raised."""
    vector = vector or lib.SparseVector
    name = f"sparse-fn-{next(_names):04d}"
    schema = lib.Schema().create_index(
        config=lib.SparseVectorIndexConfig(embedding_function=function, source_key="#document"),
        key="sp",
    )
    col = client.create_collection(name, schema=schema, embedding_function=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        col.add(
            ids=["a", "b", "c"],
            embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
            documents=["abc", "abcabd", "zzz"],
            metadatas=[None, {"t": 1}, {"sp": vector(indices=[1], values=[2.0])}],
        )
        col.upsert(ids=["c"], embeddings=[[1.0, 1.0]], documents=["aaa"])
    got = col.get(ids=["a", "b", "c"], include=["metadatas"])
    vectors = {
        i: None if not m or m.get("sp") is None else (m["sp"].indices, m["sp"].values)
        for i, m in zip(got["ids"], got["metadatas"], strict=True)
    }
    try:
        with warnings.catch_warnings():  # chromadb's warning again: counted on the writes
            warnings.simplefilter("ignore")
            found = col.search(lib.Search().rank(lib.Knn(query="ab", key="sp")).select(lib.K.SCORE))
        searched: Any = (found["ids"], [[round(s, 5) for s in row] for row in found["scores"]])
    except Exception as exc:  # noqa: BLE001 - compared with chromadb's
        searched = (type(exc).__name__, str(exc))
    messages = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    return vectors, searched, messages


def test_chromadb_in_process_refuses_an_enabled_sparse_index(tmp_path: Path) -> None:
    """Why the functions below are compared with chromadb's `HttpClient` on `huedb run`:
    chromadb in-process (like `chroma run`) never creates such a collection."""
    cls = _function_class("fixes_char_local", ChromaSparseEmbeddingFunction, chromadb.SparseVector)
    client = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    with pytest.raises(chromadb.errors.InvalidArgumentError, match="Sparse vector indexing"):
        _use(chromadb, client, cls())


def test_registered_sparse_function_applied_in_process(
    servers: dict[str, str], tmp_path: Path
) -> None:
    """huedb's `register_sparse_embedding_function`: huedb in-process fills the key on
    add/upsert and embeds a string `Knn`, exactly as chromadb's client (its own registry)
    does against `huedb run`."""
    name = "fixes_char_registered"
    ours_cls = huedb_efs.register_sparse_embedding_function(
        _function_class(name, huedb.SparseEmbeddingFunction, huedb.SparseVector)
    )
    theirs_cls = chroma_efs.register_sparse_embedding_function(
        _function_class(name, ChromaSparseEmbeddingFunction, chromadb.SparseVector)
    )
    local = huedb.PersistentClient(path=tmp_path / "data")
    ours = _use(huedb, local, ours_cls())
    local.close()
    theirs = _use(chromadb, _http_client(servers), theirs_cls())
    assert ours == theirs
    vectors, searched, messages = theirs
    assert vectors == {
        "a": ([97, 98, 99], [1.0, 1.0, 1.0]),
        "b": ([97, 98, 99, 100], [2.0, 2.0, 1.0, 1.0]),
        "c": ([97], [3.0]),  # given on add; the upsert's metadata lacks it: re-embedded
    }
    assert searched[0] == [["b", "c", "a"]] and messages == []


def test_function_registered_in_chromadb_only_applied_in_process(
    servers: dict[str, str], tmp_path: Path
) -> None:
    """A function written for chromadb (its protocol, its `SparseVector`) and registered in
    chromadb's registry only: huedb in-process finds it there, as it does dense functions."""
    cls = chroma_efs.register_sparse_embedding_function(
        _function_class(
            "fixes_char_chroma_only", ChromaSparseEmbeddingFunction, chromadb.SparseVector
        )
    )
    assert "fixes_char_chroma_only" not in dict(huedb_efs.sparse_known_embedding_functions)
    local = huedb.PersistentClient(path=tmp_path / "data")
    # huedb takes no chromadb `SparseVector` in a metadata it is given (only from functions)
    ours = _use(chromadb, local, cls(), vector=huedb.SparseVector)
    local.close()
    theirs = _use(chromadb, _http_client(servers), cls())
    assert ours == theirs
    assert ours[0]["a"] == ([97, 98, 99], [1.0, 1.0, 1.0])


@pytest.mark.parametrize("kind", ["unregistered", "build_fails"])
def test_sparse_function_not_rebuilt_warns_as_chromadb(
    servers: dict[str, str], tmp_path: Path, kind: str
) -> None:
    """A schema naming a function no class is registered for, or whose `build_from_config`
    raises: chromadb's client warns (`Could not reconstruct sparse embedding function ...`)
    and writes no vectors, and a string search of the key is its ValueError; huedb in-process
    too (it logged, or raised the build error)."""
    name = f"fixes_char_{kind}"
    ours_cls = _function_class(
        name, huedb.SparseEmbeddingFunction, huedb.SparseVector, fails=kind == "build_fails"
    )
    theirs_cls = _function_class(
        name, ChromaSparseEmbeddingFunction, chromadb.SparseVector, fails=kind == "build_fails"
    )
    if kind == "build_fails":
        huedb_efs.register_sparse_embedding_function(ours_cls)
        chroma_efs.register_sparse_embedding_function(theirs_cls)
    local = huedb.PersistentClient(path=tmp_path / "data")
    ours = _use(huedb, local, ours_cls())
    local.close()
    theirs_vectors, theirs_search, theirs_messages = theirs = _use(
        chromadb, _http_client(servers), theirs_cls()
    )
    assert ours == theirs  # the string search too: chromadb's ValueError, word for word
    assert theirs_search[0] == "ValueError"
    reason = "cannot build this one" if kind == "build_fails" else f"'{name}'"
    assert theirs_messages == [
        f"Could not reconstruct sparse embedding function {name}: {reason}. Setting to None."
    ]
    assert theirs_vectors == {"a": None, "b": None, "c": ([1], [2.0])}


def test_register_sparse_function_refuses_a_second_class_under_a_name() -> None:
    """As huedb's dense `register_embedding_function`: the same class again is fine, another
    class under a registered name (`chroma_bm25` among them) a ValueError."""
    first = _function_class("fixes_char_twice", huedb.SparseEmbeddingFunction, huedb.SparseVector)
    assert huedb_efs.register_sparse_embedding_function(first) is first
    assert huedb_efs.register_sparse_embedding_function(first) is first
    other = _function_class("fixes_char_twice", huedb.SparseEmbeddingFunction, huedb.SparseVector)
    with pytest.raises(ValueError, match="fixes_char_twice is already registered"):
        huedb_efs.register_sparse_embedding_function(other)
    bm25 = _function_class("chroma_bm25", huedb.SparseEmbeddingFunction, huedb.SparseVector)
    with pytest.raises(ValueError, match="chroma_bm25 is already registered"):
        huedb_efs.register_sparse_embedding_function(bm25)
    assert huedb_efs.sparse_known_embedding_functions["fixes_char_twice"] is first
