"""huedb's `Schema` builder and index configs against chromadb's: the same builder calls give
the same JSON and the same client-side errors, JSON reads back, and a collection created
with huedb's `Schema` echoes what one created with chromadb's does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.utils.embedding_functions import ChromaBm25EmbeddingFunction as ChromaBm25
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import huedb
import huedb.api.types
from huedb.embedding_functions import ChromaBm25EmbeddingFunction as HueBm25
from tests.servers import huedb_server

CONFIG_NAMES = [
    "FtsIndexConfig",
    "StringInvertedIndexConfig",
    "IntInvertedIndexConfig",
    "FloatInvertedIndexConfig",
    "BoolInvertedIndexConfig",
    "VectorIndexConfig",
    "SparseVectorIndexConfig",
]
EXPORTS = [*CONFIG_NAMES, "Schema", "HnswIndexConfig", "SpannIndexConfig", "Cmek"]


def _config(module: Any, spec: tuple | None) -> Any:
    """An index config built from a plain spec with `module`'s classes (None: no config)."""
    if spec is None:
        return None
    name, args = spec
    cls = getattr(module, name)
    if name == "VectorIndexConfig":
        space, ef_search, legacy = args
        hnsw = None if ef_search is None else module.HnswIndexConfig(ef_search=ef_search)
        extra = {"embedding_function": None} if legacy else {}
        return cls(space=space, hnsw=hnsw, **extra)
    if name == "SparseVectorIndexConfig":
        with_ef, source_key, bm25 = args
        bm25_class = ChromaBm25 if module is chromadb else HueBm25
        ef = bm25_class(k=1.5) if with_ef else None
        return cls(embedding_function=ef, source_key=source_key, bm25=bm25)
    return cls()


def _key(module: Any, key: Any) -> Any:
    return module.Key(key[1]) if isinstance(key, tuple) else key


vector_args = st.tuples(
    st.sampled_from([None, "l2", "cosine", "ip"]),
    st.none() | st.integers(1, 200),
    st.booleans(),
)
sparse_args = st.tuples(
    st.booleans(), st.sampled_from([None, "#document", "body"]), st.none() | st.booleans()
)
config_spec = st.none() | st.sampled_from(CONFIG_NAMES).flatmap(
    lambda name: st.tuples(
        st.just(name),
        vector_args
        if name == "VectorIndexConfig"
        else sparse_args
        if name == "SparseVectorIndexConfig"
        else st.none(),
    )
)
keys = st.sampled_from([None, "#document", "#embedding", "#other", "a", "b", ("key", "a")])
calls = st.lists(st.tuples(st.sampled_from(["create_index", "delete_index"]), config_spec, keys))


def _run(module: Any, steps: list) -> tuple[list, dict]:
    """Apply the steps to a fresh `module.Schema()`: each step's error (or None), the JSON."""
    schema = module.Schema()
    outcomes = []
    for method, spec, key in steps:
        try:
            config = _config(module, spec)
            result = getattr(schema, method)(config=config, key=_key(module, key))
            assert result is schema
            outcomes.append(None)
        except ValueError as exc:
            outcomes.append((type(exc).__name__, str(exc).replace("chromadb", "huedb")))
    return outcomes, schema.serialize_to_json()


def _normalised(outcome: Any) -> Any:
    """Error messages that print a config hold the function's repr: keep the text before."""
    if outcome is None:
        return None
    name, message = outcome
    return name, message.split(" Config: ")[0]


@settings(max_examples=150, deadline=None)
@given(calls)
def test_same_builder_calls_same_json_and_errors(steps: list) -> None:
    hue_outcomes, hue_json = _run(huedb, steps)
    chroma_outcomes, chroma_json = _run(chromadb, steps)
    assert [_normalised(o) for o in hue_outcomes] == [_normalised(o) for o in chroma_outcomes]
    assert hue_json == chroma_json
    assert huedb.Schema.deserialize_from_json(chroma_json).serialize_to_json() == chroma_json


BAD_CONFIGS = [
    ("VectorIndexConfig", {"foo": 1}),
    ("VectorIndexConfig", {"space": "euclid"}),
    ("VectorIndexConfig", {"source_key": "#meta"}),
    ("VectorIndexConfig", {"source_key": 3}),
    ("VectorIndexConfig", {"embedding_function": "not callable"}),
    ("VectorIndexConfig", {"embedding_function": lambda texts: texts}),
    ("SparseVectorIndexConfig", {"foo": 1}),
    ("SparseVectorIndexConfig", {"foo": 1, "bar": 2}),
    ("SparseVectorIndexConfig", {"algorithm": "x"}),
    ("SparseVectorIndexConfig", {"source_key": "#embedding"}),
    ("SparseVectorIndexConfig", {"embedding_function": 5}),
    ("SparseVectorIndexConfig", {"bm25": "maybe"}),
    ("HnswIndexConfig", {"ef": 3}),
    ("HnswIndexConfig", {"ef_search": "many"}),
    ("SpannIndexConfig", {"bogus": 1}),
    ("SpannIndexConfig", {"quantize": True}),
    ("FtsIndexConfig", {"x": 1}),
    ("IntInvertedIndexConfig", {"x": 1}),
]


