"""`RecordBatch`: the one type that carries records to write through every layer.

Client, `ServerAPI`, the HTTP wire, server-side checks, the engine and the importers all
pass records as a `RecordBatch`, so adding a record field (sparse vectors are next) means
adding it here and where it is stored or sent, not to every signature in between.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

Metadata = dict[str, Any]
# Metadata value types every layer stores as they are (exact types: not bool's subclasses of
# int, nor numpy's of float), and keys that some layer refuses or reserves.
PLAIN_VALUE_TYPES = frozenset({str, int, float, bool})
# Chroma keeps a record's document and uri as these metadata keys: a string written under
# one of them is the record's document or uri (`api/checks.py` moves it there), a filter on
# one compares the document or uri (`engine/filters.py`), and no key with the prefix is ever
# returned in metadata (`api/local.py`).
DOCUMENT_META_KEY = "chroma:document"
URI_META_KEY = "chroma:uri"
RESERVED_PREFIX = "chroma:"
RESERVED_KEYS = frozenset({DOCUMENT_META_KEY, URI_META_KEY})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The fields besides ids, in Chroma's order; each is None when the caller did not give it.
FIELDS = ("embeddings", "metadatas", "documents", "uris")


@dataclass
class RecordBatch:
    """Records by id; each other field holds one value per id, or is None when not given.

    `embeddings` is a 2-D float32 array (rows in id order) once checked; a field given as
    None means "not given" (an update leaves it unchanged), unlike a list of Nones.
    """

    ids: list[str]
    embeddings: np.ndarray | None = None
    metadatas: list[Metadata | None] | None = None
    documents: list[str | None] | None = None
    uris: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: Sequence[int]) -> RecordBatch:
        """The records at the given positions, in that order."""
        rows = list(rows)
        if len(rows) == len(self.ids) and rows == list(range(len(self.ids))):
            return self
        return RecordBatch(
            ids=[self.ids[i] for i in rows],
            embeddings=None if self.embeddings is None else self.embeddings[rows],
            metadatas=_pick(self.metadatas, rows),
            documents=_pick(self.documents, rows),
            uris=_pick(self.uris, rows),
        )

    def filled(self) -> RecordBatch:
        """The same records with every field not given replaced by Nones (for inserts)."""
        nones: list[Any] = [None] * len(self.ids)
        return dataclasses.replace(
            self,
            metadatas=list(nones) if self.metadatas is None else self.metadatas,
            documents=list(nones) if self.documents is None else self.documents,
            uris=list(nones) if self.uris is None else self.uris,
        )

    def given(self) -> dict[str, Any]:
        """The fields that were given (not None), by name."""
        return {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not None}

    def uri_changes(self) -> list[tuple[int, str | None]]:
        """For an update: `(position, uri)` of each record whose uri it changes, None to
        clear it. A uri given wins; else a `chroma:uri` key in the record's metadata patch
        clears the uri, as in Chroma, which keeps the uri under that key (the checks moved
        a string there to `uris`, so the key left is None, a delete, or not a string)."""
        count = len(self.ids)
        uris = self.uris if self.uris is not None else [None] * count
        metadatas = self.metadatas if self.metadatas is not None else [None] * count
        return [
            (i, uri)
            for i, (uri, metadata) in enumerate(zip(uris, metadatas, strict=True))
            if uri is not None or (metadata is not None and URI_META_KEY in metadata)
        ]


def _pick(values: list[Any] | None, rows: list[int]) -> list[Any] | None:
    return None if values is None else [values[i] for i in rows]


def plain_metadatas(metadatas: Sequence[Metadata | None]) -> bool:
    """Whether each metadata is None or a non-empty dict whose keys are non-empty strings
    (not reserved, not starting with '#' or '$') and whose values are str, bool, int64 or
    finite float other than -0.0: the common batch, which every layer's checks accept and
    cleaning leaves as it is, so they can skip their per-value work (checked by C-level
    iteration)."""
    present = [m for m in metadatas if m is not None]
    if not all(present) or not set(map(type, present)) <= {dict}:
        return False
    for key in set(chain.from_iterable(present)):
        if type(key) is not str or not key or key[0] in "#$" or key in RESERVED_KEYS:
            return False
    values = list(chain.from_iterable(map(dict.values, present)))
    types = set(map(type, values))
    if not types <= PLAIN_VALUE_TYPES:
        return False
    if float in types:
        floats = [v for v in values if type(v) is float]
        # -0.0 is stored as 0.0 (cleaning changes it), as Chroma reads it back
        if not all(map(math.isfinite, floats)) or any(
            math.copysign(1.0, v) < 0 for v in floats if v == 0.0
        ):
            return False
    if int in types:
        ints = [v for v in values if type(v) is int]
        return min(ints) >= INT64_MIN and max(ints) <= INT64_MAX
    return True
