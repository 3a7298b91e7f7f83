"""Exact search among some records of a mapped graph, without their float32 vectors.

A graph snapshot holds every record's vector at 16 bits (bfloat16, or float16) in slot
order (`usearch_layout`). A process serving the snapshot as a view can score any set of
its records with those rows in place (numkong's kernels take bfloat16 as it is), where a
filtered query otherwise needed the collection's float32 copy read from the store into
memory (147 MiB at 100k x 384, 1.5 GB at 1M). Rounding to 16 bits moves a row's distance
by at most a bound computed per row (`_bounds`); so a row whose rough distance less its
bound is above the k-th smallest rough distance plus bound cannot be in the exact top k,
and every other row may be. Only those rows' float32 vectors are then read and ranked
exactly: the answer is the exact one, equal distances by key included.

The bound: a stored component is within `rel` of its float32 value relative to it (half
an ulp: 2^-8 for bfloat16 rounded to nearest, 2^-7 truncated, 2^-11 for float16, plus
float16's smallest step for subnormals), so a row is within `rel |x|` of the vector in
Euclidean norm; the query is rounded too (its error measured exactly); float32 arithmetic
in the exact and the rough pass adds `ARITHMETIC_ULPS * (dim + 8) * 2^-24` relative to the
terms summed. Rows and queries of extreme norm, and rows whose rough distance is not
finite, are always read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numkong
import numpy as np

from huedb.engine import usearch_layout
from huedb.engine.graph_reach import RECORD_KEYS_BELOW

ARITHMETIC_ULPS = 4  # float32 rounding allowed per summed term, both passes together
SLACK = 1.05  # the bound is widened by this factor on top
# Keys are a store's small increasing integers: a collection's largest below this many per
# record is looked up in a dense key -> slot array (8 bytes a key), else by binary search.
DENSE_KEYS_PER_RECORD = 4
SAFE_NORMS = (1e-12, 1e12)  # rows and queries outside are read (their squares are safe)
_F16_SUBNORMAL_STEP = 2.0**-25  # float16's absolute error below its normal range
SHORTLIST_BLOCK = 65_536  # rows scored at a time by `certified_shortlist`
F16_ROUNDING_BOUND = 2.0**-11  # float16 rounds to nearest: half of its 2^-10 ulp


@dataclass
class MappedRows:
    """The 16-bit rows of a serialized graph (a view into its buffer) and their keys."""

    rows: np.ndarray  # (slots, dim): uint16 bfloat16 bits, or float16
    kind: str  # "bf16" or "f16"
    rel: float  # per-component relative rounding error of the stored values
    sorted_keys: np.ndarray  # the records' keys, ascending
    slots: np.ndarray  # the slot of each of `sorted_keys`
    _slot_by_key: np.ndarray | None = field(default=None, repr=False)  # dense keys: key -> slot
    _norms: np.ndarray | None = field(default=None, repr=False)  # per slot, NaN: not yet

    @classmethod
    def of(cls, payload: Any, dim: int, bf16_rel: float) -> MappedRows | None:
        """The rows of the graph serialized in `payload` (a buffer kept alive by its
        owner), or None when its layout or vector type is not one read here. `bf16_rel`
        is how a bfloat16 graph rounded its vectors (2^-8 to nearest, 2^-7 truncated)."""
        data = np.frombuffer(payload, dtype=np.uint8)
        found = usearch_layout.sections(data)
        if found is None or found.row_bytes != 2 * dim:
            return None
        served = usearch_layout.ROWS_16_BY_KIND.get(found.vector_kind)
        if served is None:
            return None
        kind, dtype = served.name, served.dtype
        rel = bf16_rel if kind == "bf16" else F16_ROUNDING_BOUND
        graph = usearch_layout.nodes(data, found.graph_at)
        if graph is None or len(graph.starts) != found.rows:
            return None
        keys = usearch_layout.slot_keys(data, graph)
        end = found.vectors_at + found.rows * found.row_bytes
        rows = data[found.vectors_at : end].view(dtype).reshape(found.rows, dim)
        records = np.flatnonzero(keys < np.uint64(RECORD_KEYS_BELOW))
        order = np.argsort(keys[records], kind="stable")
        found = cls(rows, kind, rel, keys[records][order], records[order])
        largest = int(found.sorted_keys[-1]) if len(records) else -1
        if largest < DENSE_KEYS_PER_RECORD * len(records):
            found._slot_by_key = np.full(largest + 1, -1, dtype=np.int64)
            found._slot_by_key[found.sorted_keys.astype(np.int64)] = found.slots
        return found

    def slots_of(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key, -1 where the graph holds no record of it."""
        if len(self.sorted_keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        dense = self._slot_by_key
        if dense is not None:
            inside = keys < np.uint64(len(dense))
            slots = np.full(len(keys), -1, dtype=np.int64)
            slots[inside] = dense[keys[inside].astype(np.int64)]
            return slots
        at = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        return np.where(self.sorted_keys[at] == keys, self.slots[at], -1)

    def shortlist(self, space: str, query: np.ndarray, k: int, slots: np.ndarray) -> np.ndarray:
        """The positions in `slots` of every row that may be among the exact k nearest to
        `query` (float32) by `space`'s distance (`certified_shortlist`)."""
        if len(slots) <= k:
            return np.arange(len(slots))
        rows = np.take(self.rows, slots, axis=0)  # (half the time of fancy indexing here)
        stored = self._norms_of(slots, rows)
        return certified_shortlist(self.kind, self.rel, rows, stored, space, query, k)

    def _norms_of(self, slots: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The stored norms of `rows` (the rows of `slots`), kept per slot once computed:
        only the rows asked for (every slot's at once touched the whole mapped matrix, 768
        MB at 1M x 384, at a process's first filtered query)."""
        if self._norms is None:
            self._norms = np.full(len(self.rows), np.nan)
        stored = self._norms[slots]
        missing = np.isnan(stored)
        if np.any(missing):
            stored[missing] = stored_norms(self.kind, rows[missing])
            self._norms[slots[missing]] = stored[missing]
        return stored


def certified_shortlist(
    kind: str,
    rel: float,
    rows: np.ndarray,
    stored: np.ndarray,
    space: str,
    query: np.ndarray,
    k: int,
    block: int = SHORTLIST_BLOCK,
) -> np.ndarray:
    """The positions of every one of `rows` (16-bit values of `kind`, each component within
    `rel` of its float32 value; `stored`: their norms, float64) that may be among the exact
    k nearest to `query` (float32) by `space`'s distance over the rows' float32 vectors:
    for a graph of unit vectors under inner product (cosine), of vectors as given (ip) or
    under squared L2 (l2). Every position when the query's norm is extreme. The rows are
    scored `block` at a time (the bounds' arrays of all rows at once, ten float64 arrays,
    were ~80 MB at 1M rows), keeping each row's lower bound and the k lowest upper bounds."""
    every = np.arange(len(rows))
    exact = query.astype(np.float64)
    norm = float(np.sqrt(np.dot(exact, exact)))
    if len(rows) <= k or not SAFE_NORMS[0] <= norm <= SAFE_NORMS[1]:
        return every
    rounded = _rounded(kind, query)
    query_error = float(np.linalg.norm(exact - _as_float64(rounded)))
    metric = "sqeuclidean" if space == "l2" else "dot"
    lower = np.empty(len(rows), dtype=np.float64)
    always = np.empty(len(rows), dtype=bool)  # rows whose bound cannot be trusted
    best = np.empty(0, dtype=np.float64)  # the k lowest trusted upper bounds so far
    for start in range(0, len(rows), block):
        norms = stored[start : start + block]
        rough = _cdist(kind, rounded, rows[start : start + block], metric)
        errors = _row_error(kind, rel, norms, rows.shape[1])
        with np.errstate(invalid="ignore", over="ignore"):  # such rows are always kept
            rough, bound = _bounds(space, rough, norms, norm, query_error, errors, len(query))
            upper = rough + bound
            lower[start : start + block] = rough - bound
        finite = np.isfinite(upper) & (norms <= SAFE_NORMS[1])
        finite &= (norms >= SAFE_NORMS[0]) | (norms == 0)
        always[start : start + block] = ~finite
        best = np.concatenate([best, upper[finite]])
        if len(best) > k:
            best = np.partition(best, k - 1)[:k]
    if len(best) < k:
        return every
    return np.flatnonzero(always | (lower <= best.max()))


def stored_norms(kind: str, rows: np.ndarray) -> np.ndarray:
    """The norms (float64) of 16-bit rows of `kind`, as the bound takes them."""
    zero = np.zeros((1, rows.shape[1]), dtype=rows.dtype)
    squares = _cdist(kind, zero, rows, "sqeuclidean")
    return np.sqrt(np.maximum(squares, 0.0))


def _row_error(kind: str, rel: float, stored: np.ndarray, dim: int) -> np.ndarray:
    """An upper bound of |x - stored| for rows of stored norm `stored`."""
    floor = _F16_SUBNORMAL_STEP * np.sqrt(dim) if kind == "f16" else 0.0
    return rel * (stored + floor) / (1.0 - rel) + floor


def _rounded(kind: str, query: np.ndarray) -> np.ndarray:
    """The query as one row of the 16-bit type `kind`."""
    row = np.ascontiguousarray(query, dtype=np.float32)[None, :]
    if kind == "f16":
        return row.astype(np.float16)
    return np.asarray(numkong.astype(row, "bf16")).view("<u2")


def _bounds(
    space: str,
    raw: np.ndarray,
    stored: np.ndarray,
    norm: float,
    query_error: float,
    row_error: np.ndarray,
    dim: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Rough distances from the rough pass's `raw` scores (dot products, or squared L2)
    and, per row, how far the exact float32 distance may be from them."""
    if space == "l2":
        # | |q - x|^2 - |q' - x'|^2 | <= d (2 |q' - x'| + d), d = |q - q'| + |x - x'|
        delta = row_error + query_error
        root = np.sqrt(np.maximum(raw, 0.0))
        bound = delta * (2.0 * root + delta)
        reach = (root + delta) ** 2  # the size of the terms summed
        rough = raw
    else:
        # |q.x - q'.x'| <= |q| |x - x'| + |q - q'| |x'|, x the row's float32 vector
        bound = norm * row_error + query_error * stored
        reach = (norm + query_error) * (stored + row_error)
        rough = 1.0 - raw
        if space == "cosine":  # unit rows: the dot product is the cosine times |q|
            bound, reach, rough = bound / norm, reach / norm, 1.0 - raw / norm
    arithmetic = ARITHMETIC_ULPS * (dim + 8) * 2.0**-24
    return rough, SLACK * (bound + arithmetic * (reach + np.abs(rough))) + 1e-7


def _cdist(kind: str, query: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """One query's scores against `rows` (numkong, float64 out)."""
    if kind == "bf16":
        out = numkong.cdist(query, rows, metric=metric, dtype="bf16")
    else:
        out = numkong.cdist(query, rows, metric=metric)
    return np.asarray(out, dtype=np.float64).reshape(-1)


def rows_as_float32(rows: np.ndarray) -> np.ndarray:
    """16-bit rows (bfloat16 bits as uint16, or float16) as float32 values, exactly (a
    graph given them holds the same bits); float32 rows as they are."""
    if rows.dtype == np.float32:
        return rows
    if rows.dtype == np.float16:
        return rows.astype(np.float32)
    return (rows.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _as_float64(rounded: np.ndarray) -> np.ndarray:
    """A rounded query row (bfloat16 bits or float16) as float64 values."""
    return rows_as_float32(rounded).astype(np.float64).reshape(-1)
