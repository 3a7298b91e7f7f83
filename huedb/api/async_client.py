"""`AsyncHttpClient`: chromadb's async client API, running the HTTP client in worker threads.

As in chromadb's `AsyncClientAPI` and `AsyncCollection`, methods that do I/O are coroutines;
attributes, properties and the methods chromadb keeps synchronous are passed through as is.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

from huedb.api.client import Client, HttpClient
from huedb.api.collection import Collection
from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT, Settings

_COLLECTION_RETURNING = frozenset(
    {"create_collection", "get_collection", "get_or_create_collection", "get_collection_by_id"}
)
# Methods that chromadb's async API (AsyncClientAPI, AsyncCollection) keeps synchronous.
_SYNC_CLIENT_METHODS = frozenset({"get_settings", "clear_system_cache"})
_SYNC_COLLECTION_METHODS = frozenset({"get_model"})


class AsyncCollection:
    """A `Collection` whose data methods are coroutines."""

    def __init__(self, collection: Collection) -> None:
        self._collection = collection

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._collection, name)
        if not inspect.isroutine(attr) or name in _SYNC_COLLECTION_METHODS:
            return attr

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        return call

    async def fork(self, new_name: str) -> AsyncCollection:
        """The fork, as an `AsyncCollection` (as chromadb's async client returns it)."""
        return AsyncCollection(await asyncio.to_thread(self._collection.fork, new_name))

    def __repr__(self) -> str:
        return f"AsyncCollection(name={self._collection.name})"


class AsyncClient:
    """A `Client` whose I/O methods are coroutines; collections come back as `AsyncCollection`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not inspect.isroutine(attr) or name in _SYNC_CLIENT_METHODS:
            return attr

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            result = await asyncio.to_thread(attr, *args, **kwargs)
            if name in _COLLECTION_RETURNING:
                return AsyncCollection(result)
            if name == "list_collections":
                return [AsyncCollection(c) for c in result]
            return result

        return call


async def AsyncHttpClient(  # noqa: N802 - chromadb's factory name
    host: str = "localhost",
    port: int = 8000,
    ssl: bool = False,
    headers: dict[str, str] | None = None,
    settings: Settings | None = None,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
) -> AsyncClient:
    """Connect to a server; the returned client's I/O methods are awaited, as chromadb's are."""
    client = await asyncio.to_thread(
        HttpClient, host, port, ssl, headers, settings, tenant, database
    )
    return AsyncClient(client)
