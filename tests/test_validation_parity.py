"""Client-side validation parity with chromadb: the same call on a chromadb and a huedb
in-process collection ends the same way (the same exception class and message, or the
same result).

Each case comes from a differential fuzz against chromadb 1.5.9: `where` on `#document`,
an explicit `include=None`, a delete's `limit`, `$contains` operands, `modify` metadata,
and the operator an empty `where_document` operand names.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import huedb

chromadb = pytest.importorskip("chromadb")

Call = Callable[[Any, Any], Any]


def _outcome(module: Any, call: Call) -> tuple[Any, ...]:
    """("ok", result) or ("error", class name, message) of `call(client, collection)` on a
    fresh collection of two records."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = module.EphemeralClient()
        name = f"parity-{uuid.uuid4().hex[:12]}"
        collection = client.create_collection(name, embedding_function=None)
        collection.add(
            ids=["a", "b"],
            embeddings=[[1.0, 2.0], [3.0, 4.0]],
            metadatas=[{"tags": [1, 2]}, {"s": "x"}],
            documents=["apple pie", "banana"],
        )
        try:
            return ("ok", call(client, collection))
        except Exception as exc:
            return ("error", type(exc).__name__, str(exc))
        finally:
            client.delete_collection(name)


def _get_ids(where: Any = None, **kwargs: Any) -> Call:
    return lambda _client, col: col.get(where=where, **kwargs)["ids"]


def _query_ids(**kwargs: Any) -> Call:
    return lambda _client, col: col.query(query_embeddings=[[1.0, 2.0]], **kwargs)["ids"]


def _get_doc(where_document: Any) -> Call:
    return lambda _client, col: col.get(where_document=where_document)["ids"]


def _delete(**kwargs: Any) -> Call:
    return lambda _client, col: col.delete(**kwargs)


def _modify(**kwargs: Any) -> Call:
    return lambda _client, col: col.modify(**kwargs)


