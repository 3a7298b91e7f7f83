"""A write whose transaction committed is reported as done even when this process's index
fails to catch up afterwards: the caller must not take a stored write for a failed one
(and retry an `add` into a duplicate-id error, or give up on data that is there)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import huedb
from huedb.errors import StorageUnavailableError


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


def test_a_store_outage_after_the_commit_is_a_warning_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL going down between the commit and the catch-up read is an operational
    condition (the connection layer logs it): one warning line, no traceback."""
    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    col = client.create_collection("outage", embedding_function=None)
    indexes = client._server.engine._indexes

    def store_gone(*args: Any, **kwargs: Any) -> None:
        raise StorageUnavailableError("PostgreSQL is unavailable (connection failed)")

    monkeypatch.setattr(indexes, "after_write", store_gone)
    with caplog.at_level(logging.WARNING, logger="huedb.engine.engine"):
        col.add(ids=["a"], embeddings=[[1.0, 1.0]])  # committed: returns normally
    records = [r for r in caplog.records if "left this process's index behind" in r.message]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert records[0].exc_info is None
    assert "PostgreSQL is unavailable" in records[0].message
    monkeypatch.undo()
    assert col.get(ids=["a"])["ids"] == ["a"]
    client.close()
