"""A snapshot's recall measured again in a child process (`engine/recall_process.py`).

The child must give the measurement a thread of the serving process would (the same
calibration, tombstones included), refuse the snapshots `read_snapshot` refuses, end when
its job is stopped or its parent goes away, and report its failures instead of hanging.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from huedb.engine import child_process, recall_process, snapshot
from huedb.engine import recall_calibration as rc
from huedb.engine.recall_process import ChildUnavailable, MeasurementFailed, measure_snapshot
from huedb.engine.vector_index import BuildStopped, HnswParams, Thresholds, VectorIndex, build_graph

OWNER = snapshot.owner_name("store-1", "collection-1")


def _snapshot(tmp_path: Path, n: int, params: HnswParams, removed: int = 0) -> Path:
    """A snapshot of a graph of `n` 16-dim vectors, the first `removed` of them deleted
    (left as tombstones), written as huedb writes one."""
    vectors = np.random.default_rng(3).standard_normal((n, 16)).astype(np.float32)
    keys = np.arange(n, dtype=np.uint64)
    graph = build_graph(16, params, keys, vectors)
    index = VectorIndex.from_graph(16, params, Thresholds(0, 0), graph)
    if removed:
        index.remove(keys[:removed])
    graph_file = tmp_path / "graph.usearch"
    index.save_graph(graph_file)
    path = snapshot.snapshot_path(tmp_path / "index", "collection-1")
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_snapshot(path, OWNER, 7, 16, params.space, graph_file.read_bytes())
    return path


def _without_time(found: rc.Calibration | None) -> rc.Calibration | None:
    return None if found is None else dataclasses.replace(found, seconds=0.0)


@pytest.mark.parametrize(("space", "removed"), [("l2", 0), ("cosine", 600)])
def test_the_child_measures_what_a_thread_would(tmp_path: Path, space: str, removed: int) -> None:
    """The child's calibration equals the one measured here on the same snapshot (ef
    chosen, recall, sample, graph size, tombstones), with a target the first rung misses
    so the ladder is climbed."""
    params = HnswParams(space=space, ef_construction=16, ef_search=10, recall_target=0.999)
    path = _snapshot(tmp_path, 3_000, params, removed)
    here = snapshot.read_snapshot(path, OWNER)
    assert here is not None
    expected = rc.measure_view(here.payload, params, threading.Event(), threads=1)
    assert expected is not None and expected.tombstones == removed
    assert expected.graph_size == 3_000 - removed and expected.queries == 200
    found = measure_snapshot(path, OWNER, params, threading.Event())
    assert _without_time(found) == _without_time(expected)


def test_a_missing_or_foreign_snapshot_is_not_measured(tmp_path: Path) -> None:
    params = HnswParams(space="l2")
    path = _snapshot(tmp_path, 500, params)
    other = snapshot.owner_name("store-2", "collection-1")
    assert measure_snapshot(path, other, params, threading.Event()) is None
    assert measure_snapshot(tmp_path / "missing.hnsw", OWNER, params, threading.Event()) is None


def test_a_stopped_job_kills_its_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job whose stop event is set ends with BuildStopped at the first poll, and its
    child is gone when the call returns: killed (not waited for) and reaped."""
    params = HnswParams(space="l2", ef_construction=16)
    path = _snapshot(tmp_path, 20_000, params)
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        child = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        started.append(child)
        return child

    monkeypatch.setattr(child_process.subprocess, "Popen", recording_popen)
    stop = threading.Event()
    stop.set()
    began = time.monotonic()
    with pytest.raises(BuildStopped):
        measure_snapshot(path, OWNER, params, stop)
    assert time.monotonic() - began < 5.0
    assert len(started) == 1 and started[0].returncode == -signal.SIGKILL


