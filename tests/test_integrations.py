"""LangChain and LlamaIndex Chroma integrations on huedb: in-process through the chromadb
bridge (`huedb.chroma_bridge`) and over HTTP (chromadb's HttpClient against `huedb run`).

Each writes texts with metadata, searches with a filter, deletes, reopens the store (a new
client in-process, a restarted server over HTTP) and searches again. Embeddings come from
a bag-of-words hash (`tests.embedders.WordHash`): deterministic, no model download.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("langchain_chroma")
pytest.importorskip("llama_index.vector_stores.chroma")

import chromadb  # noqa: E402
from chromadb.api import ClientAPI  # noqa: E402
from chromadb.api.shared_system_client import SharedSystemClient  # noqa: E402
from langchain_chroma import Chroma  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from llama_index.core.schema import TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.vector_stores.chroma import ChromaVectorStore  # noqa: E402

from huedb.api.client import PersistentClient, clear_system_cache  # noqa: E402
from huedb.chroma_bridge import API_IMPL, chroma_client, chroma_settings  # noqa: E402
from tests.cli import REPO_ROOT, child_env  # noqa: E402
from tests.embedders import WordHash  # noqa: E402
from tests.servers import huedb_server  # noqa: E402

MODES = ["inprocess", "http"]
EMBED = WordHash(64, "wordhash-64")
TEXTS = ["apple banana fruit", "carrot potato vegetable", "apple pie dessert"]
METADATAS = [
    {"topic": "fruit", "n": 1},
    {"topic": "vegetable", "n": 2},
    {"topic": "dessert", "n": 3},
]
IDS = ["fruit", "veg", "dessert"]


class WordHashEmbeddings(Embeddings):
    """LangChain's embeddings interface over the test's word-hash embedder."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [v.tolist() for v in EMBED(texts)]

    def embed_query(self, text: str) -> list[float]:
        return EMBED([text])[0].tolist()


@contextmanager
def store(mode: str, data: Path) -> Iterator[ClientAPI]:
    """A real chromadb client on huedb's store at `data`, in-process or over HTTP."""
    SharedSystemClient.clear_system_cache()
    if mode == "inprocess":
        client = chroma_client(data)
        try:
            yield client
        finally:
            client.close()
            clear_system_cache()
    else:
        with huedb_server(data) as server:
            yield chromadb.HttpClient(host=server.host, port=server.port)


def _texts(docs: list) -> list[str]:
    return [d.page_content for d in docs]


