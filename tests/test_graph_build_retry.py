"""A failed graph build is tried again after a delay (`index_state.retry_delay`): exact
search answers meanwhile, no build starts before the delay, and the next one serves."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import huedb
from huedb.engine import index_cache, index_state
from huedb.engine.index_state import BUILD_RETRY_MAX_S, BUILD_RETRY_S, retry_delay
from tests.graph_wait import wait_for_graph

DIM = 16


def test_the_delay_doubles_with_each_failure_up_to_its_cap() -> None:
    assert retry_delay(1) == BUILD_RETRY_S
    assert retry_delay(2) == 2 * BUILD_RETRY_S
    assert retry_delay(3) == 4 * BUILD_RETRY_S
    assert retry_delay(60) == BUILD_RETRY_MAX_S


def test_a_failed_build_is_tried_again_after_the_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(index_state, "BUILD_RETRY_S", 1.0)
    builds: list[float] = []
    real_grow = index_cache.grow_graph

    def first_fails(*args: Any, **kwargs: Any) -> Any:
        builds.append(time.monotonic())
        if len(builds) == 1:
            raise OSError(28, "No space left on device")
        return real_grow(*args, **kwargs)

    monkeypatch.setattr(index_cache, "grow_graph", first_fails)
    vectors = np.random.default_rng(3).standard_normal((600, DIM)).astype(np.float32)
    settings = huedb.Settings(huedb_exact_max_floats=DIM * 100)
    client = huedb.PersistentClient(path=str(tmp_path), settings=settings)
    try:
        col = client.create_collection("retried", configuration={"hnsw": {"space": "l2"}})
        col.add(ids=[f"r{i}" for i in range(600)], embeddings=vectors)
        with caplog.at_level(logging.ERROR, logger="huedb.engine.index_cache"):
            col.query(query_embeddings=vectors[:1], n_results=3)
            deadline = time.monotonic() + 30
            while "tried again in" not in caplog.text:
                assert time.monotonic() < deadline, "the failed build was not reported"
                col.get_indexing_status()
                time.sleep(0.02)
        failed_at = time.monotonic()
        assert "No space left on device" in caplog.text
        # Until the delay has passed: exact answers, and no build started again.
        while time.monotonic() - failed_at < 0.5:
            assert col.get_indexing_status().op_indexing_progress == 0.0
            time.sleep(0.05)
        got = col.query(query_embeddings=vectors[7:8], n_results=1, include=["distances"])
        assert got["ids"][0] == ["r7"] and got["distances"][0][0] == pytest.approx(0.0)
        assert len(builds) == 1
        # Then the next use starts another, which serves.
        wait_for_graph(col)
        assert len(builds) == 2 and builds[1] - builds[0] >= 1.0
        got = col.query(query_embeddings=vectors[9:10], n_results=1)
        assert got["ids"][0] == ["r9"]
    finally:
        client.close()