def _construct(module: Any, name: str, kwargs: dict) -> Any:
    try:
        return ("ok", getattr(module, name)(**kwargs).model_dump(exclude_none=True))
    except ValidationError as exc:
        return ("error", [(e["type"], e["loc"], e["msg"]) for e in exc.errors()])


@pytest.mark.parametrize(("name", "kwargs"), BAD_CONFIGS)
def test_config_checks_match(name: str, kwargs: dict) -> None:
    assert _construct(huedb, name, kwargs) == _construct(chromadb, name, kwargs)


@pytest.mark.parametrize("name", EXPORTS)
def test_exported_where_chromadb_has_them(name: str) -> None:
    assert getattr(huedb, name) is getattr(huedb.api.types, name)
    assert name in huedb.__all__
    assert huedb.api.types.SearchResult.__name__ == "SearchResult"


def _schema(module: Any) -> Any:
    """Dense index (cosine), a BM25 sparse index, FTS off, a string inverted index off."""
    bm25 = ChromaBm25 if module is chromadb else HueBm25
    return (
        module.Schema()
        .create_index(config=module.VectorIndexConfig(space="cosine"))
        .create_index(
            config=module.SparseVectorIndexConfig(
                embedding_function=bm25(), source_key=module.K.DOCUMENT, bm25=True
            ),
            key="bm25_sparse",
        )
        .delete_index(config=module.FtsIndexConfig(), key="#document")
        .delete_index(config=module.StringInvertedIndexConfig(), key="title")
    )


def test_collections_echo_the_same_schema(tmp_path: Path) -> None:
    local = huedb.Client().create_collection("local", schema=_schema(huedb))
    with huedb_server(tmp_path / "data") as server:
        http = huedb.HttpClient(host=server.host, port=server.port)
        over_http = http.create_collection("hue", schema=_schema(huedb))
        chroma = chromadb.HttpClient(host=server.host, port=server.port)
        reference = chroma.create_collection("chroma", schema=_schema(chromadb))
        through_chroma = chroma.get_collection("hue")
    expected = reference._model.serialized_schema
    assert expected["keys"]["bm25_sparse"]["sparse_vector"]["sparse_vector_index"]["enabled"]
    assert through_chroma._model.serialized_schema == expected
    assert over_http.get_model().to_json()["schema"] == expected
    assert local.get_model().to_json()["schema"] == expected
    for collection in (local, over_http):
        assert isinstance(collection.schema, huedb.Schema)
        assert collection.schema.serialize_to_json() == reference.schema.serialize_to_json()


def test_one_sparse_index_per_collection() -> None:
    steps = [
        ("create_index", ("SparseVectorIndexConfig", (True, "#document", True)), "a"),
        ("create_index", ("SparseVectorIndexConfig", (False, None, None)), "b"),
        ("create_index", ("SparseVectorIndexConfig", (False, None, False)), "a"),
    ]
    hue_outcomes, hue_json = _run(huedb, steps)
    assert hue_outcomes == _run(chromadb, steps)[0]
    assert hue_outcomes[1][1].startswith("Cannot enable sparse vector index on key 'b'")
    assert hue_json == _run(chromadb, steps)[1]


GCP_KEY = "projects/p/locations/l/keyRings/r/cryptoKeys/k"


@pytest.mark.parametrize("data", [{"gcp": GCP_KEY}, {"gcp": 3}, {"aws": "arn"}])
def test_cmek_matches(data: dict) -> None:
    def outcome(module: Any) -> Any:
        try:
            cmek = module.Cmek.from_dict(data)
        except ValueError as exc:
            return str(exc)
        schema = module.Schema().set_cmek(cmek).serialize_to_json()
        return cmek.validate_pattern(), module.Cmek.gcp("x").validate_pattern(), schema

    assert outcome(huedb) == outcome(chromadb)
    if "gcp" in data and isinstance(data["gcp"], str):
        json = outcome(chromadb)[2]
        assert huedb.Schema.deserialize_from_json(json).cmek == huedb.Cmek.gcp(GCP_KEY)
