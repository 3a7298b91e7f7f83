"""Reading every record of a collection exactly once, in pages, for export and reembed.

- A collection of a store this process opened (`--path`) is read through
  `Engine.snapshot_pages`: one read snapshot, pages by increasing key. The pages hold exactly
  the records of the collection when the snapshot was taken, whatever is written meanwhile.
- Over HTTP (`--url`) the API offers only `get(limit, offset)`, in key order. Keys only grow,
  so an added record lands after every page already read and cannot shift them; a deleted
  record before the read position shifts every later offset, which would silently skip live
  records. So each page after the first is read from one position earlier, and that first row
  must be the last id of the page before. If it is not, something before the position was
  deleted and the read stops with `BackupError` (run again, or read the store with `--path`).
  A completed remote read holds every record that was live during the whole read, exactly
  once, plus those added meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from huedb.api.collection import Collection
from huedb.engine.engine import Engine
from huedb.engine.record_values import stored_json
from huedb.errors import BackupError

INCLUDE = ["documents", "metadatas", "embeddings", "uris"]


@dataclass
class Page:
    """One page of records, every field included."""

    ids: list[str]
    documents: list[str | None]
    metadatas: list[dict[str, Any] | None]
    uris: list[str | None]
    embeddings: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def collection_pages(collection: Collection, page_size: int) -> Iterator[Page]:
    """Every record of `collection` once, in key order (see the module docstring)."""
    engine = getattr(collection._client, "engine", None)
    if isinstance(engine, Engine):
        yield from _snapshot_pages(engine, str(collection.id), page_size)
    else:
        yield from _checked_offset_pages(collection, page_size)


def _snapshot_pages(engine: Engine, collection_id: str, page_size: int) -> Iterator[Page]:
    with contextlib.closing(engine.snapshot_pages(collection_id, page_size)) as pages:
        for rows in pages:
            blob = b"".join(r[5] for r in rows)
            yield Page(
                ids=[r[1] for r in rows],
                documents=[r[2] for r in rows],
                # As `get`: {} rather than None for a record with a uri but no metadata.
                metadatas=[
                    stored_json(r[4]) if r[4] else ({} if r[3] is not None else None) for r in rows
                ],
                uris=[r[3] for r in rows],
                embeddings=np.frombuffer(blob, dtype=np.float32).reshape(len(rows), -1),
            )


def _checked_offset_pages(collection: Collection, page_size: int) -> Iterator[Page]:
    offset = 0
    last_id: str | None = None
    while True:
        skip = 0 if last_id is None else 1
        # One row more than a page tells whether another page follows.
        got = collection.get(limit=page_size + 1 + skip, offset=offset - skip, include=INCLUDE)
        ids = list(got["ids"])
        if skip and (not ids or ids[0] != last_id):
            raise BackupError(
                f"collection {collection.name!r} lost records before position {offset} "
                "while it was read page by page over HTTP, so reading on would miss live "
                "records. Run again when deletes have stopped, or read the data directory "
                "with --path (one snapshot)."
            )
        take = ids[skip : skip + page_size]
        if take:
            n = len(take)
            embeddings = np.asarray(got["embeddings"], dtype=np.float32)[skip : skip + n]
            yield Page(
                ids=take,
                documents=list(got["documents"] or [None] * len(ids))[skip : skip + n],
                metadatas=list(got["metadatas"] or [None] * len(ids))[skip : skip + n],
                uris=list(got["uris"] or [None] * len(ids))[skip : skip + n],
                embeddings=embeddings.reshape(n, -1),
            )
            offset += n
            last_id = take[-1]
        if len(ids) - skip <= page_size:
            return
