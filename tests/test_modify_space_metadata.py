"""A modify whose new metadata carries `hnsw:space` (the JS client's
`col.modify({metadata: {...col.metadata, owner: "b"}})` on a collection created with it),
over raw HTTP beside Chroma 1.5.9's own server: the same space is accepted as Chroma does,
another is refused (Chroma stores the metadata but keeps the old space)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests import side_by_side

API = "/api/v2/tenants/default_tenant/databases/default_database/collections"


servers = side_by_side.servers


def _collection(base: str, name: str) -> str:
    made = httpx.post(
        f"{base}{API}",
        json={"name": name, "metadata": {"hnsw:space": "cosine", "owner": "a"}},
        timeout=30,
    )
    made.raise_for_status()
    cid = made.json()["id"]
    added = httpx.post(
        f"{base}{API}/{cid}/add",
        json={"ids": ["x", "y"], "embeddings": [[1.0, 0.0], [3.0, 3.0]]},
        timeout=30,
    )
    added.raise_for_status()
    return cid


def _state(base: str, name: str, cid: str) -> tuple[dict[str, Any], list[float]]:
    """The collection's metadata, and the distances of a query (cosine: 0 for `y`)."""
    meta = httpx.get(f"{base}{API}/{name}", timeout=30).json()["metadata"]
    query = {"query_embeddings": [[1.0, 1.0]], "n_results": 2, "include": ["distances"]}
    found = httpx.post(f"{base}{API}/{cid}/query", json=query, timeout=30).json()
    return meta, [round(d, 5) for d in found["distances"][0]]


@pytest.mark.parametrize("system", ["huedb", "chroma"])
def test_the_same_space_in_new_metadata_is_accepted(servers: dict[str, str], system: str) -> None:
    base = servers[system]
    cid = _collection(base, "same-space")
    new = {"hnsw:space": "cosine", "owner": "b"}
    answer = httpx.put(f"{base}{API}/{cid}", json={"new_metadata": new}, timeout=30)
    assert answer.status_code == 200, answer.text
    meta, distances = _state(base, "same-space", cid)
    assert meta == new
    assert distances == [0.0, 0.29289]  # still cosine


def test_another_space_in_new_metadata_is_refused_and_nothing_changes(
    servers: dict[str, str],
) -> None:
    base = servers["huedb"]
    cid = _collection(base, "other-space")
    new = {"hnsw:space": "ip", "owner": "b"}
    answer = httpx.put(f"{base}{API}/{cid}", json={"new_metadata": new}, timeout=30)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "InvalidArgumentError"
    assert "'cosine'" in body["message"] and "'ip'" in body["message"]
    meta, distances = _state(base, "other-space", cid)
    assert meta == {"hnsw:space": "cosine", "owner": "a"}
    assert distances == [0.0, 0.29289]
