"""Space and configuration precedence: a differential test against in-process chromadb.

Every combination of a space (or other HNSW setting) in `configuration`, in the legacy
`hnsw:*` metadata keys and in a `Schema`, with the default, no, or a custom embedding
function, is created in chromadb's own in-process client (Chroma's Rust core) and in huedb,
both in-process and through the real `chromadb.HttpClient` against `huedb run`. Each must
give the same error (class and message), or the same echoed configuration, metadata and
schema. Rules and messages: docs/chroma-schema.md.
"""

from __future__ import annotations

import copy
import itertools
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.api.types import (
    Documents,
    EmbeddingFunction,
    Embeddings,
    HnswIndexConfig,
    Schema,
    VectorIndexConfig,
)
from chromadb.config import Settings as ChromaSettings
from chromadb.utils.embedding_functions import register_embedding_function

import huedb
from tests.servers import huedb_server


@register_embedding_function
class CosineEmbedder(EmbeddingFunction[Documents]):
    """A named embedding function whose default space is cosine (no model needed)."""

    def __init__(self, dim: int = 4) -> None:
        self.dim = dim

    def __call__(self, input: Documents) -> Embeddings:
        return [np.full(self.dim, float(len(text)), dtype=np.float32) for text in input]

    @staticmethod
    def name() -> str:
        return "huedb_test_cosine"

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> CosineEmbedder:
        return CosineEmbedder(config["dim"])

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"


UNSET = object()
EMBEDDERS: dict[str, Callable[[], Any]] = {
    "unset": lambda: UNSET,
    "none": lambda: None,
    "cosine-ef": CosineEmbedder,
}
CONFIGURATIONS: list[Any] = [
    None,
    {},
    {"hnsw": {"space": "l2"}},
    {"hnsw": {"space": "ip"}},
    {"hnsw": {"space": "cosine"}},
    {"hnsw": {"ef_search": 50}},
    {"hnsw": {"space": "l2", "ef_search": 50}},
    {"hnsw": {"space": "ip", "max_neighbors": 32, "ef_construction": 150}},
    {"spann": {"space": "ip"}},
    {"spann": {}},
    {"hnsw": {"space": "cosine"}, "spann": {"space": "ip"}},
]
METADATAS: list[Any] = [
    None,
    {"hnsw:space": "cosine"},
    {"hnsw:space": "l2"},
    {"hnsw:space": "ip", "hnsw:search_ef": 20},
    {"hnsw:M": 32},
    {"hnsw:space": "bogus"},
    {"hnsw:foo": 1},
    {"topic": "news"},
]


def _schema(kind: str | None) -> Any:
    if kind is None:
        return None
    if kind == "default":
        return Schema()
    if kind == "ef-none-cosine":
        return Schema().create_index(
            config=VectorIndexConfig(space="cosine", embedding_function=None)
        )
    if kind == "hnsw-ef-search":
        return Schema().create_index(config=VectorIndexConfig(hnsw=HnswIndexConfig(ef_search=7)))
    return Schema().create_index(config=VectorIndexConfig(space=kind))


SCHEMAS: list[str | None] = [None, "default", "l2", "ip", "cosine", "ef-none-cosine"]
SCHEMAS_WITH_OTHERS = SCHEMAS + ["hnsw-ef-search"]

_LOCATION = re.compile(r" at line \d+ column \d+$")


