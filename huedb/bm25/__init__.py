"""Chroma's BM25 sparse embedding function (``chroma_bm25``), producing chromadb's vectors."""

from huedb.bm25.embedding_function import NAME, ChromaBm25EmbeddingFunction
from huedb.bm25.stopwords import DEFAULT_CHROMA_BM25_STOPWORDS

__all__ = ["DEFAULT_CHROMA_BM25_STOPWORDS", "NAME", "ChromaBm25EmbeddingFunction"]
