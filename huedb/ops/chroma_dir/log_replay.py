"""The write-ahead log tail of a Chroma collection, replayed on top of its segments.

Entries after a segment's `max_seq_id` are not in that segment yet; replaying them gives each
record's final metadata and the place of its final vector (an HNSW element or a log entry).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from huedb.ops.chroma_dir.sqlite_reader import ADD, DELETE, UPDATE, UPSERT, LogEntry

# Where a record's vector is: ("hnsw", element position) or ("log", sequence id).
Place = tuple[str, int]


def _merge(current: dict[str, Any], update: dict[str, Any] | None) -> dict[str, Any]:
    """Chroma's update merge: keys set, `None` deletes a key."""
    merged = dict(current)
    for key, value in (update or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


class MetadataTail:
    """Record metadata after replaying the log tail on top of the metadata segment."""

    def __init__(self, entries: list[LogEntry], base: dict[str, dict[str, Any]]) -> None:
        self.touched = {e.id for e in entries}
        self.stored = set(base)
        self.state = dict(base)
        self.appended: dict[str, int] = {}  # ids (re)added by the tail -> seq of that add
        for entry in entries:
            self._apply(entry)

    def _apply(self, entry: LogEntry) -> None:
        present = entry.id in self.state
        if entry.operation == DELETE:
            self.state.pop(entry.id, None)
            self.appended.pop(entry.id, None)
        elif present and entry.operation in (UPDATE, UPSERT):
            self.state[entry.id] = _merge(self.state[entry.id], entry.metadata)
        elif not present and entry.operation in (ADD, UPSERT):
            self.state[entry.id] = _merge({}, entry.metadata)
            self.appended[entry.id] = entry.seq_id

    def in_place(self, record_id: str) -> dict[str, Any] | None:
        """The final metadata of a stored record that keeps its position, else None."""
        if record_id in self.appended:
            return None
        return self.state.get(record_id)

    def tail_records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Records added by the tail, in the order they were added."""
        for record_id in sorted(self.appended, key=self.appended.__getitem__):
            yield record_id, self.state[record_id]


class VectorTail:
    """Where each record's vector is after the log tail: an HNSW element, a log entry, or nowhere.

    `stored` maps the user ids of the HNSW segment to their element positions.
    """

    def __init__(self, entries: Iterable[LogEntry], stored: Mapping[str, int]) -> None:
        self.stored = stored
        self.location: dict[str, Place | None] = {}
        for entry in entries:
            self._apply(entry)

    def _apply(self, entry: LogEntry) -> None:
        current = self.find(entry.id)
        new_vector = ("log", entry.seq_id) if entry.has_vector else None
        if entry.operation == DELETE:
            self.location[entry.id] = None
            return
        adds = current is None and entry.operation in (ADD, UPSERT)
        replaces = current is not None and entry.operation in (UPDATE, UPSERT)
        if adds or (replaces and new_vector is not None):
            self.location[entry.id] = new_vector

    def find(self, record_id: str) -> Place | None:
        """Where this record's final vector is, or None if it has none."""
        if record_id in self.location:
            return self.location[record_id]
        index = self.stored.get(record_id)
        return ("hnsw", index) if index is not None else None
