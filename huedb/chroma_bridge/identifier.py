"""Teach chromadb's shared-system cache the bridge's `chroma_api_impl`.

`SharedSystemClient._get_identifier_from_settings` accepts only chromadb's own API
implementations and raises for any other dotted path, so without this no chromadb client
(`chromadb.Client`, `PersistentClient`, or one an integration builds from `Settings`)
could run on the bridge. The replacement keys the bridge's systems by data path, as
chromadb does for its local mode, and defers to chromadb for every other implementation.
"""

from __future__ import annotations

from pathlib import Path

from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings

API_IMPL = "huedb.chroma_bridge.server_api.HuedbServerAPI"
_ORIGINAL = SharedSystemClient.__dict__["_get_identifier_from_settings"]


def _identifier(settings: Settings) -> str:
    if settings.chroma_api_impl == API_IMPL:
        if settings.is_persistent:
            return "huedb:" + str(Path(settings.persist_directory).expanduser().resolve())
        return "huedb:ephemeral"
    return _ORIGINAL.__func__(settings)


def install() -> None:
    """Make chromadb's `SharedSystemClient` accept `API_IMPL` (idempotent)."""
    SharedSystemClient._get_identifier_from_settings = staticmethod(_identifier)
