"""``chromadb.utils``'s module paths, for code written against chromadb."""

from huedb.utils import batch_utils, data_loaders, embedding_functions

__all__ = ["batch_utils", "data_loaders", "embedding_functions"]
