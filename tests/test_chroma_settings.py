"""Code written for chromadb passes chromadb's own `Settings` to the clients (the switch is
one import: `from chromadb.config import Settings` still imports chromadb's): the fields it
set carry over, and anything else is a clear TypeError."""

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
