"""How a collection records its embedding function, and refusing a client with another one.

Chroma records an embedding function as `{"type": "known", "name", "config"}` (or
`{"type": "legacy"}`) in the collection's configuration; huedb does the same, so a client
opening a collection with a different model is refused instead of mixing vector spaces.
"""

from __future__ import annotations

from inspect import signature
from typing import Any

from huedb.api.collection_config import embedding_function_identity
from huedb.api.types import CollectionModel, EmbeddingFunction

__all__ = [
    "check_embedding_function",
    "check_embedding_function_signature",
    "embedding_function_identity",
    "with_embedding_function",
]


def with_embedding_function(configuration: dict[str, Any] | None, ef: Any) -> dict[str, Any] | None:
    """The create-time configuration with the embedding function's identity added."""
    identity = embedding_function_identity(ef)
    if identity is None or (configuration and configuration.get("embedding_function")):
        return configuration
    return {**(configuration or {}), "embedding_function": identity}


def check_embedding_function(model: CollectionModel, ef: Any) -> None:
    """Refuse a client whose embedding function differs from the collection's recorded one,
    as chromadb's `validate_embedding_function_conflict_on_get`: when the collection
    recorded a named function, a function of another name is refused, and so is an
    unnamed (legacy) one (its name is NotImplemented in chromadb's message); a client with
    the default function, or with none, is never refused."""
    recorded = (model.configuration_json or {}).get("embedding_function")
    if ef is None or not isinstance(recorded, dict):
        return
    persisted = recorded.get("name")
    given = _name(ef)
    if given != "default" and persisted is not None and persisted != given:
        raise ValueError(
            "An embedding function already exists in the collection configuration, and a "
            "new one is provided. If this is intentional, please embed documents "
            f"separately. Embedding function conflict: new: {given} vs persisted: {persisted}"
        )


def check_embedding_function_signature(ef: Any) -> None:
    """Refuse an embedding function whose class's `__call__` does not take `(self, input)`,
    as chromadb's `validate_embedding_function` (a ValueError): a string, a plain function
    or a pre-0.4.16 `__call__(self, texts)` would only fail, or embed wrongly, at the first
    add. Unlike chromadb, which creates the collection and then raises, nothing is created."""
    expected = signature(EmbeddingFunction.__call__).parameters.keys()
    try:
        given = signature(type(ef).__call__).parameters.keys()
    except (TypeError, ValueError):  # a class whose __call__ has no readable signature
        given = None
    if given != expected:
        raise ValueError(
            f"Expected EmbeddingFunction.__call__ to have the following signature: {expected}, "
            f"got {given}\nPlease see https://docs.trychroma.com/guides/embeddings for details "
            "of the EmbeddingFunction interface."
        )


def _name(ef: Any) -> Any:
    """The function's `name()` as chromadb reads it; NotImplemented (chromadb's legacy
    name) when it has none: a plain callable, or a recorded identity that is not known."""
    if isinstance(ef, dict):
        return ef.get("name", NotImplemented) if ef.get("type") == "known" else NotImplemented
    name = getattr(ef, "name", None)
    return name() if callable(name) else NotImplemented
