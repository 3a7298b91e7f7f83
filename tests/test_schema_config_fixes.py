"""Collection configuration, schema and filters, compared with chromadb 1.5.9 (review fixes).

Each scenario runs on chromadb's in-process client (the reference), huedb in-process and
the real `chromadb.HttpClient` against `huedb run`:
- `collection.configuration` / `collection.schema` rebuild the recorded embedding function
  (huedb's registry, then chromadb's), so a copy made from them records and uses it;
- `modify(configuration=...)`: an embedding function object is recorded by its identity;
  `hnsw` with `spann`, a `spann` update of an HNSW collection and a function of another
  name are refused; the HNSW values Chroma accepts are stored, with its messages for the
  others; a malformed update sent over HTTP is refused and nothing is stored;
- a document filter written in `where` is refused when full-text search is disabled, and a
  string compared with `#document` is refused as Chroma does, in-process and over HTTP.
Rules: docs/chroma-schema.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chromadb
import httpx
import numpy as np
import pytest
from chromadb.api.types import (
    Documents,
    EmbeddingFunction,
    Embeddings,
    FtsIndexConfig,
    IntInvertedIndexConfig,
    Schema,
)
from chromadb.config import Settings as ChromaSettings
from chromadb.utils.embedding_functions import (
    register_embedding_function as register_in_chromadb,
)

import huedb
from huedb.api.collection_config import create_configuration
from huedb.api.config_values import unknown_field
from huedb.engine.index_cache import hnsw_params
from huedb.errors import DESERIALIZE_PREFIX, InvalidArgumentError, serde_unexpected
from huedb.utils.embedding_functions import register_embedding_function
from tests import side_by_side
from tests.servers import chroma_run
from tests.side_by_side import each, fresh_name, outcome, same

API = "/api/v2/tenants/default_tenant/databases/default_database/collections"


class _Toy(EmbeddingFunction[Documents]):
    """2-d vectors [len(text) * k, 1]: which function embedded a text shows in its vector."""

    def __init__(self, k: int = 1) -> None:
        self.k = k

    def __call__(self, input: Documents) -> Embeddings:
        return [np.array([float(len(d)) * self.k, 1.0], dtype=np.float32) for d in input]

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k}

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine", "l2", "ip"]


@register_in_chromadb
@register_embedding_function
class ToyA(_Toy):
    @staticmethod
    def name() -> str:
        return "fixes_toy_a"

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ToyA:
        return ToyA(config.get("k", 1))


@register_in_chromadb
@register_embedding_function
class ToyB(_Toy):
    @staticmethod
    def name() -> str:
        return "fixes_toy_b"

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ToyB:
        return ToyB(config.get("k", 1))


chroma, server, clients = side_by_side.chroma, side_by_side.server, side_by_side.clients


def _each(clients: dict[str, Any], make: Callable[[Any, str], Any]) -> dict[str, Any]:
    """`make(client, fresh_name)` on every target, serde's positions left out of messages
    (huedb does not reproduce them)."""
    return each(clients, make, prefix="f", serde_positions=False)


def _attempt(action: Callable[[], Any]) -> Any:
    """The action's result, or (error class, message) as `_each` reports one."""
    return outcome(action, serde_positions=False)


def _vector_hnsw(client: Any, name: str) -> dict[str, Any]:
    schema = client.get_collection(name, embedding_function=None).schema.serialize_to_json()
    return schema["keys"]["#embedding"]["float_list"]["vector_index"]["config"]["hnsw"]


# -- configuration and schema rebuild the recorded embedding function --------------------


def test_configuration_and_schema_rebuild_the_recorded_function(
    clients: dict[str, Any],
) -> None:
    def make(client: Any, name: str) -> Any:
        client.create_collection(
            name, configuration={"hnsw": {"space": "ip"}}, embedding_function=ToyA(7)
        )
        src = client.get_collection(name)  # opened without its function
        ef = src.configuration["embedding_function"]
        schema_ef = src.schema.keys["#embedding"].float_list.vector_index.config.embedding_function
        copies = []
        for label, given in (
            ("c", {"configuration": src.configuration}),
            ("s", {"schema": src.schema}),
        ):
            copy = client.create_collection(f"{name}{label}", **given)
            copy.add(ids=["1"], documents=["abc"])
            vector = copy.get(ids=["1"], include=["embeddings"])["embeddings"][0]
            copies.append((copy.configuration_json["embedding_function"], list(vector)))
        return type(ef).__name__, ef.k, type(schema_ef).__name__, schema_ef.k, copies

    recorded = {"type": "known", "name": "fixes_toy_a", "config": {"k": 7}}
    assert same(_each(clients, make)) == ("ToyA", 7, "ToyA", 7, [(recorded, [21.0, 1.0])] * 2)


