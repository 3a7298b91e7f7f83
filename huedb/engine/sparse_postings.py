"""Posting lists of one sparse-vector metadata key, scored by a compiled loop
(`sparse_kernel`, with numba) or with numpy (docs/ARCHITECTURE.md, "Sparse index").

Each record holding a sparse vector under the key owns a *slot*; its entries (term, slot,
value) live in a *main* segment sorted by term, or, when written since the last compaction,
in a small *delta* (kept by term, each term's entries in the order written). A change
never edits entries in place: the record's old slot is marked dead and it gets a new slot in
the delta. Compaction (when dead and delta entries reach a quarter of the main segment)
rewrites the live entries as a new main segment with dense slots. A term's document
frequency is the number of its live entries, counted at query time, so it is always exact.

Scores follow `search/sparse_knn.py`, the scan they replace, to the bit: per record the
float64 products `q_t * d_t` are summed in ascending term order (a stored vector's indices
are strictly ascending, which is the scan's order), then `1 - dot` is cast to float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from huedb.engine import sparse_kernel
from huedb.sparse_vector import SPARSE_VECTOR_TYPE_VALUE, TYPE_KEY

SparseParts = tuple[np.ndarray, np.ndarray]  # (int64 indices, float32 values)

MIN_COMPACT_ENTRIES = 4096
# A search sums by sorting its postings when they are under 1/SORTED_DOTS_RATIO of the
# slots (`_sorted_dots`), otherwise over an array of every slot (a stable sort costs ~10 ns
# a posting, the array ~0.2 ns a slot: even at 1/20 the array was faster at 100k slots).
SORTED_DOTS_RATIO = 64
_NO_FILTER = np.empty(0, dtype=bool)  # the compiled loop's `permitted` for every record


def sparse_parts(value: Any) -> SparseParts | None:
    """(indices, values) of a stored metadata value that is a sparse vector, else None."""
    if not isinstance(value, dict) or value.get(TYPE_KEY) != SPARSE_VECTOR_TYPE_VALUE:
        return None
    return (
        np.asarray(value["indices"], dtype=np.int64),
        np.asarray(value["values"], dtype=np.float32),
    )


def sparse_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether a metadata change added, removed or altered a sparse vector (the stores then
    log the record in the oplog, so sparse indexes catch up)."""
    old, new = old or {}, new or {}
    names = {n for n, v in old.items() if _is_sparse(v)} | {
        n for n, v in new.items() if _is_sparse(v)
    }
    return any(old.get(n) != new.get(n) for n in names)


def _is_sparse(value: Any) -> bool:
    return isinstance(value, dict) and value.get(TYPE_KEY) == SPARSE_VECTOR_TYPE_VALUE


def idf(n_records: int, containing: int) -> float:
    """BM25's inverse document frequency `ln(1 + (N - n_t + 0.5) / (n_t + 0.5))` (n_t
    clamped to N)."""
    n_t = min(containing, n_records)
    return math.log(1.0 + (n_records - n_t + 0.5) / (n_t + 0.5))


class KeyMap:
    """Record key -> int64 value (-1 when unset), as a dense array over the keys' range
    (keys are small increasing integers, so this is one numpy gather per lookup)."""

    def __init__(self) -> None:
        self._base = 0
        self._values = np.full(0, -1, dtype=np.int64)

    @property
    def nbytes(self) -> int:
        return self._values.nbytes

    def get(self, keys: np.ndarray) -> np.ndarray:
        """Values of `keys` (-1 for unset)."""
        at = np.asarray(keys, dtype=np.int64) - self._base
        out = np.full(len(at), -1, dtype=np.int64)
        inside = (at >= 0) & (at < len(self._values))
        out[inside] = self._values[at[inside]]
        return out

    def lookup(self, keys: list[int]) -> list[int]:
        """Values of a few keys (-1 for unset): `get` without its vector work."""
        at = [k - self._base for k in keys]
        if not at or min(at) < 0 or max(at) >= len(self._values):
            return self.get(np.asarray(keys, dtype=np.int64)).tolist()
        return self._values[at].tolist()

    def keys(self) -> np.ndarray:
        """The keys set (value >= 0), ascending."""
        return np.flatnonzero(self._values >= 0).astype(np.int64) + self._base

    def set(self, keys: np.ndarray, values: np.ndarray | int) -> None:
        """Set `keys` to `values` (-1 unsets)."""
        keys = np.asarray(keys, dtype=np.int64)
        if not len(keys):
            return
        low, high = int(keys.min()), int(keys.max()) + 1
        size = len(self._values)
        if size == 0:
            self._base = low
        base = min(low, self._base)
        if base != self._base or high - base > size:
            shift = self._base - base
            grown = np.full(max(high - base, shift + 2 * size), -1, dtype=np.int64)
            grown[shift : shift + size] = self._values
            self._values, self._base = grown, base
        self._values[keys - self._base] = values


