"""A collection's HNSW graph built in the background while the collection is still written.

The cache's thread (`IndexCache`) keeps the exact index current after every write; after
each catch-up it hands the build the exact index's rows (`Feed.hand_over`: views of rows
0..count, no copy: rows already lent are never changed in place, `FlatVectors`) with the
oplog watermark they reflect. The build thread (`grow_graph`) sends the rows it has not
sent yet to the graph, a frame at a time, until it has sent every row handed over and
either a search asked for the graph, or no rows came for `QUIET_S`, or a change other than
an append made the rows already sent stale (the feed then closes at its last hand-over and
adoption catches the graph up from the oplog, as for any graph).

The graph grows in a child process (`graph_process`, no shared GIL) when the build starts
with at least `CHILD_MIN_FLOATS` floats, else in the build thread (`LocalGraph`); if the
child fails, the thread builds the graph again itself. While writes are still arriving the
child adds on one thread (the writer has the other core); after that on every core. A
child's graph of a cosine or l2 collection is grown on int8 rows (one scale from the
build's first rows, `int8_links`) and served with the 16-bit rows this process holds: each
file the child saves is rewritten with them.

The recall sample (`recall_calibration`) is drawn as the rows stream past: a reservoir of
up to `SAMPLE_QUERIES_MAX` rows kept out of the graph, each row of the stream equally likely
to end in it; once the graph is done `sample_size` of them are its queries (a child process
on 16-bit rows answers them on its own graph; one on int8 rows saves a checkpoint, which is
searched here as it will be served, with its 16-bit rows, while the child adds the sample
and saves the whole graph), then they are all added to it.
A graph grown in a child process is then what the caller's `read` makes of the file the
child saves it to (the cache copies it into the snapshot and serves it as a view: it is
never read into memory).

`apply_backlog` changes a copy of a served graph the same way, in a child started from
the graph saved to a file (the changes a catch-up deferred, `graph_backlog`): on int8
rows too when it adds many vectors (`int8_backlog`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from huedb.engine import heap, int8_links
from huedb.engine.graph_backlog import BacklogWork
from huedb.engine.graph_process import ChildFailed, ChildGraph
from huedb.engine.int8_backlog import pass_start
from huedb.engine.int8_links import Int8Rows
from huedb.engine.mapped_rows import rows_as_float32
from huedb.engine.recall_calibration import (
    SAMPLE_QUERIES_MAX,
    ArrayVectors,
    Calibration,
    Search,
    Vectors,
    sample_size,
)
from huedb.engine.usearch_layout import ROWS_16_BY_DTYPE, ROWS_16_BY_NAME
from huedb.engine.vector_index import (
    GRAPH_DTYPE,
    BuildStopped,
    FlatVectors,
    HnswParams,
    LocalGraph,
    VectorIndex,
    build_threads,
    graph_config,
    graph_input,
    graph_rows_16,
    has_int8_kernel,
    search_graph,
)

logger = logging.getLogger(__name__)

QUIET_S = 0.5  # no rows handed over for this long: the writes have stopped
# Rows sent to the graph at a time (a stop is seen within one frame). A frame's buffers,
# here and in the graph process, are held while the graph grows: with 4,096 rows (and
# room for twice that here) they were 12.6 + 6.3 MiB of the peak at 384 dimensions.
FRAME_ROWS = 1_024
CHILD_MIN_FLOATS = 2_000_000  # smaller builds (under ~0.3 s of CPU) stay in the thread
# Rows at a build's start, spread over them, that set its int8 scale (`int8_links.choose`;
# each float32 copy of them is 6 MiB at 384 dimensions).
SCALE_ROWS = 4_096
# Rows per block of the recall measurement's brute-force pass over the build's rows: the
# score arrays of a block of 4,096 rows (200 queries x rows, several of them) left ~35 MiB
# in the heap just when the process holds its vectors and the graph read back, its peak.
MEASURE_ROWS = 1_024

Measure = Callable[[Search, Vectors, np.ndarray], Calibration | None]
# What a build makes of the file its graph process saved the graph to, with the graph's
# calibration (`IndexCache`: the snapshot, served as a view of it).
ReadGraph = Callable[[Path, Calibration | None], Any]


class GraphSink(Protocol):
    """Where a growing graph lives (`LocalGraph`, `graph_process.ChildGraph`)."""

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int) -> None: ...

    def search(self, queries: np.ndarray, count: int, ef: int) -> tuple[np.ndarray, np.ndarray]: ...

    def finish(self, read: Callable[[Path], Any] | None = None) -> Any: ...

    def kill(self) -> None: ...

    def interrupt(self) -> None: ...


class Feed:
    """The rows a growing build reads, handed over by the cache's thread."""

    def __init__(self, flat: FlatVectors, watermark: int, writing: bool) -> None:
        self._cond = threading.Condition()
        self._loan = flat.borrow()
        self.keys, self.matrix = self._loan.keys, self._loan.matrix
        self.watermark = watermark  # the oplog seq the rows handed over reflect
        self._rewrites = flat.rewrites
        self._handed_at = time.monotonic() if writing else -QUIET_S
        self._closed = False
        self._wanted = False
        self.sink: GraphSink | None = None  # the graph being grown, to interrupt at a stop

    def hand_over(self, flat: FlatVectors, watermark: int) -> bool:
        """Give the build the exact index's rows as of `watermark`; False once the feed is
        closed (the build ends at the watermark of the last hand-over)."""
        with self._cond:
            if self._closed:
                return False
            if flat.rewrites != self._rewrites:  # rows already read may have changed
                self._closed = True
                self._cond.notify_all()
                return False
            if len(flat) > len(self.keys):
                loan, self._loan = self._loan, flat.borrow()
                loan.give_back()
                self.keys, self.matrix = self._loan.keys, self._loan.matrix
                self._handed_at = time.monotonic()
            self.watermark = watermark
            self._cond.notify_all()
            return True

    def end(self) -> None:
        """The build is over: it reads no row any more, and takes no more (the rows it
        borrowed change in place again)."""
        with self._cond:
            self._closed = True
            self._loan.give_back()
            self._cond.notify_all()

    def want(self) -> None:
        """A search waits for the graph: end once every row handed over is in it."""
        with self._cond:
            self._wanted = True
            self._cond.notify_all()

    @property
    def wanted(self) -> bool:
        return self._wanted

    def interrupt(self) -> None:
        """End the graph's child process now, if it has one (the build was told to stop:
        its thread may be waiting for the child to take the next frame)."""
        sink = self.sink
        if sink is not None:
            sink.interrupt()

    def rows_after(
        self, sent: int, stop: threading.Event
    ) -> tuple[np.ndarray, np.ndarray, bool] | None:
        """The latest rows (keys, vectors) once there are more than `sent`, and whether
        writes are still arriving (not once a search waits for the graph: it ends with the
        rows handed over, on every core); None (closing the feed) when the build should
        end."""
        with self._cond:
            while True:
                if stop.is_set():
                    raise BuildStopped
                quiet = time.monotonic() - self._handed_at
                if len(self.keys) > sent:
                    return self.keys, self.matrix, quiet < QUIET_S and not self._wanted
                if self._closed or self._wanted or quiet >= QUIET_S:
                    self._closed = True
                    return None
                self._cond.wait(QUIET_S - quiet)