def test_the_child_ends_when_its_parent_closes_its_stdin(tmp_path: Path) -> None:
    """A child whose stdin closes (its parent died, or let go of it) exits at once with
    code 1 and no answer, rather than finishing a measurement nobody reads."""
    params = HnswParams(space="l2", ef_construction=16)
    path = _snapshot(tmp_path, 20_000, params)
    request = {"path": str(path), "owner": OWNER, "params": dataclasses.asdict(params)}
    child = subprocess.Popen(
        [sys.executable, "-P", "-m", "huedb.engine.recall_process"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=recall_process._child_environment(),
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(request).encode() + b"\n")
    child.stdin.close()
    try:
        assert child.wait(timeout=30) == 1
        assert child.stdout.read() == b""
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_the_child_runs_its_libraries_on_one_thread() -> None:
    """The child's environment asks numpy's BLAS (OpenBLAS, MKL or OpenMP builds) for one
    thread, and finds this huedb first on its import path."""
    env = recall_process._child_environment()
    assert {env[name] for name in recall_process.ONE_THREAD} == {"1"}
    root = Path(recall_process.__file__).resolve().parents[2]
    assert env["PYTHONPATH"].split(":")[0] == str(root)


@pytest.mark.parametrize(
    ("answer", "errors", "code", "failure", "reason"),
    [
        (b'{"error": "ValueError(\'torn\')"}\n', "", 0, MeasurementFailed, "ValueError('torn')"),
        (b"", "Traceback ...\nModuleNotFoundError", 1, ChildUnavailable, "ModuleNotFoundError"),
        (b"", "", 1, ChildUnavailable, "exit code 1"),
        (b"", "", -9, MeasurementFailed, "killed by signal 9: exit code -9"),
    ],
)
def test_a_failed_child_is_reported(
    answer: bytes, errors: str, code: int, failure: type[Exception], reason: str
) -> None:
    """An error the child answers with is the measurement's, and so is a kill by a signal
    (the out-of-memory killer, a crash): neither is run again here. An exit without an
    answer means the child could not run (its stderr, or its exit code, says why)."""
    with pytest.raises(failure, match=reason.replace("(", r"\(").replace(")", r"\)")):
        recall_process._calibration(answer, errors, code)


def test_a_measurement_that_fails_in_the_child_is_not_run_again_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that answers with an error (here a stand-in) is not followed by the same
    measurement in the calling thread: it would fail for the same reason, on every core."""
    monkeypatch.setattr(recall_process, "__name__", "tests.erring_recall_child")
    ran_here: list[Path] = []
    monkeypatch.setattr(recall_process, "measure_here", lambda path, *_: ran_here.append(path))
    with pytest.raises(MeasurementFailed, match="the recall measurement failed: MemoryError"):
        measure_snapshot(tmp_path / "unused.hnsw", OWNER, HnswParams(space="l2"), threading.Event())
    assert ran_here == []


@pytest.mark.parametrize("failure", ["no interpreter", "child fails"])
def test_without_a_child_the_measurement_runs_here(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    """When no child can start (no interpreter at `sys.executable`) or the child fails
    (here: its module cannot be imported), the measurement is made in the calling thread,
    with the same result, and a warning says why."""
    params = HnswParams(space="l2", ef_construction=16, ef_search=10, recall_target=0.999)
    path = _snapshot(tmp_path, 2_000, params)
    here = snapshot.read_snapshot(path, OWNER)
    assert here is not None
    expected = rc.measure_view(here.payload, params, threading.Event())
    if failure == "no interpreter":
        monkeypatch.setattr(recall_process.sys, "executable", str(tmp_path / "no-python"))
        why = "cannot start"
    else:
        monkeypatch.setattr(recall_process, "__name__", "huedb.engine.no_such_module")
        why = "No module named"
    with caplog.at_level("WARNING", logger=recall_process.logger.name):
        found = measure_snapshot(path, OWNER, params, threading.Event())
    assert _without_time(found) == _without_time(expected)
    warned = [r.getMessage() for r in caplog.records]
    assert any(why in message and "in this process" in message for message in warned)


def test_a_child_writing_much_to_stderr_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that writes more to stderr than a pipe holds before it answers (here a
    stand-in that writes 1.2 MB, then answers "no measurement") is read to its end: its
    stderr goes to a file, so the parent never waits on a full pipe."""
    params = HnswParams(space="l2")
    monkeypatch.setattr(recall_process, "__name__", "tests.noisy_recall_child")
    stop = threading.Event()
    timer = threading.Timer(60.0, stop.set)
    timer.start()
    try:
        assert measure_snapshot(tmp_path / "unused.hnsw", OWNER, params, stop) is None
    finally:
        timer.cancel()
    assert not stop.is_set()


def test_a_child_flooding_its_stdout_is_read_as_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A child that writes more to stdout than a pipe holds (a stand-in writing 1.2 MB,
    then exiting) is read as it writes, so it exits; its output is no answer, so the
    measurement runs here (on a missing snapshot: none), rather than the parent waiting
    for the exit of a child that waits for it to read."""
    monkeypatch.setattr(recall_process, "__name__", "tests.flooding_recall_child")
    stop = threading.Event()
    timer = threading.Timer(60.0, stop.set)
    timer.start()
    try:
        with caplog.at_level("WARNING", logger=recall_process.logger.name):
            found = measure_snapshot(tmp_path / "unused.hnsw", OWNER, HnswParams(space="l2"), stop)
    finally:
        timer.cancel()
    assert found is None and not stop.is_set()
    assert any("exit code 0" in r.getMessage() for r in caplog.records)


def test_a_child_that_never_answers_is_killed_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung child (a stand-in that reads the request, then sleeps) is killed once it is
    `ANSWER_TIMEOUT_S` late: the measurement fails (not run again here) instead of holding
    its job until the process ends."""
    monkeypatch.setattr(recall_process, "__name__", "tests.silent_recall_child")
    monkeypatch.setattr(recall_process, "ANSWER_TIMEOUT_S", 1.0)
    ran_here: list[Path] = []
    monkeypatch.setattr(recall_process, "measure_here", lambda path, *_: ran_here.append(path))
    started: list[Any] = []
    real_popen = child_process.subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> Any:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(child_process.subprocess, "Popen", recording_popen)
    began = time.monotonic()
    with pytest.raises(MeasurementFailed, match="no answer in 1 s"):
        measure_snapshot(tmp_path / "unused.hnsw", OWNER, HnswParams(space="l2"), threading.Event())
    assert time.monotonic() - began < 30
    assert ran_here == [] and len(started) == 1
    assert started[0].poll() is not None  # killed and reaped
