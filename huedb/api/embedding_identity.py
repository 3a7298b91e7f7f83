"""How a collection records its embedding function, and refusing a client with another one.

Chroma records an embedding function as `{"type": "known", "name", "config"}` (or
`{"type": "legacy"}`) in the collection's configuration; huedb does the same, so a client
opening a collection with a different model is refused instead of mixing vector spaces.
"""

from __future__ import annotations

from typing import Any

from huedb.api.collection_config import embedding_function_identity
from huedb.api.types import CollectionModel

__all__ = ["check_embedding_function", "embedding_function_identity", "with_embedding_function"]


def with_embedding_function(configuration: dict[str, Any] | None, ef: Any) -> dict[str, Any] | None:
    """The create-time configuration with the embedding function's identity added."""
    identity = embedding_function_identity(ef)
    if identity is None or (configuration and configuration.get("embedding_function")):
        return configuration
    return {**(configuration or {}), "embedding_function": identity}


def check_embedding_function(model: CollectionModel, ef: Any) -> None:
    """Refuse a client whose embedding function differs from the collection's recorded one
    (as chromadb does, a client with the default function is never refused)."""
    recorded = (model.configuration_json or {}).get("embedding_function") or {}
    given = embedding_function_identity(ef)
    if not given or given.get("type") != "known" or recorded.get("type") != "known":
        return
    if given["name"] != "default" and given["name"] != recorded.get("name"):
        raise ValueError(
            f"Embedding function conflict: collection {model.name} was created with "
            f"'{recorded.get('name')}' but this client uses '{given['name']}'. Open it with "
            "the same embedding function, or build a new collection for the new model "
            "(see docs/model-versions.md)."
        )
