"""``chromadb.utils.batch_utils``: records cut into batches a client takes in one call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Batch = tuple[Sequence[str], Any, Any, Any]


def create_batches(
    api: Any,
    ids: Sequence[str],
    embeddings: Any = None,
    metadatas: Any = None,
    documents: Any = None,
) -> list[Batch]:
    """(ids, embeddings, metadatas, documents) batches of at most
    `api.get_max_batch_size()` records each, as chromadb's helper cuts them
    (`collection.add(*batch)` takes each): records that fit one call are one batch of the
    fields as given; otherwise each batch holds a slice of every field given (None for a
    field not given, or given empty)."""
    size = api.get_max_batch_size()
    if len(ids) <= size:
        return [(ids, embeddings, metadatas, documents)]

    def part(values: Any, start: int) -> Any:
        return None if values is None else values[start : start + size]

    metadatas, documents = metadatas or None, documents or None  # lists: empty as not given
    return [
        (ids[at : at + size], part(embeddings, at), part(metadatas, at), part(documents, at))
        for at in range(0, len(ids), size)
    ]
