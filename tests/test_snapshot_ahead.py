"""A graph snapshot the store cannot account for is not served (review, 2026-12-08).

A store restored at the file level (huedb.sqlite3 copied back from an older copy, index/
left as it was) faces a snapshot holding records it never had: queries raised KeyError
on their rows, `compact` said it rebuilt the graph and left the file, and `verify` said
"ok". Now the snapshot is not loaded (the index is built from the store), `verify` reports
it, and `verify --repair` writes one that matches. A damaged snapshot file is reported by
`verify` (exit 1) and rewritten by `--repair` too (before, "snapshot unusable: ok")."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine.engine import SNAPSHOT_AHEAD, SNAPSHOT_UNUSABLE
from huedb.ops.verify import verify
from tests.graph_wait import wait_for_graph

DIM, N = 16, 3000


@pytest.fixture(autouse=True)
def small_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Graphs from 1,000 floats on, for every open in this process (verify's too)."""
    monkeypatch.setenv("HUEDB_EXACT_MAX_FLOATS", "1000")


def _snapshot(path: Path) -> Path:
    (found,) = (path / "index").glob("*.hnsw")
    return found


def _graph_store(path: Path, vectors: np.ndarray) -> None:
    client = huedb.PersistentClient(path=str(path))
    col = client.create_collection("docs", metadata={"hnsw:space": "l2"})
    col.add(ids=[f"id{i}" for i in range(len(vectors))], embeddings=vectors)
    col.query(query_embeddings=vectors[:1], n_results=1)
    wait_for_graph(col)
    client.close()
    clear_system_cache()


def test_a_store_older_than_its_snapshot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vectors = np.random.default_rng(7).random((N, DIM), dtype=np.float32)
    newer, older = tmp_path / "newer", tmp_path / "older"
    _graph_store(newer, vectors)
    shutil.copytree(newer, older)  # the file-level copy, taken now

    client = huedb.PersistentClient(path=str(newer))
    col = client.get_collection("docs")
    col.delete(ids=["id1", "id2", "id3"])
    col.add(ids=["n1", "n2", "n3"], embeddings=vectors[:3] + 0.5)
    col.query(query_embeddings=vectors[:1], n_results=1)
    wait_for_graph(col)
    client.close()
    clear_system_cache()
    # huedb.sqlite3 restored from the older copy; index/ as it is now
    shutil.copy2(_snapshot(newer), _snapshot(older))

    client = huedb.PersistentClient(path=str(older))
    col = client.get_collection("docs")
    queries = vectors[:20] + 0.01
    with caplog.at_level(logging.WARNING, logger="huedb.engine.index_cache"):
        got = col.query(query_embeddings=queries, n_results=5, include=["distances"])
    assert "past the store's" in caplog.text
    for q, ids in zip(queries, got["ids"], strict=True):
        exact = np.argsort(((vectors - q) ** 2).sum(axis=1), kind="stable")[:5]
        assert set(ids) <= {f"id{i}" for i in range(N)}  # no record of the newer store
        assert len(set(ids) & {f"id{i}" for i in exact}) >= 4
    client.close()
    clear_system_cache()

    report = verify(older)
    assert not report.ok
    assert report.indexes[0].agrees and report.indexes[0].snapshot == SNAPSHOT_AHEAD
    assert "SNAPSHOT UNUSABLE" in "\n".join(report.lines())
    clear_system_cache()
    repaired = verify(older, repair=True)
    assert repaired.ok and repaired.repaired == ["docs"]
    clear_system_cache()
    assert verify(older).ok
    clear_system_cache()


def test_a_damaged_snapshot_fails_verify_and_repair_rewrites_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _graph_store(data, np.random.default_rng(8).random((N, DIM), dtype=np.float32))
    path = _snapshot(data)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)

    report = verify(data)
    assert not report.ok and report.indexes[0].snapshot == SNAPSHOT_UNUSABLE
    clear_system_cache()
    repaired = verify(data, repair=True)
    assert repaired.ok and repaired.repaired == ["docs"]
    clear_system_cache()
    again = verify(data)
    assert again.ok and again.indexes[0].snapshot in ("ok", "none")
    clear_system_cache()
