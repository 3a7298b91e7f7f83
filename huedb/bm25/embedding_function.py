"""``ChromaBm25EmbeddingFunction``: Chroma's BM25 sparse embedding function (``chroma_bm25``).

A text becomes one sparse vector with an entry per distinct term (see ``tokenizer``): for a
term seen ``tf`` times in a text of ``n`` terms, its value is
``tf * (k + 1) / (tf + k * (1 - b + b * n / avg_doc_length))``. ``avg_doc_length`` is a fixed
parameter, not a corpus statistic; the inverse document frequency is applied at query time by
the server (``bm25: true`` on the sparse index). Documents and queries are embedded alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from huedb.bm25.config_check import check_config
from huedb.bm25.stopwords import DEFAULT_CHROMA_BM25_STOPWORDS
from huedb.bm25.tokenizer import Bm25Tokenizer
from huedb.sparse_vector import (
    SparseVector,
    SparseVectors,
    trusted_sparse_vector,
    validate_sparse_vectors,
)

__all__ = ["NAME", "ChromaBm25EmbeddingFunction"]

NAME = "chroma_bm25"

DEFAULT_K = 1.2
DEFAULT_B = 0.75
DEFAULT_AVG_DOC_LENGTH = 256.0
DEFAULT_TOKEN_MAX_LENGTH = 40

_CONFIG_KEYS = frozenset(
    {"k", "b", "avg_doc_length", "token_max_length", "stopwords", "include_tokens"}
)


class ChromaBm25EmbeddingFunction:
    """BM25 term weights as sparse vectors, equal to chromadb's function of the same name.

    ``stopwords`` replaces the default English list; ``include_tokens`` adds each index's stem
    as the vector's labels. Every parameter is part of the recorded configuration.
    """

    def __init__(
        self,
        k: float = DEFAULT_K,
        b: float = DEFAULT_B,
        avg_doc_length: float = DEFAULT_AVG_DOC_LENGTH,
        token_max_length: int = DEFAULT_TOKEN_MAX_LENGTH,
        stopwords: Iterable[str] | None = None,
        include_tokens: bool = False,
    ) -> None:
        """Parameters are coerced as chromadb does (``float``, ``int``, ``bool``, ``str``)."""
        self.k = float(k)
        self.b = float(b)
        self.avg_doc_length = float(avg_doc_length)
        self.token_max_length = int(token_max_length)
        self.include_tokens = bool(include_tokens)
        self.stopwords = None if stopwords is None else [str(word) for word in stopwords]
        self._tokenizer = Bm25Tokenizer(
            DEFAULT_CHROMA_BM25_STOPWORDS if self.stopwords is None else self.stopwords,
            self.token_max_length,
        )

    def encode(self, text: str) -> SparseVector:
        """The sparse vector of one text (empty for a text without terms)."""
        terms = self._tokenizer.terms(text)
        if not terms:
            return trusted_sparse_vector([], [])
        counts = Counter(index for index, _ in terms)
        length_norm = self.k * (1 - self.b + (self.b * float(len(terms))) / self.avg_doc_length)
        indices = sorted(counts)
        values = []
        for index in indices:
            tf = float(counts[index])
            values.append(tf * (self.k + 1) / (tf + length_norm))
        labels = None
        if self.include_tokens:
            stems: dict[int, str] = {}  # the first stem seen for an index (hash collisions)
            for index, stem in terms:
                stems.setdefault(index, stem)
            labels = [stems[index] for index in indices]
        return trusted_sparse_vector(indices, values, labels)

    def __call__(self, input: list[str]) -> SparseVectors:
        """One sparse vector per text; an empty input is a ``ValueError`` (as in chromadb)."""
        vectors = [self.encode(text) for text in input] if input else []
        return validate_sparse_vectors(vectors)

    def embed_query(self, input: list[str]) -> SparseVectors:
        """Queries are embedded like documents."""
        return self(input)

    @staticmethod
    def name() -> str:
        """The name Chroma records for this function."""
        return NAME

    def get_config(self) -> dict[str, Any]:
        """The recorded configuration (``stopwords`` only when given)."""
        config: dict[str, Any] = {
            "k": self.k,
            "b": self.b,
            "avg_doc_length": self.avg_doc_length,
            "token_max_length": self.token_max_length,
            "include_tokens": self.include_tokens,
        }
        if self.stopwords is not None:
            config["stopwords"] = list(self.stopwords)
        return config

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaBm25EmbeddingFunction:
        """Rebuild from a recorded configuration; missing keys take their defaults."""
        return ChromaBm25EmbeddingFunction(
            k=config.get("k", DEFAULT_K),
            b=config.get("b", DEFAULT_B),
            avg_doc_length=config.get("avg_doc_length", DEFAULT_AVG_DOC_LENGTH),
            token_max_length=config.get("token_max_length", DEFAULT_TOKEN_MAX_LENGTH),
            stopwords=config.get("stopwords"),
            include_tokens=config.get("include_tokens", False),
        )

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Refuse a configuration Chroma's JSON schema for ``chroma_bm25`` refuses."""
        check_config(config, NAME)

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Every parameter may change; an unknown key is a ``ValueError``."""
        for key in new_config:
            if key not in _CONFIG_KEYS:
                raise ValueError(f"Updating '{key}' is not supported for {NAME}")

    def __repr__(self) -> str:
        return f"ChromaBm25EmbeddingFunction({self.get_config()!r})"
