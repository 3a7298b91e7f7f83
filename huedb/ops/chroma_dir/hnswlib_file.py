"""Vectors of a persisted Chroma HNSW segment, parsed from hnswlib's files.

A segment folder holds hnswlib's `header.bin` (index layout), `data_level0.bin` (one element
per row: level-0 links, the vector and its label), `length.bin` (norms of cosine vectors,
which hnswlib stores normalised) and Chroma's `index_metadata.pickle` (user id -> label).
"""

from __future__ import annotations

import io
import logging
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from huedb.ops.chroma_dir.sqlite_reader import SourceChangedError, decode_seq_id

logger = logging.getLogger(__name__)

HEADER_FORMAT = "<iQQQQQQiIQQQdQ"
# The files of a segment folder this module reads.
SEGMENT_FILES = ("header.bin", "data_level0.bin", "length.bin", "index_metadata.pickle")
# (file name, size, modification time in ns), or (file name, None, None) when missing.
FileState = tuple[tuple[str, int | None, int | None], ...]


def file_state(folder: Path) -> FileState:
    """Size and modification time of each file of a segment folder: a writer that touched one
    between two calls changes it."""
    state = []
    for name in SEGMENT_FILES:
        try:
            st = (folder / name).stat()
        except FileNotFoundError:
            state.append((name, None, None))
        else:
            state.append((name, st.st_size, st.st_mtime_ns))
    return tuple(state)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers only (and numpy scalars, which old files may hold)."""

    ALLOWED = {
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "str"),
        ("builtins", "int"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _load_index_metadata(file: Path) -> dict[str, Any]:
    """The `index_metadata.pickle` dict, with `id_to_label` as str -> int."""
    raw = file.read_bytes()
    try:
        data = _SafeUnpickler(io.BytesIO(raw)).load()
    except Exception as exc:  # damaged bytes fail in many ways (EOFError, KeyError, ...)
        raise ValueError(f"{file}: unreadable HNSW metadata ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("id_to_label"), dict):
        raise ValueError(f"{file}: unexpected HNSW metadata layout")
    try:
        data["id_to_label"] = {str(k): int(v) for k, v in data["id_to_label"].items()}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{file}: unexpected HNSW metadata layout ({exc})") from exc
    return data


@dataclass(frozen=True)
class _Header:
    offset_level0: int
    max_elements: int
    count: int
    element_size: int
    label_offset: int
    data_offset: int

    @property
    def dimension(self) -> int:
        return (self.label_offset - self.data_offset) // 4


def _read_header(file: Path) -> _Header:
    raw = file.read_bytes()
    size = struct.calcsize(HEADER_FORMAT)
    if len(raw) < size:
        raise ValueError(f"{file}: truncated HNSW header")
    fields = struct.unpack(HEADER_FORMAT, raw[:size])
    header = _Header(*fields[1:7])
    if header.count and not (
        header.count <= header.max_elements
        and header.offset_level0 + 2 < header.data_offset < header.label_offset
        and header.label_offset + 8 <= header.element_size
        and (header.label_offset - header.data_offset) % 4 == 0
    ):
        raise ValueError(f"{file}: unexpected HNSW header layout")
    return header


class HnswSegment:
    """Vectors of a persisted HNSW segment, read through a memory map.

    `index_of` maps each live user id to its element position; a folder without `header.bin`
    or without elements reads as an empty segment.
    """

    def __init__(self, folder: Path, cosine: bool, expected: FileState | None = None) -> None:
        """Open the segment in `folder`; with `expected` (the `state` of an earlier opening),
        SourceChangedError if its files changed since, as when they change while read."""
        self.folder = folder
        self.index_of: dict[str, int] = {}
        self.count = 0
        self.dimension: int | None = None
        self.max_seq_id = 0  # only set in index_metadata by Chroma before 1.0
        self.state = file_state(folder) if expected is None else expected
        try:
            self._load(cosine)
        except (ValueError, OSError) as exc:
            # A file caught half-written by a running Chroma reads as damaged: tell which.
            self.check_unchanged()
            if isinstance(exc, FileNotFoundError):
                raise ValueError(f"{exc.filename}: missing from the HNSW segment") from exc
            raise
        self.check_unchanged()

    def check_unchanged(self) -> None:
        """SourceChangedError if a file of the folder changed since `state` was taken."""
        if file_state(self.folder) != self.state:
            raise SourceChangedError(
                self.folder.parent, f"the HNSW files of segment {self.folder.name} were rewritten"
            )

    def _load(self, cosine: bool) -> None:
        pickle_file = self.folder / "index_metadata.pickle"
        header_file = self.folder / "header.bin"
        if not header_file.is_file():
            return
        header = _read_header(header_file)
        if header.count == 0:
            return
        if not pickle_file.is_file():
            raise ValueError(f"{self.folder}: {header.count} HNSW elements but no index_metadata")
        meta = _load_index_metadata(pickle_file)
        self.max_seq_id = decode_seq_id(meta.get("max_seq_id"))
        self._open(header, meta, cosine)

    def _open(self, header: _Header, meta: dict[str, Any], cosine: bool) -> None:
        data_file = self.folder / "data_level0.bin"
        if data_file.stat().st_size < header.count * header.element_size:
            raise ValueError(f"{data_file}: shorter than its {header.count} elements")
        self.header = header
        self.count = header.count
        self.dimension = header.dimension
        self.data = np.memmap(
            data_file, np.uint8, mode="r", shape=(header.count, header.element_size)
        )
        self.lengths = self._lengths() if cosine else None
        lo = header.label_offset
        labels = np.ascontiguousarray(self.data[:, lo : lo + 8]).view("<u8").ravel()
        deleted = (self.data[:, header.offset_level0 + 2] & 1).astype(bool)
        index_of_label = {int(label): i for i, label in enumerate(labels) if not deleted[i]}
        for user_id, label in meta["id_to_label"].items():
            index = index_of_label.get(label)
            if index is not None:
                self.index_of[user_id] = index
        logger.debug(
            "%s: %d elements, %d deleted, %d live ids",
            self.folder,
            header.count,
            int(deleted.sum()),
            len(self.index_of),
        )

    def _lengths(self) -> np.ndarray:
        file = self.folder / "length.bin"
        if not file.is_file():
            raise ValueError(f"{file}: missing from the cosine HNSW segment (the vectors' norms)")
        lengths = np.memmap(file, "<f4", mode="r") if file.stat().st_size else np.zeros(0)
        if len(lengths) < self.count:
            raise ValueError(f"{file}: shorter than its {self.count} elements")
        return lengths

    def vectors(self, indices: np.ndarray) -> np.ndarray:
        """The original vectors at these element positions (cosine ones de-normalised)."""
        start = self.header.data_offset
        rows = self.data[indices, start : start + self.header.dimension * 4]
        vectors = np.ascontiguousarray(rows).view("<f4").astype(np.float32)
        if self.lengths is not None:
            vectors *= np.asarray(self.lengths[indices], dtype=np.float32)[:, None]
        return vectors