class Holdout:
    """A uniform sample of a stream of rows, kept out of the graph (reservoir sampling)."""

    def __init__(self, size: int, seed: int) -> None:
        self.rows: list[int] = []
        self._size = size
        self._rng = np.random.default_rng(seed)

    def admit(self, start: int, stop: int) -> np.ndarray:
        """Of the next rows of the stream (start..stop), the rows to add to the graph now:
        those the sample did not take, and earlier ones it let go for them."""
        fill = min(stop, start + max(0, self._size - len(self.rows)))
        self.rows.extend(range(start, fill))
        rest = np.arange(fill, stop)
        slots = (self._rng.random(len(rest)) * (rest + 1)).astype(np.int64)
        taken = slots < self._size
        out = [rest[~taken]]
        for row, slot in zip(rest[taken].tolist(), slots[taken].tolist(), strict=True):
            out.append(np.array([self.rows[slot]]))
            self.rows[slot] = row
        return np.sort(np.concatenate(out)) if len(out) > 1 else out[0]

    def split(self, total: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample's rows to measure a graph of `total` rows with (`sample_size`,
        ascending), and the rest of the sample."""
        rows = np.asarray(self.rows, dtype=np.int64)
        keep = min(len(rows), sample_size(total))
        return np.sort(rows[:keep]), rows[keep:]


def grow_graph(
    dim: int,
    params: HnswParams,
    feed: Feed,
    stop: threading.Event,
    progress: Callable[[int], None],
    measure: Measure | None,
    workdir: Path | None,
    read: ReadGraph | None = None,
) -> tuple[Any, Calibration | None]:
    """The graph of every row handed over until the feed closes, with its recall
    calibration (`measure`; None: not measured). A graph grown in a child process is
    measured there, and is what `read` makes of the file the child saves it to (a
    `usearch` Index read into memory without `read`); one grown in this thread is an
    Index."""
    if len(feed.keys) * dim >= CHILD_MIN_FLOATS:
        config = graph_config(dim, params)
        every = max(1, len(feed.keys) // SCALE_ROWS)
        first = _graph_input(params.space, feed.matrix[::every][:SCALE_ROWS])
        int8 = int8_links.choose(params.space, first) if has_int8_kernel(config["metric"]) else None
        try:
            child = ChildGraph(config if int8 is None else {**config, "dtype": "i8"}, workdir)
        except OSError as exc:
            logger.warning("cannot start a graph process (%s); building in a thread", exc)
        else:
            try:
                return _grow(child, params.space, feed, stop, progress, measure, read, int8)
            except ChildFailed as exc:
                if stop.is_set():
                    raise BuildStopped from exc
                logger.warning("%s; building the graph in a thread instead", exc)
    return _grow(LocalGraph(dim, params), params.space, feed, stop, progress, measure, None)


def _grow(
    sink: GraphSink,
    space: str,
    feed: Feed,
    stop: threading.Event,
    progress: Callable[[int], None],
    measure: Measure | None,
    read: ReadGraph | None,
    int8: Int8Rows | None = None,
) -> tuple[Any, Calibration | None]:
    """`grow_graph` on `sink`; with `int8`, a graph process's graph on int8 rows, which is
    measured and served with the feed's 16-bit rows (`int8_links`)."""
    holdout = Holdout(SAMPLE_QUERIES_MAX if measure is not None else 0, len(feed.keys))
    sent = 0
    feed.sink = sink
    # One frame's buffers, reused: a fresh copy per frame fragments the heap. A frame holds
    # at most FRAME_ROWS rows (`Holdout.admit` lets one row go for each it takes).
    frame_keys = np.empty(FRAME_ROWS, dtype=np.uint64)
    frame = np.empty((FRAME_ROWS, feed.matrix.shape[1]), dtype=np.float32)
    frame8 = np.empty(frame.shape if int8 is not None else (0, 0), dtype=np.int8)

    tally = int8_links.ClipTally()

    def graph_rows(rows: np.ndarray) -> np.ndarray:
        """float32 graph rows as the sink takes them."""
        if int8 is None:
            return rows
        out = frame8[: len(rows)] if len(rows) <= FRAME_ROWS else None
        return tally.quantize(int8, rows, out)

    was_writing = True
    try:
        while (got := feed.rows_after(sent, stop)) is not None:
            keys, matrix, writing = got
            if was_writing and not writing:
                # The writes have stopped (or paused): the graph process grows to its
                # largest from now on, beside this process's heap as the ingest left it.
                heap.release()
            was_writing = writing
            end = min(len(keys), sent + FRAME_ROWS)
            rows = holdout.admit(sent, end)  # at most the frame and the sample let go
            count = len(rows)
            np.take(keys, rows, out=frame_keys[:count])
            _graph_frame(space, matrix, rows, frame[:count])
            sink.add(
                frame_keys[:count], graph_rows(frame[:count]), 1 if writing else build_threads()
            )
            progress(count)
            sent = end
        keys, matrix = feed.keys, feed.matrix  # closed: every row of these was sent
        sample, extra = holdout.split(len(keys))
        threads = build_threads()
        sink.add(keys[extra], graph_rows(_graph_input(space, matrix[extra])), threads)
        served = None if int8 is None else _serve_rows(space, keys, matrix)
        calibration = None
        source = ArrayVectors(keys, matrix, MEASURE_ROWS)
        if measure is not None and len(sample) and served is not None:
            # Measured as it is served (its links with the 16-bit rows, on a view of a
            # checkpoint) while the child adds the sample and saves the whole graph.
            assert isinstance(sink, ChildGraph)
            mapped = sink.checkpoint(served)
            sink.add(keys[sample], graph_rows(_graph_input(space, matrix[sample])), threads)
            sink.save_ahead()
            calibration = measure(functools.partial(search_graph, mapped.graph), source, sample)
            del mapped
            heap.release()  # what the measurement's score arrays left in this thread's heap
        else:
            if measure is not None and len(sample):
                calibration = measure(sink.search, source, sample)
                heap.release()
            sink.add(keys[sample], graph_rows(_graph_input(space, matrix[sample])), threads)
        if int8 is not None:
            tally.report()
        progress(len(sample) + len(extra))
        reader = None if read is None else functools.partial(_read_measured, read, calibration)
        graph = sink.finish(reader) if served is None else sink.finish(reader, served)
    except BaseException:
        sink.kill()
        raise
    finally:
        feed.sink = None
    return graph, calibration