def test_configuration_of_a_default_collection_is_a_real_function(
    clients: dict[str, Any],
) -> None:
    def make(client: Any, name: str) -> Any:
        plain = client.create_collection(name)
        ef = client.get_collection(name).configuration["embedding_function"]
        copy = client.create_collection(f"{name}c", configuration=plain.configuration)
        none = client.create_collection(f"{name}n", embedding_function=None)
        return (
            ef.name(),
            callable(ef),
            copy.configuration_json["embedding_function"],
            (none.configuration["embedding_function"]),
        )

    default = {"type": "known", "name": "default", "config": {}}
    assert same(_each(clients, make)) == ("default", True, default, None)


# -- modify(configuration=...) -----------------------------------------------------------


def test_modify_records_an_embedding_function_by_its_identity(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=ToyA(1))
        col.modify(configuration={"embedding_function": ToyA(5)})
        fetched = client.get_collection(name)
        vector = fetched.schema.serialize_to_json()["keys"]["#embedding"]["float_list"]
        return (
            fetched.configuration_json["embedding_function"],
            vector["vector_index"]["config"]["embedding_function"],
        )

    recorded = {"type": "known", "name": "fixes_toy_a", "config": {"k": 5}}
    assert same(_each(clients, make)) == (recorded, recorded)


def test_modify_refuses_a_function_of_another_name(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=ToyA(1))
        col.modify(configuration={"embedding_function": ToyB(1)})

    assert same(_each(clients, make)) == (
        "error",
        "ValueError",
        "Cannot update embedding function: incompatible types (fixes_toy_a vs fixes_toy_b)",
    )
    # chromadb's collection raises once its server has stored the change; huedb's refuses
    # before sending it.
    local = clients["huedb-local"]
    col = local.create_collection("kept", embedding_function=ToyA(1))
    with pytest.raises(ValueError, match="incompatible types"):
        col.modify(configuration={"embedding_function": ToyB(1)})
    assert local.get_collection("kept").configuration_json["embedding_function"]["name"] == (
        "fixes_toy_a"
    )


