"""mem0's Chroma vector store (`mem0ai`) on huedb: in-process with a chromadb client on
the bridge (`client=`, or `path=` with `CHROMA_API_IMPL` naming the bridge), and over HTTP
against `huedb run` (`host`/`port`, mem0 building its own chromadb client).

Two levels: mem0's `ChromaDB` vector store itself (vectors and payloads, filters in
mem0's syntax), and mem0's `Memory` with `infer=False` (messages stored as memories as
they are, so its LLM is configured but never called) and a LangChain embedder over
`tests.embedders.WordHash`: no model, no API key, no download.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Read when mem0 is imported: no usage statistics sent anywhere, and mem0's own files
# (config.json, written at import) go to a scratch directory instead of ~/.mem0.
os.environ["MEM0_TELEMETRY"] = "False"
os.environ["MEM0_DIR"] = str(Path(tempfile.gettempdir()) / "huedb-tests-mem0")

from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("mem0")

from chromadb.api.shared_system_client import SharedSystemClient  # noqa: E402
from mem0 import Memory  # noqa: E402
from mem0.vector_stores.chroma import ChromaDB  # noqa: E402

from huedb.api.client import PersistentClient, clear_system_cache  # noqa: E402
from huedb.chroma_bridge import API_IMPL, chroma_client  # noqa: E402
from tests.servers import huedb_server  # noqa: E402
from tests.test_integrations import EMBED, WordHashEmbeddings  # noqa: E402

MODES = ["inprocess", "http"]
VECTORS = {"m1": [1.0, 0.0, 0.0], "m2": [0.0, 1.0, 0.0], "m3": [0.7, 0.7, 0.0]}
PAYLOADS = {
    "m1": {"user_id": "alice", "data": "likes tea", "n": 1},
    "m2": {"user_id": "bob", "data": "likes coffee", "n": 2},
    "m3": {"user_id": "alice", "data": "likes both", "n": 3},
}


@contextmanager
def connection(mode: str, data: Path, door: str = "client") -> Iterator[dict[str, Any]]:
    """What mem0's Chroma config takes to reach huedb at `data`: `host`/`port` of a server
    started for the block, or in-process a bridge `client`, or (door "path") a `path`
    with chromadb pointed at the bridge through the environment."""
    SharedSystemClient.clear_system_cache()
    if mode == "http":
        with huedb_server(data) as server:
            yield {"host": server.host, "port": server.port}
        return
    with pytest.MonkeyPatch.context() as env:
        if door == "path":
            env.setenv("CHROMA_API_IMPL", API_IMPL)
            client = None
            where: dict[str, Any] = {"path": str(data)}
        else:
            client = chroma_client(data)
            where = {"client": client}
        try:
            yield where
        finally:
            if client is not None:
                client.close()
            SharedSystemClient.clear_system_cache()
            clear_system_cache()


def _ids(found: list) -> list[str]:
    return [hit.id for hit in found]


@pytest.mark.parametrize("mode", MODES)
def test_mem0_chroma_vector_store(mode: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with connection(mode, data) as where:
        store = ChromaDB(collection_name="mem0", **where)
        store.insert(
            vectors=list(VECTORS.values()), payloads=list(PAYLOADS.values()), ids=list(VECTORS)
        )
        found = store.search("tea", vectors=[[1.0, 0.0, 0.0]], top_k=5)
        assert _ids(found) == ["m1", "m3", "m2"]
        assert found[0].score == pytest.approx(1.0)  # mem0's 1 / (1 + distance)
        assert found[0].payload == PAYLOADS["m1"]
        alice = store.search(
            "tea", vectors=[[0.0, 1.0, 0.0]], top_k=5, filters={"user_id": "alice"}
        )
        assert _ids(alice) == ["m3", "m1"]
        ranged = {"user_id": "alice", "n": {"gte": 2, "lte": 3}}
        assert _ids(store.search("q", vectors=[[1.0, 0.0, 0.0]], filters=ranged)) == ["m3"]
        either = {"$or": [{"user_id": "bob"}, {"n": 1}]}
        assert _ids(store.search("q", vectors=[[1.0, 0.0, 0.0]], filters=either)) == ["m1", "m2"]

        assert store.get("m2").payload == PAYLOADS["m2"]
        assert store.get("missing") is None
        newer = {**PAYLOADS["m2"], "data": "likes green tea"}
        store.update("m2", vector=[0.9, 0.1, 0.0], payload=newer)
        bob = store.search("q", vectors=[[1.0, 0.0, 0.0]], top_k=1, filters={"user_id": "bob"})
        assert [(h.id, h.payload) for h in bob] == [("m2", newer)]
        assert bob[0].score > 0.9
        store.update("m3", payload={**PAYLOADS["m3"], "n": 4})  # the vector stays
        assert store.get("m3").payload["n"] == 4
        assert _ids(store.search("q", vectors=[[0.7, 0.7, 0.0]], top_k=1)) == ["m3"]

        store.delete("m1")
        assert store.get("m1") is None
        assert sorted(_ids(store.list()[0])) == ["m2", "m3"]
        assert _ids(store.list(filters={"user_id": "alice"})[0]) == ["m3"]

    with connection(mode, data, door="path") as where:
        store = ChromaDB(collection_name="mem0", **where)
        assert [c.name for c in store.list_cols()] == ["mem0"]
        assert _ids(store.search("q", vectors=[[1.0, 0.0, 0.0]], top_k=5)) == ["m2", "m3"]
        assert _ids(store.list(filters={"n": {"gt": 3}})[0]) == ["m3"]
        store.reset()
        assert store.list() == [[]]
    client = PersistentClient(path=data)
    assert client.get_collection("mem0").count() == 0
    client.close()


def _memory(where: dict[str, Any], history: Path) -> Memory:
    """mem0's Memory on huedb; the LLM is configured (mem0 requires one) but never called."""
    return Memory.from_config(
        {
            "vector_store": {
                "provider": "chroma",
                "config": {"collection_name": "memories", **where},
            },
            "embedder": {
                "provider": "langchain",
                "config": {"model": WordHashEmbeddings(), "embedding_dims": EMBED.dim},
            },
            "llm": {"provider": "openai", "config": {"api_key": "not-used-with-infer-false"}},
            "history_db_path": str(history),
        }
    )


