"""What clients call: Client, Collection, the ServerAPI interface, its in-process and HTTP
implementations, and the checks of everything a request carries.

chromadb's client types are here too, as in `chromadb.api`: `ClientAPI` and `AdminAPI`
(huedb's `Client`), `AsyncClientAPI` and `AsyncAdminAPI` (its `AsyncClient`). They are
loaded on first use, so importing a module of this package does not import the clients.
"""

from __future__ import annotations

from typing import Any

_CLIENT_TYPES = {
    "ClientAPI": "huedb.api.client",
    "AdminAPI": "huedb.api.client",
    "AsyncClientAPI": "huedb.api.async_client",
    "AsyncAdminAPI": "huedb.api.async_client",
}

__all__ = sorted(_CLIENT_TYPES)


def __getattr__(name: str) -> Any:
    module = _CLIENT_TYPES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
