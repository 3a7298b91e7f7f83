"""A metadata value of -0.0 reads back as 0.0, as in Chroma (scalars and array items, on
every write path and store); filters on 0.0 and -0.0 match it either way."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import chromadb
from chromadb.api.shared_system_client import SharedSystemClient

from tests import stores
from tests.stores import StoreTarget

store = stores.store


def _writes(col: Any) -> dict[str, Any]:
    col.add(
        ids=["a", "b"],
        embeddings=[[1.0, 2.0], [3.0, 4.0]],
        metadatas=[{"m": -0.0, "arr": [-0.0, 1.5]}, {"m": 1.0}],
    )
    col.upsert(ids=["c"], embeddings=[[5.0, 6.0]], metadatas=[{"m": -0.0, "s": "x"}])
    col.update(ids=["b"], metadatas=[{"m": -0.0}])
    got = col.get(include=["metadatas"])
    return {
        "metadatas": dict(zip(got["ids"], got["metadatas"], strict=True)),
        "zero": sorted(col.get(where={"m": 0.0})["ids"]),
        "negative zero": sorted(col.get(where={"m": -0.0})["ids"]),
        "array": sorted(col.get(where={"arr": {"$contains": 0.0}})["ids"]),
    }


def _signs(value: Any) -> Any:
    """Floats with their sign made visible (-0.0 == 0.0 otherwise)."""
    if isinstance(value, dict):
        return {k: _signs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_signs(v) for v in value]
    if isinstance(value, float):
        return (value, math.copysign(1.0, value))
    return value


def test_negative_zero_as_chroma(store: StoreTarget, tmp_path: Path) -> None:
    SharedSystemClient.clear_system_cache()
    expected = _writes(chromadb.EphemeralClient().create_collection("negzero"))
    SharedSystemClient.clear_system_cache()
    client = store.client(tmp_path / "data")
    got = _writes(client.create_collection("negzero", embedding_function=None))
    assert _signs(got) == _signs(expected)
    assert got["metadatas"]["a"] == {"m": 0.0, "arr": [0.0, 1.5]}
    client.close()
