"""The chromadb bridge and store opening, side by side with chromadb 1.5.9 (PersistentClient
on tmp_path):

- one directory spelt `store`, `./store`, `store/` and its absolute path opens under every
  spelling in one process, on one engine (chromadb opens them all; it refuses only other
  settings under one spelling, and so does the bridge);
- a directory holding a Chroma store and no huedb store is refused with the command that
  migrates it, never opened as a new empty huedb store beside Chroma's data;
- a client or collection made before `SharedSystemClient.clear_system_cache()` keeps
  working on its directory, as chromadb's do.
"""

from __future__ import annotations

import gc
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import chromadb.errors
import pytest
from chromadb.api import ClientAPI
from chromadb.api.shared_system_client import SharedSystemClient

import huedb
import huedb.chroma_bridge
import huedb.errors
from huedb.api.client import clear_system_cache
from huedb.chroma_bridge import chroma_client
from huedb.engine.engine import Engine
from tests.cli import check_cli

SYSTEMS = ["chromadb", "huedb"]


def _settings(system: str, **values: Any) -> chromadb.Settings:
    if system == "huedb":
        values["chroma_api_impl"] = huedb.chroma_bridge.API_IMPL
    return chromadb.Settings(anonymized_telemetry=False, **values)


def _client(system: str, path: str | Path, **values: Any) -> ClientAPI:
    return chromadb.PersistentClient(path=path, settings=_settings(system, **values))


def _engine(client: ClientAPI) -> Engine:
    """The huedb engine under a bridge client."""
    return client._server.local.engine  # type: ignore[attr-defined]


def _clear() -> None:
    SharedSystemClient.clear_system_cache()
    gc.collect()
    clear_system_cache()


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    _clear()
    yield
    _clear()


# -- one directory under several spellings ---------------------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_spelling_of_one_directory_opens_it(
    system: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LangChain's `persist_directory="store"` and Haystack's `persist_path="./store"` in one
    app: chromadb opens both; the bridge refused every spelling but the first ("already
    exists ... with different settings")."""
    monkeypatch.chdir(tmp_path)
    first = _client(system, "store")
    first.create_collection("docs").add(ids=["a"], embeddings=[[1.0, 2.0]])
    spellings = ["./store", "store/", str(tmp_path / "store"), tmp_path / "store"]
    others = [_client(system, spelling) for spelling in spellings]
    for other in others:
        assert other.get_collection("docs").count() == 1
    others[0].get_collection("docs").add(ids=["b"], embeddings=[[3.0, 4.0]])
    assert first.get_collection("docs").count() == 2
    assert sorted(others[2].get_collection("docs").get()["ids"]) == ["a", "b"]
    if system == "huedb":  # one store: one engine for every spelling
        assert all(_engine(other) is _engine(first) for other in others)
    # Other settings under a spelling already open are still refused, as by chromadb.
    with pytest.raises(ValueError, match="already exists for .* with different settings"):
        _client(system, "./store", allow_reset=True)


def test_chroma_client_beside_an_integrations_own_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/integrations.md: LangChain on `chroma_client("./store")` and Haystack given
    `client_settings={"chroma_api_impl": API_IMPL}` with `persist_path="./store"` in one app.
    `chroma_client` set `anonymized_telemetry=False`, which chromadb's settings of the other
    lacked: "An instance of Chroma already exists ... with different settings"."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANONYMIZED_TELEMETRY", raising=False)
    langchain = chroma_client("./store")
    langchain.create_collection("lcdocs").add(ids=["a"], embeddings=[[1.0, 2.0]])
    settings = chromadb.Settings(chroma_api_impl=huedb.chroma_bridge.API_IMPL)
    haystack = chromadb.PersistentClient(path="./store", settings=settings)
    assert haystack.get_collection("lcdocs").count() == 1


def test_the_same_spelling_after_chdir_is_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path names the directory it names when the client is made."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    monkeypatch.chdir(tmp_path / "one")
    _client("huedb", "store").create_collection("docs").add(ids=["a"], embeddings=[[1.0]])
    monkeypatch.chdir(tmp_path / "two")
    assert _client("huedb", "store").list_collections() == []
    assert (tmp_path / "two" / "store" / "huedb.sqlite3").is_file()


# -- a Chroma directory ------------------------------------------------------------------


def _chroma_directory(path: Path) -> Path:
    """A directory Chroma wrote (one collection, one record), its client closed."""
    client = _client("chromadb", path)
    client.create_collection("old", embedding_function=None).add(ids=["1"], embeddings=[[1.0]])
    client.close()
    return path


def _refusal(path: Path) -> str:
    """The start of the refusal of the Chroma directory `path` (its message names the
    migration command)."""
    return re.escape(f"{path} holds a Chroma store (chroma.sqlite3) and no huedb store")