def _memories(result: dict) -> list[str]:
    return [m["memory"] for m in result["results"]]


@pytest.mark.parametrize("mode", MODES)
def test_mem0_memory_without_inference(mode: str, tmp_path: Path) -> None:
    data, history = tmp_path / "data", tmp_path / "history.db"
    with connection(mode, data) as where:
        memory = _memory(where, history)
        added = memory.add(
            "green tea in the morning", user_id="alice", metadata={"topic": "drink"}, infer=False
        )
        assert _memories(added) == ["green tea in the morning"]
        memory.add("tennis on sunday", user_id="alice", infer=False)
        memory.add("black coffee in the morning", user_id="bob", infer=False)

        found = memory.search("green tea", filters={"user_id": "alice"}, top_k=3)
        assert _memories(found) == ["green tea in the morning", "tennis on sunday"]
        assert found["results"][0]["metadata"] == {"topic": "drink"}
        drinks = memory.search("morning", filters={"user_id": "alice", "topic": "drink"})
        assert _memories(drinks) == ["green tea in the morning"]
        assert _memories(memory.search("morning", filters={"user_id": "bob"})) == [
            "black coffee in the morning"
        ]

        tea = added["results"][0]["id"]
        memory.update(tea, "jasmine tea in the morning")
        assert memory.get(tea)["memory"] == "jasmine tea in the morning"
        tennis = memory.search("tennis", filters={"user_id": "alice"}, top_k=1)
        memory.delete(tennis["results"][0]["id"])
        assert _memories(memory.get_all(filters={"user_id": "alice"})) == [
            "jasmine tea in the morning"
        ]

    with connection(mode, data) as where:
        memory = _memory(where, history)
        assert _memories(memory.get_all(filters={"user_id": "alice"})) == [
            "jasmine tea in the morning"
        ]
        found = memory.search("jasmine tea", filters={"user_id": "alice", "topic": "drink"})
        assert [(m["id"], m["memory"]) for m in found["results"]] == [
            (tea, "jasmine tea in the morning")
        ]
        assert [e["event"] for e in memory.history(tea)] == ["ADD", "UPDATE"]
