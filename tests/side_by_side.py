"""The same call on chromadb's in-process client, huedb's, and chromadb's HTTP client
against `huedb run`: fixtures and the comparison of their outcomes.

Use in a test module (fixtures are bound to module names, so pytest finds them)::

    from tests import side_by_side
    from tests.side_by_side import each, same

    chroma, server, clients = side_by_side.chroma, side_by_side.server, side_by_side.clients

    def test_x(clients):
        assert same(each(clients, lambda client, name: ...)) == ...
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings

import huedb
from tests.servers import chroma_run, huedb_server

TARGETS = ("chroma", "huedb-local", "huedb-http")
_names = itertools.count()


@pytest.fixture(scope="module")
def chroma() -> Iterator[Any]:
    """chromadb's in-process client, on a fresh shared system (reset afterwards)."""
    SharedSystemClient.clear_system_cache()
    client = chromadb.EphemeralClient(
        settings=ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    )
    yield client
    client.reset()
    SharedSystemClient.clear_system_cache()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A `huedb run` for the module."""
    with huedb_server(tmp_path_factory.mktemp("side-by-side") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A `huedb run` and Chroma's own `chroma run` for the module: their base URLs, for
    raw HTTP requests side by side."""
    with (
        huedb_server(tmp_path_factory.mktemp("huedb")) as ours,
        chroma_run(tmp_path_factory.mktemp("chroma")) as theirs,
    ):
        yield {"huedb": ours.url, "chroma": theirs}


@pytest.fixture
def persistent_pair(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """chromadb's and huedb's persistent clients, each on its own directory of tmp_path."""
    chroma = chromadb.PersistentClient(
        path=str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    ours = huedb.PersistentClient(path=str(tmp_path / "huedb"))
    yield {"chroma": chroma, "huedb": ours}
    ours.close()
    SharedSystemClient.clear_system_cache()


@pytest.fixture
def clients(chroma: Any, server: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Each target's client, by the names of `TARGETS`."""
    local = huedb.PersistentClient(path=tmp_path / "data")
    http = chromadb.HttpClient(
        host="127.0.0.1", port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    yield {"chroma": chroma, "huedb-local": local, "huedb-http": http}
    local.close()


def fresh_name(prefix: str = "s") -> str:
    """A collection name no test of the session used."""
    return f"{prefix}{next(_names):05d}"


def outcome(action: Callable[[], Any], serde_positions: bool = True) -> Any:
    """The action's result, or ("error", class name, message); without `serde_positions`,
    serde's ` at line L column C` is left out of messages (huedb does not reproduce it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - compared across targets
            message = str(exc)
            if not serde_positions:
                message = re.sub(r" at line \d+ column \d+", "", message)
            return ("error", type(exc).__name__, message)


def each(
    clients: dict[str, Any],
    make: Callable[[Any, str], Any],
    prefix: str = "s",
    serde_positions: bool = True,
) -> dict[str, Any]:
    """`make(client, fresh_name)` on every target: its `outcome`."""
    return {
        target: outcome(lambda t=target: make(clients[t], fresh_name(prefix)), serde_positions)
        for target in TARGETS
    }


def same(results: dict[str, Any]) -> Any:
    """The common outcome of every target (the test fails naming a target that differs)."""
    ref = results["chroma"]
    for target in TARGETS[1:]:
        assert results[target] == ref, f"{target}: {results[target]!r}\nchroma: {ref!r}"
    return ref
