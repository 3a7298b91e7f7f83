"""A write whose transaction committed is reported as done even when this process's index
fails to catch up afterwards: the caller must not take a stored write for a failed one
(and retry an `add` into a duplicate-id error, or give up on data that is there)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import huedb


def test_an_index_failure_after_the_commit_does_not_fail_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    col = client.create_collection("committed", embedding_function=None)
    col.add(ids=["a", "b"], embeddings=[[0.0, 0.0], [5.0, 5.0]])
    assert col.query(query_embeddings=[[0.0, 0.0]], n_results=2)["ids"] == [["a", "b"]]

    indexes = client._server.engine._indexes
    real_after_write = indexes.after_write
    failures = []

    def failing_after_write(*args: Any, **kwargs: Any) -> None:
        failures.append(1)
        raise RuntimeError("injected index failure")

    monkeypatch.setattr(indexes, "after_write", failing_after_write)
    with caplog.at_level(logging.ERROR, logger="huedb.engine.engine"):
        col.add(ids=["c"], embeddings=[[1.0, 1.0]])  # committed: returns normally
    assert failures == [1]
    assert "left this process's index behind" in caplog.text
    monkeypatch.setattr(indexes, "after_write", real_after_write)

    assert col.count() == 3
    found = col.query(query_embeddings=[[1.2, 1.2]], n_results=3, include=["distances"])
    assert found["ids"] == [["c", "a", "b"]]  # the index caught up from the store
    client.close()
