"""`reembed` copies records with a uri and no metadata, and creates the target with the
source's definition, only the dense embedding function swapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb import Knn, Schema, Search, SparseVectorIndexConfig, StringInvertedIndexConfig
from huedb.api.client import clear_system_cache
from huedb.api.collection_config import embedding_function_identity
from huedb.api.collection_schema import parse_schema, update_vector_indexes
from huedb.errors import InvalidArgumentError
from huedb.ops.collection_definition import ef_search_chosen
from huedb.ops.model_versions import reembed
from huedb.utils.embedding_functions import ChromaBm25EmbeddingFunction
from tests.cli import check_cli
from tests.embedders import v2 as words_v2


def test_reembed_cli_copies_a_record_with_a_uri_and_no_metadata(tmp_path: Path) -> None:
    client = huedb.PersistentClient(path=tmp_path)
    v1 = client.create_collection("docs_v1", embedding_function=None)
    v1.add(
        ids=["a", "b", "c"],
        embeddings=[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
        documents=["x", "y", "z"],
        uris=["s3://img/a.png", None, "s3://img/c.png"],
        metadatas=[None, None, {"k": 1}],
    )
    client.close()
    clear_system_cache()
    r = check_cli(
        "reembed", "--path", str(tmp_path), "--source", "docs_v1", "--target", "docs_v2",
        "--embedder", "tests.embedders:v2",
    )  # fmt: skip
    assert "embedded 3" in r.stdout
    client = huedb.PersistentClient(path=tmp_path)
    got = client.get_collection("docs_v2", embedding_function=words_v2()).get(
        include=["documents", "metadatas", "uris"]
    )
    assert got["ids"] == ["a", "b", "c"]
    assert got["uris"] == ["s3://img/a.png", None, "s3://img/c.png"]
    assert got["metadatas"] == [{}, None, {"k": 1}]  # as the source reads them
    assert got["documents"] == ["x", "y", "z"]
    client.close()


def test_reembed_creates_the_target_like_the_source(tmp_path: Path) -> None:
    client = huedb.PersistentClient(path=tmp_path)
    schema = (
        Schema()
        .create_index(
            config=SparseVectorIndexConfig(
                embedding_function=ChromaBm25EmbeddingFunction(), source_key="#document", bm25=True
            ),
            key="bm25",
        )
        .delete_index(config=StringInvertedIndexConfig(), key="secret")
    )
    v1 = client.create_collection(
        "docs_v1", schema=schema, metadata={"team": "search"}, embedding_function=None
    )
    v1.modify(configuration={"hnsw": {"ef_search": 77}})
    vectors = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    v1.add(
        ids=["a", "b", "c"],
        embeddings=vectors,
        documents=["quick brown fox", "lazy dog", "sleepy cat"],
        metadatas=[{"secret": "s"}, {"secret": "t"}, None],
    )
    report = reembed(client, "docs_v1", "docs_v2", words_v2())
    assert report.embedded == 3
    source = client.get_collection("docs_v1").get_model()
    v2 = client.get_collection("docs_v2", embedding_function=words_v2())
    target = v2.get_model()
    identity = embedding_function_identity(words_v2())
    # The same definition but for the dense index's embedding function.
    assert target.schema == update_vector_indexes(parse_schema(source.schema), {}, identity)
    expected = {**source.configuration_json, "embedding_function": identity}
    assert target.configuration_json == expected
    assert target.metadata == {"team": "search"}
    assert ef_search_chosen(v2) is True
    with pytest.raises(InvalidArgumentError, match="indexing is disabled"):
        v2.get(where={"secret": "s"})
    rows = v2.search(Search().rank(Knn(query="fox", key="bm25")).limit(2)).rows()[0]
    assert [row["id"] for row in rows] == ["a"]
    client.close()


def test_reembed_keeps_the_settings_of_legacy_metadata_keys(tmp_path: Path) -> None:
    client = huedb.PersistentClient(path=tmp_path)
    v1 = client.create_collection(
        "docs_v1",
        metadata={"hnsw:space": "ip", "hnsw:M": 24, "owner": "x"},
        embedding_function=None,
    )
    v1.add(ids=["a"], embeddings=[[1.0, 0.0]], documents=["hello"])
    reembed(client, "docs_v1", "docs_v2", words_v2())
    v2 = client.get_collection("docs_v2", embedding_function=words_v2())
    hnsw = v2.configuration_json["hnsw"]
    assert (hnsw["space"], hnsw["max_neighbors"]) == ("ip", 24)
    assert v2.metadata == {"owner": "x"}
    assert v2.configuration_json["embedding_function"] == embedding_function_identity(words_v2())
    client.close()
