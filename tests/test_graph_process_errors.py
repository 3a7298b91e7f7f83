"""A graph process that fails reports why (its stderr) through ChildFailed, however much it
wrote there (`engine/graph_process.py`: its stderr goes to a temporary file)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from huedb.engine import graph_process
from huedb.engine.graph_process import ChildFailed, ChildGraph

CONFIG = {
    "ndim": 8,
    "metric": "l2sq",
    "dtype": "f32",
    "connectivity": 8,
    "expansion_add": 16,
    "expansion_search": 16,
}
STAND_IN = Path(__file__).with_name("noisy_graph_child.py")


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
