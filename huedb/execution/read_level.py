"""`ReadLevel`: how fresh a search must be (chromadb's `chromadb.api.types.ReadLevel`).

Chroma's distributed engine may skip or bound its write-ahead log; huedb always reads
everything acknowledged, so the three levels give the same answers.
"""

from enum import StrEnum


class ReadLevel(StrEnum):
    """Read the index and the whole log (the default), the index only, or a bounded log."""

    INDEX_AND_WAL = "index_and_wal"
    INDEX_ONLY = "index_only"
    INDEX_AND_BOUNDED_WAL = "index_and_bounded_wal"
