"""Text holding a NUL character on the SQLite store: an id or a metadata key is the whole
string, never what precedes the NUL, and a document filter may hold one.

SQLite's `json_each` ends a string at an escaped NUL, so ids sent to it as one JSON array
made `delete(ids=["victim\\0anything"])` delete the record `victim`; the full-text index's
query syntax cannot hold a NUL (an `OperationalError`, a 500 over HTTP). PostgreSQL refuses
such text with `InvalidArgumentError` (tests/test_pg_store.py)."""

from __future__ import annotations

import pytest

import huedb
from huedb.engine.sqlite_store.records import MAX_BOUND_IDS
from huedb.errors import InvalidArgumentError


@pytest.fixture
def col():  # noqa: ANN201 - a huedb Collection
    client = huedb.EphemeralClient()
    collection = client.create_collection("nul-text")
    collection.add(
        ids=["victim", "other", "with\0nul"],
        embeddings=[[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
        documents=["xxab\0yy", "ab", "zab\0"],
    )
    yield collection
    client.delete_collection("nul-text")


def test_an_id_with_a_nul_reads_and_writes_only_itself(col) -> None:  # noqa: ANN001
    assert col.get(ids=["victim\0anything"])["ids"] == []
    assert col.get(ids=["with\0nul", "with"])["ids"] == ["with\0nul"]
    col.update(ids=["other\0x"], metadatas=[{"touched": True}])
    col.upsert(ids=["victim\0new"], embeddings=[[2.0, 2.0]])
    col.delete(ids=["victim\0anything", "with"])
    got = col.get(include=["metadatas"])
    assert got["ids"] == ["victim", "other", "with\0nul", "victim\0new"]
    assert got["metadatas"] == [None, None, None, None]
    col.delete(ids=["with\0nul"])
    assert col.get()["ids"] == ["victim", "other", "victim\0new"]


def test_a_document_filter_may_hold_a_nul(col) -> None:  # noqa: ANN001
    assert col.get(where_document={"$contains": "ab\0"})["ids"] == ["victim", "with\0nul"]
    assert col.get(where_document={"$not_contains": "ab\0"})["ids"] == ["other"]
    found = col.query(
        query_embeddings=[[0.0, 1.0]], n_results=3, where_document={"$contains": "b\0y"}
    )
    assert found["ids"] == [["victim"]]


def test_too_many_ids_with_a_nul_are_refused_whole(col) -> None:  # noqa: ANN001
    ids = [f"id\0{i}" for i in range(MAX_BOUND_IDS + 1)]
    with pytest.raises(InvalidArgumentError, match="NUL"):
        col.delete(ids=ids)
    assert col.count() == 3


def test_a_metadata_key_with_a_nul_is_recorded_whole_in_the_schema(col) -> None:  # noqa: ANN001
    col.add(ids=["warm"], embeddings=[[3.0, 3.0]], metadatas=[{"warm": 1}])
    col.add(ids=["keyed"], embeddings=[[4.0, 4.0]], metadatas=[{"n\0ul": 1, "n": "x"}])
    stored = huedb.EphemeralClient().get_collection("nul-text")  # as stored now
    keys = stored.get_model().schema["keys"]  # type: ignore[union-attr]
    assert {"n\0ul", "n", "warm"} <= set(keys)
    assert col.get(where={"n\0ul": 1})["ids"] == ["keyed"]
