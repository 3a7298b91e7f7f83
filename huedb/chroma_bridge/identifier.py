"""Teach chromadb's shared-system cache the bridge's `chroma_api_impl`.

`SharedSystemClient._get_identifier_from_settings` accepts only chromadb's own API
implementations and raises for any other dotted path, so without this no chromadb client
(`chromadb.Client`, `PersistentClient`, or one an integration builds from `Settings`)
could run on the bridge. The replacement keys the bridge's systems by data path, as
chromadb does for its local mode, and defers to chromadb for every other implementation.

chromadb's `SharedSystemClient.clear_system_cache()` (how tests and fixtures get a fresh
store) forgets its cached systems without stopping them; the bridge's systems hold the
process's shared huedb engine, so the next client would get the old engine back, with its
in-memory data and its settings. The replacement stops the bridge's cached systems, giving
their engines back (the last holder's release closes one), as huedb's own
`clear_system_cache` closes its engines: the next client opens a fresh one, and a client
made before the clear can no longer be used.
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
            return _PREFIX + str(Path(settings.persist_directory).expanduser().resolve())
        return _PREFIX + "ephemeral"
    return _ORIGINAL.__func__(settings)


def _clear_system_cache() -> None:
    """chromadb's cache clear, the bridge's cached systems stopped first."""
    bridged = [
        system
        for identifier, system in SharedSystemClient._identifier_to_system.items()
        if identifier.startswith(_PREFIX)
    ]
    _ORIGINAL_CLEAR.__func__()
    for system in bridged:
        system.stop()


def install() -> None:
    """Make chromadb's `SharedSystemClient` accept `API_IMPL` and stop the bridge's
    systems when its cache is cleared (idempotent)."""
    SharedSystemClient._get_identifier_from_settings = staticmethod(_identifier)
    SharedSystemClient.clear_system_cache = staticmethod(_clear_system_cache)