def _outcome(create: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """What a create call gives: the error, or the echoed configuration, metadata, schema."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            col = create(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            # serde's position in Chroma's parse errors depends on the JSON text; not kept.
            return ("error", type(exc).__name__, _LOCATION.sub("", str(exc)))
    model = col._model
    schema = model.serialized_schema if hasattr(model, "serialized_schema") else model.schema
    if schema is None:
        schema = model.to_json()["schema"]
    return ("ok", col.configuration_json, col.metadata, schema)


def _kwargs(ef: str, configuration: Any, metadata: Any, schema: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    embedder = EMBEDDERS[ef]()
    if embedder is not UNSET:
        kwargs["embedding_function"] = embedder
    if configuration is not None:
        kwargs["configuration"] = {k: dict(v) for k, v in configuration.items()}
    if metadata is not None:
        kwargs["metadata"] = dict(metadata)
    if schema is not None:
        kwargs["schema"] = _schema(schema)
    return kwargs


CASES = [
    *itertools.product(EMBEDDERS, CONFIGURATIONS, METADATAS, SCHEMAS),
    *[("unset", c, None, "hnsw-ef-search") for c in CONFIGURATIONS],
]


@pytest.fixture(scope="module")
def chroma() -> Iterator[Any]:
    SharedSystemClient.clear_system_cache()
    client = chromadb.EphemeralClient(
        settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    )
    yield client
    client.reset()
    SharedSystemClient.clear_system_cache()


@pytest.fixture
def hue_local(tmp_path: Path) -> Iterator[Any]:
    client = huedb.PersistentClient(path=tmp_path / "data")
    yield client
    client.close()


@pytest.fixture(scope="module")
def hue_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data = tmp_path_factory.mktemp("precedence-http") / "data"
    with huedb_server(data) as server:
        client = chromadb.HttpClient(
            host="127.0.0.1",
            port=server.port,
            settings=ChromaSettings(anonymized_telemetry=False),
        )
        yield client


_names = itertools.count()


def _creator(client: Any, get_or_create: bool) -> Callable[..., Any]:
    def create(**kwargs: Any) -> Any:
        name = f"p{next(_names):06d}"
        if get_or_create:
            return client.get_or_create_collection(name, **kwargs)
        return client.create_collection(name, **kwargs)

    return create


def _differences(chroma: Any, other: Any, get_or_create: bool = False) -> list[str]:
    make_ref, make_other = _creator(chroma, get_or_create), _creator(other, get_or_create)
    diffs = []
    for case in CASES:
        ref = _outcome(make_ref, _kwargs(*case))
        got = _outcome(make_other, _kwargs(*case))
        if ref != got:
            diffs.append(f"{case}:\n  chroma: {str(ref)[:600]}\n  huedb:  {str(got)[:600]}")
    return diffs


def test_every_combination_matches_chroma_in_process(chroma: Any, hue_local: Any) -> None:
    diffs = _differences(chroma, hue_local)
    assert not diffs, f"{len(diffs)} of {len(CASES)} differ:\n" + "\n".join(diffs[:6])


def test_every_combination_matches_chroma_over_http(chroma: Any, hue_http: Any) -> None:
    diffs = _differences(chroma, hue_http)
    assert not diffs, f"{len(diffs)} of {len(CASES)} differ:\n" + "\n".join(diffs[:6])


def test_get_or_create_matches_chroma(chroma: Any, hue_local: Any, hue_http: Any) -> None:
    for other in (hue_local, hue_http):
        diffs = _differences(chroma, other, get_or_create=True)
        assert not diffs, f"{len(diffs)} of {len(CASES)} differ:\n" + "\n".join(diffs[:6])


@pytest.mark.parametrize("target", ["local", "http"])
def test_distances_follow_the_winning_space(target: str, hue_local: Any, hue_http: Any) -> None:
    """The issue's case: configuration l2 + metadata cosine is a cosine collection."""
    client = hue_local if target == "local" else hue_http
    col = client.create_collection(
        f"issue-case-{target}",
        configuration={"hnsw": {"space": "l2"}},
        metadata={"hnsw:space": "cosine"},
        embedding_function=None,
    )
    col.add(ids=["a"], embeddings=[[3.0, 4.0]])
    got = col.query(query_embeddings=[[6.0, 8.0]], n_results=1, include=["distances"])
    assert got["distances"][0][0] == pytest.approx(0.0, abs=1e-6)  # cosine, not l2 (25)


def test_stored_schema_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "data"
    client = huedb.PersistentClient(path=path)
    schema = Schema().create_index(config=VectorIndexConfig(space="ip", embedding_function=None))
    client.create_collection("ip-schema", schema=schema)
    client.close()
    huedb.api.client.clear_system_cache()
    again = huedb.PersistentClient(path=path)
    col = again.get_collection("ip-schema")
    assert col.configuration_json["hnsw"]["space"] == "ip"
    vector = col._model.schema["keys"]["#embedding"]["float_list"]["vector_index"]
    assert vector["config"]["space"] == "ip"
    again.close()


class CosineOnlyEmbedder(CosineEmbedder):
    """A function that supports the cosine space only."""

    @staticmethod
    def name() -> str:
        return "huedb_test_cosine_only"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine"]


@pytest.mark.parametrize(
    ("configuration", "metadata"),
    [
        ({"hnsw": {"space": "ip"}}, None),
        ({"hnsw": {"space": "cosine"}}, None),
        ({"spann": {"space": "l2"}}, None),
        (None, {"hnsw:space": "l2"}),
        ({"hnsw": {"space": "cosine"}}, {"hnsw:space": "l2"}),
        (None, None),
    ],
)
def test_unsupported_space_warns_as_chromadb(configuration: Any, metadata: Any) -> None:
    """chromadb's UserWarning when a collection is given a space its embedding function
    does not support (the same warnings, or none, from both clients)."""
    should_warn = (configuration, metadata) in [
        ({"hnsw": {"space": "ip"}}, None),
        ({"spann": {"space": "l2"}}, None),
        (None, {"hnsw:space": "l2"}),
    ]

    def warned(module: Any) -> list[str]:
        SharedSystemClient.clear_system_cache()  # other tests' ephemeral settings differ
        client = module.EphemeralClient()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client.create_collection(
                "spaces",
                embedding_function=CosineOnlyEmbedder(),
                configuration=copy.deepcopy(configuration),  # chromadb adds to it
                metadata=copy.deepcopy(metadata),
            )
        client.delete_collection("spaces")
        return sorted(str(w.message) for w in caught if w.category is UserWarning)

    expected = warned(chromadb)
    assert warned(huedb) == expected
    assert bool(expected) == should_warn
