"""Where things are in an index usearch 2.x serialized: its vectors, its head, each node.

The layout (checked against usearch 2.x's `save`): the vectors as a matrix (a u32 or u64
row count and row bytes, then the rows in slot order), a 64-byte head (magic, version,
scalar kinds, counts), then the graph: five u64 (size, connectivity, base connectivity,
top level, entry slot), every node's level (i16), then every node: its key (u64), level
(i16), its level-0 list (a u32 count, then base-connectivity u32 slots), one list per
upper level. Read by `graph_reach` (which edits level 0's lists) and `mapped_rows` (which
reads the vectors in place). Any other layout reads as None.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

HEAD_BYTES = 64  # usearch's index_dense head: magic, version, kinds, counts
NODE_HEAD = 10  # key (u64) and level (i16) before a node's lists
_MAGIC = b"usearch"
_KIND_U64, _KIND_U32 = 14, 15  # usearch's scalar_kind_t of the key and the slot
# Vector types whose vectors `vector_index.nearest_in` can read back (bf16, f64, f32, f16,
# i8): usearch's `get` of a b1 graph as float32 corrupted its heap (the process aborted).
VECTOR_KINDS = frozenset({4, 10, 11, 12, 23})
# usearch's scalar_kind_t of the vectors: bf16 4, f64 10, f32 11, f16 12, i8 23
KIND_BF16, KIND_F16, KIND_I8 = 4, 12, 23
VECTOR_KIND_AT = 14  # the head's byte holding the vectors' scalar kind (then key, slot)


@dataclass(frozen=True)
class Rows16:
    """A 16-bit vector type a graph is served with: usearch's scalar kind, huedb's name
    for it (`vector_index.GRAPH_DTYPE`) and the numpy type its rows are held in here
    (bfloat16 as its bits)."""

    kind: int
    name: str
    dtype: np.dtype


ROWS_16 = (Rows16(KIND_BF16, "bf16", np.dtype("<u2")), Rows16(KIND_F16, "f16", np.dtype("<f2")))
ROWS_16_BY_KIND = {rows.kind: rows for rows in ROWS_16}
ROWS_16_BY_NAME = {rows.name: rows for rows in ROWS_16}
ROWS_16_BY_DTYPE = {rows.dtype: rows for rows in ROWS_16}


@dataclass(frozen=True)
class Sections:
    """Where a serialized index's parts begin, and its vectors' shape."""

    vectors_at: int  # the first row's first byte
    rows: int
    row_bytes: int
    vector_kind: int  # usearch's scalar_kind_t of the vectors
    graph_at: int  # the graph's five u64, after the head


def sections(data: np.ndarray) -> Sections | None:
    """The sections of the index serialized in `data` (uint8), whose magic and kinds are
    checked; None for another layout (one key holding several vectors included: its slots
    are not records)."""
    if sys.byteorder != "little":
        return None
    for width in (4, 8):
        if len(data) < 2 * width:
            return None
        rows, row_bytes = (int(v) for v in data[: 2 * width].view("<u4" if width == 4 else "<u8"))
        head = 2 * width + rows * row_bytes
        if len(data) < head + HEAD_BYTES or bytes(data[head : head + 7]) != _MAGIC:
            continue
        vector_kind, key_kind, slot_kind = (int(data[head + VECTOR_KIND_AT + i]) for i in range(3))
        if vector_kind not in VECTOR_KINDS or key_kind != _KIND_U64 or slot_kind != _KIND_U32:
            return None
        if data[head + 41]:
            return None
        return Sections(2 * width, rows, row_bytes, vector_kind, head + HEAD_BYTES)
    return None


@dataclass(frozen=True)
class Nodes:
    """The graph's nodes: where each begins, and the numbers of the graph's header."""

    starts: np.ndarray  # slot -> byte offset of its key
    connectivity: int
    base_connectivity: int
    entry: int


def nodes(data: np.ndarray, graph_at: int) -> Nodes | None:
    """The nodes of the graph beginning at `graph_at` (`Sections.graph_at`); None when the
    sizes it states do not fit `data`."""
    if len(data) < graph_at + 40:
        return None
    size, conn, conn0, _top, entry = (int(v) for v in u64(data, graph_at, 5))
    levels_at = graph_at + 40
    if size == 0:
        return Nodes(np.empty(0, dtype=np.int64), conn, conn0, 0)
    if conn0 == 0 or len(data) < levels_at + 2 * size:
        return None
    levels = data[levels_at : levels_at + 2 * size].view("<i2").astype(np.int64)
    sizes = NODE_HEAD + (4 + 4 * conn0) + levels * (4 + 4 * conn)
    starts = np.empty(size, dtype=np.int64)
    starts[0] = levels_at + 2 * size
    np.cumsum(sizes[:-1], out=starts[1:])
    starts[1:] += starts[0]
    if starts[-1] + sizes[-1] > len(data) or not 0 <= entry < size:
        return None
    return Nodes(starts, conn, conn0, entry)


def slot_keys(data: np.ndarray, found: Nodes) -> np.ndarray:
    """slot -> key of every node."""
    return gather_words(data, found.starts, 2).view("<u8").reshape(len(found.starts))


def u64(data: np.ndarray, at: int, count: int) -> np.ndarray:
    """`count` little-endian u64 from byte `at`."""
    return data[at : at + 8 * count].view("<u8")


def gather_words(data: np.ndarray, starts: np.ndarray, words: int) -> np.ndarray:
    """(len(starts), words) little-endian u32 read at each byte offset (any alignment):
    rows of a view of `data` as overlapping windows, one per byte offset, copied out."""
    width = 4 * words
    windows = np.lib.stride_tricks.as_strided(
        data, shape=(len(data) - width + 1, width), strides=(data.strides[0],) * 2, writeable=False
    )
    return np.ascontiguousarray(windows[starts]).view("<u4")
