"""Code written for chromadb runs on huedb unchanged but for the one import: it passes
chromadb's own `Settings` to the clients (`from chromadb.config import Settings` still
imports chromadb's), whose given fields carry over (anything else is a clear TypeError),
and it gets embeddings back as chromadb returns them."""

from __future__ import annotations

from pathlib import Path

import pytest
from chromadb.config import Settings as ChromaSettings

import huedb
from huedb.config import Settings, settings_of


def test_chromadb_settings_work_in_every_embedded_client(tmp_path: Path) -> None:
    client = huedb.PersistentClient(
        path=tmp_path, settings=ChromaSettings(anonymized_telemetry=False)
    )
    client.create_collection("docs").add(ids=["a"], embeddings=[[1.0, 2.0]])
    assert client.get_settings().persist_directory == str(tmp_path)
    assert client.get_collection("docs").count() == 1
    client.close()

    ephemeral = huedb.EphemeralClient(ChromaSettings(allow_reset=True))
    assert ephemeral.get_settings().allow_reset is True
    assert ephemeral.reset() is True


def test_only_the_fields_chromadb_was_given_carry_over() -> None:
    given = ChromaSettings(
        allow_reset=True,
        chroma_client_auth_credentials="tok",
        chroma_api_impl="chromadb.api.segment.SegmentAPI",
    )
    settings = settings_of(given)
    assert settings.allow_reset is True
    assert settings.chroma_client_auth_credentials == "tok"
    assert settings.chroma_api_impl == Settings().chroma_api_impl  # huedb picks its own
    assert settings.persist_directory == Settings().persist_directory


def test_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="huedb.Settings or chromadb.config.Settings, got dict"):
        huedb.EphemeralClient({"allow_reset": True})  # type: ignore[arg-type]


def test_embeddings_come_back_as_chromadb_returns_them() -> None:
    """float64 and writable (chromadb's in-process client): code normalises them in place
    (`e /= norm`) or writes them to JSON as Python floats."""
    import chromadb
    import numpy as np

    results = []
    for module in (chromadb, huedb):
        col = module.EphemeralClient().get_or_create_collection("returned-vectors")
        col.upsert(ids=["a", "b"], embeddings=[[1.0, 2.0], [3.0, 4.1]])
        got = col.get(include=["embeddings"])["embeddings"]
        found = col.query(query_embeddings=[[1.0, 2.0]], n_results=2, include=["embeddings"])
        first = found["embeddings"][0]
        got /= np.linalg.norm(got, axis=1, keepdims=True)  # in place
        results.append((got.dtype, first.dtype, first.flags.writeable, got.tolist()))
    assert results[0] == results[1]
    assert results[1][0] == np.float64
