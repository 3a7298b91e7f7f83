"""chromadb's ``utils`` package paths, for code written against chromadb."""

from huedb.utils import embedding_functions

__all__ = ["embedding_functions"]
