"""A graph snapshot's recall measured again in a child process, on one core.

A graph that serves queries is measured again after large changes, or when its snapshot's
measurement is stale (`IndexCache._start_calibration_if_due`). In a thread of the serving
process, the measurement's matrix products ran on every core (OpenBLAS starts a thread per
core) and its graph searches too, and queries waited for them: at 1M x 384 after 30 % of
the records changed, query p50 was 7.3-7.6 ms for the ~12 s of products against 3.2 ms
otherwise (the bench's "query after mutations p50" caught it). A child interpreter maps
the snapshot itself, with one BLAS thread (set in its environment, before numpy loads),
graph searches on one thread and a GIL of its own: in the same test, queries kept 3.2-3.3 ms
throughout, and the measurement took 19.6 s instead of 22.6 s (the two BLAS threads had
been waiting for the core the queries held).

The parent writes one JSON line to the child's stdin (the snapshot's path and owner, the
graph's settings) and keeps it open; the child answers with one JSON line on stdout (the
measurement, none, or an error) and exits. A child whose stdin closes (the parent stopped
the job, ended or died) exits at once. When no child can start or it exits without an
answer, the measurement runs in the calling thread, as before (on every core); an error
it answers with is the measurement's own, and a child killed by a signal (out of memory,
a crash) is not followed by the same measurement here: both are reported, not run again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import sys
import threading
from pathlib import Path
from typing import Any

from huedb.engine import snapshot
from huedb.engine.child_process import Child
from huedb.engine.recall_calibration import Calibration, measure_view
from huedb.engine.vector_index import BuildStopped, HnswParams

# One thread for each library that may run the matrix products (numpy's OpenBLAS, or an
# MKL or OpenMP build of it).
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
STOP_POLL_SECONDS = 0.1  # how often the parent looks at the job's stop event
# A child that has neither answered nor exited after this long is killed and the measurement
# reported failed (at 1M x 384 a measurement takes ~20 s: this is for a hung child, which
# held its job, and the measurements after it, until the process ended).
ANSWER_TIMEOUT_S = 3_600.0

logger = logging.getLogger(__name__)


class MeasurementFailed(RuntimeError):
    """The measurement failed: the child answered with the error, or was killed by a
    signal (out of memory, a crash)."""


class ChildUnavailable(RuntimeError):
    """The child process could not start, or exited without an answer."""


def measure_snapshot(
    path: Path, owner: str, params: HnswParams, stop: threading.Event
) -> Calibration | None:
    """The recall calibration of the graph in the snapshot at `path`, measured by a child
    process on one core (in this thread when the child cannot start or gives no answer): None when
    the snapshot is missing or refused (torn, foreign: see `snapshot.read_snapshot`) or the
    graph too small to measure. Raises BuildStopped once `stop` is set (a child is killed),
    MeasurementFailed when the measurement itself failed (it is not run again here)."""
    try:
        return _measured_by_child(path, owner, params, stop)
    except ChildUnavailable as exc:
        logger.warning("%s; measuring the recall in this process instead", exc)
        return measure_here(path, owner, params, stop)


def measure_here(
    path: Path, owner: str, params: HnswParams, stop: threading.Event, threads: int = 0
) -> Calibration | None:
    """`measure_snapshot` in this thread, the graph searched on `threads` (0: every core)."""
    snap = snapshot.read_snapshot(path, owner)
    if snap is None:
        return None
    # `snap` keeps the file mapped until the view measured is gone
    return measure_view(snap.payload, params, stop, threads)


def _measured_by_child(
    path: Path, owner: str, params: HnswParams, stop: threading.Event
) -> Calibration | None:
    """`measure_snapshot` by a child: ChildUnavailable when it cannot start or ends without
    an answer, MeasurementFailed when it answers that the measurement failed."""
    request = {"path": str(path), "owner": owner, "params": dataclasses.asdict(params)}
    try:
        child = Child([sys.executable, "-P", "-m", __name__], env=_child_environment())
    except OSError as exc:
        raise ChildUnavailable(f"cannot start a recall measurement process: {exc}") from exc
    try:
        with child.within(ANSWER_TIMEOUT_S):  # a hung child is killed: its stdout ends
            child.stdin.write(json.dumps(request).encode() + b"\n")
            child.stdin.flush()
            answer = _stdout_until_exit(child, stop)
    except OSError as exc:  # the child ended before it read the request
        raise ChildUnavailable(f"the recall measurement process failed: {exc}") from exc
    finally:
        errors = child.last_words()
        child.close()
    if child.timed_out is not None:
        raise MeasurementFailed(
            f"the recall measurement process gave no answer in {child.timed_out:.0f} s "
            "and was killed"
        )
    return _calibration(answer, errors, child.returncode)


def _stdout_until_exit(child: Child, stop: threading.Event) -> bytes:
    """What the child writes to stdout until it exits, read as it comes (a child that
    wrote more than the pipe holds would wait forever for a reader that waits for it to
    exit); BuildStopped once `stop` is set."""
    out = child.stdout.fileno()
    parts = []
    while True:
        if stop.is_set():
            raise BuildStopped
        readable, _, _ = select.select([out], [], [], STOP_POLL_SECONDS)
        if readable:
            part = os.read(out, 1 << 16)
            if not part:  # the child closed it: it is ending
                break
            parts.append(part)
    while child.running():
        if stop.is_set():
            raise BuildStopped
        stop.wait(STOP_POLL_SECONDS)
    return b"".join(parts)


def _child_environment() -> dict[str, str]:
    """This process's environment, with one thread per math library, and huedb's own
    directory first on the import path (the child runs with -P, so the working directory
    is not searched)."""
    root = str(Path(__file__).resolve().parents[2])  # the directory holding huedb/
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, **ONE_THREAD, "PYTHONPATH": os.pathsep.join(paths)}


def _calibration(answer: bytes, errors: str, code: int | None) -> Calibration | None:
    """The measurement the child answered with: MeasurementFailed when it answered with
    an error (the measurement's own, which would fail here too) or was killed (out of
    memory, a crash: running it here could take the serving process with it),
    ChildUnavailable when it exited without an answer (it could not run: huedb not
    importable there)."""
    try:
        reply = json.loads(answer)
    except ValueError:
        reply = None
    if isinstance(reply, dict) and "error" in reply:
        raise MeasurementFailed(f"the recall measurement failed: {reply['error']}")
    if not isinstance(reply, dict) or "calibration" not in reply:
        detail = errors or f"exit code {code}"
        if code is not None and code < 0:  # killed: out of memory, a crash
            raise MeasurementFailed(
                f"the recall measurement process was killed by signal {-code}: {detail}"
            )
        raise ChildUnavailable(f"the recall measurement process failed: {detail}")
    return Calibration.from_json(reply["calibration"])


def _exit_when_orphaned(stdin: Any) -> None:
    """The child: end the process once the parent closes stdin (or dies)."""
    stdin.read()
    os._exit(1)


def _serve(stdin: Any, stdout: Any) -> int:
    """The child: read the request, measure, write the answer."""
    request = json.loads(stdin.readline())
    threading.Thread(target=_exit_when_orphaned, args=(stdin,), daemon=True).start()
    try:
        path, params = Path(request["path"]), HnswParams(**request["params"])
        found = measure_here(path, request["owner"], params, threading.Event(), threads=1)
        reply: dict[str, Any] = {"calibration": None if found is None else found.to_json()}
    except Exception as exc:  # reported to the parent, which logs it
        reply = {"error": repr(exc)}
    stdout.write(json.dumps(reply).encode() + b"\n")
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.stdin.buffer, sys.stdout.buffer))
