"""One Chroma collection's records, streamed as `RecordBatch`es in Chroma's storage order.

Joins the metadata segment (plus its log tail) with the vectors of the HNSW segment (plus its
log tail); documents and uris come out of Chroma's reserved metadata keys.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from huedb.ops.chroma_dir.hnswlib_file import FileState, HnswSegment
from huedb.ops.chroma_dir.log_replay import MetadataTail, Place, VectorTail
from huedb.ops.chroma_dir.sqlite_reader import ChromaCollection, ChromaSqlite, SourceChangedError
from huedb.record_batch import RecordBatch

logger = logging.getLogger(__name__)

DOCUMENT_KEY = "chroma:document"
URI_KEY = "chroma:uri"


def vector_folder(root: Path, collection: ChromaCollection) -> Path:
    """The folder of a collection's HNSW segment (one that does not exist when it has none)."""
    return root / (collection.vector_segment or "__no_vector_segment__")


class CollectionReader:
    """Streams one collection's records: metadata segment + tail, joined with vectors.

    Everything comes from the snapshot of `db`'s read transaction and the HNSW files, which
    must be those seen when `expected` was taken (if given) and stay so while they are read:
    else SourceChangedError.
    """

    def __init__(
        self,
        db: ChromaSqlite,
        root: Path,
        collection: ChromaCollection,
        expected: FileState | None = None,
    ) -> None:
        self.db = db
        self.root = root
        self.collection = collection
        segment = collection.vector_segment
        folder = vector_folder(root, collection)
        self.hnsw = HnswSegment(folder, collection.space == "cosine", expected)
        vector_after = db.max_seq_id(segment)
        if vector_after and not (folder / "header.bin").is_file():
            logger.warning("%s: HNSW files missing; vectors come from the log only", folder)
        vector_after = max(vector_after, self.hnsw.max_seq_id)
        vector_tail = db.log_tail(collection.id, vector_after, with_metadata=False)
        self.vectors = VectorTail(vector_tail, self.hnsw.index_of)
        metadata_after = db.max_seq_id(collection.metadata_segment)
        tail = list(db.log_tail(collection.id, metadata_after))
        self.metadata = MetadataTail(tail, self._stored_metadata({e.id for e in tail}))
        self.dimension = collection.dimension or self.hnsw.dimension

    def _stored_metadata(self, record_ids: set[str]) -> dict[str, dict[str, Any]]:
        """Stored metadata of these user ids (those in the metadata segment)."""
        segment = self.collection.metadata_segment
        if not record_ids or segment is None:
            return {}
        rows = self.db.rows_of(segment, record_ids)
        metadata = self.db.record_metadata([r for r, _ in rows])
        return {record_id: metadata[r] for r, record_id in rows}

    def count(self) -> int:
        """How many records the collection holds after the log tail."""
        segment = self.collection.metadata_segment
        stored = 0 if segment is None else self.db.segment_size(segment)
        gone = sum(1 for r in self.metadata.stored if self.metadata.in_place(r) is None)
        return stored - gone + len(self.metadata.appended)

    def _records(self, batch_size: int) -> Iterator[tuple[str, dict[str, Any]]]:
        touched = self.metadata.touched
        segment = self.collection.metadata_segment
        if segment is not None:
            for rows in self.db.segment_rows(segment, batch_size):
                stored = self.db.record_metadata([r for r, rid in rows if rid not in touched])
                for rowid, record_id in rows:
                    if record_id not in touched:
                        yield record_id, stored[rowid]
                    else:
                        final = self.metadata.in_place(record_id)
                        if final is not None:
                            yield record_id, final
        yield from self.metadata.tail_records()

    def batches(self, batch_size: int) -> Iterator[RecordBatch]:
        """Records in batches of at most `batch_size` (records without a vector skipped).

        Every field of a batch is given: a list with one value (maybe None) per id.
        """
        pending: list[tuple[str, dict[str, Any]]] = []
        for record in self._records(batch_size):
            pending.append(record)
            if len(pending) >= batch_size:
                yield self._batch(pending)
                pending = []
        if pending:
            yield self._batch(pending)
        self.hnsw.check_unchanged()

    def _batch(self, records: list[tuple[str, dict[str, Any]]]) -> RecordBatch:
        places = [self.vectors.find(record_id) for record_id, _ in records]
        missing = [r for (r, _), place in zip(records, places, strict=True) if place is None]
        if missing:
            logger.warning(
                "%s: %d records have no vector and are skipped (e.g. %r)",
                self.collection.name,
                len(missing),
                missing[0],
            )
        kept = [(rec, p) for rec, p in zip(records, places, strict=True) if p is not None]
        ids: list[str] = []
        metadatas: list[dict[str, Any] | None] = []
        documents: list[str | None] = []
        uris: list[str | None] = []
        for (record_id, metadata), _ in kept:
            fields = dict(metadata)
            ids.append(record_id)
            documents.append(fields.pop(DOCUMENT_KEY, None))
            uris.append(fields.pop(URI_KEY, None))
            metadatas.append(_clean_metadata(record_id, fields))
        return RecordBatch(
            ids=ids,
            embeddings=self._vectors([p for _, p in kept]),
            metadatas=metadatas,
            documents=documents,
            uris=uris,
        )

    def _vectors(self, places: list[Place]) -> np.ndarray:
        log = self.db.log_vectors([n for kind, n in places if kind == "log"])
        positions = [i for i, (kind, _) in enumerate(places) if kind == "hnsw"]
        dim = self.dimension or (len(next(iter(log.values()))) if log else 0)
        out = np.empty((len(places), dim), dtype=np.float32)
        if positions:
            indices = np.array([places[i][1] for i in positions], dtype=np.int64)
            out[positions] = self.hnsw.vectors(indices)
        for i, (kind, n) in enumerate(places):
            if kind == "log":
                if n not in log:  # not possible within one snapshot, unless the file changed
                    raise SourceChangedError(self.root, f"log entry {n} vanished")
                if len(log[n]) != dim:
                    raise ValueError(
                        f"{self.collection.name}: log entry {n} has dimension {len(log[n])}, "
                        f"expected {dim}"
                    )
                out[i] = log[n]
        return out


def _clean_metadata(record_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """Metadata without values huedb cannot store (e.g. sparse vectors), or None if empty."""
    kept = {}
    for key, value in fields.items():
        if _is_scalar(value) or (
            isinstance(value, list) and value and all(_is_scalar(v) for v in value)
        ):
            kept[key] = value
        else:
            logger.warning("record %r: dropping metadata %r (%s)", record_id, key, type(value))
    return kept or None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)
