"""No BLAS product of huedb's background threads runs while the process forks.

OpenBLAS's fork handler (run inside `fork()`) shuts its worker threads down, and can wait
forever when another thread is in the middle of a multi-threaded product: a program that
forked while huedb measured a graph's recall in a thread of its process hung in
`os.fork()` (review, 2026-12-08: 2 hangs in ~42 trials, one traced to that handler).
Such products run inside `blas_call()`; a fork takes the same lock first
(`os.register_at_fork`), so it waits for the product in progress to end, and the child
starts with the lock free. huedb's other background arithmetic is BLAS-free (einsum,
numkong) or runs in child processes of one thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_blas = threading.Lock()


def _release() -> None:
    _blas.release()


os.register_at_fork(before=_blas.acquire, after_in_parent=_release, after_in_child=_release)


@contextmanager
def blas_call() -> Iterator[None]:
    """Hold forks off while a BLAS product runs (in a background thread)."""
    with _blas:
        yield
