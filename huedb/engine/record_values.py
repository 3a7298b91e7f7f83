"""How record values are stored, the same in every store.

Metadata is normalised in one place (`clean_metadata`) for every kind of write; each
scalar of a metadata value is indexed with a `kind` (numbers share one, so `2 == 2.0`;
bools are their own, so `True != 1`) and its stored form (`sql_value`); vectors carry a
64-bit digest of their bytes for the exact-duplicate lookup (`vector_digest`).

A sparse vector value (`SparseVector`) is stored in the metadata JSON only, in one
canonical form, the one Chroma's server answers with (`stored_sparse`):
``{"#type": "sparse_vector", "indices": [...], "values": [...], "tokens": [...] | null}``,
values rounded to float32 and written as their shortest float32 decimal. It is never a
typed (filterable) metadata row: `is_sparse` tells the stores to skip it there.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from huedb.errors import InvalidArgumentError
from huedb.record_batch import INT64_MAX, INT64_MIN
from huedb.sparse_vector import SPARSE_VECTOR_TYPE_VALUE, TYPE_KEY, SparseVector

# Kinds of indexed metadata values: numbers share one kind so 2 == 2.0, bools stay apart.
KIND_STR = 0
KIND_NUMBER = 1
KIND_BOOL = 2

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


def value_kind(value: Any) -> int:
    """The kind of a scalar value (InvalidArgumentError for a filter operand of no kind)."""
    if isinstance(value, bool):
        return KIND_BOOL
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidArgumentError(f"Invalid where clause: non-finite number {value}")
        return KIND_NUMBER
    if isinstance(value, str):
        return KIND_STR
    raise InvalidArgumentError(
        f"Invalid where clause: expected a str, int, float or bool operand, got {value!r}"
    )


def sql_value(value: Any) -> Any:
    """The indexed form of a scalar (bools as 0/1). An int beyond int64, which only a filter
    operand holds (`clean_metadata` makes stored ones floats), is the float Chroma reads it
    as; InvalidArgumentError where Chroma refuses it: 2**63 to 2**64 - 1, or beyond a float."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        if INT64_MAX < value <= UINT64_MAX:
            raise InvalidArgumentError(
                f"Invalid where clause: the int operand {value} does not fit in a signed "
                "64-bit integer"
            )
        try:
            return float(value)
        except OverflowError:
            raise InvalidArgumentError(
                f"Invalid where clause: an int operand of {value.bit_length()} bits is beyond "
                "the range of a float"
            ) from None
    return value


def clean_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """Normalise one stored metadata dict as Chroma does (the one place this happens).

    Ints beyond int64 become floats, -0.0 becomes 0.0; keys whose value is NaN or infinite
    are dropped (a missing value, as pandas writes it); None values (deletions in an update)
    are dropped; a `SparseVector` takes its stored form (a stored one, a dict, stays); an
    empty result is stored as no metadata.
    """
    if not metadata:
        return None
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        if isinstance(value, SparseVector):
            out[key] = stored_sparse(value)
            continue
        if isinstance(value, dict):
            out[key] = value
            continue
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            continue
        out[key] = [_fit_int(v) for v in value] if isinstance(value, list) else _fit_int(value)
    return out or None


def _fit_int(value: Any) -> Any:
    """A value as stored: an int beyond int64 as a float, -0.0 as 0.0 (as Chroma reads
    them back)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and not INT64_MIN <= value <= INT64_MAX:
        return float(value)
    if type(value) is float and value == 0.0:
        return 0.0
    return value


def is_sparse(value: Any) -> bool:
    """Whether a stored or written metadata value is a sparse vector (not filterable)."""
    return isinstance(value, SparseVector | dict)


def stored_sparse(vector: SparseVector) -> dict[str, Any]:
    """The stored (and answered) form of a checked sparse vector: values as float32, each
    written as its shortest float32 decimal, `tokens` null when it has no labels."""
    values = np.asarray(vector.values, dtype=np.float32)
    return {
        TYPE_KEY: SPARSE_VECTOR_TYPE_VALUE,
        "indices": [int(i) for i in vector.indices],
        "values": orjson.loads(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)),
        "tokens": None if vector.labels is None else list(vector.labels),
    }


def check_sparse_vector(vector: SparseVector, index: int) -> None:
    """Server-side checks of a written sparse vector (Chroma's u32 indices, f32 values):
    InvalidArgumentError unless indices are ints in 0..2**32-1 strictly ascending, values
    numbers finite as float32, labels (if any) strings, all of one length."""
    indices, values, labels = vector.indices, vector.values, vector.labels
    valid = (
        isinstance(indices, list)
        and isinstance(values, list)
        and len(indices) == len(values)
        and all(type(i) is int and 0 <= i <= UINT32_MAX for i in indices)
        and all(b > a for a, b in zip(indices, indices[1:], strict=False))
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in values)
        and (
            labels is None
            or (
                isinstance(labels, list)
                and len(labels) == len(indices)
                and all(isinstance(t, str) for t in labels)
            )
        )
    )
    if valid and values:
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                valid = bool(np.isfinite(np.asarray(values, dtype=np.float32)).all())
        except OverflowError:  # an int beyond any float
            valid = False
    if not valid:
        raise InvalidArgumentError(
            f"Validation error: metadatas: Invalid metadata at index {index}"
        )


def merge_metadata(current: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any] | None:
    """A record's metadata after an update's `patch` (None values drop keys), cleaned."""
    merged = dict(current) if current else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return clean_metadata(merged)


def stored_json(text: str) -> Any:
    """Decode JSON text huedb stored: by orjson (~5x faster: every query decodes its rows'
    metadata), by `json` for what orjson refuses and `json.dumps` writes (NaN, integers
    beyond 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def metadata_json(metadata: dict[str, Any] | None) -> str | None:
    """A record's metadata as the JSON text both stores keep (None when empty)."""
    if not metadata:
        return None
    try:  # ~20x faster than `json`; it refuses float subclasses and lone surrogates
        return orjson.dumps(metadata).decode()
    except TypeError:
        return json.dumps(metadata, ensure_ascii=False)


def vector_digest(blob: bytes) -> int:
    """A 64-bit digest of a stored vector's bytes, indexed to find exact duplicates."""
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little", signed=True)


def vector_blob_and_digests(vectors: np.ndarray) -> tuple[bytes, list[int]]:
    """The stored bytes of float32 rows, back to back, and each row's `vector_digest`."""
    blob = np.ascontiguousarray(vectors, dtype=np.float32).tobytes()
    width = len(blob) // len(vectors)
    view = memoryview(blob)
    packed = b"".join(
        [
            hashlib.blake2b(view[start : start + width], digest_size=8).digest()
            for start in range(0, len(blob), width)
        ]
    )
    return blob, np.frombuffer(packed, dtype="<i8").tolist()


def key_vector_rows(rows: Sequence[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys uint64, vectors float32 (n, dim)) of rows (key, stored vector bytes)."""
    keys = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
    return keys, vectors.reshape(len(rows), dim)


def vectors_in_order(found: Mapping[int, bytes], keys: Sequence[int], dim: int) -> np.ndarray:
    """The stored vectors of `keys` as float32 rows in that order (KeyError if one is missing)."""
    blob = b"".join(found[k] for k in keys)
    return np.frombuffer(blob, dtype=np.float32).reshape(len(keys), dim)
