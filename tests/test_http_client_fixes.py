"""huedb's HTTP clients against a real server, compared with chromadb's clients on it.

- `include=["data"]`: loaded by the client from the uris, never sent (the server rejects it).
- `AsyncHttpClient`: coroutines exactly where chromadb's async API has them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import chromadb
import pytest
from chromadb.api import AsyncAdminAPI, AsyncClientAPI
from chromadb.api.async_client import AsyncClient as ChromaAsyncClient
from chromadb.api.models.AsyncCollection import AsyncCollection as ChromaAsyncCollection
from chromadb.config import Settings as ChromaSettings

import huedb
from huedb.api.types import CollectionModel
from huedb.config import Settings
from tests.http_checks import chroma_client
from tests.servers import RunningServer, huedb_server


class UriLoader:
    """A data loader whose "data" for a uri is a string naming it."""

    def __call__(self, uris: list[str]) -> list[str]:
        return [f"loaded:{uri}" for uri in uris]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with huedb_server(tmp_path_factory.mktemp("http-fixes") / "data") as running:
        yield running


def _data_reads(client: Any, name: str, loader: Any) -> dict[str, Any]:
    """get and query with "data" in the include, on a fresh collection of one uri."""
    col = client.create_collection(name, data_loader=loader, embedding_function=None)
    col.add(ids=["u1"], embeddings=[[1.0, 2.0]], uris=["file://x"])
    results: dict[str, Any] = {}
    query = col.query(query_embeddings=[[1.0, 2.0]], n_results=1, include=["uris", "data"])
    results["query_uris_data"] = {k: query[k] for k in ("ids", "uris", "data", "included")}
    if loader is not None:
        query = col.query(query_embeddings=[[1.0, 2.0]], n_results=1, include=["data"])
        got = col.get(include=["data"])
        results["query_data"] = {k: query[k] for k in ("ids", "data", "included")}
        results["get_data"] = {k: got[k] for k in ("ids", "data", "included")}
    client.delete_collection(name)
    return results


@pytest.mark.parametrize("loader", [UriLoader(), None], ids=["data-loader", "no-loader"])
def test_http_client_reads_data_as_chromadb_does(server: RunningServer, loader: Any) -> None:
    ours = _data_reads(huedb.HttpClient(host=server.host, port=server.port), "ours", loader)
    theirs = _data_reads(chroma_client(server.port), "theirs", loader)
    assert ours == theirs
    if loader is not None:
        assert ours["get_data"]["data"] == ["loaded:file://x"]
        assert ours["query_data"]["data"] == [["loaded:file://x"]]
    else:
        assert ours["query_uris_data"]["uris"] == [["file://x"]]


def test_async_http_client_reads_data(server: RunningServer) -> None:
    async def scenario() -> tuple[Any, Any]:
        client = await huedb.AsyncHttpClient(host=server.host, port=server.port)
        col = await client.create_collection("async-data", data_loader=UriLoader())
        await col.add(ids=["u1"], embeddings=[[1.0, 2.0]], uris=["file://x"])
        got = await col.get(include=["data"])
        query = await col.query(query_embeddings=[[1.0, 2.0]], n_results=1, include=["data"])
        await client.delete_collection("async-data")
        return got["data"], query["data"]

    assert asyncio.run(scenario()) == (["loaded:file://x"], [["loaded:file://x"]])


def _public_names(*classes: type) -> set[str]:
    """Public member names of the classes."""
    return {name for cls in classes for name in dir(cls) if not name.startswith("_")}


def _kind(value: Any) -> str:
    if inspect.iscoroutinefunction(value):
        return "coroutine function"
    return "routine" if inspect.isroutine(value) else "value"


def _mismatches(names: set[str], theirs: list[Any], ours: Any) -> dict[str, tuple[str, str]]:
    """Members huedb's object has whose kind (coroutine function, sync routine, value)
    differs from chromadb's: read from the first of `theirs` (chromadb's object, then its
    API classes) that has the member."""
    found = {}
    for name in sorted(names):
        if not hasattr(ours, name):
            continue
        their_kind = _kind(getattr(next(t for t in theirs if hasattr(t, name)), name))
        if their_kind != _kind(getattr(ours, name)):
            found[name] = (their_kind, _kind(getattr(ours, name)))
    return found


def test_async_client_members_are_async_exactly_where_chromadbs_are(
    server: RunningServer,
) -> None:
    client_classes = [ChromaAsyncClient, AsyncClientAPI, AsyncAdminAPI]
    client_names = _public_names(*client_classes)
    collection_names = _public_names(ChromaAsyncCollection)

    async def scenario() -> dict[str, Any]:
        theirs = await chromadb.AsyncHttpClient(
            host=server.host, port=server.port, settings=ChromaSettings(anonymized_telemetry=False)
        )
        ours = await huedb.AsyncHttpClient(host=server.host, port=server.port)
        their_col = await theirs.create_collection("members-theirs")
        our_col = await ours.create_collection("members-ours")
        found = {
            "common_client": {n for n in client_names if hasattr(ours, n)},
            "common_collection": {n for n in collection_names if hasattr(our_col, n)},
            "client": _mismatches(client_names, [theirs, *client_classes], ours),
            "collection": _mismatches(collection_names, [their_col], our_col),
            "tenant": (ours.tenant, ours.database),
            "settings": ours.get_settings(),
            "model": our_col.get_model(),
        }
        await theirs.delete_collection("members-theirs")
        await ours.delete_collection("members-ours")
        return found

    found = asyncio.run(scenario())
    assert {
        "tenant",
        "database",
        "get_settings",
        "clear_system_cache",
        "heartbeat",
        "create_collection",
        "create_database",
    } <= found["common_client"]
    assert {"get_model", "name", "metadata", "get", "query"} <= found["common_collection"]
    assert found["client"] == {}
    assert found["collection"] == {}
    assert found["tenant"] == ("default_tenant", "default_database")
    assert isinstance(found["settings"], Settings)
    assert isinstance(found["model"], CollectionModel)
    assert found["model"].name == "members-ours"
