"""chromadb's `SharedSystemClient.clear_system_cache()`, how tests and fixtures get a fresh
store, gives a fresh store through the bridge as in chromadb: the bridge's cached systems
are stopped and their engines given back, so the next client does not get the old in-memory
data or the old settings back."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.api.shared_system_client import SharedSystemClient

import huedb
import huedb.chroma_bridge
from huedb.version import CHROMA_VERSION


def _settings(system: str, **values: Any) -> chromadb.Settings:
    if system == "huedb":
        values["chroma_api_impl"] = huedb.chroma_bridge.API_IMPL
    return chromadb.Settings(anonymized_telemetry=False, **values)


def _clear() -> None:
    SharedSystemClient.clear_system_cache()
    gc.collect()


@pytest.mark.parametrize("system", ["chromadb", "huedb"])
def test_a_cleared_cache_gives_a_fresh_in_memory_store(system: str) -> None:
    _clear()  # no system of another test's settings
    client = chromadb.EphemeralClient(settings=_settings(system))
    client.create_collection("test_docs").add(ids=["a"], embeddings=[[1.0, 2.0]])
    del client
    _clear()
    fresh = chromadb.EphemeralClient(settings=_settings(system))
    assert fresh.list_collections() == []
    fresh.create_collection("test_docs")  # no "already exists"
    del fresh
    _clear()
    other = chromadb.EphemeralClient(settings=_settings(system, allow_reset=True))
    assert other.list_collections() == []  # other settings: no "different settings" error
    del other
    _clear()


@pytest.mark.parametrize("system", ["chromadb", "huedb"])
def test_a_cleared_cache_reopens_a_path_with_other_settings(system: str, tmp_path: Path) -> None:
    _clear()
    path = str(tmp_path / system)
    client = chromadb.PersistentClient(path=path, settings=_settings(system))
    client.create_collection("docs").add(ids=["a"], embeddings=[[1.0, 2.0]])
    del client
    _clear()
    reopened = chromadb.PersistentClient(path=path, settings=_settings(system, allow_reset=True))
    assert [c.name for c in reopened.list_collections()] == ["docs"]
    assert reopened.get_collection("docs").count() == 1
    assert reopened.reset() is True
    assert reopened.list_collections() == []
    del reopened
    _clear()


def test_in_process_clients_answer_the_chromadb_version_they_implement() -> None:
    """chromadb's in-process client answers its version; huedb's clients (its own and the
    bridge) answer the chromadb version whose API they implement, not huedb's 0.x (code
    checking the version for features took it for an old chromadb)."""
    _clear()
    theirs = chromadb.EphemeralClient(settings=_settings("chromadb")).get_version()
    bridged = chromadb.EphemeralClient(settings=_settings("huedb")).get_version()
    ours = huedb.EphemeralClient().get_version()
    assert theirs == bridged == ours == CHROMA_VERSION
    _clear()
