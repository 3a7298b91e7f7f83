"""``chromadb.api.models.Collection``: huedb's collection handle under chromadb's path."""

from huedb.api.collection import Collection

__all__ = ["Collection"]
