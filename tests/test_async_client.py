"""huedb.AsyncHttpClient against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import huedb
from tests.servers import huedb_server


def test_async_client_round_trip(tmp_path: Path) -> None:
    async def scenario(port: int) -> tuple[int, list[list[str]], list[str]]:
        client = await huedb.AsyncHttpClient(host="127.0.0.1", port=port)
        col = await client.create_collection("async-docs")
        await col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
        count = await col.count()
        res = await col.query(query_embeddings=[[0.9, 0.1]], n_results=1)
        names = [c.name for c in await client.list_collections()]
        return count, res["ids"], names

    with huedb_server(tmp_path / "data") as server:
        count, ids, names = asyncio.run(scenario(server.port))
    assert count == 2
    assert ids == [["a"]]
    assert names == ["async-docs"]
