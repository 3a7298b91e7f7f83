"""`AsyncHttpClient`: chromadb's async client API, running the HTTP client in worker threads.

As in chromadb's `AsyncClientAPI` and `AsyncCollection`, methods that do I/O are coroutines;
attributes, properties and the methods chromadb keeps synchronous are passed through as is.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from huedb.api.client import Client, claim_http_settings, connect_http, is_connect_error
from huedb.api.collection import Collection
from huedb.config import (
    ASYNC_HTTP_API_IMPL,
    DEFAULT_DATABASE,
    DEFAULT_TENANT,
    Settings,
    settings_of,
)

_COLLECTION_RETURNING = frozenset(
    {"create_collection", "get_collection", "get_or_create_collection", "get_collection_by_id"}
)
# Methods that chromadb's async API (AsyncClientAPI, AsyncCollection) keeps synchronous.
_SYNC_CLIENT_METHODS = frozenset({"get_settings", "clear_system_cache"})
_SYNC_COLLECTION_METHODS = frozenset({"get_model"})


async def _in_thread(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)` run in a worker thread."""
    import asyncio  # here: `import huedb` need not pay for asyncio (~40 ms) unless used

    return await asyncio.to_thread(function, *args, **kwargs)


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
            return await _in_thread(attr, *args, **kwargs)

        return call

    async def fork(self, new_name: str) -> AsyncCollection:
        """The fork, as an `AsyncCollection` (as chromadb's async client returns it)."""
        return AsyncCollection(await _in_thread(self._collection.fork, new_name))

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
            result = await _in_thread(attr, *args, **kwargs)
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
    """Connect to a server; the returned client's I/O methods are awaited, as chromadb's are.

    The arguments and settings are checked and claimed as chromadb's `AsyncHttpClient`
    does (`claim_http_settings`, with `chroma_api_impl` its AsyncFastAPI). Unlike
    chromadb's async client, which sends no auth header, `chroma_client_auth_provider`
    works here as in `HttpClient`."""
    settings = settings_of(settings)
    host, port, ssl = claim_http_settings(settings, ASYNC_HTTP_API_IMPL, host, port, ssl, headers)
    try:
        client = await _in_thread(connect_http, settings, host, port, ssl, tenant, database)
    except ValueError as exc:
        # chromadb's async client asks for its identity first, without the sync client's
        # ValueError: a server it cannot reach raises httpx's ConnectError.
        if is_connect_error(exc.__cause__):
            raise exc.__cause__ from None
        raise
    return AsyncClient(client)


# chromadb's async client types (`chromadb.AsyncClientAPI`, `chromadb.api.AsyncAdminAPI`):
# huedb's one `AsyncClient` class is both.
AsyncClientAPI = AsyncClient
AsyncAdminAPI = AsyncClient
