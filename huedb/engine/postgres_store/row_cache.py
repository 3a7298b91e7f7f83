"""Record rows a PostgreSQL node keeps, per collection, as of one oplog head.

A warm query on PostgreSQL needs one round trip for the rows of its answers, and on a
machine whose idle CPUs wake slowly that round trip costs as much as the search itself.
The rows of a collection change only with its head (`oplog.py`: a vector change logs
entries, any other change to a record row advances the counter by a trigger), so rows read
or written when the head was `h` are still the rows in every snapshot whose head is `h`.
A node therefore keeps, per collection, the head `h` and rows known as of `h`; a query whose
index reflects `h` sends the statement that confirms the head before it searches
(`early_read.py`), and when the head is still `h` and every answer's row is kept, no
second round trip is needed.

What fills it, and why each keeps "every kept row is the row as of `head`":
- A warm read at head `H` (one snapshot): its rows are the rows as of `H`. Kept when `H` is
  the kept head; when `H` is newer, the old rows are dropped and `H` becomes the head.
- A write this node committed, moving the head from `h0` (read with the collection row's
  lock) to `h1` (the counter its last oplog entries got, or, when it updated record rows,
  whose trigger moves the counter too, the counter read again before the commit; under that
  lock until commit): when `h0` is the kept head, the transaction's inserts are added and
  the rows it deleted or updated removed, and `h1` becomes the head; when `h1` is newer than
  the kept head, the kept rows are dropped and only the inserted rows kept as of `h1` (they
  are the rows at that commit). A transaction whose new head this node does not know (it
  copied or deleted a collection's rows) drops the collection's rows.
Older information than the kept head is ignored; so the head only moves forward and the
order in which threads report does not matter.

Bounded by an estimate of the bytes held (`max_bytes`; 0 keeps nothing): past it, the
least recently used collections are dropped first, and rows that still do not fit are not
kept (a partial collection is correct, it only answers fewer queries). Rows are kept as
read: metadata stays encoded JSON, decoded when a query returns it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

ROW_OVERHEAD = 240  # bytes of a kept row besides its strings (tuple, dict slot, objects)


@dataclass
class WrittenRows:
    """What one write transaction did to one collection's record rows."""

    head_before: int | None = None  # the head read with the locked collection row
    head_after: int | None = None  # the counter its last oplog entries got
    inserted: list[tuple] = field(default_factory=list)  # (key, id, document, uri, metadata)
    removed: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)  # keys whose document/uri/metadata changed
    unknown_head: bool = False  # the head moved in a way this node cannot count


HIT_RATE_WEIGHT = 1 / 16  # of the latest lookup in a collection's moving hit rate
MIN_HIT_RATE = 0.25  # below it, queries do not send their confirmation early


@dataclass
class _Rows:
    head: int
    rows: dict[int, tuple] = field(default_factory=dict)
    nbytes: int = 0
    hit_rate: float = 1.0  # moving average of lookups that found every row


class RowCache:
    """Rows by collection id as of the collection's kept head; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._collections: OrderedDict[int, _Rows] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Estimated bytes held."""
        return self._nbytes

    def likely(self, cid: int, head: int) -> bool:
        """Whether rows as of `head` are kept for the collection and recent lookups there
        mostly found all they asked for (a query then confirms its head early)."""
        with self._lock:
            kept = self._collections.get(cid)
            return kept is not None and kept.head == head and kept.hit_rate >= MIN_HIT_RATE

    def rows(self, cid: int, head: int, keys: Iterable[int]) -> dict[int, tuple] | None:
        """The kept rows of every key as of `head`, or None unless all of them are kept
        (counted in the collection's hit rate)."""
        with self._lock:
            kept = self._collections.get(cid)
            if kept is None or kept.head != head:
                return None
            found = {key: kept.rows.get(key) for key in keys}
            complete = None not in found.values()
            kept.hit_rate += (complete - kept.hit_rate) * HIT_RATE_WEIGHT
            self._collections.move_to_end(cid)
            return found if complete else None  # type: ignore[return-value]

    def read(self, cid: int, head: int, rows: Iterable[tuple]) -> None:
        """Rows `(key, id, document, uri, metadata, ...)` read in one snapshot at `head`."""
        with self._lock:
            kept = self._at(cid, head)
            if kept is not None:
                self._add(cid, kept, rows)

    def written(self, cid: int, write: WrittenRows) -> None:
        """A committed transaction's changes to collection `cid` (see the module)."""
        with self._lock:
            if write.unknown_head or write.head_after is None:
                self._drop(cid)
                return
            kept = self._collections.get(cid)
            if kept is not None and kept.head == write.head_before:
                for key in (*write.removed, *write.updated):
                    self._remove(kept, key)
                kept.head = write.head_after
            else:
                kept = self._at(cid, write.head_after)
                if kept is None:
                    return
            self._add(cid, kept, write.inserted)

    def _at(self, cid: int, head: int) -> _Rows | None:
        """The collection's entry as of `head` (a new, empty one when `head` is newer than
        the kept one), or None when `head` is older than the kept head."""
        kept = self._collections.get(cid)
        if kept is not None and kept.head == head:
            return kept
        if kept is not None and kept.head > head:
            return None
        self._drop(cid)
        kept = self._collections[cid] = _Rows(head)
        return kept

    def _add(self, cid: int, kept: _Rows, rows: Iterable[tuple]) -> None:
        self._collections.move_to_end(cid)
        for row in rows:
            key = row[0]
            self._remove(kept, key)
            record = tuple(row[:5])
            size = _size(record)
            if self._nbytes + size > self._max_bytes and not self._make_room(cid, size):
                return
            kept.rows[key] = record + (None,)  # the vector column, never kept
            kept.nbytes += size
            self._nbytes += size

    def _make_room(self, cid: int, size: int) -> bool:
        """Drop least recently used other collections until `size` more bytes fit."""
        for other in list(self._collections):
            if self._nbytes + size <= self._max_bytes:
                break
            if other != cid:
                self._drop(other)
        return self._nbytes + size <= self._max_bytes

    def _remove(self, kept: _Rows, key: int) -> None:
        row = kept.rows.pop(key, None)
        if row is not None:
            size = _size(row[:5])
            kept.nbytes -= size
            self._nbytes -= size

    def _drop(self, cid: int) -> None:
        kept = self._collections.pop(cid, None)
        if kept is not None:
            self._nbytes -= kept.nbytes


def _size(record: Sequence) -> int:
    """Estimated bytes of a kept row: its strings' characters and a fixed overhead."""
    return ROW_OVERHEAD + sum(len(v) for v in record[1:5] if v is not None)
