"""Vectors and distances in HTTP responses are written as Chroma's server writes its float32
values: each in its shortest decimal form (0.9, not 0.8999999761581421), so JavaScript code
comparing `embedding[0] === 0.9` or a JSON snapshot gets what it got from Chroma."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np

from tests import side_by_side

servers = side_by_side.servers

DB = "/api/v2/tenants/default_tenant/databases/default_database"
VECTORS = [[1.0, 0.0, 0.0], [0.9, 0.1, 0.3], [0.123456789, 2.5e-7, -3.3]]


def _responses(base: str, name: str) -> dict[str, Any]:
    """Raw JSON of a get and a query against a fresh collection at `base`."""
    with httpx.Client(base_url=base, timeout=30) as http:
        made = http.post(f"{DB}/collections", json={"name": name})
        assert made.status_code == 200, made.text
        cid = made.json()["id"]
        records = {"ids": ["a", "b", "c"], "embeddings": VECTORS}
        added = http.post(f"{DB}/collections/{cid}/add", json=records)
        assert added.status_code == 201, added.text
        got = http.post(
            f"{DB}/collections/{cid}/get", json={"ids": ["a", "b", "c"], "include": ["embeddings"]}
        )
        queried = http.post(
            f"{DB}/collections/{cid}/query",
            json={
                "query_embeddings": [[0.9, 0.1, 0.2]],
                "n_results": 3,
                "include": ["embeddings", "distances"],
            },
        )
        assert got.status_code == 200 and queried.status_code == 200, (got.text, queried.text)
        return {"get": got.json(), "query": queried.json()}


def test_vectors_and_distances_are_written_as_chroma_writes_them(
    servers: dict[str, str],
) -> None:
    ours = _responses(servers["huedb"], "wire-floats")
    theirs = _responses(servers["chroma"], "wire-floats")
    assert ours["get"]["embeddings"] == theirs["get"]["embeddings"]
    assert ours["get"]["embeddings"][1][0] == 0.9  # not 0.8999999761581421
    assert ours["query"]["ids"] == theirs["query"]["ids"]
    assert ours["query"]["embeddings"] == theirs["query"]["embeddings"]
    # Distances are computed by each system (Chroma's SIMD sums may differ in the last bit):
    # the same float32 values, and each written in its shortest form.
    ours_d = np.asarray(ours["query"]["distances"], dtype=np.float32)
    theirs_d = np.asarray(theirs["query"]["distances"], dtype=np.float32)
    np.testing.assert_allclose(ours_d, theirs_d, rtol=1e-5, atol=1e-6)
    for value in ours["query"]["distances"][0]:
        assert json.dumps(value) == str(np.float32(value)), value


def test_written_vectors_read_back_as_the_stored_float32(servers: dict[str, str]) -> None:
    """The short form loses nothing: parsed as float64 and cast to float32 (what chromadb's
    Python client does) each value is the stored float32, bit for bit."""
    rng = np.random.default_rng(7)
    stored = rng.standard_normal((50, 16)).astype(np.float32) * np.float32(1e3)
    with httpx.Client(base_url=servers["huedb"], timeout=30) as http:
        cid = http.post(f"{DB}/collections", json={"name": "wire-floats-bits"}).json()["id"]
        ids = [f"r{i}" for i in range(len(stored))]
        added = http.post(
            f"{DB}/collections/{cid}/add", json={"ids": ids, "embeddings": stored.tolist()}
        )
        assert added.status_code == 201, added.text
        got = http.post(f"{DB}/collections/{cid}/get", json={"ids": ids, "include": ["embeddings"]})
    back = np.asarray(got.json()["embeddings"], dtype=np.float64).astype(np.float32)
    assert back.tobytes() == stored.tobytes()