def test_modify_refuses_hnsw_with_spann_and_changes_nothing(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        refused = _attempt(
            lambda: col.modify(configuration={"hnsw": {"ef_search": 5}, "spann": {"ef_search": 5}})
        )
        return refused, client.get_collection(name).configuration_json["hnsw"]["ef_search"]

    refused, ef_search = same(_each(clients, make))
    assert refused == (
        "error",
        "InvalidArgumentError",
        "Multiple vector index configurations provided",
    )
    assert ef_search == 100


def test_modify_refuses_a_spann_update_of_an_hnsw_collection(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        col.modify(configuration={"spann": {"search_nprobe": 10}})

    assert same(_each(clients, make)) == (
        "error",
        "ValueError",
        "Trying to update SPANN config but schema has HNSW",
    )


@pytest.mark.parametrize(
    "update",
    [{"max_neighbors": 8}, {"num_threads": 0}, {"batch_size": 0}, {"sync_threshold": 0}],
    ids=lambda u: next(iter(u)),
)
def test_modify_stores_the_hnsw_values_chroma_accepts(
    clients: dict[str, Any], update: dict[str, Any]
) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        col.modify(configuration={"hnsw": update})
        fetched = client.get_collection(name, embedding_function=None)
        return fetched.configuration_json["hnsw"], _vector_hnsw(client, name)

    key, value = next(iter(update.items()))
    config, schema_hnsw = same(_each(clients, make))
    assert schema_hnsw[key] == value
    if key in config:
        assert config[key] == value


@pytest.mark.parametrize(
    "update",
    [
        {"hnsw": {"bogus": 1}},
        {"hnsw": {"space": "ip"}},
        {"hnsw": "x"},
        {"hnsw": {"ef_search": -1}},
        {"hnsw": {"ef_search": 1.5}},
        {"spann": {"bogus": 1}},
        {"spann": "x"},
        {"spann": {"search_nprobe": -1}},
    ],
)
def test_modify_refusals_have_chromas_messages(
    clients: dict[str, Any], update: dict[str, Any]
) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        refused = _attempt(lambda: col.modify(configuration=update))
        return refused, client.get_collection(name).configuration_json

    results = _each(clients, make)
    over_http = results.pop("huedb-http")
    refused, config = results["chroma"]
    assert results["huedb-local"] == (refused, config)
    assert refused[:2] == ("error", "InvalidArgumentError")
    assert config["hnsw"]["ef_search"] == 100
    # Over HTTP, Chroma's server's 422 (test_a_malformed_update_over_http_...): a ChromaError
    # naming the field, with the in-process message after it.
    assert over_http[0][:2] == ("error", "ChromaError")
    assert over_http[0][2].startswith(DESERIALIZE_PREFIX + "new_configuration.")
    assert over_http[0][2].endswith(refused[2]) and over_http[1] == config


def test_a_modified_max_neighbors_leaves_the_graph_as_built(tmp_path: Path) -> None:
    """Chroma's persisted index keeps the M it was built with; huedb's graph keeps the
    collection's max_neighbors too, while both echoes show the new value."""
    client = huedb.PersistentClient(path=tmp_path / "data")
    rng = np.random.default_rng(3)
    vectors = rng.random((300, 8), dtype=np.float32)
    col = client.create_collection("graph", embedding_function=None)
    col.add(ids=[str(i) for i in range(150)], embeddings=vectors[:150])
    col.modify(configuration={"hnsw": {"max_neighbors": 8}})
    col.modify(configuration={"hnsw": {"ef_search": 64}})  # a later modify keeps it
    col.add(ids=[str(i) for i in range(150, 300)], embeddings=vectors[150:])
    fetched = client.get_collection("graph", embedding_function=None)
    assert fetched.configuration_json["hnsw"]["max_neighbors"] == 8
    assert _vector_hnsw(client, "graph")["max_neighbors"] == 8
    row = client._server.engine.get_collection_by_uuid(str(col.id))  # type: ignore[attr-defined]
    assert row.configuration["hnsw"]["max_neighbors"] == 16
    assert hnsw_params(row).max_neighbors == 16
    got = fetched.query(query_embeddings=vectors[[7, 250]], n_results=1)["ids"]
    assert got == [["7"], ["250"]]
    client.close()


BAD_UPDATES = [
    (
        {"embedding_function": "garbage"},
        'invalid type: string "garbage", expected internally tagged enum '
        "EmbeddingFunctionConfiguration",
    ),
    (
        {"embedding_function": {"type": "bogus"}},
        "unknown variant `bogus`, expected one of `legacy`, `known`, `unknown`",
    ),
    ({"embedding_function": {"type": "known"}}, "missing field `name`"),
    ({"embedding_function": {"type": "known", "name": "x"}}, "missing field `config`"),
    ({"spann": {"space": "l2"}}, "unknown field `space`, expected `search_nprobe` or `ef_search`"),
    ({"spann": {"search_nprobe": 2**33}}, "invalid value: integer `8589934592`, expected u32"),
    (
        {"hnsw": {"bogus": 1}, "embedding_function": "garbage"},  # the first one is refused
        "unknown field `bogus`, expected one of `ef_search`, `max_neighbors`, `num_threads`, "
        "`resize_factor`, `sync_threshold`, `batch_size`",
    ),
]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a `chroma run` (Chroma 1.5.9's own server)."""
    with chroma_run(tmp_path_factory.mktemp("chroma-run")) as url:
        yield url


def _refused_update(base_url: str, update: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A fresh collection's answer to a modify with `update`, serde's position left out."""
    made = httpx.post(f"{base_url}{API}", json={"name": fresh_name("bad")}, timeout=30)
    made.raise_for_status()
    answer = httpx.put(
        f"{base_url}{API}/{made.json()['id']}", json={"new_configuration": update}, timeout=30
    )
    body = answer.json()
    body["message"] = re.sub(r" at line \d+ column \d+", "", body["message"])
    return answer.status_code, body


@pytest.mark.parametrize(("update", "message"), BAD_UPDATES)
def test_a_malformed_update_over_http_is_refused_and_not_stored(
    server: Any, chroma_server: str, update: dict[str, Any], message: str
) -> None:
    """Refused as `chroma run` refuses it (422 `Failed to deserialize ...:
    new_configuration.<field>: <serde's message>`), and nothing is stored."""
    status, body = _refused_update(server.url, update)
    assert (status, body) == _refused_update(chroma_server, update)
    assert status == 422 and body["error"] == "ChromaError"
    assert body["message"].startswith(DESERIALIZE_PREFIX + "new_configuration.")
    assert body["message"].endswith(": " + message)
    client = chromadb.HttpClient(
        host="127.0.0.1", port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    (fetched,) = [c for c in client.list_collections() if c.name.startswith("bad")][-1:]
    assert fetched.configuration_json["hnsw"]["ef_search"] == 100
    assert fetched.configuration["embedding_function"] is None  # readable
    assert fetched.schema is not None


# -- document filters written in `where` ---------------------------------------------------

WHERES = [
    {"#document": {"$contains": "hel"}},
    {"#document": {"$not_contains": "hel"}},
    {"$and": [{"#document": {"$contains": "hel"}}, {"k": "a"}]},
    {"#document": "hello"},
    {"#document": {"$eq": "hello"}},
    {"#document": {"$in": ["hello"]}},
    {"$or": [{"n": 1}, {"#document": "hello"}]},
    {"$or": [{"#document": "hello"}, {"n": 1}]},
]


@pytest.mark.parametrize("where", WHERES, ids=str)
def test_document_filters_in_where_with_fts_disabled(
    clients: dict[str, Any], where: dict[str, Any]
) -> None:
    def make(client: Any, name: str) -> Any:
        schema = (
            Schema()
            .delete_index(config=FtsIndexConfig(), key="#document")
            .delete_index(config=IntInvertedIndexConfig(), key="n")
        )
        col = client.create_collection(name, schema=schema, embedding_function=None)
        col.add(
            ids=["1", "2"],
            embeddings=[[1.0, 2.0], [2.0, 3.0]],
            documents=["hello", "world"],
            metadatas=[{"k": "a", "n": 1}, {"k": "b", "n": 2}],
        )
        return (
            _attempt(lambda: col.get(where=where)),
            _attempt(lambda: col.query(query_embeddings=[[1.0, 2.0]], where=where)),
            _attempt(lambda: col.delete(where=where)),
            col.count(),
        )

    got, queried, deleted, count = same(_each(clients, make))
    assert got[:2] == queried[:2] == deleted[:2] == ("error", "InvalidArgumentError")
    assert count == 2


def test_document_key_compared_with_fts_enabled(clients: dict[str, Any]) -> None:
    def make(client: Any, name: str) -> Any:
        col = client.create_collection(name, embedding_function=None)
        col.add(ids=["1"], embeddings=[[1.0, 2.0]], documents=["hello"])
        return (
            col.get(where={"#document": {"$contains": "ell"}})["ids"],
            _attempt(lambda: col.get(where={"#document": "hello"})),
        )

    assert same(_each(clients, make)) == (
        ["1"],
        (
            "error",
            "InvalidArgumentError",
            "Cannot filter using metadata key '#document' with type 'Str' because indexing "
            "is disabled",
        ),
    )


@pytest.mark.parametrize("where", [{"$and": 5}, {"$or": {"#document": "x"}}], ids=str)
def test_a_malformed_where_over_http_keeps_its_refusal(server: Any, where: Any) -> None:
    """A `where` the engine cannot compile and that compares no `#document` string is
    refused by the engine's parser, as before (a 400, never a server error)."""
    client = chromadb.HttpClient(
        host="127.0.0.1", port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    col = client.create_collection(fresh_name("w"), embedding_function=None)
    answer = httpx.post(f"{server.url}{API}/{col.id}/get", json={"where": where})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "InvalidArgumentError"


@pytest.mark.parametrize(
    ("fields", "wording"),
    [
        ((), "unknown field `x`, there are no fields"),
        (("a",), "unknown field `x`, expected `a`"),
        (("a", "b"), "unknown field `x`, expected `a` or `b`"),
        (("a", "b", "c"), "unknown field `x`, expected one of `a`, `b`, `c`"),
    ],
)
def test_unknown_fields_are_named_with_serdes_wording(
    fields: tuple[str, ...], wording: str
) -> None:
    """serde words the expected fields by their count (its `OneOf`): the same one helper
    serves every configuration and schema struct."""
    assert str(unknown_field("x", fields)).startswith(wording)


@pytest.mark.parametrize(
    ("value", "named"),
    [([1], "sequence"), ({"a": 1}, "map"), ('é"x', 'string "é\\"x"')],
)
def test_unexpected_values_are_named_as_serde_names_them(value: Any, named: str) -> None:
    """As chroma run answers `configuration.hnsw.ef_search: invalid type: sequence, expected
    usize` (huedb said "a sequence"): one naming for configuration, schema and Search API."""
    with pytest.raises(InvalidArgumentError) as refused:
        create_configuration({"hnsw": {"ef_search": value}}, None)
    assert str(refused.value) == f"invalid type: {named}, expected usize"
    assert serde_unexpected(value) == named
