"""`chroma_client`: a real chromadb client whose server API is huedb's engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
from chromadb.api import ClientAPI
from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from chromadb.config import Settings as ChromaSettings

from huedb.chroma_bridge.identifier import API_IMPL


def chroma_settings(path: str | Path | None = None, **settings: Any) -> ChromaSettings:
    """chromadb `Settings` selecting the bridge: persistent at `path`, else in memory.

    The rest are chromadb's defaults (`anonymized_telemetry` too: ANONYMIZED_TELEMETRY=False
    turns it off, as for chromadb), so that the settings an integration builds itself for
    the same directory equal these: chromadb refuses a second client of one directory
    whose settings differ."""
    chosen = ChromaSettings(chroma_api_impl=API_IMPL, **settings)
    if path is not None:
        chosen.is_persistent = True
        chosen.persist_directory = str(path)
    return chosen


def chroma_client(
    path: str | Path | None = None,
    tenant: str = DEFAULT_TENANT,
    database: str = DEFAULT_DATABASE,
    **settings: Any,
) -> ClientAPI:
    """A `chromadb.Client` on huedb's store at `path` (None: huedb's in-memory store).

    Extra keyword arguments are chromadb `Settings` fields (e.g. `allow_reset=True`).
    """
    return chromadb.Client(chroma_settings(path, **settings), tenant=tenant, database=database)
