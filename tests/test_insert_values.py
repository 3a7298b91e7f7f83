"""Values an `add` writes come back unchanged and findable, whichever insert path they take.

The SQLite store inserts a batch's records, integer and bool metadata rows and digests from
one JSON parameter and its vectors from one blob, but binds floats, and the rows of a batch
whose strings hold a NUL (the first batch has no NUL id, the second has); a batch of plain
scalars also skips the per-value checks and cleaning (`record_batch.plain_metadatas`).
Random batches mixing both kinds (NULs, int64 edges, ints beyond int64, NaN, subnormal
floats, bools, lists) are added through the client; `get` answers each record's cleaned
metadata, document and exact vector, `$eq` on every stored value and `$contains` on every
array element find the records holding it, and each stored digest is `vector_digest` of
the stored vector.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import huedb
from huedb.engine.record_values import clean_metadata, vector_digest

DIM = 4
INT64_MAX = 2**63 - 1

names = st.sampled_from(["a", "b", "n\x00ul", "é"])
ints = st.one_of(
    st.integers(-5, 5), st.sampled_from([INT64_MAX, -INT64_MAX - 1, INT64_MAX + 1, -(2**70)])
)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([math.nan, 5e-324, 0.1, 1e16, -0.0]),
)
scalars = st.one_of(ints, floats, st.booleans(), st.text(alphabet="ab\x00é", max_size=3))
arrays = st.one_of(st.lists(ints, min_size=1, max_size=3), st.lists(st.booleans(), min_size=1))
metadatas = st.one_of(
    st.none(), st.dictionaries(names, st.one_of(scalars, arrays), min_size=1, max_size=3)
)
batches = st.lists(
    st.tuples(metadatas, st.one_of(st.none(), st.text(alphabet="xy\x00", max_size=4))),
    min_size=1,
    max_size=8,
)


def _same(a: Any, b: Any) -> bool:
    """Equal, with the types the store keeps (bools apart from ints, -0.0 as 0.0)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _holds(stored: Any, value: Any) -> bool:
    """Whether a stored value matches `value` ($eq, or $contains of an array's first element)."""
    if isinstance(value, list):
        return isinstance(stored, list) and any(_same(x, value[0]) for x in stored)
    return not isinstance(stored, list) and _same(stored, value)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=batches, second=batches)
def test_added_values_read_back_and_filter(tmp_path: Path, first: list, second: list) -> None:
    path = tmp_path / f"d{np.random.default_rng().integers(1 << 62)}"
    client = huedb.PersistentClient(path=str(path))
    col = client.create_collection("values", embedding_function=None)
    rng = np.random.default_rng(0)
    written: dict[str, tuple[Any, Any, np.ndarray]] = {}
    for batch_no, batch in enumerate((first, second)):
        ids = [f"r{batch_no}-{i}" + "\x00" * (batch_no * i % 2) for i in range(len(batch))]
        vectors = rng.standard_normal((len(batch), DIM)).astype(np.float32)
        col.add(
            ids=ids,
            embeddings=vectors,
            metadatas=[m for m, _ in batch],
            documents=[d for _, d in batch],
        )
        for i, (m, d) in enumerate(batch):
            written[ids[i]] = (clean_metadata(m), d, vectors[i])

    got = col.get(include=["metadatas", "documents", "embeddings"])
    assert sorted(got["ids"]) == sorted(written)
    for rid, meta, doc, vec in zip(
        got["ids"], got["metadatas"], got["documents"], got["embeddings"], strict=True
    ):
        want_meta, want_doc, want_vec = written[rid]
        assert (meta or None) == want_meta and _same(meta or {}, want_meta or {})
        assert doc == want_doc
        assert np.array_equal(np.asarray(vec, dtype=np.float32), want_vec)

    for rid, (meta, _, _) in written.items():
        for name, value in (meta or {}).items():
            probe = value[0] if isinstance(value, list) else value
            operand = {"$contains": probe} if isinstance(value, list) else probe
            found = set(col.get(where={name: operand})["ids"])
            assert rid in found
            if isinstance(probe, str | bool):  # exact kinds: the matches are known
                assert found == {
                    r for r, (m, _, _) in written.items() if _holds((m or {}).get(name), value)
                }

    conn = sqlite3.connect(path / "huedb.sqlite3")
    try:
        rows = conn.execute("SELECT key, vector, digest FROM embeddings").fetchall()
        recent = set(conn.execute("SELECT digest, key FROM digests_recent").fetchall())
    finally:
        conn.close()
    assert len(rows) == len(written)
    for key, blob, digest in rows:
        assert digest == vector_digest(blob)
        assert (digest, key) in recent
