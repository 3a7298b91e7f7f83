"""chromadb's own client in-process on huedb's engine (the bridge) runs `collection.search`:
a dense search with a filter and a BM25 sparse one give the rows huedb's Client gives for
the same data, with sparse vectors back as chromadb's `SparseVector`."""

from __future__ import annotations

from pathlib import Path

import chromadb
import numpy as np
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.base_types import SparseVector as ChromaSparseVector
from chromadb.utils.embedding_functions import ChromaBm25EmbeddingFunction as ChromaBm25

import huedb
from huedb.api.client import clear_system_cache
from huedb.chroma_bridge import chroma_client
from huedb.embedding_functions import ChromaBm25EmbeddingFunction as HueBm25

DOCS = [
    "the quick brown fox jumps over the lazy dog",
    "a fox and a hound are friends",
    "vectors and keywords fused by reciprocal rank",
    "the lazy cat sleeps all day",
]
IDS = [f"d{i}" for i in range(len(DOCS))]
EMBEDDINGS = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]]
METADATAS = [{"kind": "animal" if i != 2 else "search", "n": i} for i in range(len(DOCS))]


def _searches(module) -> list:
    """The same two searches in chromadb's or huedb's builder classes."""
    key = module.K
    return [
        module.Search()
        .where(key("kind") == "animal")
        .rank(module.Knn(query=[1.0, 0.0]))
        .limit(3)
        .select(key.DOCUMENT, key.SCORE, key("sparse")),
        module.Search().rank(module.Knn(query="lazy fox", key="sparse")).limit(2),
    ]


def _fill(client, module, bm25) -> object:
    schema = module.Schema().create_index(
        config=module.SparseVectorIndexConfig(
            embedding_function=bm25(), source_key="#document", bm25=True
        ),
        key="sparse",
    )
    col = client.create_collection("bridged", schema=schema, embedding_function=None)
    col.add(ids=IDS, embeddings=EMBEDDINGS, documents=DOCS, metadatas=METADATAS)
    return col


def _plain(rows: list[list[dict]]) -> list[list[dict]]:
    """Rows with sparse vectors as (indices, values) and scores rounded, to compare."""
    out = []
    for batch in rows:
        plain = []
        for row in batch:
            row = dict(row)
            if row.get("metadata"):
                sparse = row["metadata"]["sparse"]
                row["metadata"] = {**row["metadata"], "sparse": (sparse.indices, sparse.values)}
            if row.get("score") is not None:
                row["score"] = round(row["score"], 5)
            plain.append(row)
        out.append(plain)
    return out


def test_chromadb_search_through_the_bridge_matches_huedb(tmp_path: Path) -> None:
    SharedSystemClient.clear_system_cache()
    client = chroma_client(str(tmp_path / "bridge"))
    try:
        bridged = _fill(client, chromadb, ChromaBm25).search(_searches(chromadb))
    finally:
        client.close()
        clear_system_cache()
    native = _fill(huedb.Client(), huedb, HueBm25).search(_searches(huedb))

    assert isinstance(bridged, chromadb.api.types.SearchResult)
    assert bridged["ids"] == native["ids"]
    assert bridged["ids"][0] == ["d0", "d1", "d3"]  # the filter dropped d2
    assert len(bridged["ids"][1]) == 2
    assert isinstance(bridged["metadatas"][0][0]["sparse"], ChromaSparseVector)
    assert _plain(bridged.rows()) == _plain(native.rows())


def _numpy_searches(module) -> dict[str, object]:
    """Searches whose values come from numpy, a tuple or an infinite default: JSON (what an
    HTTP client sends) makes them plain numbers, a list, and no default."""
    key, knn, search = module.K, module.Knn, module.Search
    return {
        "limit": search().rank(knn(query=[1.0, 0.0])).limit(np.int64(2)),
        "knn limit": search().rank(knn(query=[1.0, 0.0], limit=np.int64(2))),
        "float32 query": search().rank(knn(query=[np.float32(1.0), np.float32(0.0)])),
        "int64 operand": search().where(key("n") == np.int64(1)).rank(knn(query=[1.0, 0.0])),
        "tuple of ids": search().where(key.ID.is_in(("d0", "d2"))).rank(knn(query=[1.0, 0.0])),
        "array operand": search().where(key("n").is_in(np.array([1, 2]))),
        "infinite default": search()
        .rank(
            knn(query=[1.0, 0.0], limit=1, default=float("inf"))
            + knn(query=[0.0, 1.0], limit=1, default=float("inf"))
        )
        .select(key.SCORE),
    }


def test_bridge_sends_search_values_as_json_like_the_other_clients(tmp_path: Path) -> None:
    SharedSystemClient.clear_system_cache()
    client = chroma_client(str(tmp_path / "bridge"))
    try:
        col = client.create_collection("numpy", embedding_function=None)
        col.add(ids=IDS, embeddings=EMBEDDINGS, metadatas=METADATAS)
        bridged = {name: col.search(s) for name, s in _numpy_searches(chromadb).items()}
    finally:
        client.close()
        clear_system_cache()
    native_col = huedb.Client().create_collection("numpy", embedding_function=None)
    native_col.add(ids=IDS, embeddings=EMBEDDINGS, metadatas=METADATAS)
    native = {name: native_col.search(s) for name, s in _numpy_searches(huedb).items()}

    for name, result in bridged.items():
        assert result["ids"] == native[name]["ids"], name
        assert result["scores"] == native[name]["scores"], name
    assert bridged["limit"]["ids"] == [["d0", "d1"]]
    assert bridged["tuple of ids"]["ids"] == [["d0", "d2"]]
    assert bridged["infinite default"]["ids"] == [[]]  # no default: in neither top 1
