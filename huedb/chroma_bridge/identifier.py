"""Teach chromadb's shared-system cache the bridge's `chroma_api_impl`.

`SharedSystemClient._get_identifier_from_settings` accepts only chromadb's own API
implementations and raises for any other dotted path, so without this no chromadb client
(`chromadb.Client`, `PersistentClient`, or one an integration builds from `Settings`)
could run on the bridge. The replacement keys the bridge's systems as chromadb keys its
local mode's, by the data path as spelt (`store`, `./store` and `/abs/store` are three
systems, since chromadb compares a cached system's settings, `persist_directory` as spelt
included, with a new client's), and by the directory it names (the same spelling after a
`chdir` is another directory). Systems of one directory share its engine through
`huedb.engine.registry`, so every spelling reads and writes one store; their `allow_reset`
must agree, as for huedb's own clients. Every other implementation is left to chromadb.

chromadb's `SharedSystemClient.clear_system_cache()` (how tests and fixtures get a fresh
store) forgets its cached systems without stopping them; the bridge's systems hold the
process's shared huedb engine, so the next client would get the old engine back, with its
in-memory data and its settings. The replacement stops the bridge's cached systems, giving
their engines back (the last holder's release closes one), as huedb's own
`clear_system_cache` closes its engines: the next client opens a fresh one. A client or
collection made before the clear takes its directory's engine again at its next call
(as chromadb's old handles keep working), and the next clear gives it back again; an old
handle of an in-memory store raises chromadb's `InternalError` (that store is gone).
"""

from __future__ import annotations

from pathlib import Path

from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings

API_IMPL = "huedb.chroma_bridge.server_api.HuedbServerAPI"
_ORIGINAL = SharedSystemClient.__dict__["_get_identifier_from_settings"]
_ORIGINAL_CLEAR = SharedSystemClient.__dict__["clear_system_cache"]
_PREFIX = "huedb:"


def _identifier(settings: Settings) -> str:
    if settings.chroma_api_impl == API_IMPL:
        if settings.is_persistent:
            spelt = str(settings.persist_directory)
            directory = str(Path(spelt).expanduser().resolve())
            return _PREFIX + (directory if spelt == directory else f"{spelt} ({directory})")
        return _PREFIX + "ephemeral"
    return _ORIGINAL.__func__(settings)


def _clear_system_cache() -> None:
    """chromadb's cache clear, the bridge's cached systems stopped first (and the engines
    that handles from before an earlier clear took again given back)."""
    from huedb.chroma_bridge.server_api import HuedbServerAPI

    bridged = [
        system
        for identifier, system in SharedSystemClient._identifier_to_system.items()
        if identifier.startswith(_PREFIX)
    ]
    _ORIGINAL_CLEAR.__func__()
    for system in bridged:
        system.stop()
        for component in system.components():
            if isinstance(component, HuedbServerAPI):
                component.cache_cleared()
    for api in HuedbServerAPI.reopened_since_last_clear():
        api.cache_cleared()


def install() -> None:
    """Make chromadb's `SharedSystemClient` accept `API_IMPL` and stop the bridge's
    systems when its cache is cleared (idempotent)."""
    SharedSystemClient._get_identifier_from_settings = staticmethod(_identifier)
    SharedSystemClient.clear_system_cache = staticmethod(_clear_system_cache)