CASES: dict[str, Call] = {
    # F2: `where` on #document takes the metadata operators, not where_document's.
    "doc-regex": _get_ids({"#document": {"$regex": "apple"}}),
    "doc-not-regex": _get_ids({"#document": {"$not_regex": "apple"}}),
    "doc-and": _get_ids({"#document": {"$and": [{"$contains": "a"}, {"$contains": "p"}]}}),
    "doc-or": _get_ids({"#document": {"$or": [{"$contains": "a"}, {"$contains": "p"}]}}),
    "doc-regex-nested": _get_ids({"$and": [{"#document": "x"}, {"s": {"$regex": "x"}}]}),
    "doc-regex-query": _query_ids(where={"#document": {"$regex": "apple"}}),
    "doc-regex-delete": _delete(where={"#document": {"$regex": "apple"}}),
    "doc-str": _get_ids({"#document": "apple pie"}),
    "doc-eq-str": _get_ids({"#document": {"$eq": "apple pie"}}),
    "doc-ne-str": _get_ids({"#document": {"$ne": "apple pie"}}),
    "doc-in-str": _get_ids({"#document": {"$in": ["apple pie"]}}),
    "doc-nin-str": _get_ids({"#document": {"$nin": ["apple pie"]}}),
    "doc-eq-str-in-or": _get_ids({"$or": [{"#document": {"$eq": "a"}}, {"s": "x"}]}),
    "doc-eq-str-query": _query_ids(where={"#document": {"$eq": "apple pie"}}),
    "doc-eq-str-delete": _delete(where={"#document": {"$eq": "apple pie"}}),
    "doc-contains": _get_ids({"#document": {"$contains": "apple"}}),
    "doc-not-contains": _get_ids({"#document": {"$not_contains": "apple"}}),
    "doc-contains-in-or": _get_ids({"$or": [{"#document": {"$contains": "pie"}}, {"s": "x"}]}),
    "doc-contains-int": _get_ids({"#document": {"$contains": 5}}),
    "doc-list": _get_ids({"#document": ["a"]}),
    "doc-empty-expression": _get_ids({"#document": {}}),
    # F3: an explicit include=None is refused; the default include still applies.
    "get-include-none": _get_ids(include=None),
    "query-include-none": _query_ids(include=None),
    "get-include-default": lambda _client, col: col.get()["included"],
    "query-include-default": lambda _client, col: col.query(query_embeddings=[[1.0, 2.0]])[
        "included"
    ],
    "get-include-tuple": _get_ids(include=("documents",)),
    "get-include-str": _get_ids(include="documents"),
    "get-include-distances": _get_ids(include=["distances"]),
    # F4: a delete's limit.
    "delete-limit-negative": _delete(where={"s": "x"}, limit=-1),
    "delete-limit-negative-no-where": _delete(ids=["a"], limit=-1),
    "delete-limit-float": _delete(where={"s": "x"}, limit=1.5),
    "delete-limit-bool": _delete(where={"s": "x"}, limit=True),
    "delete-limit-no-where": _delete(ids=["a"], limit=1),
    "delete-limit-zero": _delete(where={"s": "x"}, limit=0),
    # F5: $contains / $not_contains take a scalar operand.
    "contains-list": _get_ids({"tags": {"$contains": [1]}}),
    "not-contains-list": _get_ids({"tags": {"$not_contains": [1]}}),
    "contains-none": _get_ids({"tags": {"$contains": None}}),
    "contains-dict": _get_ids({"tags": {"$contains": {"a": 1}}}),
    "contains-int": _get_ids({"tags": {"$contains": 1}}),
    "in-mixed-numbers": _get_ids({"s": {"$in": [1, 1.5]}}),
    "unknown-operator": _get_ids({"s": {"$foo": 1}}),
    "and-not-a-list": _get_ids({"$and": 1}),
    "and-one-clause": _get_ids({"$and": [{"s": "x"}]}),
    # F6: modify checks metadata as chromadb's client does, before the new name.
    "modify-dict-value": _modify(metadata={"a": {"b": 1}}),
    "modify-bad-name-dict-value": _modify(name="bad name", metadata={"a": {"b": 1}}),
    "modify-bad-name-list-value": _modify(name="bad name", metadata={"a": [1]}),
    "modify-empty": _modify(metadata={}),
    "modify-int-key": _modify(metadata={1: 1}),
    "modify-empty-list": _modify(metadata={"a": []}),
    "modify-bad-name": _modify(name="a"),
    "modify-name-with-space": _modify(name="bad name"),
    "modify-mixed-list": _modify(metadata={"a": [1, "x"]}),
    "modify-not-a-dict": _modify(metadata="x"),
    "modify-reserved-key": _modify(metadata={"chroma:document": 1}),
    # F8: an empty where_document operand names its own operator.
    "where-document-regex-empty": _get_doc({"$regex": ""}),
    "where-document-not-regex-empty": _get_doc({"$not_regex": ""}),
    "where-document-contains-empty": _get_doc({"$contains": ""}),
    "where-document-not-contains-empty": _get_doc({"$not_contains": ""}),
    "where-document-int": _get_doc({"$contains": 5}),
    "where-document-not-a-dict": _get_doc("apple"),
    "where-document-bad-operator": _get_doc({"$eq": "apple"}),
    "where-document-and-one": _get_doc({"$and": [{"$contains": "a"}]}),
    "where-document-and-not-a-list": _get_doc({"$and": "a"}),
    # F9 (integrations review): a write's record set is checked in chromadb's order, its
    # fields named in chromadb's order, an empty metadata in chromadb's words.
    "add-unequal-lengths": lambda _client, col: col.add(
        ids=["c", "d"], embeddings=[[1.0, 2.0]], metadatas=[{"a": 1}], documents=["x", "y", "z"]
    ),
    "upsert-unequal-lengths": lambda _client, col: col.upsert(
        ids=["c"], embeddings=[[1.0, 2.0]] * 2, metadatas=[{"a": 1}] * 3, uris=["u"]
    ),
    "update-unequal-lengths": lambda _client, col: col.update(
        ids=["a"], metadatas=[{"a": 1}] * 2, documents=["d"] * 3
    ),
    "add-all-empty": lambda _client, col: col.add(ids=[], embeddings=[]),
    "add-empty-ids": lambda _client, col: col.add(ids=[], embeddings=[[1.0, 2.0]]),
    "upsert-empty-ids-documents": lambda _client, col: col.upsert(ids=[], documents=["x"]),
    "add-empty-metadata": lambda _client, col: col.add(
        ids=["c"], embeddings=[[1.0, 2.0]], metadatas=[{}]
    ),
    "update-empty-metadata": lambda _client, col: col.update(ids=["a"], metadatas=[{}]),
    # F10 (differential fuzz): embeddings of two lengths are refused only after every other
    # client-side check (chromadb's server finds them), in chromadb's words.
    "add-ragged": lambda _client, col: col.add(ids=["c", "d"], embeddings=[[1.0, 2.0], [1.0]]),
    "add-ragged-arrays": lambda _client, col: col.add(
        ids=["c", "d"], embeddings=[np.ones(2), np.ones(3)]
    ),
    "upsert-ragged": lambda _client, col: col.upsert(ids=["c", "d"], embeddings=[[1.0], [1, 2]]),
    "update-ragged": lambda _client, col: col.update(ids=["a", "b"], embeddings=[[1.0], [1, 2]]),
    "query-ragged": lambda _client, col: col.query(query_embeddings=[[1.0, 2.0], [1.0]])["ids"],
    "add-ragged-unequal-lengths": lambda _client, col: col.add(
        ids=["c"], embeddings=[[1.0, 2.0], [1.0]]
    ),
    "add-ragged-duplicate-ids": lambda _client, col: col.add(
        ids=["c", "c"], embeddings=[[1.0, 2.0], [1.0]]
    ),
    "add-ragged-empty-list-metadata": lambda _client, col: col.add(
        ids=["c", "d"], embeddings=[[1.0, 2.0], [1.0]], metadatas=[{"k": []}, None]
    ),
    "upsert-ragged-nested-metadata": lambda _client, col: col.upsert(
        ids=["c", "d"], embeddings=[[1.0, 2.0], [1.0]], metadatas=[{"k": {"x": 1}}, None]
    ),
    "query-ragged-bad-include": lambda _client, col: col.query(
        query_embeddings=[[1.0, 2.0], [1.0]], include=["bogus"]
    ),
    "query-ragged-empty-where": lambda _client, col: col.query(
        query_embeddings=[[1.0, 2.0], [1.0]], where={}
    ),
    "query-ragged-zero-results": lambda _client, col: col.query(
        query_embeddings=[[1.0, 2.0], [1.0]], n_results=0
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_outcome_as_chromadb(case: str) -> None:
    expected = _outcome(chromadb, CASES[case])
    actual = _outcome(huedb, CASES[case])
    assert actual == expected
