"""A fresh graph's links chosen on int8 rows, then served with its 16-bit rows.

Most of a build's CPU goes to distances between the rows usearch holds, and usearch's
int8 kernels (VNNI) are cheaper than its bfloat16 ones. At 100k x 384 (the bench's data,
M 16, ef_construction 100, two threads) a build took 14.2-15.5 s of CPU on bfloat16 rows
and 9.9-11.3 s on int8 rows. Searched with its int8 rows such a graph misses (recall@10
0.94 at ef 128 after the float32 re-rank), as the rows are too coarse to rank close
neighbours by; but its links are nearly as good: served with bfloat16 rows in place of
the int8 ones, recall@10 was 0.9955 at ef 128 and 0.9920 at ef 100, against 0.9965 and
0.9943 for the graph built on bfloat16 rows.

So a build in a graph process sends it int8 rows (`Int8Rows.quantize`: one scale per
build, from the rows at its start; l2 rows centred first) and the file the process saves
is rewritten (`serve_with_rows`) with the 16-bit rows the parent holds for those keys, in
slot order, and the head's vector type: the file is then the one a build on 16-bit rows
would have saved, but for its links, and everything that reads a graph (views, snapshots,
`mapped_rows`, `graph_reach`) reads it as one. Inner-product graphs keep 16-bit rows
(their order is not that of centred rows), as do rows that int8 would blur (a relative
error over `MAX_RELATIVE_ERROR`) and machines where usearch has no int8 kernel.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huedb.engine import usearch_layout
from huedb.engine.mapped_rows import rows_as_float32

logger = logging.getLogger(__name__)

# A build whose int8 rows have more than this share of their components clipped (rows far
# beyond its first ones) is reported with a warning: its links are coarser.
CLIPPED_WARN = 0.001
# Above this relative RMS error of a build's first rows in int8 the graph is built on its
# 16-bit rows (unit vectors of 384 clustered dimensions: 1.1 %).
MAX_RELATIVE_ERROR = 0.03
# The scale leaves this much room over the largest component of the build's first rows
# (later ones beyond it are clipped: their node is placed a little off, never lost).
HEADROOM = 1.05
INT8_MAX = 127
# Rows gathered and written at a time (6 MiB at 384 dimensions: a buffer reused, where one
# of 65,536 rows faulted in 50 MB of fresh pages each time, 0.17 s of a 0.37 s rewrite).
ROWS_PER_WRITE = 8_192
COPY_BYTES = 2**22
_KIND_NAMES = {
    usearch_layout.KIND_I8: "int8",
    usearch_layout.KIND_BF16: "bfloat16",
    usearch_layout.KIND_F16: "float16",
}
# The spaces whose graphs may be built on int8 rows, and whether their rows are centred.
CENTRED = {"cosine": False, "l2": True}


@dataclass(frozen=True)
class Int8Rows:
    """How a build's float32 graph rows become int8 ones."""

    scale: float
    centre: np.ndarray | None  # subtracted first (l2), else None

    def quantize(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float32 graph rows as int8 (rounded, clipped to +-127), into `out` if given."""
        with np.errstate(over="ignore"):  # beyond float32: infinite, then clipped
            shifted = rows - self.centre if self.centre is not None else rows
            scaled = np.multiply(shifted, np.float32(self.scale), dtype=np.float32)
        np.rint(scaled, out=scaled)
        np.clip(scaled, -INT8_MAX, INT8_MAX, out=scaled)
        if out is None:
            return scaled.astype(np.int8)
        np.copyto(out, scaled, casting="unsafe")
        return out


def choose(space: str, rows: np.ndarray) -> Int8Rows | None:
    """The int8 form of a build whose first float32 graph rows are `rows`, or None when
    its graph should be built on 16-bit rows (see the module's docstring; whether usearch
    has an int8 kernel here is `vector_index.has_int8_kernel`)."""
    if space not in CENTRED or len(rows) == 0:
        return None
    rows = np.asarray(rows, dtype=np.float32)
    centre = rows.mean(axis=0, dtype=np.float64).astype(np.float32) if CENTRED[space] else None
    shifted = rows - centre if centre is not None else rows
    largest = float(np.max(np.abs(shifted)))
    scale = INT8_MAX / (largest * HEADROOM) if largest > 0.0 else np.inf
    if not np.isfinite(largest) or not scale < float(np.finfo(np.float32).max):
        return None  # nothing to scale, or a scale past float32's range (tiny rows)
    found = Int8Rows(scale, centre)
    restored = found.quantize(rows).astype(np.float32) / np.float32(found.scale)
    error = np.linalg.norm((restored - shifted).astype(np.float64))
    size = np.linalg.norm(shifted.astype(np.float64))
    return found if error <= MAX_RELATIVE_ERROR * size else None


def clipped(ints: np.ndarray) -> int:
    """How many entries of int8 rows are at +-127 (clipped, or within half a step of it)."""
    return int(np.count_nonzero(ints == INT8_MAX) + np.count_nonzero(ints == -INT8_MAX))


@dataclass
class ClipTally:
    """The int8 components a build or pass sent, and how many of them its scale clipped
    (`report`ed at its end)."""

    clipped: int = 0
    sent: int = 0

    def quantize(
        self, int8: Int8Rows, rows: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """`int8.quantize(rows, out)`, counted."""
        ints = int8.quantize(rows, out=out)
        self.clipped += clipped(ints)
        self.sent += ints.size
        return ints

    def report(self) -> None:
        """`report_clipped` of what was counted."""
        report_clipped(self.clipped, self.sent)


def report_clipped(count: int, total: int) -> None:
    """Log the share of a build's int8 components the scale clipped: a warning above
    `CLIPPED_WARN` (the recall target measures the graph as served, and raises its ef if
    the coarser links need it)."""
    share = count / total if total else 0.0
    if share > CLIPPED_WARN:
        logger.warning(
            "%.2f %% of the graph's int8 components were clipped (rows far beyond those the "
            "build's scale was chosen from): its links are coarser; the recall target "
            "measures it as served",
            100 * share,
        )
    else:
        logger.debug("%.4f %% of the graph's int8 components were clipped", 100 * share)


def serve_with_rows(
    path: Path,
    rows_of: Callable[[np.ndarray], np.ndarray],
    kind: int,
    target: Path | None = None,
) -> None:
    """Rewrite the graph usearch saved to `path` on int8 rows with the 16-bit rows
    `rows_of(keys)` gives for its slots' keys (usearch scalar kind `kind`; at most
    `ROWS_PER_WRITE` keys a call, the rows written before the next): the same head, links
    and keys, in `path`, or in `target` (`path` then left as it is). Raises ValueError
    for a file in any other layout, leaving both files as they were."""
    serve_with_slot_rows(path, lambda start, keys: rows_of(keys), kind, target)


def serve_with_slot_rows(
    path: Path,
    rows_for: Callable[[int, np.ndarray], np.ndarray],
    kind: int,
    target: Path | None = None,
) -> None:
    """`serve_with_rows`, the rows given by `rows_for(first slot, keys of the slots from
    it)` (a graph changed by a backlog pass: its slots' rows come from the graph it
    started from or from the vectors it added)."""
    with _mapped(path) as data:
        found = _sections(path, data, (usearch_layout.KIND_I8,))
        dim = found.row_bytes  # one byte a dimension

        def rows(start: int, keys: np.ndarray) -> np.ndarray:
            block = np.ascontiguousarray(rows_for(start, keys))
            if block.itemsize != 2 or block.shape != (len(keys), dim):
                raise ValueError(f"16-bit rows of shape {block.shape} for {dim} dimensions")
            return block

        _rewrite(path, target or path, data, found, rows, kind, 2 * dim)


class SavedRows:
    """The 16-bit rows of a graph file usearch saved, read a block of slots at a time with
    `os.pread`: pages read that way never count in this process's memory, where a mapping
    of the file kept them there while it lived (0.77 GB at 1M x 384)."""

    def __init__(self, path: Path) -> None:
        """Open the file (ValueError when it holds no graph on 16-bit rows that
        `to_int8` can rewrite)."""
        with _mapped(path) as data:  # only its head's and its levels' pages are read
            found = _sections(path, data, tuple(usearch_layout.ROWS_16_BY_KIND))
            nodes = usearch_layout.nodes(data, found.graph_at)
            if nodes is None or len(nodes.starts) != found.rows:  # as `_rewrite` requires
                raise ValueError(f"{path}: the graph's nodes do not match its rows")
        self.path = path
        self.kind = found.vector_kind
        self.dtype = usearch_layout.ROWS_16_BY_KIND[self.kind].dtype
        self.dim = found.row_bytes // 2
        self.rows = found.rows
        self._at = found.vectors_at
        self._fd = os.open(path, os.O_RDONLY)

    def block(self, start: int, count: int) -> np.ndarray:
        """Rows start.. start + count (fewer past the end), as (rows, dim) of `dtype`."""
        count = max(0, min(count, self.rows - start))
        size = count * self.dim * 2
        data = os.pread(self._fd, size, self._at + start * self.dim * 2)
        if len(data) != size:
            raise ValueError(f"a graph file ended {size - len(data)} bytes early")
        return np.frombuffer(data, dtype=self.dtype).reshape(count, self.dim)

    def spread(self, count: int) -> np.ndarray:
        """Up to `count` rows spread evenly over the file."""
        rows = [self.block(int(slot), 1) for slot in spread_rows(self.rows, count)]
        return np.concatenate(rows) if rows else np.empty((0, self.dim), dtype=self.dtype)

    def close(self) -> None:
        os.close(self._fd)


def spread_rows(count: int, wanted: int) -> np.ndarray:
    """Up to `wanted` row numbers spread evenly over `count` rows."""
    return np.linspace(0, count - 1, min(wanted, count)).astype(np.int64)


def to_int8(saved: SavedRows, int8: Int8Rows, target: Path) -> None:
    """Write to `target` the graph of the file `saved` reads, on 16-bit rows, with those
    rows as int8 (`int8.quantize` of their float32 values): the same head but its vector
    type, links and keys, for a graph process to change on int8 rows (a backlog pass, as
    a build grows its graph; `serve_with_slot_rows` then gives it 16-bit rows again)."""
    with _mapped(saved.path) as data:  # the graph's part read from it; the rows by `saved`
        found = _sections(saved.path, data, (saved.kind,))
        out = np.empty((ROWS_PER_WRITE, saved.dim), dtype=np.int8)

        def rows(start: int, keys: np.ndarray) -> np.ndarray:
            block = rows_as_float32(saved.block(start, len(keys)))
            return int8.quantize(block, out=out[: len(keys)])

        _rewrite(saved.path, target, data, found, rows, usearch_layout.KIND_I8, saved.dim)


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[np.ndarray]:
    """The file at `path`, mapped read-only, as uint8."""
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield np.frombuffer(mapping, dtype=np.uint8)
    finally:
        # A raised error's traceback may still hold a view of it: unmapped when that goes.
        with contextlib.suppress(BufferError):
            mapping.close()


def _sections(path: Path, data: np.ndarray, kinds: tuple[int, ...]) -> usearch_layout.Sections:
    """The sections of a saved graph whose vectors are of one of `kinds` (ValueError else)."""
    found = usearch_layout.sections(data)
    if found is None or found.vector_kind not in kinds:
        names = " or ".join(_KIND_NAMES[kind] for kind in kinds)
        raise ValueError(f"{path} holds no graph on {names} rows")
    return found


def _rewrite(
    path: Path,
    target: Path,
    data: np.ndarray,
    found: usearch_layout.Sections,
    rows_for: Callable[[int, np.ndarray], np.ndarray],
    kind: int,
    row_bytes: int,
) -> None:
    """Write `data`'s graph to `target` with the rows `rows_for` gives a block of slots at
    a time (`row_bytes` each, usearch scalar kind `kind`), through a file beside it."""
    nodes = usearch_layout.nodes(data, found.graph_at)
    if nodes is None or len(nodes.starts) != found.rows:
        raise ValueError(f"{path}: the graph's nodes do not match its rows")
    keys = usearch_layout.slot_keys(data, nodes)
    head_at = found.vectors_at + found.rows * found.row_bytes
    head = bytearray(data[head_at : head_at + usearch_layout.HEAD_BYTES])
    head[usearch_layout.VECTOR_KIND_AT] = kind
    counts = "<u4" if found.vectors_at == 8 else "<u8"
    partial = target.with_name(target.name + ".rows")
    try:
        with open(partial, "wb") as out:
            out.write(np.array([found.rows, row_bytes], dtype=counts).tobytes())
            for start in range(0, found.rows, ROWS_PER_WRITE):
                wanted = keys[start : start + ROWS_PER_WRITE]
                block = rows_for(start, wanted)
                if block.nbytes != len(wanted) * row_bytes:
                    raise ValueError(f"rows of {block.nbytes} bytes for {len(wanted)} slots")
                out.write(np.ascontiguousarray(block).data)
            out.write(head)
            for start in range(found.graph_at, len(data), COPY_BYTES):
                out.write(data[start : start + COPY_BYTES].data)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
