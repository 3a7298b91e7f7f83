"""How record values are stored, the same in every store.

Metadata is normalised in one place (`clean_metadata`) for every kind of write; each
scalar of a metadata value is indexed with a `kind` (numbers share one, so `2 == 2.0`;
bools are their own, so `True != 1`) and its stored form (`sql_value`); vectors carry a
64-bit digest of their bytes for the exact-duplicate lookup (`vector_digest`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from huedb.errors import InvalidArgumentError

# Kinds of indexed metadata values: numbers share one kind so 2 == 2.0, bools stay apart.
KIND_STR = 0
KIND_NUMBER = 1
KIND_BOOL = 2

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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
    """The indexed form of a scalar (bools as 0/1)."""
    if isinstance(value, bool):
        return int(value)
    return value


def clean_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """Normalise one stored metadata dict as Chroma does (the one place this happens).

    Ints beyond int64 become floats; keys whose value is NaN or infinite are dropped (a
    missing value, as pandas writes it); None values (deletions in an update) are dropped;
    an empty result is stored as no metadata.
    """
    if not metadata:
        return None
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            continue
        out[key] = [_fit_int(v) for v in value] if isinstance(value, list) else _fit_int(value)
    return out or None


def _fit_int(value: Any) -> Any:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and not INT64_MIN <= value <= INT64_MAX:
        return float(value)
    return value


def merge_metadata(current: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any] | None:
    """A record's metadata after an update's `patch` (None values drop keys), cleaned."""
    merged = dict(current) if current else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return clean_metadata(merged)


def vector_digest(blob: bytes) -> int:
    """A 64-bit digest of a stored vector's bytes, indexed to find exact duplicates."""
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little", signed=True)


def key_vector_rows(rows: Sequence[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys uint64, vectors float32 (n, dim)) of rows (key, stored vector bytes)."""
    keys = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
    return keys, vectors.reshape(len(rows), dim)


def vectors_in_order(found: Mapping[int, bytes], keys: Sequence[int], dim: int) -> np.ndarray:
    """The stored vectors of `keys` as float32 rows in that order (KeyError if one is missing)."""
    blob = b"".join(found[k] for k in keys)
    return np.frombuffer(blob, dtype=np.float32).reshape(len(keys), dim)
