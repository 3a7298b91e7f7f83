"""``chromadb.api.models.AsyncCollection``: huedb's async collection handle under chromadb's
path."""

from huedb.api.async_client import AsyncCollection

__all__ = ["AsyncCollection"]
