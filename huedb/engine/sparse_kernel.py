"""A sparse search's scoring loop compiled by numba, when numba is installed (the `numba`
extra; docs/ARCHITECTURE.md, "Sparse index").

`PostingColumn.search` sums each record's products over the query's posting lists and keeps
the best few. In numpy that is a dozen passes over the postings and an array of every slot
(~220 us at 100k records and ~4.7k postings); as one compiled loop over the postings it is
one pass (~40 us). The loop adds the same float64 products in the same order (term by term,
each record's sum starting from 0.0) and casts `1 - dot` to float32 as numpy does, so both
give the same bits; the tests compare them.

numba compiles the functions on the first search of a process (1.4 s; ~0.4 s loading them
from the cache; the import costs ~37 MiB of private memory and ~110 MiB of shared library
pages); `cache=True` keeps the machine code for the next process beside this file, or in
the user's cache directory when this one is read-only, and with neither writable each
process compiles.
Without numba, or when compiling fails (logged once), `kernel()` is None and the caller
scores with numpy.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Up to this many results the loop keeps the best in a sorted array as it goes (an insertion
# costs up to `limit` moves); beyond it, every candidate's measure is returned for a sort.
MAX_SELECTED = 128


def accumulate(
    slots: np.ndarray,
    values: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    coefficients: np.ndarray,
    permitted: np.ndarray,
    acc: np.ndarray,
    seen: np.ndarray,
    touched: np.ndarray,
) -> int:
    """Add `coefficients[t] * values[j]` (float64) to `acc[slots[j]]` for each term t's
    entries lo[t]:hi[t], in term order; each slot met for the first time goes to `touched`
    and is marked in `seen`. With a non-empty `permitted`, slots it does not mark are
    skipped. Returns how many slots were touched."""
    n = 0
    check = len(permitted) > 0
    for t in range(len(lo)):
        c = coefficients[t]
        for j in range(lo[t], hi[t]):
            s = slots[j]
            if check and not permitted[s]:
                continue
            if not seen[s]:
                seen[s] = True
                touched[n] = s
                n += 1
            acc[s] += c * np.float64(values[j])
    return n


def take_best(
    touched: np.ndarray,
    n: int,
    acc: np.ndarray,
    seen: np.ndarray,
    slot_keys: np.ndarray,
    limit: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The `limit` best touched slots as (record keys, float32 `1 - dot`) by measure, then
    key (NaN last); resets `acc` and `seen` for them."""
    k = min(limit, n)
    best_m = np.empty(k, dtype=np.float32)
    best_k = np.empty(k, dtype=np.int64)
    filled = 0
    for i in range(n):
        s = touched[i]
        m = np.float32(1.0 - acc[s])
        acc[s] = 0.0
        seen[s] = False
        if filled == k:  # full: only a candidate before the last one gets in
            last_m = best_m[k - 1]
            if last_m == last_m and (m != m or m > last_m):
                continue
            if (m == last_m or (m != m and last_m != last_m)) and slot_keys[s] >= best_k[k - 1]:
                continue
            at = k - 1
        else:
            at = filled
            filled += 1
        key = slot_keys[s]
        while at > 0:  # move later entries down until the one before comes first
            prev_m = best_m[at - 1]
            if m == m:
                before = prev_m < m or (prev_m == m and best_k[at - 1] < key)
            else:
                before = prev_m == prev_m or best_k[at - 1] < key
            if before:
                break
            best_m[at] = prev_m
            best_k[at] = best_k[at - 1]
            at -= 1
        best_m[at] = m
        best_k[at] = key
    return best_k, best_m


def take_all(touched: np.ndarray, n: int, acc: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Every touched slot's float32 `1 - dot`, in `touched` order; resets `acc` and `seen`."""
    measures = np.empty(n, dtype=np.float32)
    for i in range(n):
        s = touched[i]
        measures[i] = np.float32(1.0 - acc[s])
        acc[s] = 0.0
        seen[s] = False
    return measures


@dataclass(frozen=True)
class Kernel:
    """The compiled functions (same signatures as the Python ones above)."""

    accumulate: Any
    take_best: Any
    take_all: Any


_lock = threading.Lock()
_compiled: list[Kernel | None] = []  # empty until the first call of `kernel()`


def kernel() -> Kernel | None:
    """The compiled functions, compiling them on the first call; None without numba."""
    if _compiled:
        return _compiled[0]
    with _lock:
        if not _compiled:
            _compiled.append(_compile())
        return _compiled[0]


def _compile() -> Kernel | None:
    try:
        import numba
    except ImportError:
        logger.info("numba is not installed: sparse searches score with numpy")
        return None
    try:
        try:
            jit = numba.njit(cache=True, nogil=True)
            compiled = Kernel(jit(accumulate), jit(take_best), jit(take_all))
        except RuntimeError:  # no writable place for the cache: compile for this process
            logger.info("numba has nowhere to cache the sparse scoring loop")
            jit = numba.njit(nogil=True)
            compiled = Kernel(jit(accumulate), jit(take_best), jit(take_all))
        _warm_up(compiled)
    except Exception:  # numba raises its own error types while compiling
        logger.exception("compiling the sparse scoring loop failed: scoring with numpy")
        return None
    return compiled


def _warm_up(compiled: Kernel) -> None:
    """Compile every function for the argument types `PostingColumn.search` passes."""
    scratch = Scratch(2)
    slots, values = np.zeros(1, dtype=np.int32), np.ones(1, dtype=np.float32)
    lo, hi, keys = np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64), np.zeros(2, np.int64)
    for permitted in (np.ones(2, dtype=bool), np.empty(0, dtype=bool)):
        for take_all in (False, True):
            n = compiled.accumulate(slots, values, lo, hi, np.ones(1), permitted, *scratch.arrays())
            if take_all:
                compiled.take_all(scratch.touched, n, scratch.acc, scratch.seen)
            else:
                compiled.take_best(scratch.touched, n, scratch.acc, scratch.seen, keys, 1)


class Scratch:
    """One search's working arrays over a column's slots: `acc` (float64 sums) and `seen`,
    all zero between searches (the kernel resets what it touched), and `touched`."""

    def __init__(self, slots: int) -> None:
        self.acc = np.zeros(slots, dtype=np.float64)
        self.seen = np.zeros(slots, dtype=bool)
        self.touched = np.empty(max(slots, 1), dtype=np.int32)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(acc, seen, touched), the last arguments of `accumulate`."""
        return self.acc, self.seen, self.touched

    @property
    def nbytes(self) -> int:
        return self.acc.nbytes + self.seen.nbytes + self.touched.nbytes
