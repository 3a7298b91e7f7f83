"""Haystack's Chroma document store (`chroma-haystack`) on huedb: in-process through the
chromadb bridge and over HTTP against `huedb run`.

`ChromaDocumentStore` builds its own chromadb client (`PersistentClient(path)` or
`HttpClient(host, port)`), so in-process it reaches huedb through chromadb's settings:
`client_settings` naming the bridge, then (on reopen) the `CHROMA_API_IMPL` environment
variable. Documents carry precomputed embeddings (`tests.embedders.WordHash`) and queries
go by embedding (`ChromaEmbeddingRetriever`): no model, no download.
"""

from __future__ import annotations

import os

# Read when haystack is imported: the tests must not send usage statistics anywhere.
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("haystack_integrations.document_stores.chroma")

from chromadb.api.shared_system_client import SharedSystemClient  # noqa: E402
from haystack import Document  # noqa: E402
from haystack.document_stores.errors import DuplicateDocumentError  # noqa: E402
from haystack.document_stores.types import DuplicatePolicy  # noqa: E402
from haystack_integrations.components.retrievers.chroma import (  # noqa: E402
    ChromaEmbeddingRetriever,
)
from haystack_integrations.document_stores.chroma import ChromaDocumentStore  # noqa: E402

from huedb.api.client import PersistentClient, clear_system_cache  # noqa: E402
from huedb.chroma_bridge import API_IMPL  # noqa: E402
from tests.embedders import WordHash  # noqa: E402
from tests.servers import huedb_server  # noqa: E402

EMBED = WordHash(64, "wordhash-64")
TEXTS = {
    "fruit": "apple banana fruit",
    "veg": "carrot potato vegetable",
    "dessert": "apple pie dessert",
}
METAS = {
    "fruit": {"topic": "fruit", "n": 1},
    "veg": {"topic": "vegetable", "n": 2},
    "dessert": {"topic": "dessert", "n": 3},
}
# Where `ChromaDocumentStore` is given `client_settings`, it builds its client with them.
BRIDGE_SETTINGS = {"chroma_api_impl": API_IMPL, "anonymized_telemetry": False}


def _vector(text: str) -> list[float]:
    return EMBED([text])[0].tolist()


def _documents() -> list[Document]:
    return [
        Document(id=i, content=t, meta=METAS[i], embedding=_vector(t)) for i, t in TEXTS.items()
    ]


@contextmanager
def document_store(mode: str, data: Path, door: str = "settings") -> Iterator[ChromaDocumentStore]:
    """Haystack's store on huedb at `data`: over HTTP (a server started for the block) or
    in-process, Haystack's chromadb client choosing the bridge by `door`: the
    `client_settings` it is given, or the environment."""
    SharedSystemClient.clear_system_cache()
    if mode == "http":
        with huedb_server(data) as server:
            store = ChromaDocumentStore(
                "haystack", host=server.host, port=server.port, distance_function="cosine"
            )
            try:
                yield store
            finally:
                store.close()
        return
    with pytest.MonkeyPatch.context() as env:
        if door == "environment":
            # How code that calls chromadb.PersistentClient(path) itself is pointed at
            # huedb: chromadb reads CHROMA_API_IMPL from the environment.
            env.setenv("CHROMA_API_IMPL", API_IMPL)
        settings = BRIDGE_SETTINGS if door == "settings" else None
        store = ChromaDocumentStore(
            "haystack", persist_path=str(data), distance_function="cosine", client_settings=settings
        )
        try:
            yield store
        finally:
            store.close()
            SharedSystemClient.clear_system_cache()
            clear_system_cache()


def _retrieve(
    store: ChromaDocumentStore, text: str, top_k: int, filters: dict | None = None
) -> list[Document]:
    retriever = ChromaEmbeddingRetriever(document_store=store, top_k=top_k)
    return retriever.run(query_embedding=_vector(text), filters=filters)["documents"]


def _where(field: str, operator: str, value: object) -> dict:
    """One Haystack comparison filter."""
    return {"field": field, "operator": operator, "value": value}


def _cosine_distance(a: str, b: str) -> float:
    x, y = np.asarray(_vector(a)), np.asarray(_vector(b))
    return float(1.0 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


@pytest.mark.parametrize("mode", ["inprocess", "http"])
def test_haystack_chroma_document_store(mode: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with document_store(mode, data) as store:
        assert store.write_documents(_documents()) == 3
        assert store.count_documents() == 3
        found = _retrieve(store, "apple", 2)
        assert {d.id for d in found} == {"fruit", "dessert"}
        # The collection was created with Haystack's distance_function (cosine, not l2).
        assert found[0].score == pytest.approx(_cosine_distance("apple", found[0].content))

        only = _retrieve(store, "apple", 3, _where("meta.topic", "==", "dessert"))
        assert [(d.id, d.content, d.meta) for d in only] == [
            ("dessert", TEXTS["dessert"], METAS["dessert"])
        ]
        both = {
            "operator": "AND",
            "conditions": [
                _where("meta.n", ">=", 2),
                _where("meta.topic", "in", ["fruit", "dessert"]),
            ],
        }
        assert [d.id for d in _retrieve(store, "carrot", 3, both)] == ["dessert"]
        by_content = _where("content", "contains", "potato")  # Chroma's where_document
        assert [d.id for d in store.filter_documents(by_content)] == ["veg"]
        assert store.count_documents_by_filter(_where("meta.n", "<", 3)) == 2

        with pytest.raises(DuplicateDocumentError):
            store.write_documents(_documents()[:1])
        tart = {"topic": "dessert", "n": 4}
        pie = Document(
            id="dessert", content="apple tart", meta=tart, embedding=_vector("apple tart")
        )
        assert store.write_documents([pie], policy=DuplicatePolicy.OVERWRITE) == 1
        got = store.filter_documents(_where("meta.n", "==", 4))
        assert [(d.id, d.content) for d in got] == [("dessert", "apple tart")]

        store.delete_documents(["dessert"])
        assert _retrieve(store, "apple", 3, _where("meta.topic", "==", "dessert")) == []
        assert store.count_documents() == 2

    with document_store(mode, data, door="environment") as store:
        assert store.count_documents() == 2
        assert [d.id for d in _retrieve(store, "apple", 3)] == ["fruit", "veg"]
        only = _retrieve(store, "fruit", 3, _where("meta.topic", "==", "vegetable"))
        assert [d.id for d in only] == ["veg"]
        stored = {d.id: d for d in store.filter_documents()}
        assert sorted(stored) == ["fruit", "veg"]
        assert stored["fruit"].meta == METAS["fruit"]
        assert stored["fruit"].embedding == pytest.approx(_vector(TEXTS["fruit"]))
        assert store.delete_by_filter(_where("meta.topic", "==", "fruit")) == 1
        assert [d.id for d in store.filter_documents()] == ["veg"]
    # Everything went to huedb's own store: huedb's client reads it back.
    client = PersistentClient(path=data)
    reopened = client.get_collection("haystack")
    assert reopened.get()["ids"] == ["veg"]
    assert reopened.configuration_json["hnsw"]["space"] == "cosine"
    client.close()
