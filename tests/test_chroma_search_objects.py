"""chromadb's own Search builder objects given to huedb's in-process `Collection.search`
(code written for chromadb, e.g. LangChain's hybrid search, builds them with
`from chromadb import Search, Knn, Rrf, K`): the same answers as huedb's own builders,
string queries embedded by the collection's embedding function."""

from __future__ import annotations

import chromadb
import pytest

import huedb
from tests.embedders import WordHash


def _searches(module):  # noqa: ANN001, ANN202 - chromadb or huedb
    k, knn = module.K, module.Knn
    return [
        module.Search().where(k("n") >= 1).rank(knn(query=[1.0, 0.0, 0.0, 0.0])).limit(2),
        module.Search()
        .rank(
            module.Rrf(
                [knn(query="apple pie", return_rank=True), knn(query="car", return_rank=True)]
            )
        )
        .limit(3)
        .select(k.DOCUMENT, k.SCORE, "n"),
    ]


def test_chromadb_search_objects_answer_as_huedb_ones() -> None:
    client = huedb.EphemeralClient()
    col = client.create_collection(
        "chroma-search-objects", embedding_function=WordHash(4, "words-4")
    )
    col.add(
        ids=["a", "b", "c", "d"],
        documents=["apple pie", "car", "apple", "bus"],
        metadatas=[{"n": 1}, {"n": 2}, {"n": 0}, {"n": 3}],
    )
    ours = col.search(_searches(huedb))
    theirs = col.search(_searches(chromadb))
    assert theirs["ids"] == ours["ids"] and theirs["scores"] == ours["scores"]
    assert theirs["documents"] == ours["documents"]
    assert len(ours["ids"][0]) == 2 and len(ours["ids"][1]) == 3


def test_other_objects_are_still_refused() -> None:
    col = huedb.EphemeralClient().get_or_create_collection("chroma-search-objects-2")
    with pytest.raises(TypeError, match="Expected Search objects, got dict"):
        col.search({"rank": {"$knn": {"query": [1.0]}}})
