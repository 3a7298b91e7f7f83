"""Posting lists of one sparse-vector metadata key, scored with numpy (docs/ARCHITECTURE.md,
"Sparse index").

Each record holding a sparse vector under the key owns a *slot*; its entries (term, slot,
value) live in a *main* segment sorted by term, or, when written since the last compaction,
in a small unsorted *delta*. A change never edits entries in place: the record's old slot is
marked dead and it gets a new slot in the delta. Compaction (when dead and delta entries
reach a quarter of the main segment) rewrites the live entries as a new main segment with
dense slots. A term's document frequency is the number of its live entries, counted at query
time, so it is always exact.

Scores follow `search/sparse_knn.py`, the scan they replace, to the bit: per record the
float64 products `q_t * d_t` are summed in ascending term order (a stored vector's indices
are strictly ascending, which is the scan's order), then `1 - dot` is cast to float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from huedb.sparse_vector import SPARSE_VECTOR_TYPE_VALUE, TYPE_KEY

SparseParts = tuple[np.ndarray, np.ndarray]  # (int64 indices, float32 values)

MIN_COMPACT_ENTRIES = 4096


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


class PostingColumn:
    """The sparse vectors under one metadata key of a collection's live records."""

    def __init__(self) -> None:
        self.slot_keys = np.empty(0, dtype=np.int64)  # record key of each slot
        self.slot_len = np.empty(0, dtype=np.int64)  # entries of each slot
        self.live = np.empty(0, dtype=bool)
        self.n_slots = 0
        self.slot_of = KeyMap()
        self.main_terms = np.empty(0, dtype=np.int64)  # sorted
        self.main_slots = np.empty(0, dtype=np.int64)
        self.main_values = np.empty(0, dtype=np.float32)
        self._delta: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._delta_arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.delta_entries = 0
        self.dead_entries = 0

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays (spare capacity included)."""
        arrays = (self.slot_keys, self.slot_len, self.live, self.main_terms, self.main_slots)
        delta = self.delta_entries * 20
        return sum(a.nbytes for a in arrays) + self.main_values.nbytes + delta + self.slot_of.nbytes

    def __len__(self) -> int:
        """Records holding a vector under the key."""
        return int(np.count_nonzero(self.live[: self.n_slots]))

    # -- changes ---------------------------------------------------------------------

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
        slots = np.arange(start, start + len(kept), dtype=np.int64)
        lengths = np.asarray([len(v[0]) for _, v in kept], dtype=np.int64)
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
        self._delta_arrays = None
        self.delta_entries += int(lengths.sum())
        if self.dead_entries + self.delta_entries > max(
            MIN_COMPACT_ENTRIES, len(self.main_terms) // 4
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
        if self._delta_arrays is None:
            if self._delta:
                parts = list(zip(*self._delta, strict=True))
                self._delta_arrays = tuple(np.concatenate(p) for p in parts)  # type: ignore[assignment]
                self._delta = [self._delta_arrays]  # type: ignore[list-item]
            else:
                empty = np.empty(0, dtype=np.int64)
                self._delta_arrays = (empty, empty, np.empty(0, dtype=np.float32))
        assert self._delta_arrays is not None
        return self._delta_arrays

    def compact(self) -> None:
        """Rewrite the live entries as one sorted main segment with dense slots."""
        d_terms, d_slots, d_values = self._delta_entries()
        terms = np.concatenate([self.main_terms, d_terms])
        slots = np.concatenate([self.main_slots, d_slots])
        values = np.concatenate([self.main_values, d_values])
        keep = self.live[slots]
        terms, slots, values = terms[keep], slots[keep], values[keep]
        alive = np.flatnonzero(self.live[: self.n_slots])
        renumber = np.full(self.n_slots, -1, dtype=np.int64)
        renumber[alive] = np.arange(len(alive))
        slots = renumber[slots]
        order = np.lexsort((slots, terms))
        self.main_terms, self.main_slots, self.main_values = (
            terms[order],
            slots[order],
            values[order],
        )
        self.slot_keys = self.slot_keys[alive].copy()
        self.slot_len = self.slot_len[alive].copy()
        self.live = np.ones(len(alive), dtype=bool)
        self.n_slots = len(alive)
        self.slot_of.set(self.slot_keys, np.arange(len(alive)))
        self._delta, self._delta_arrays = [], None
        self.delta_entries = self.dead_entries = 0

    # -- snapshots -------------------------------------------------------------------

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The column as named arrays (compacted first), for a snapshot."""
        self.compact()
        return {
            f"{prefix}keys": self.slot_keys,
            f"{prefix}lens": self.slot_len,
            f"{prefix}terms": self.main_terms,
            f"{prefix}slots": self.main_slots,
            f"{prefix}values": self.main_values,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> PostingColumn:
        """A column from `arrays` (as `arrays` wrote them)."""
        column = cls()
        column.slot_keys = np.array(arrays[f"{prefix}keys"], dtype=np.int64)
        column.slot_len = np.array(arrays[f"{prefix}lens"], dtype=np.int64)
        column.main_terms = np.array(arrays[f"{prefix}terms"], dtype=np.int64)
        column.main_slots = np.array(arrays[f"{prefix}slots"], dtype=np.int64)
        column.main_values = np.array(arrays[f"{prefix}values"], dtype=np.float32)
        column.n_slots = len(column.slot_keys)
        column.live = np.ones(column.n_slots, dtype=bool)
        if int(column.slot_len.sum()) != len(column.main_terms) or (
            len(column.main_slots) and int(column.main_slots.max()) >= column.n_slots
        ):
            raise ValueError("inconsistent posting arrays")
        column.slot_of.set(column.slot_keys, np.arange(column.n_slots))
        return column

    # -- queries ---------------------------------------------------------------------

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """Live (slots, values) of one term."""
        lo, hi = np.searchsorted(self.main_terms, [term, term + 1])
        slots, values = self.main_slots[lo:hi], self.main_values[lo:hi]
        if self.dead_entries:
            alive = self.live[slots]
            slots, values = slots[alive], values[alive]
        if self.delta_entries:
            d_terms, d_slots, d_values = self._delta_entries()
            at = np.flatnonzero(d_terms == term)
            if len(at):
                at = at[self.live[d_slots[at]]]
                slots = np.concatenate([slots, d_slots[at]])
                values = np.concatenate([values, d_values[at]])
        return slots, values

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
        all_slots, all_products = [], []
        for term in sorted(weights):
            slots, values = self.postings(term)
            if not len(slots):
                continue
            w = weights[term]
            if bm25_records is not None:
                w = w * idf(bm25_records, len(slots))
            all_slots.append(slots)
            all_products.append(w * values.astype(np.float64))
        if not all_slots:
            return []
        slots = np.concatenate(all_slots)
        dots = np.bincount(slots, np.concatenate(all_products), self.n_slots)
        hit = np.zeros(self.n_slots, dtype=bool)
        hit[slots] = True
        if allowed is not None:
            permitted = np.zeros(self.n_slots, dtype=bool)
            allowed_slots = self.slot_of.get(allowed)
            permitted[allowed_slots[allowed_slots >= 0]] = True
            hit &= permitted
        candidates = np.flatnonzero(hit)
        measures = (1.0 - dots[candidates]).astype(np.float32)
        keys = self.slot_keys[candidates]
        if len(candidates) > limit:
            # Everything at or below the limit-th measure (ties included), then exact order.
            bound = np.partition(measures, limit - 1)[limit - 1]
            near = (measures <= bound) | np.isnan(measures)
            measures, keys = measures[near], keys[near]
        order = np.lexsort((keys, np.isnan(measures), measures))[:limit]
        return list(zip(keys[order].tolist(), measures[order].tolist(), strict=True))
