"""``chromadb.base_types`` for huedb: the value types code written against chromadb imports."""

from huedb.sparse_vector import SPARSE_VECTOR_TYPE_VALUE, TYPE_KEY, SparseVector

__all__ = ["SPARSE_VECTOR_TYPE_VALUE", "TYPE_KEY", "SparseVector"]