@pytest.mark.parametrize("mode", MODES)
def test_langchain_chroma(mode: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with store(mode, data) as client:
        db = Chroma("langchain", embedding_function=WordHashEmbeddings(), client=client)
        assert db.add_texts(TEXTS, metadatas=METADATAS, ids=IDS) == IDS
        assert set(_texts(db.similarity_search("apple", k=2))) == {TEXTS[0], TEXTS[2]}
        found = db.similarity_search("apple", k=3, filter={"topic": "dessert"})
        assert _texts(found) == [TEXTS[2]]
        assert found[0].metadata == METADATAS[2]
        found = db.similarity_search_with_score("potato", k=3, filter={"n": {"$gte": 2}})
        assert [d.page_content for d, _ in found][0] == TEXTS[1]
        assert {d.metadata["n"] for d, _ in found} == {2, 3}
        db.delete(ids=["dessert"])
        assert db.similarity_search("apple", k=3, filter={"topic": "dessert"}) == []
    with store(mode, data) as client:
        if mode == "inprocess":
            # LangChain builds the chromadb client itself from Settings naming the bridge.
            client.close()
            SharedSystemClient.clear_system_cache()
            db = Chroma(
                "langchain",
                embedding_function=WordHashEmbeddings(),
                client_settings=chroma_settings(data),
            )
        else:
            db = Chroma("langchain", embedding_function=WordHashEmbeddings(), client=client)
        assert _texts(db.similarity_search("apple", k=3)) == [TEXTS[0], TEXTS[1]]
        assert _texts(db.similarity_search("fruit", k=3, filter={"topic": "vegetable"})) == [
            TEXTS[1]
        ]
        assert db.get()["ids"] == ["fruit", "veg"]
        if mode == "inprocess":
            db._client.close()


def _nodes() -> list[TextNode]:
    return [
        TextNode(id_=i, text=t, metadata=m, embedding=EMBED([t])[0].tolist())
        for i, t, m in zip(IDS, TEXTS, METADATAS, strict=True)
    ]


def _query(vs: ChromaVectorStore, text: str, k: int, **where: object) -> list[str]:
    filters = (
        MetadataFilters(filters=[MetadataFilter(key=k_, value=v) for k_, v in where.items()])
        if where
        else None
    )
    result = vs.query(
        VectorStoreQuery(
            query_embedding=EMBED([text])[0].tolist(), similarity_top_k=k, filters=filters
        )
    )
    return [n.get_content() for n in result.nodes]


@pytest.mark.parametrize("mode", MODES)
def test_llama_index_chroma(mode: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with store(mode, data) as client:
        vs = ChromaVectorStore(chroma_collection=client.get_or_create_collection("llama"))
        assert vs.add(_nodes()) == IDS
        assert set(_query(vs, "apple", 2)) == {TEXTS[0], TEXTS[2]}
        assert _query(vs, "apple", 3, topic="dessert") == [TEXTS[2]]
        vs.delete_nodes(node_ids=["dessert"])
        assert _query(vs, "apple", 3, topic="dessert") == []
    with store(mode, data) as client:
        vs = ChromaVectorStore.from_collection(client.get_collection("llama"))
        assert _query(vs, "apple", 3) == [TEXTS[0], TEXTS[1]]
        assert _query(vs, "apple", 3, topic="vegetable") == [TEXTS[1]]
        assert vs.get_nodes(node_ids=["fruit"])[0].metadata == METADATAS[0]


CHILD = textwrap.dedent(
    """
    import sys
    from huedb.chroma_bridge import chroma_client

    client = chroma_client(sys.argv[1])
    col = client.get_collection("shared")
    seen = col.get(ids=["mine"], include=["documents"])["documents"]
    col.add(ids=["theirs"], embeddings=[[0.0, 1.0]], documents=["from the child"])
    print(seen[0], col.count())
    client.close()
    """
)


def test_bridge_and_persistent_client_share_a_path(tmp_path: Path) -> None:
    """A chromadb-on-huedb client in a subprocess and huedb's PersistentClient here."""
    data = tmp_path / "data"
    client = PersistentClient(path=str(data))
    col = client.create_collection("shared", embedding_function=None)
    col.add(ids=["mine"], embeddings=[[1.0, 0.0]], documents=["from the parent"])
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(data)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=child_env(None),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["from", "the", "parent", "2"]
    assert col.get(ids=["theirs"])["documents"] == ["from the child"]
    assert col.query(query_embeddings=[[0.0, 1.0]], n_results=1)["ids"] == [["theirs"]]
    client.close()


def test_plain_chromadb_factories_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CHROMA_API_IMPL` makes code that calls `chromadb.PersistentClient` itself (Haystack,
    mem0 with a path) run on huedb; chromadb's errors come back, and `fork_count` (which
    local Chroma refuses) answers."""
    monkeypatch.setenv("CHROMA_API_IMPL", API_IMPL)
    SharedSystemClient.clear_system_cache()
    client = chromadb.PersistentClient(path=str(tmp_path / "data"))
    col = client.create_collection("plain", embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0, 0.0]], metadatas=[{"k": 1}])
    with pytest.raises(chromadb.errors.InternalError, match="already exists"):
        client.create_collection("plain")
    with pytest.raises(chromadb.errors.NotFoundError, match="does not exist"):
        client.get_collection("missing")
    assert col.fork_count() == 0  # local Chroma raises NotImplementedError; huedb counts
    client.close()
    clear_system_cache()
    reopened = PersistentClient(path=str(tmp_path / "data"))
    assert reopened.get_collection("plain").get(where={"k": 1})["ids"] == ["a"]
    reopened.close()


def test_bridge_passes_the_schema_on(tmp_path: Path) -> None:
    """A chromadb `Schema` given to the bridge's client sets the collection's space."""
    from chromadb import Schema, VectorIndexConfig

    SharedSystemClient.clear_system_cache()
    client = chroma_client(str(tmp_path / "data"))
    schema = Schema().create_index(config=VectorIndexConfig(space="cosine"))
    col = client.create_collection("by_schema", schema=schema, embedding_function=None)
    col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [10.0, 10.0]])
    got = col.query(query_embeddings=[[2.0, 0.0]], n_results=2, include=["distances"])
    assert got["ids"] == [["a", "b"]]
    assert got["distances"][0][0] == pytest.approx(0.0, abs=1e-6)  # cosine, not l2 (1.0)
    reopened = PersistentClient(path=tmp_path / "data").get_collection("by_schema")
    assert reopened.configuration_json["hnsw"]["space"] == "cosine"
