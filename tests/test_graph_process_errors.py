"""A graph process that fails reports why (its stderr) through ChildFailed, however much it
wrote there (`engine/graph_process.py`: its stderr goes to a temporary file), and one that
hangs is killed at a time limit."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from huedb.engine import graph_build, graph_process
from huedb.engine.graph_process import ChildFailed, ChildGraph
from tests import stores
from tests.graph_wait import wait_for_graph

CONFIG = {
    "ndim": 8,
    "metric": "l2sq",
    "dtype": "f32",
    "connectivity": 8,
    "expansion_add": 16,
    "expansion_search": 16,
}
STAND_IN = Path(__file__).with_name("noisy_graph_child.py")
HUNG = Path(__file__).with_name("hung_graph_child.py")
SLEEPING = Path(__file__).with_name("silent_recall_child.py")  # reads a line, sleeps


def _adding(graph: ChildGraph, rows: int) -> BaseException | None:
    """What adding `rows` vectors raised (None: nothing), within 60 s (or the child is
    killed and the test fails)."""
    raised: list[BaseException] = []

    def add() -> None:
        try:
            keys = np.arange(rows, dtype=np.uint64)
            graph.add(keys, np.zeros((rows, 8), dtype=np.float32), 1)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            raised.append(exc)

    worker = threading.Thread(target=add, daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():
        graph.interrupt()
        pytest.fail("adding to a failed graph process did not return")
    return raised[0] if raised else None


def test_a_child_that_cannot_read_its_start_says_why(tmp_path: Path) -> None:
    """A child started from a file that holds no graph exits; the next call fails with
    ChildFailed carrying the child's own error (usearch's, from its stderr)."""
    graph = ChildGraph(CONFIG, tmp_path, start=lambda path: path.write_bytes(b"not a graph"))
    try:
        raised = _adding(graph, 100_000)
        assert isinstance(raised, ChildFailed)
        message = str(raised)
        assert message.startswith("graph process ended: Traceback") and "Error" in message
    finally:
        graph.kill()


def test_a_child_writing_much_to_stderr_fails_with_its_last_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that writes 1.2 MB to stderr and exits (a stand-in) is not left blocked on
    a full pipe: the parent's call fails with ChildFailed ending in its last line."""
    monkeypatch.setattr(graph_process, "__file__", str(STAND_IN))
    graph = ChildGraph(CONFIG, tmp_path)
    try:
        raised = _adding(graph, 100_000)
        assert isinstance(raised, ChildFailed)
        assert str(raised).endswith("the stand-in gave up")
    finally:
        graph.kill()


def test_a_child_that_hangs_in_its_save_is_killed_after_the_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child whose save never returns (a stand-in: the real child with usearch's save
    hanging) is killed once `ANSWER_TIMEOUT_S` late: `finish` fails with ChildFailed saying
    so (a build then runs in a thread, `graph_build.grow_graph`), where it waited until the
    process ended; the child is reaped and no file is left."""
    monkeypatch.setattr(graph_process, "__file__", str(HUNG))
    monkeypatch.setattr(graph_process, "ANSWER_TIMEOUT_S", 1.0)
    graph = ChildGraph(CONFIG, tmp_path)
    try:
        graph.add(np.arange(50, dtype=np.uint64), np.ones((50, 8), dtype=np.float32), 1)
        began = time.monotonic()
        with pytest.raises(ChildFailed, match="no answer in 1 s, killed"):
            graph.finish()
        assert time.monotonic() - began < 30
        assert graph._child.returncode == -signal.SIGKILL
    finally:
        graph.kill()
    assert list(tmp_path.iterdir()) == []


def test_a_child_that_stops_reading_frames_is_killed_after_the_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that reads no frame (a stand-in that reads its header and sleeps): adding
    more rows than the pipe holds waits on it, and fails with ChildFailed once the time
    limit passes, rather than waiting until the process ends."""
    monkeypatch.setattr(graph_process, "__file__", str(SLEEPING))
    monkeypatch.setattr(graph_process, "ANSWER_TIMEOUT_S", 1.0)
    graph = ChildGraph(CONFIG, tmp_path)
    try:
        raised = _adding(graph, 100_000)
        assert isinstance(raised, ChildFailed)
        assert "no answer in 1 s, killed" in str(raised)
    finally:
        graph.kill()


def test_a_build_whose_graph_process_hangs_is_built_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """End to end: every graph process hangs at its first save (a stand-in), is killed at
    the time limit, and the build runs again in a thread: the graph serves, measured, and
    the killed child's files are gone."""
    monkeypatch.setattr(graph_build, "CHILD_MIN_FLOATS", 0)
    monkeypatch.setattr(graph_process, "__file__", str(HUNG))
    monkeypatch.setattr(graph_process, "ANSWER_TIMEOUT_S", 1.0)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((2_000, 8)).astype(np.float32)
    client = stores.SQLITE.client(tmp_path, {"huedb_exact_max_floats": 8 * 100})
    try:
        col = client.create_collection("hung", configuration={"hnsw": {"space": "l2"}})
        with caplog.at_level(logging.WARNING, logger="huedb.engine.graph_build"):
            col.add(ids=[f"r{i}" for i in range(2_000)], embeddings=vectors)
            col.query(query_embeddings=vectors[:1], n_results=5)
            status = wait_for_graph(col)
        assert status.recall is not None
        assert "no answer in 1 s, killed" in caplog.text
        assert "building the graph in a thread instead" in caplog.text
        got = col.query(query_embeddings=vectors[7:8] + np.float32(0.001), n_results=1)
        assert got["ids"] == [["r7"]]
        assert not list((tmp_path / "index").glob(".graph-build-*"))
    finally:
        client.close()
