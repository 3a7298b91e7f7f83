"""A collection handle opened through an alias follows the alias on every call, writes and
modifies included, and embeds with the model of the collection the alias names now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import huedb
from huedb.utils.embedding_functions import register_embedding_function


class _Model:
    """A deterministic toy model: its vector of a text depends on the model's seed."""

    seed = 0

    def __call__(self, input: list[str]) -> list[np.ndarray]:
        return [self.vector(t) for t in input]

    def vector(self, text: str) -> np.ndarray:
        codes = [ord(c) for c in text] or [0]
        return np.asarray(
            [sum(codes) % 97 + self.seed, len(text) * self.seed + 1, codes[0] % 13, self.seed],
            dtype=np.float32,
        )

    def get_config(self) -> dict[str, Any]:
        return {}

    def is_legacy(self) -> bool:
        return False


@register_embedding_function
class AliasModelV1(_Model):
    seed = 1

    @staticmethod
    def name() -> str:
        return "test-alias-model-v1"

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> AliasModelV1:
        return AliasModelV1()


@register_embedding_function
class AliasModelV2(_Model):
    seed = 2

    @staticmethod
    def name() -> str:
        return "test-alias-model-v2"

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> AliasModelV2:
        return AliasModelV2()


@pytest.fixture
def client(tmp_path: Path) -> huedb.Client:
    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    for name, model in (("docs_v1", AliasModelV1()), ("docs_v2", AliasModelV2())):
        client.create_collection(name, embedding_function=model).add(
            ids=["a", "b"], documents=["alpha", "beta"]
        )
    client.create_alias("docs", "docs_v1")
    return client


def _stored(client: huedb.Client, name: str, record_id: str) -> np.ndarray:
    got = client.get_collection(name).get(ids=[record_id], include=["embeddings"])
    return np.asarray(got["embeddings"][0], dtype=np.float32)


def test_writes_and_queries_after_a_switch_use_the_new_model(client: huedb.Client) -> None:
    handle = client.get_collection("docs")
    handle.add(ids=["c"], documents=["gamma"])  # resolves to docs_v1: model v1
    assert np.array_equal(_stored(client, "docs_v1", "c"), AliasModelV1().vector("gamma"))
    client.update_alias("docs", "docs_v2")
    handle.add(ids=["d"], documents=["delta"])
    handle.upsert(ids=["e"], documents=["epsilon"])
    assert np.array_equal(_stored(client, "docs_v2", "d"), AliasModelV2().vector("delta"))
    assert np.array_equal(_stored(client, "docs_v2", "e"), AliasModelV2().vector("epsilon"))
    assert client.get_collection("docs_v1").get(ids=["d", "e"])["ids"] == []
    found = handle.query(query_texts=["beta"], n_results=1, include=["distances"])
    assert found["ids"] == [["b"]] and found["distances"] == [[0.0]]


def test_a_handle_given_the_old_model_is_refused_after_a_switch(client: huedb.Client) -> None:
    handle = client.get_collection("docs", embedding_function=AliasModelV1())
    client.update_alias("docs", "docs_v2")
    # As `get_collection("docs", embedding_function=AliasModelV1())` is refused now.
    for call in (
        lambda: handle.add(ids=["d"], documents=["delta"]),
        lambda: handle.add(ids=["f"], embeddings=[[1.0, 2.0, 3.0, 4.0]]),
        lambda: handle.query(query_texts=["beta"], n_results=1),
    ):
        with pytest.raises(ValueError, match="Embedding function conflict"):
            call()
    assert client.get_collection("docs_v2").count() == 2  # nothing was written
    client.update_alias("docs", "docs_v1")  # rolled back: the handle works again
    handle.add(ids=["d"], documents=["delta"])
    assert np.array_equal(_stored(client, "docs_v1", "d"), AliasModelV1().vector("delta"))


def test_modify_through_the_alias_changes_the_collection_it_names_now(
    client: huedb.Client,
) -> None:
    handle = client.get_collection("docs")
    client.update_alias("docs", "docs_v2")
    handle.modify(metadata={"release": 2})
    assert client.get_collection("docs_v2").metadata == {"release": 2}
    assert client.get_collection("docs_v1").metadata is None
    assert handle.name == "docs_v2"


def test_a_handle_whose_alias_was_deleted_never_reaches_a_collection_of_that_name(
    tmp_path: Path,
) -> None:
    """The alias deleted and a collection created under its name: the handle opened through
    the alias raises NotFoundError instead of reading and writing that other collection."""
    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    target = client.create_collection("docs_v1", embedding_function=None)
    target.add(ids=["t"], embeddings=[[1.0, 0.0]])
    client.create_alias("live", "docs_v1")
    handle = client.get_collection("live", embedding_function=None)
    assert handle.count() == 1
    client.delete_alias("live")
    other = client.create_collection("live", embedding_function=None)
    other.add(ids=["a", "b", "c"], embeddings=[[0.0, 1.0]] * 3)
    with pytest.raises(huedb.errors.NotFoundError, match=r"Alias \[live\] does not exist"):
        handle.count()
    with pytest.raises(huedb.errors.NotFoundError):
        handle.add(ids=["x"], embeddings=[[1.0, 1.0]])
    assert other.count() == 3 and target.count() == 1
    client.close()