def test_a_chroma_directory_is_refused_with_the_command_that_migrates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pointed at a directory Chroma wrote, chromadb sees its data; huedb's clients and the
    bridge used to start an empty huedb store beside it (count 0, writes elsewhere). They
    refuse it, naming `huedb migrate-chroma`, and create nothing there."""
    source = _chroma_directory(tmp_path / "chroma")
    before = sorted(p.name for p in source.iterdir())
    assert _client("chromadb", source).get_collection("old").count() == 1  # Chroma's view
    _clear()

    with pytest.raises(huedb.errors.InternalError, match=_refusal(source)) as caught:
        huedb.PersistentClient(path=source)
    message = str(caught.value)
    for _ in range(2):  # a second try gives the same reason (not a half-started client)
        with pytest.raises(chromadb.errors.InternalError, match=_refusal(source)):
            chroma_client(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHROMA_API_IMPL", huedb.chroma_bridge.API_IMPL)  # the env door
    with pytest.raises(chromadb.errors.InternalError, match=_refusal(source)):
        chromadb.PersistentClient(path="chroma")
    monkeypatch.delenv("CHROMA_API_IMPL")
    assert sorted(p.name for p in source.iterdir()) == before  # no huedb store was made

    # The command in the message, run as given with NEW_DIR chosen, migrates the data.
    command = shlex.split(message.split("with: ", 1)[1].split(" (then", 1)[0])
    assert command[:3] == ["huedb", "migrate-chroma", "--from"]
    target = tmp_path / "migrated"
    check_cli(*[str(target) if arg == "NEW_DIR" else arg for arg in command[1:]])
    assert huedb.PersistentClient(path=target).get_collection("old").count() == 1
    assert chroma_client(target).get_collection("old").count() == 1


def test_a_directory_with_both_stores_opens_the_huedb_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    client = huedb.PersistentClient(path=data)
    client.create_collection("ours").add(ids=["a", "b"], embeddings=[[1.0], [2.0]])
    client.close()
    _chroma_directory(data)  # Chroma's file written into the same directory
    assert (data / "chroma.sqlite3").is_file()
    assert huedb.PersistentClient(path=data).get_collection("ours").count() == 2
    assert chroma_client(data).get_collection("ours").count() == 2


# -- handles from before a cache clear ---------------------------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
def test_handles_from_before_a_cache_clear_keep_working(system: str, tmp_path: Path) -> None:
    """chromadb's old client and collection keep working on their directory after
    `clear_system_cache()`; the bridge's raised `RuntimeError: The huedb bridge is not
    started`. Old and new handles share the store, and the next clear gives the engine the
    old ones took back (a client with other settings then opens the directory)."""
    path = tmp_path / "data"
    client = _client(system, path)
    col = client.create_collection("docs", embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0, 2.0]])
    SharedSystemClient.clear_system_cache()
    assert col.count() == 1
    assert [c.name for c in client.list_collections()] == ["docs"]
    fresh = _client(system, path)
    assert fresh.get_collection("docs").count() == 1
    col.add(ids=["b"], embeddings=[[3.0, 4.0]])
    assert fresh.get_collection("docs").count() == 2
    client.get_collection("docs").add(ids=["c"], embeddings=[[5.0, 6.0]])
    assert fresh.get_collection("docs").count() == 3
    SharedSystemClient.clear_system_cache()
    other = _client(system, path, allow_reset=True)
    assert other.get_collection("docs").count() == 3
    assert other.reset() is True
    assert other.list_collections() == []


def test_an_old_handle_of_a_relative_path_reopens_its_own_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old handle made on `store` in one working directory takes the engine of that
    directory again after a cache clear, whatever the working directory is by then: never
    a new store under the new one (chromadb's old handle fails there and creates nothing)."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    monkeypatch.chdir(tmp_path / "one")
    col = _client("huedb", "store").create_collection("docs", embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0, 2.0]])
    monkeypatch.chdir(tmp_path / "two")
    SharedSystemClient.clear_system_cache()
    assert col.count() == 1
    assert not (tmp_path / "two" / "store").exists()


def test_an_old_handle_of_a_cleared_in_memory_store_says_so() -> None:
    """chromadb's old handles keep their private in-memory store; the bridge's in-memory
    store is the process's one, closed by the clear: an old handle raises chromadb's
    `InternalError` naming the clear, and a new client starts empty, as in chromadb."""
    client = chromadb.EphemeralClient(settings=_settings("huedb"))
    col = client.create_collection("docs", embedding_function=None)
    col.add(ids=["a"], embeddings=[[1.0]])
    SharedSystemClient.clear_system_cache()
    for call in (col.count, client.list_collections):
        with pytest.raises(chromadb.errors.InternalError, match="clear_system_cache"):
            call()
    assert chromadb.EphemeralClient(settings=_settings("huedb")).list_collections() == []
