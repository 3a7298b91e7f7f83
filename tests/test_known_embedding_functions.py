"""A collection built with a registered embedding function is opened later without passing
it again, as in chromadb: the function is rebuilt from the recorded name and configuration
by the class registered under that name, in huedb's registry or chromadb's (code written
for chromadb registers there with `@register_embedding_function`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chromadb.utils.embedding_functions import (
    register_embedding_function as register_in_chromadb,
)

import huedb
from huedb.utils.embedding_functions import register_embedding_function


class _Letters:
    """Counts of a few letters, times a configured factor."""

    letters = "aeiou"

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor

    def __call__(self, input: list[str]) -> list[np.ndarray]:
        return [
            np.asarray([t.count(c) * self.factor for c in self.letters], dtype=np.float32)
            for t in input
        ]

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def is_legacy(self) -> bool:
        return False


@register_embedding_function
class HuedbLetters(_Letters):
    @staticmethod
    def name() -> str:
        return "test-huedb-letters"

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HuedbLetters:
        return HuedbLetters(config["factor"])


@register_in_chromadb
class ChromaLetters(_Letters):
    @staticmethod
    def name() -> str:
        return "test-chroma-letters"

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaLetters:
        return ChromaLetters(config["factor"])


@pytest.mark.parametrize("function", [HuedbLetters, ChromaLetters])
def test_a_registered_function_is_rebuilt_when_not_passed(tmp_path: Path, function: Any) -> None:
    created = huedb.PersistentClient(path=tmp_path)
    created.create_collection("docs", embedding_function=function(2.0)).add(
        ids=["banana", "kiwi", "oboe"], documents=["banana", "kiwi", "oboe"]
    )
    created.close()
    reopened = huedb.PersistentClient(path=tmp_path)
    try:
        col = reopened.get_collection("docs")  # no embedding_function
        found = col.query(query_texts=["anaconda"], n_results=1, include=["embeddings"])
        assert found["ids"] == [["banana"]]
        col.add(ids=["eye"], documents=["eye"])  # embedded by the rebuilt function too
        stored = col.get(ids=["eye"], include=["embeddings"])["embeddings"]
        assert stored.tolist() == [[0.0, 4.0, 0.0, 0.0, 0.0]]  # factor 2 from the config
    finally:
        reopened.close()


def test_an_unknown_function_is_still_refused(tmp_path: Path) -> None:
    class Unregistered(_Letters):
        @staticmethod
        def name() -> str:
            return "test-nobody-knows"

    client = huedb.PersistentClient(path=tmp_path)
    try:
        client.create_collection("docs", embedding_function=Unregistered())
        col = huedb.PersistentClient(path=tmp_path).get_collection("docs")
        with pytest.raises(ValueError, match="built with the embedding function"):
            col.query(query_texts=["x"])
    finally:
        client.close()


def test_no_embedding_function_means_none(tmp_path: Path) -> None:
    """`embedding_function=None` (at create or get) on a collection created with a
    configuration (its schema then names no function to fall back to) means documents are
    not embedded: as in chromadb, embedding them raises ValueError; huedb embedded them with
    its default model, replacing a record's own vector on `update(documents=...)`. (Without
    a configuration chromadb falls back to the default model: test_embedding_function_compat.)"""
    client = huedb.PersistentClient(path=tmp_path)
    try:
        created = client.create_collection(
            "vectors-only", embedding_function=None, configuration={"hnsw": {"space": "l2"}}
        )
        created.add(ids=["a"], embeddings=[[1.0] * 384], documents=["mine"])
        for col in (created, client.get_collection("vectors-only", embedding_function=None)):
            for call in (
                lambda c=col: c.update(ids=["a"], documents=["changed"]),
                lambda c=col: c.add(ids=["b"], documents=["doc only"]),
                lambda c=col: c.query(query_texts=["mine"]),
            ):
                with pytest.raises(ValueError, match="You must provide an embedding function"):
                    call()
        got = created.get(include=["embeddings", "documents"])
        assert got["ids"] == ["a"] and got["documents"] == ["mine"]
        assert got["embeddings"].tolist() == [[1.0] * 384]
    finally:
        client.close()