def _read_measured(read: ReadGraph, calibration: Calibration | None, path: Path) -> Any:
    return read(path, calibration)


def _serve_rows(space: str, keys: np.ndarray, matrix: np.ndarray) -> Callable[..., None]:
    """Rewrites a file of the graph process's graph on int8 rows with the 16-bit rows of
    `matrix` (the build's; float32 rows are rounded as a graph holds them) for its keys."""
    order = np.argsort(keys, kind="stable")
    kind = ROWS_16_BY_DTYPE.get(matrix.dtype, ROWS_16_BY_NAME[GRAPH_DTYPE]).kind
    buffer = np.empty((int8_links.ROWS_PER_WRITE, matrix.shape[1]), dtype=matrix.dtype)

    def rows_of(wanted: np.ndarray) -> np.ndarray:
        at = order[np.searchsorted(keys, wanted, sorter=order).clip(0, len(keys) - 1)]
        if not np.array_equal(keys[at], wanted):
            raise ValueError("the graph holds keys the build was not given")
        rows = np.take(matrix, at, axis=0, out=buffer[: len(at)])
        return rows if rows.dtype != np.float32 else graph_rows_16(GRAPH_DTYPE, space, rows)

    return functools.partial(int8_links.serve_with_rows, rows_of=rows_of, kind=kind)


