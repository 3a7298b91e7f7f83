"""What a process holds for one collection's index, and the background jobs working on it.

`IndexState` is the index cache's record of a collection (`index_cache.IndexCache`): the
index, the oplog watermark it reflects, and the jobs of its own (a graph build, a backlog
pass, a snapshot write, a recall measurement), each an `IndexJob` running in a thread. The
jobs running in this process are registered, so that they are stopped before the
interpreter exits (native threads must not be cut), and not in a forked child.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from huedb.engine import snapshot
from huedb.engine.catalog import CollectionRow
from huedb.engine.graph_build import Feed
from huedb.engine.recall_calibration import Calibration
from huedb.engine.vector_index import VectorIndex

# A failed graph build (a graph process and the thread both failed: no memory, no disk for
# the graph's file) is tried again at the next use after this long, doubling with every
# failure in a row up to BUILD_RETRY_MAX_S: a passing condition costs minutes of exact
# search, not the process's lifetime; a lasting one a build an hour.
BUILD_RETRY_S = 60.0
BUILD_RETRY_MAX_S = 3_600.0


@dataclass(eq=False)
class IndexJob:
    """A background job on a collection's index: a graph build, a backlog pass, a snapshot
    write or a recall measurement; its thread leaves its result in `outcome`."""

    thread: threading.Thread
    watermark: int
    outcome: list[Any] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    calibration: Calibration | None = None  # measured on the graph built
    feed: Feed | None = None  # the rows a graph build reads (None for a measurement)
    covered: int = 0  # a snapshot's: the changes it covers that were not snapshotted before
    saved: bool = False  # a build's or backlog pass's: its graph was written as the snapshot
    replaces: bool = False  # its snapshot replaces one at the same watermark (a rebuild's)
    lease: snapshot.BuildLease | None = None  # a build's or pass's: until its thread ends


running_jobs: weakref.WeakSet[IndexJob] = weakref.WeakSet()
# A forked child has none of them: their threads, events and feeds are the parent's.
os.register_at_fork(after_in_child=running_jobs.clear)


@atexit.register
def _stop_running_jobs() -> None:
    """Stop background builds before the interpreter exits (native threads must not be cut)."""
    builds = list(running_jobs)
    for build in builds:
        build.stop.set()
        if build.feed is not None:
            build.feed.interrupt()
    for build in builds:
        build.thread.join()


@dataclass
class IndexState:
    """A collection's index as this process holds it, with its jobs and what is known of
    its snapshot, its recall and its memory."""

    col: CollectionRow
    index: VectorIndex
    watermark: int
    unsnapshotted: int = 0
    build: IndexJob | None = None
    build_failures: int = 0  # builds failed in a row (none since the last graph adopted)
    build_failed_at: float = 0.0  # (time.monotonic) when the last of them failed
    nbytes: int = 0  # what `index` held in memory when last measured
    resized: bool = True  # the index may have changed size since it was measured
    last_used: int = 0  # the cache's clock at the last use (least recent is evicted first)
    evicting: bool = False  # evicted once `checkpoint` has snapshotted it
    current_at: float = field(default_factory=time.monotonic)  # last known equal to the store
    calibration: Calibration | None = None  # the recall measurement the index searches by
    changed_since_calibration: int = 0  # changes applied to the graph since it was measured
    calibrating: IndexJob | None = None  # a measurement running on a snapshot of the graph
    backlog_pass: IndexJob | None = None  # a thread applying the graph's backlog
    # Held only to note this process's writes to a graph snapshot's collection (a writer,
    # `IndexCache._snapshot_behind`) until a search here uses it: see
    # `IndexCache._start_backlog_pass_if_needed`.
    writes_only: bool = False
    may_calibrate: bool = False  # a snapshot of the graph is on disk to be measured
    saving: IndexJob | None = None  # a thread writing the graph's snapshot (graph not changed)
    saved_at: int | None = None  # a snapshot written by `saving` covers the oplog up to here
    # A rebuilt index (`IndexCache.rebuild`): its next snapshot replaces the one on disk even at the
    # same watermark (that one is kept until then: it serves other processes meanwhile).
    replaces_snapshot: bool = False
    # Another process holds the build lease (`IndexCache._start_leased`): this one builds or
    # changes no graph and adopts the next snapshot to land
    # (`IndexCache._adopt_other_build`), the file last seen at the snapshot's
    # path being `seen_snapshot` (`snapshot.file_identity`).
    awaits_build: bool = False
    seen_snapshot: tuple[int, int, int, int] | None = None
    marked_wanted: bool = False  # a search here waits for it (`snapshot.mark_wanted`)


def retry_delay(failures: int) -> float:
    """Seconds before a graph build is tried again after `failures` failed in a row:
    `BUILD_RETRY_S`, doubling with each failure, at most `BUILD_RETRY_MAX_S`."""
    return min(BUILD_RETRY_S * 2 ** max(0, failures - 1), BUILD_RETRY_MAX_S)


def waits_to_retry(state: IndexState) -> bool:
    """Whether the collection's last build failed too recently to try again."""
    if state.build_failures == 0:
        return False
    return time.monotonic() - state.build_failed_at < retry_delay(state.build_failures)


def wanted_elsewhere(job: IndexJob) -> bool:
    """Whether a process awaiting this leased build or pass searched the collection."""
    return job.lease is not None and job.lease.wanted_elsewhere