ID_LENGTH_BITS = 24  # an `IdMap` entry: the id's offset above these bits, its length in them


class IdMap:
    """Record key -> record id, the ids' UTF-8 bytes end to end in one buffer, each key's
    entry (offset << ID_LENGTH_BITS | length) in one `KeyMap` (a few bytes a record, not a
    Python string each). A record's id never changes, so a key is set again only with the
    same id; unset keys leave their bytes behind until `set` rewrites the buffer (when they
    are half of it). An id of 16 MiB or more is not kept (`ids` then says None)."""

    def __init__(self) -> None:
        self._at = KeyMap()
        self._blob = bytearray()
        self._live_bytes = 0

    @property
    def nbytes(self) -> int:
        return self._at.nbytes + len(self._blob)

    def ids(self, keys: list[int]) -> list[str] | None:
        """The ids of `keys` in order, or None when one is not kept."""
        entries = self._at.lookup(keys)
        if min(entries, default=0) < 0:
            return None
        blob, bits, mask = self._blob, ID_LENGTH_BITS, (1 << ID_LENGTH_BITS) - 1
        return [blob[e >> bits : (e >> bits) + (e & mask)].decode() for e in entries]

    def set(self, keys: list[int], ids: list[str]) -> None:
        """Set the id of each of `keys`."""
        if not keys:
            return
        self.unset(keys)
        encoded = [i.encode() for i in ids]
        lengths = np.asarray([len(e) for e in encoded], dtype=np.int64)
        starts = np.cumsum(lengths) - lengths + len(self._blob)
        self._blob += b"".join(encoded)
        self._live_bytes += self._put(np.asarray(keys, dtype=np.int64), starts, lengths)
        if len(self._blob) > max(2 * self._live_bytes, 1 << 16):
            self._rewrite()

    def _put(self, keys: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> int:
        """Point `keys` at their ids' bytes; the bytes now kept."""
        kept = lengths < 1 << ID_LENGTH_BITS
        self._at.set(keys, np.where(kept, starts << ID_LENGTH_BITS | lengths, -1))
        return int(lengths[kept].sum())

    def unset(self, keys: list[int]) -> None:
        """Forget the ids of `keys` (set or not)."""
        key_array = np.asarray(keys, dtype=np.int64)
        entries = self._at.get(key_array)
        held = entries >= 0
        self._live_bytes -= int((entries[held] & ((1 << ID_LENGTH_BITS) - 1)).sum())
        self._at.set(key_array[held], -1)

    def _rewrite(self) -> None:
        keys, ends, blob = self.arrays()
        self._at, self._blob, self._live_bytes = KeyMap(), bytearray(), 0
        self._load(keys, ends, blob)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys ascending, each id's end offset, the ids' bytes as uint8), for a snapshot."""
        keys = self._at.keys()
        entries = self._at.get(keys)
        starts, lengths = entries >> ID_LENGTH_BITS, entries & ((1 << ID_LENGTH_BITS) - 1)
        view = np.frombuffer(self._blob, dtype=np.uint8)
        pieces = [view[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
        blob = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.uint8)
        return keys, np.cumsum(lengths, dtype=np.int64), blob

    @classmethod
    def from_arrays(cls, keys: np.ndarray, ends: np.ndarray, blob: np.ndarray) -> IdMap:
        """An id map from `arrays`' output; ValueError when inconsistent."""
        keys = np.asarray(keys, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        if len(keys) != len(ends) or (len(ends) and (ends[-1] != len(blob) or ends[0] < 0)):
            raise ValueError("inconsistent id arrays")
        if len(ends) and np.any(np.diff(ends) < 0):
            raise ValueError("inconsistent id arrays")
        out = cls()
        out._load(keys, ends, np.asarray(blob, dtype=np.uint8))
        return out

    def _load(self, keys: np.ndarray, ends: np.ndarray, blob: np.ndarray) -> None:
        self._blob = bytearray(blob.tobytes())
        lengths = np.diff(ends, prepend=0)
        self._live_bytes = self._put(keys, ends - lengths, lengths)


class PostingColumn:
    """The sparse vectors under one metadata key of a collection's live records."""

    def __init__(self) -> None:
        self.slot_keys = np.empty(0, dtype=np.int64)  # record key of each slot
        self.slot_len = np.empty(0, dtype=np.int32)  # entries of each slot
        self.live = np.empty(0, dtype=bool)
        self.n_slots = 0
        self.slot_of = KeyMap()
        # The main segment, by term: entries term_start[i]:term_start[i+1] hold term_ids[i].
        self.term_ids = np.empty(0, dtype=np.int64)
        self.term_start = np.zeros(1, dtype=np.int64)
        self.main_slots = np.empty(0, dtype=np.int32)
        self.main_values = np.empty(0, dtype=np.float32)
        # The delta: pieces written since it was last read, and the entries before them by
        # term (`_delta_entries`).
        self._delta: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._delta_arrays = _no_entries()
        self.delta_entries = 0
        self.dead_entries = 0
        self._scratch: list[sparse_kernel.Scratch] = []  # the compiled loop's, not in use

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays (spare capacity included)."""
        arrays = (self.slot_keys, self.slot_len, self.live, self.term_ids, self.term_start)
        main = self.main_slots.nbytes + self.main_values.nbytes
        scratch = sum(s.nbytes for s in self._scratch)
        kept = main + self.delta_entries * 16 + self.slot_of.nbytes + scratch
        return sum(a.nbytes for a in arrays) + kept

    def __len__(self) -> int:
        """Records holding a vector under the key."""
        return int(np.count_nonzero(self.live[: self.n_slots]))

    # -- changes ---------------------------------------------------------------------

    def load(
        self, keys: np.ndarray, lengths: np.ndarray, terms: np.ndarray, values: np.ndarray
    ) -> None:
        """Fill an empty column at once: record `keys[i]` holds the next `lengths[i]` of
        `terms` and `values` (a scan's output; cheaper than `replace` record by record)."""
        assert self.n_slots == 0
        counts = np.asarray(lengths, dtype=np.int32)
        self.slot_keys = np.asarray(keys, dtype=np.int64)
        self.slot_len = counts
        self.n_slots = len(keys)
        self.live = np.ones(self.n_slots, dtype=bool)
        self.slot_of.set(self.slot_keys, np.arange(self.n_slots))
        slots = np.repeat(np.arange(self.n_slots, dtype=np.int32), counts)
        self._set_main(
            np.asarray(terms, dtype=np.int64), slots, np.asarray(values, dtype=np.float32)
        )

    def replace(self, keys: list[int], vectors: list[SparseParts | None]) -> None:
        """Set each record's vector (None: it has none, or the record is gone)."""
        if not keys:
            return
        key_array = np.asarray(keys, dtype=np.int64)
        old = self.slot_of.get(key_array)
        held = old[old >= 0]
        if len(held):
            self.live[held] = False
            self.dead_entries += int(self.slot_len[held].sum())
        self.slot_of.set(key_array[old >= 0], -1)
        kept = [(k, v) for k, v in zip(keys, vectors, strict=True) if v is not None and len(v[0])]
        if not kept:
            return
        start = self.n_slots
        self._grow(start + len(kept))
        slots = np.arange(start, start + len(kept), dtype=np.int32)
        lengths = np.asarray([len(v[0]) for _, v in kept], dtype=np.int32)
        self.slot_keys[slots] = [k for k, _ in kept]
        self.slot_len[slots] = lengths
        self.live[slots] = True
        self.n_slots = start + len(kept)
        self.slot_of.set(self.slot_keys[slots], slots)
        self._delta.append(
            (
                np.concatenate([v[0] for _, v in kept]),
                np.repeat(slots, lengths),
                np.concatenate([v[1] for _, v in kept]),
            )
        )
        self.delta_entries += int(lengths.sum())
        if self.dead_entries + self.delta_entries > max(
            MIN_COMPACT_ENTRIES, len(self.main_slots) // 4
        ):
            self.compact()

    def _grow(self, needed: int) -> None:
        if needed <= len(self.slot_keys):
            return
        capacity = max(needed, len(self.slot_keys) + len(self.slot_keys) // 2, 64)
        for name in ("slot_keys", "slot_len", "live"):
            old = getattr(self, name)
            grown = np.zeros(capacity, dtype=old.dtype)
            grown[: self.n_slots] = old[: self.n_slots]
            setattr(self, name, grown)

    def _delta_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The delta's (terms, slots, values) by term, each term's entries in the order they
        were written: the pieces written since the last call are sorted (stably) and merged
        in, so a change costs a copy of the delta, not a sort of it."""
        if self._delta:
            pieces = [np.concatenate(p) for p in zip(*self._delta, strict=True)]
            order = np.argsort(pieces[0], kind="stable")
            written = self._delta_arrays
            # Each new entry after the entries already there of its term and those before it.
            at = written[0].searchsorted(pieces[0][order], side="right")
            at += np.arange(len(at))
            old_at = np.ones(len(written[0]) + len(at), dtype=bool)
            old_at[at] = False
            merged = []
            for before, piece in zip(written, pieces, strict=True):
                out = np.empty(len(old_at), dtype=before.dtype)
                out[at], out[old_at] = piece[order], before
                merged.append(out)
            self._delta_arrays = (merged[0], merged[1], merged[2])
            self._delta = []
        return self._delta_arrays

    def _set_main(self, terms: np.ndarray, slots: np.ndarray, values: np.ndarray) -> None:
        """Make these entries the main segment (sorted by term; stable, so each term's
        entries stay in slot order)."""
        order = np.argsort(terms, kind="stable")
        terms = terms[order]
        self.main_slots, self.main_values = slots[order], values[order]
        if not len(terms):  # as a new column: no term, one start
            self.term_ids, self.term_start = terms.astype(np.int64), np.zeros(1, np.int64)
            return
        starts = np.flatnonzero(np.diff(terms)) + 1
        self.term_ids = terms[np.concatenate([[0], starts])]
        self.term_start = np.concatenate([[0], starts, [len(terms)]]).astype(np.int64)

    def compact(self) -> None:
        """Rewrite the live entries as one sorted main segment with dense slots."""
        d_terms, d_slots, d_values = self._delta_entries()
        main_terms = np.repeat(self.term_ids, np.diff(self.term_start))
        terms = np.concatenate([main_terms, d_terms])
        slots = np.concatenate([self.main_slots, d_slots])
        values = np.concatenate([self.main_values, d_values])
        keep = self.live[slots]
        terms, slots, values = terms[keep], slots[keep], values[keep]
        alive = np.flatnonzero(self.live[: self.n_slots])
        renumber = np.full(self.n_slots, -1, dtype=np.int32)
        renumber[alive] = np.arange(len(alive), dtype=np.int32)
        self._set_main(terms, renumber[slots], values)
        self.slot_keys = self.slot_keys[alive].copy()
        self.slot_len = self.slot_len[alive].copy()
        self.live = np.ones(len(alive), dtype=bool)
        self.n_slots = len(alive)
        self.slot_of.set(self.slot_keys, np.arange(len(alive)))
        self._delta, self._delta_arrays = [], _no_entries()
        self.delta_entries = self.dead_entries = 0

    # -- snapshots -------------------------------------------------------------------

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The column as named arrays (compacted first), for a snapshot."""
        if self.dead_entries or self.delta_entries:
            self.compact()
        return {
            f"{prefix}keys": self.slot_keys[: self.n_slots],
            f"{prefix}lens": self.slot_len[: self.n_slots],
            f"{prefix}term_ids": self.term_ids,
            f"{prefix}term_start": self.term_start,
            f"{prefix}slots": self.main_slots,
            f"{prefix}values": self.main_values,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> PostingColumn:
        """A column from `arrays` (as `arrays` wrote them); ValueError when inconsistent."""
        column = cls()
        column.slot_keys = np.asarray(arrays[f"{prefix}keys"], dtype=np.int64)
        column.slot_len = np.asarray(arrays[f"{prefix}lens"], dtype=np.int32)
        column.term_ids = np.asarray(arrays[f"{prefix}term_ids"], dtype=np.int64)
        column.term_start = np.asarray(arrays[f"{prefix}term_start"], dtype=np.int64)
        column.main_slots = np.asarray(arrays[f"{prefix}slots"], dtype=np.int32)
        column.main_values = np.asarray(arrays[f"{prefix}values"], dtype=np.float32)
        column.n_slots = len(column.slot_keys)
        column.live = np.ones(column.n_slots, dtype=bool)
        entries = len(column.main_slots)
        if (
            int(column.slot_len.sum()) != entries
            or len(column.main_values) != entries
            or len(column.term_start) != len(column.term_ids) + 1
            or int(column.term_start[-1]) != entries
            or (entries and not 0 <= int(column.main_slots.max()) < column.n_slots)
        ):
            raise ValueError("inconsistent posting arrays")
        column.slot_of.set(column.slot_keys, np.arange(column.n_slots))
        return column

    # -- queries ---------------------------------------------------------------------

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """Live (slots, values) of one term (main segment first, then delta)."""
        slots, values, lo, hi = self._term_ranges([term])
        return slots[lo[0] : hi[0]], values[lo[0] : hi[0]]

    def search(
        self,
        weights: dict[int, float],
        bm25_records: int | None,
        limit: int,
        allowed: np.ndarray | None,
    ) -> list[tuple[int, float]]:
        """The `limit` best (record key, `1 - dot` as float32) by ascending measure, then
        key, among records sharing a term with the query (and among `allowed` keys when
        given). `weights` maps a query term to its float32 weight (as float); with
        `bm25_records` = N, each weight is first multiplied by the term's IDF."""
        if limit <= 0 or not weights:
            return []
        terms = sorted(weights)
        slots, values, lo, hi = self._term_ranges(terms)
        counts = (hi - lo).tolist()
        coefficients = [
            weights[term] * idf(bm25_records, count) if bm25_records is not None else weights[term]
            for term, count in zip(terms, counts, strict=True)
        ]
        permitted = None
        if allowed is not None:
            permitted = np.zeros(self.n_slots, dtype=bool)
            allowed_slots = self.slot_of.get(allowed)
            permitted[allowed_slots[allowed_slots >= 0]] = True
        compiled = sparse_kernel.kernel()
        if compiled is not None:
            ranges = (slots, values, lo, hi)
            return self._search_compiled(compiled, ranges, coefficients, limit, permitted)
        parts = [
            (slots[a:b], values[a:b], w)
            for a, b, w in zip(lo.tolist(), hi.tolist(), coefficients, strict=True)
            if b > a
        ]
        return self._search_numpy(parts, limit, permitted)

    def _search_compiled(
        self,
        compiled: sparse_kernel.Kernel,
        ranges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        coefficients: list[float],
        limit: int,
        permitted: np.ndarray | None,
    ) -> list[tuple[int, float]]:
        """`search` by the compiled loop, on working arrays taken from the column's pool (a
        search that fails leaves its arrays behind rather than return them dirty). The loop
        checks no bounds: the caller keeps the column unchanged meanwhile (the engine's lock
        serializes its searches and catch-ups), so every slot is below `n_slots`."""
        scratch = self._scratch.pop() if self._scratch else None
        if scratch is None or len(scratch.acc) < self.n_slots:
            scratch = sparse_kernel.Scratch(self.n_slots)
        weights = np.asarray(coefficients, dtype=np.float64)
        mask = _NO_FILTER if permitted is None else permitted
        touched, acc, seen = scratch.touched, scratch.acc, scratch.seen
        n = compiled.accumulate(*ranges, weights, mask, *scratch.arrays())
        if limit <= sparse_kernel.MAX_SELECTED:
            keys, measures = compiled.take_best(touched, n, acc, seen, self.slot_keys, limit)
            found = list(zip(keys.tolist(), measures.tolist(), strict=True))
        else:
            measures = compiled.take_all(touched, n, acc, seen)
            found = self._best(touched[:n], measures, limit, 1)
        self._scratch.append(scratch)
        return found

    def _search_numpy(
        self,
        parts: list[tuple[np.ndarray, np.ndarray, float]],
        limit: int,
        permitted: np.ndarray | None,
    ) -> list[tuple[int, float]]:
        """`search` in numpy, given each term's (slots, values, weight) with entries."""
        if not parts:
            return []
        if len(parts) == 1:  # one term: its slots are distinct already
            slots, values, weight = parts[0]
            dots = np.multiply(values, weight, dtype=np.float64)
            repeats = 1
        else:
            slots = np.concatenate([p[0] for p in parts])
            # The same float64 products as w * float64(value), term by term.
            weights = np.repeat(np.asarray([p[2] for p in parts]), [len(p[0]) for p in parts])
            products = weights * np.concatenate([p[1] for p in parts])
            if len(slots) * SORTED_DOTS_RATIO < self.n_slots:
                slots, dots = _sorted_dots(slots, products)
                repeats = 1
            else:  # every posting with its record's dot (a record's postings repeat it)
                dots = np.bincount(slots, products, self.n_slots)[slots]
                repeats = len(parts)
        if permitted is not None:
            kept = permitted[slots]
            slots, dots = slots[kept], dots[kept]
        return self._best(slots, (1.0 - dots).astype(np.float32), limit, repeats)

    def _term_ranges(
        self, terms: list[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(slots, values, lo, hi): the live entries of `terms[i]` are `slots[lo[i]:hi[i]]`
        with `values[lo[i]:hi[i]]`, those of the main segment first, then the delta's in the
        order written; the main segment itself when the column has no dead or delta entries
        (the usual state after a load, a scan or a compaction), else copies. Both segments
        are sorted by term: O(terms x log(entries) + entries found), however big the delta."""
        wanted = np.asarray(terms, dtype=np.int64)
        main_lo, main_hi = _main_ranges(self.term_ids, self.term_start, wanted)
        if not self.dead_entries and not self.delta_entries:
            return self.main_slots, self.main_values, main_lo, main_hi
        d_terms, d_slots, d_values = self._delta_entries()
        delta_lo = d_terms.searchsorted(wanted, side="left")
        delta_hi = d_terms.searchsorted(wanted, side="right")
        counts = main_hi - main_lo + delta_hi - delta_lo
        found = np.flatnonzero(counts)
        bounds = (a[found].tolist() for a in (main_lo, main_hi, delta_lo, delta_hi))
        slot_parts, value_parts = [self.main_slots[:0]], [self.main_values[:0]]
        for m_lo, m_hi, d_lo, d_hi in zip(*bounds, strict=True):  # main entries, then delta's
            slot_parts += (self.main_slots[m_lo:m_hi], d_slots[d_lo:d_hi])
            value_parts += (self.main_values[m_lo:m_hi], d_values[d_lo:d_hi])
        slots, values = np.concatenate(slot_parts), np.concatenate(value_parts)
        ends = np.cumsum(counts)
        if self.dead_entries:
            alive = self.live[slots]
            kept = np.concatenate([[0], np.cumsum(alive)])
            counts = kept[ends] - kept[ends - counts]
            slots, values, ends = slots[alive], values[alive], np.cumsum(counts)
        return slots, values, ends - counts, ends

    def _best(
        self, slots: np.ndarray, measures: np.ndarray, limit: int, repeats: int
    ) -> list[tuple[int, float]]:
        """The `limit` best distinct slots' (key, measure), by measure then key (NaN last);
        each slot appears at most `repeats` times in `slots` (always with the same
        measure)."""
        wanted = limit * repeats
        if len(measures) > wanted:
            # The `wanted` smallest hold at least `limit` distinct slots: everything at or
            # below the wanted-th measure (ties included) holds the answer. When that bound
            # is a number, no NaN (sorted last) is among them, and the few left are sorted
            # here as (measure, key) pairs, a slot's repeats being one pair.
            bound = np.partition(measures, wanted - 1)[wanted - 1]
            if bound == bound:
                near = np.flatnonzero(measures <= bound)
                keys = self.slot_keys[slots[near]].tolist()
                best = sorted(set(zip(measures[near].tolist(), keys, strict=True)))[:limit]
                return [(key, measure) for measure, key in best]
        if not len(slots):
            return []
        keys = self.slot_keys[slots]
        order = np.lexsort((keys, np.isnan(measures), measures))
        keys, measures = keys[order], measures[order]
        if repeats > 1:  # a slot's repeats (same measure, same key) are neighbours now
            first = np.empty(len(keys), dtype=bool)
            first[0] = True
            np.not_equal(keys[1:], keys[:-1], out=first[1:])
            keys, measures = keys[first], measures[first]
        return list(zip(keys[:limit].tolist(), measures[:limit].tolist(), strict=True))


def _sorted_dots(slots: np.ndarray, products: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct `slots` ascending and, per slot, the float64 sum of its `products` in
    their order (a stable sort keeps each slot's products in order; each term's run of
    slots is sorted already, which a stable sort merges cheaply)."""
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    first = np.empty(len(ordered), dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    group = np.cumsum(first) - 1
    return ordered[first], np.bincount(group, products[order], int(group[-1]) + 1)


def _no_entries() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty (terms, slots, values)."""
    return np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.float32)


def _main_ranges(
    term_ids: np.ndarray, term_start: np.ndarray, wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of each of `wanted` in a main segment (lo == hi for a term it lacks)."""
    if not len(term_ids):
        empty = np.zeros(len(wanted), dtype=np.int64)
        return empty, empty
    at = np.minimum(term_ids.searchsorted(wanted), len(term_ids) - 1)
    lo = term_start[at]
    return lo, np.where(term_ids[at] == wanted, term_start[at + 1], lo)