def _graph_frame(space: str, matrix: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """The feed's `rows` as the graph takes them, into the float32 frame `out`: float32
    vectors through `graph_input`; 16-bit rows (`FlatVectors.kind`) are already the
    graph's values, converted exactly."""
    if matrix.dtype == np.float32:
        np.take(matrix, rows, axis=0, out=out)
        graph_input(space, out, in_place=True)
    else:
        out[...] = rows_as_float32(matrix[rows])


def _graph_input(space: str, rows: np.ndarray) -> np.ndarray:
    """`_graph_frame` of rows already gathered, as a new array (or the rows themselves)."""
    return graph_input(space, rows) if rows.dtype == np.float32 else rows_as_float32(rows)


def apply_backlog(
    index: VectorIndex,
    work: BacklogWork,
    stop: threading.Event,
    workdir: Path | None,
    read: Callable[[Path], Any] | None = None,
) -> Any | None:
    """A copy of the index's graph with `work` applied, made by a child process (no GIL
    shared with searches): the graph is saved to a file the child starts from, the work's
    keys are removed and those with vectors added, a frame at a time (a stop is seen
    within one frame), and the child's graph is read back. Keys whose vector the graph
    already holds (a change of metadata only) are left as they are (the nodes of those
    taken out stay as tombstones, `vector_index.TOMBSTONE_BASE`); None when that leaves
    nothing to change. The index's own graph is only read: it is not changed while it has
    a backlog (`VectorIndex.defer`). With `read`, the result is what it makes of the file
    the child saved the new graph to (`ChildGraph.finish`)."""
    held = index.graph_holds(work.add_keys, work.add_vectors)
    keys, add_keys, add_vectors = work.keys, work.add_keys, work.add_vectors
    if np.any(held):  # (else no copy of the vectors)
        keys = np.setdiff1d(keys, add_keys[held], assume_unique=True)
        add_keys, add_vectors = add_keys[~held], add_vectors[~held]
    if not index.graph_holds_any(keys) and len(add_keys) == 0:
        return None
    config = graph_config(index.dim, index.params)
    with pass_start(index, add_keys, add_vectors, workdir) as begin:
        if begin.int8 is not None:
            config = {**config, "dtype": "i8"}
        tally = int8_links.ClipTally()
        child = ChildGraph(config, workdir, start=begin.start)
        try:
            for start in range(0, len(keys), 8 * FRAME_ROWS):
                if stop.is_set():
                    raise BuildStopped
                child.remove(keys[start : start + 8 * FRAME_ROWS], index.next_tombstone + start)
            for start in range(0, len(add_keys), FRAME_ROWS):
                if stop.is_set():
                    raise BuildStopped
                rows = index.graph_rows(add_vectors[start : start + FRAME_ROWS])
                if begin.int8 is not None:
                    rows = tally.quantize(begin.int8, rows)
                child.add(add_keys[start : start + FRAME_ROWS], rows, build_threads())
            if begin.int8 is not None:
                tally.report()
            return child.finish(read, begin.served)
        except BaseException:
            child.kill()
            raise
