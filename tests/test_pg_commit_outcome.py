"""What a write is answered when its connection to PostgreSQL breaks at the COMMIT (review,
2026-12-08). A commit whose answer was lost was answered 503 "PostgreSQL is unavailable;
the request was not carried out" though the server had committed it. huedb now reads the
transaction's outcome on another connection: a committed write is a success, one the server
rolled back still the 503 of a write not carried out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import huedb
from huedb.errors import StorageUnavailableError
from tests.pg_commit_proxy import CommitBreakingProxy, commit_breaking_proxy


@pytest.fixture
def proxy(pg_url: str) -> Iterator[CommitBreakingProxy]:
    port = int(re.search(r":(\d+)/", pg_url).group(1))
    with commit_breaking_proxy(port) as running:
        yield running


def _client(url: str, path: Path) -> huedb.ClientAPI:
    return huedb.PersistentClient(path=path, settings=huedb.Settings(huedb_store=url))


def _through(pg_url: str, proxy: CommitBreakingProxy) -> str:
    proxied = re.sub(r":\d+/", f":{proxy.port}/", pg_url, count=1)
    return proxied + ("&" if "?" in proxied else "?") + "sslmode=disable"


def test_a_write_committed_before_its_answer_was_lost_is_a_success(
    pg_url: str, proxy: CommitBreakingProxy, tmp_path: Path
) -> None:
    node = _client(_through(pg_url, proxy), tmp_path / "node")
    other = _client(pg_url, tmp_path / "other")
    col = node.create_collection("lost-answer", embedding_function=None)
    col.add(ids=["warm"], embeddings=[[0.0, 1.0]])
    col.query(query_embeddings=[[0.0, 1.0]], n_results=1)  # an index held in memory

    proxy.arm(deliver=True)
    col.add(ids=["x1", "x2"], embeddings=[[1.0, 0.0], [0.5, 0.5]])
    assert proxy.broken.is_set(), "the proxy never saw the write's COMMIT"
    proxy.arm(deliver=True)
    col.update(ids=["warm"], embeddings=[[0.0, -1.0]])
    assert proxy.broken.is_set()

    for client in (node, other):
        seen = client.get_collection("lost-answer")
        assert seen.count() == 3
        got = seen.query(query_embeddings=[[0.0, -1.0]], n_results=1, include=["distances"])
        assert got["ids"] == [["warm"]] and got["distances"][0][0] == pytest.approx(0.0)
    node.close()
    other.close()


def test_a_write_whose_commit_never_arrived_is_not_carried_out(
    pg_url: str, proxy: CommitBreakingProxy, tmp_path: Path
) -> None:
    node = _client(_through(pg_url, proxy), tmp_path / "node")
    col = node.create_collection("lost-commit", embedding_function=None)
    col.add(ids=["warm"], embeddings=[[0.0, 1.0]])

    proxy.arm(deliver=False)
    with pytest.raises(StorageUnavailableError, match="not carried out"):
        col.add(ids=["x1"], embeddings=[[1.0, 0.0]])
    assert proxy.broken.is_set()
    other = _client(pg_url, tmp_path / "other")
    assert other.get_collection("lost-commit").get(ids=["x1"])["ids"] == []
    assert col.get(ids=["x1"])["ids"] == []
    node.close()
    other.close()
