"""A fork waits for huedb's background BLAS product in progress (`engine/fork_guard.py`):
OpenBLAS's fork handler could otherwise wait forever on a multi-threaded product of another
thread (a program forking while huedb measured a graph's recall hung in `os.fork()`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

from huedb.engine.fork_guard import blas_call
from tests.cli import REPO_ROOT

HELD_S = 0.6


def test_a_fork_waits_for_the_product_in_progress_and_the_child_starts_free() -> None:
    entered, leave_at = threading.Event(), []

    def product() -> None:
        with blas_call():
            entered.set()
            time.sleep(HELD_S)
            leave_at.append(time.monotonic())

    worker = threading.Thread(target=product)
    worker.start()
    assert entered.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: the lock is free here (no thread of the parent runs)
        acquired = blas_call()
        try:
            acquired.__enter__()
            acquired.__exit__(None, None, None)
            os._exit(0)
        except BaseException:
            os._exit(1)
    forked_at = time.monotonic()
    _, status = os.waitpid(pid, 0)
    worker.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert forked_at >= leave_at[0]  # fork returned only once the product had ended
    with blas_call():  # and the parent's lock is free again
        pass


def test_forks_beside_recall_measurement_products_never_hang() -> None:
    """Forks while a thread runs the recall measurement's exact pass (its matrix products
    through OpenBLAS) over and over: every fork returns and every child exits."""
    script = textwrap.dedent(
        """
        import os, threading, time
        import numpy as np
        from huedb.engine.recall_calibration import ArrayVectors, _exact_rows

        rng = np.random.default_rng(0)
        rows = rng.random((20_000, 64), dtype=np.float32)
        flat = ArrayVectors(np.arange(len(rows), dtype=np.uint64), rows)
        queries = rng.random((256, 64), dtype=np.float32)
        done = threading.Event()

        def measure():
            while not done.is_set():
                _exact_rows("l2", flat, queries, 10, np.empty(0, dtype=np.int64))

        thread = threading.Thread(target=measure)
        thread.start()
        for _ in range(25):
            pid = os.fork()
            if pid == 0:
                np.ones((64, 64), dtype=np.float32) @ np.ones((64, 64), dtype=np.float32)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            time.sleep(0.02)
        done.set()
        thread.join()
        print("forked 25 times")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr
    assert "forked 25 times" in out.stdout
