"""Text to BM25 terms, as Chroma's ``chroma_bm25`` function does it.

1. every run of characters that are neither word characters nor whitespace (Unicode ``\\w`` /
   ``\\s``) becomes one space; the text is lowercased and split on whitespace;
2. stopwords and tokens longer than ``token_max_length`` characters are dropped;
3. each token is stemmed by Snowball's English stemmer (``snowballstemmer``), stripped, and
   dropped if empty;
4. a term's index is ``abs`` of its signed 32-bit MurmurHash3 (``mmh3``, seed 0) of the
   stem's UTF-8 bytes.

Stemming and hashing depend only on the token, so their result is cached per process.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from typing import Protocol

import mmh3

__all__ = ["Bm25Tokenizer", "Term", "stem_and_hash"]

_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]+")
_STEM_CACHE_SIZE = 1 << 16

Term = tuple[int, str]
"""One surviving token: (index, stem)."""

_local = threading.local()


class _Stemmer(Protocol):
    def stemWord(self, word: str) -> str: ...  # noqa: N802 (snowballstemmer's name)


def _english_stemmer() -> _Stemmer:
    """This thread's Snowball English stemmer (a stemmer object is not thread-safe).

    snowballstemmer is imported on first use: it loads every language's stemmer (~15 ms).
    """
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        import snowballstemmer

        stemmer = _local.stemmer = snowballstemmer.stemmer("english")
    return stemmer


@functools.lru_cache(maxsize=_STEM_CACHE_SIZE)
def stem_and_hash(token: str) -> Term | None:
    """The (index, stem) of a lowercase token, or None when its stem is empty."""
    stem = _english_stemmer().stemWord(token).strip()
    if not stem:
        return None
    return abs(mmh3.hash(stem, seed=0)), stem


class Bm25Tokenizer:
    """Splits a text into BM25 terms, dropping stopwords and over-long tokens."""

    def __init__(self, stopwords: Iterable[str], token_max_length: int) -> None:
        """``stopwords`` compare lowercased; tokens longer than ``token_max_length`` drop."""
        self._stopwords = frozenset(word.lower() for word in stopwords)
        self._token_max_length = token_max_length

    def terms(self, text: str) -> list[Term]:
        """The terms of ``text`` in order, repeats included."""
        terms: list[Term] = []
        for token in _NOT_WORD_OR_SPACE.sub(" ", text).lower().split():
            if token in self._stopwords or len(token) > self._token_max_length:
                continue
            term = stem_and_hash(token)
            if term is not None:
                terms.append(term)
        return terms
