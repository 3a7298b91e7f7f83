"""An HNSW graph built or changed in a child process, fed vectors through a pipe.

usearch's Python binding takes the GIL back for every vector it adds, so a graph built by a
thread of the serving process crawls while that process runs Python (ingest, queries): 20k
x 384 took 2.8x as long beside a busy Python thread. A child interpreter has a GIL of its
own. The parent (`ChildGraph`) writes frames to the child's stdin: keys and vectors
(float32, or int8 for a graph on int8 rows, `int8_links`) to add on the number of threads
the frame names, keys to remove, or queries to search (the keys found go back on stdout:
the recall of a build is measured on the child's graph, which the parent never holds);
at the end the child saves the graph to a file the parent chose,
which the parent links (the nodes no search reaches, `graph_reach`: in the parent, once
the child has exited, so the walk's arrays never sit beside the child's graph) and loads,
maps or copies into a snapshot. The graph starts empty, or as the one the parent saved to a
file first (to change a graph in the background, `graph_build`). A graph on int8 rows is
also saved once before its last rows (`checkpoint`: the child goes on, and adds them and
saves again while the parent measures the checkpoint with its 16-bit rows); the parent
rewrites each file a child saves with those rows.

The child runs this file as a script (`python -P graph_process.py`): it imports numpy and
usearch only, not huedb (importing huedb costs ~1 s of CPU), so this module imports huedb
only inside the parent's methods, and is the one user of usearch besides `vector_index`.
It removes the file it started from once it has read it (at 1M x 384 a pass's start is
0.5-1 GB of disk), and exits when its stdin closes (the parent ended or died) or once it
saved the graph (but for a checkpoint's save).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# A frame's head: its kind, its rows, then the threads to add on, a search's count and ef,
# or for a save whether the child goes on after it (a checkpoint).
_FRAME = struct.Struct("<4Q")
_ADD, _REMOVE, _SEARCH, _SAVE = 1, 2, 3, 4
_DONE = b"saved\n"
# A child that has not taken a frame, answered a search or saved the graph after this long
# is killed, and the build fails as for any other ended child (`ChildFailed`): a hung child
# held its build, and with it the build lease every process on the directory waits for,
# until this process ended. (At 1M x 384 a frame's rows take ~1 s, a save ~2 s.)
ANSWER_TIMEOUT_S = 3_600.0
_PREFIX = ".graph-build-"  # then the parent's pid: its graph file until it has read it


def _remove_orphans(directory: Path) -> None:
    """Remove graph files of builds whose process no longer runs (killed mid-build)."""
    for path in directory.glob(f"{_PREFIX}*-*.tmp"):
        try:
            pid = int(path.name[len(_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:  # another user's process: it runs
            continue


class ChildFailed(RuntimeError):
    """The child process could not build or save the graph."""


class ChildGraph:
    """A graph growing in a child process (parent side)."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path | None,
        start: Callable[[Path], None] | None = None,
    ) -> None:
        """Start the child; `config` holds usearch's `Index` arguments (`ndim`, `metric`,
        `dtype`, `connectivity`, `expansion_add`, `expansion_search`); the graph is saved
        to a temporary file in `workdir` (the system's temporary directory for None).
        With `start`, the graph is the one `start(path)` writes to a file (which the child
        reads, keeping its own metric and scalar type) rather than an empty one. A graph of
        `dtype` "i8" takes int8 rows (`add`), every other one float32 rows."""
        self.dim = int(config["ndim"])
        self.row_type = np.dtype(np.int8 if config.get("dtype") == "i8" else np.float32)
        directory = Path(workdir or tempfile.gettempdir())
        _remove_orphans(directory)
        self._config = config
        self._directory = directory
        self._path = temporary_graph_file(directory)
        self._start: Path | None = None
        self._saving = False  # (`save_ahead`) the child was told to save the graph and end
        try:
            if start is not None:
                self._start = temporary_graph_file(directory)
                start(self._start)
            self._spawn(self._start)
        except BaseException:
            self._unlink()
            raise

    def _spawn(self, start: Path | None) -> None:
        """Start a child process on the graph saved to `start`, or an empty one."""
        from huedb.engine.child_process import Child  # not in the child: no huedb there

        self._child = Child([sys.executable, "-P", __file__])
        header = {**self._config, "start": start and str(start)}
        self._child.stdin.write(json.dumps(header).encode() + b"\n")

    @property
    def pid(self) -> int:
        return self._child.pid

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int) -> None:
        """Send vectors to add on `threads` threads (blocks while the child is busy and
        the pipe is full; the GIL is released while it waits). A graph on int8 rows takes
        int8 vectors only (never a float32 row cast to int8)."""
        if self._saving:
            raise RuntimeError("vectors added to a graph process told to save and end")
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if self.row_type == np.int8 and vectors.dtype != np.int8:
            raise TypeError(f"a graph on int8 rows was given {vectors.dtype} rows")
        vectors = np.ascontiguousarray(vectors, dtype=self.row_type)
        if len(keys) == 0:
            return
        try:
            self._send(_FRAME.pack(_ADD, len(keys), max(1, threads), 0), keys.data, vectors.data)
        except OSError as exc:
            raise ChildFailed(f"graph process ended: {self._stderr()}") from exc

    def remove(self, keys: np.ndarray, tombstones_from: int) -> None:
        """Send keys to take out of the graph (those it does not hold are ignored): the
        i-th one's node is kept as a tombstone, renamed to key `tombstones_from` + i (see
        `vector_index.TOMBSTONE_BASE`; usearch's own removal lets the next add reuse the
        node, dropping its links)."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if len(keys) == 0:
            return
        try:
            self._send(_FRAME.pack(_REMOVE, len(keys), tombstones_from, 0), keys.data)
        except OSError as exc:
            raise ChildFailed(f"graph process ended: {self._stderr()}") from exc

    def search(self, queries: np.ndarray, count: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys (queries x count) and how many were found per query, of a batch searched
        at expansion `ef` on every core of the child (as `vector_index.search_graph`)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        rows = len(queries)
        try:
            self._send(_FRAME.pack(_SEARCH, rows, count, ef), queries.data)
            keys = self._receive(rows * count * 8)
            counts = self._receive(rows * 8)
        except OSError as exc:
            raise ChildFailed(f"graph process ended: {self._stderr()}") from exc
        return np.frombuffer(keys, dtype=np.uint64).reshape(rows, count), np.frombuffer(
            counts, dtype=np.int64
        )

    def checkpoint(self, served: Callable[..., None]) -> Any:
        """A view (`vector_index.MappedGraph`) of the graph as it is now, served with other
        rows: the child saves it to a file and goes on (its next rows are added, and the
        graph saved again, while the caller searches the view: at 100k the tail of a build
        ~0.3 s shorter than with a new child restoring the file); `served(saved,
        target=path)` writes the file viewed (`int8_links.serve_with_rows`: its 16-bit
        rows). Both files are removed at once (the mapping keeps its pages)."""
        from huedb.engine.vector_index import map_graph_file

        saved = temporary_graph_file(self._directory)
        view = temporary_graph_file(self._directory)
        try:
            self._send_save(saved, go_on=True)
            self._await_save()
            served(saved, target=view)
            return map_graph_file(view)
        except ValueError as exc:
            raise ChildFailed(f"the graph process saved no index: {exc}") from exc
        finally:
            saved.unlink(missing_ok=True)
            view.unlink(missing_ok=True)

    def save_ahead(self) -> None:
        """Have the child save the graph now (and end), while the caller goes on: `finish`
        then reads the file it saved. No vector can be added after this."""
        if not self._saving:
            self._send_save(self._path, go_on=False)
            self._saving = True

    def finish(
        self,
        read: Callable[[Path], Any] | None = None,
        served: Callable[[Path], None] | None = None,
    ) -> Any:
        """Have the child save the graph (unless `save_ahead` did), and load it (a usearch
        `Index`), or return what `read` makes of the saved file before it is removed (a
        build or backlog pass copies it into a snapshot and maps it: no copy of the graph in
        this process). `served` first rewrites the file (a graph on int8 rows: with its
        16-bit rows)."""
        from huedb.engine import heap  # not in the child: no huedb there
        from huedb.engine.vector_index import link_saved_graph, load_graph

        self.save_ahead()
        self._await_save()
        with self._child.within(ANSWER_TIMEOUT_S):
            self._child.wait()
        self._child.close()
        heap.release()  # before the graph is read back or mapped (the parent's peak)
        try:
            if served is not None:
                served(self._path)
        except ValueError as exc:
            self._unlink()
            raise ChildFailed(f"the graph process saved no index: {exc}") from exc
        link_saved_graph(self._path)
        try:
            return load_graph(self._path) if read is None else read(self._path)
        except ValueError as exc:
            raise ChildFailed(f"the graph process saved no index: {exc}") from exc
        finally:
            self._unlink()

    def _send_save(self, path: Path, go_on: bool) -> None:
        """Tell the child to save its graph to `path`, then go on or end."""
        name = os.fsencode(path)
        try:
            self._send(_FRAME.pack(_SAVE, len(name), int(go_on), 0), name)
        except OSError as exc:
            raise ChildFailed(f"graph process ended: {self._stderr()}") from exc

    def _await_save(self) -> None:
        """Wait for the child to have saved the graph it was told to save."""
        try:
            with self._child.within(ANSWER_TIMEOUT_S):
                reply = self._child.stdout.readline()
        except OSError as exc:
            raise ChildFailed(f"graph process ended: {self._stderr()}") from exc
        if reply != _DONE:
            raise ChildFailed(f"graph process failed: {self._stderr()}")

    def interrupt(self) -> None:
        """End the child at once (from another thread: the sending thread then fails)."""
        self._child.kill()

    def kill(self) -> None:
        """End the child (a build stopped or failed) and remove its file."""
        self._child.close()
        self._unlink()

    def _unlink(self) -> None:
        for path in (self._path, self._start):
            if path is not None:
                path.unlink(missing_ok=True)

    def _send(self, *parts: Any) -> None:
        stdin = self._child.stdin
        with self._child.within(ANSWER_TIMEOUT_S):  # a full pipe waits for the child
            for part in parts:
                stdin.write(part)
            stdin.flush()

    def _receive(self, size: int) -> bytes:
        with self._child.within(ANSWER_TIMEOUT_S):
            data = self._child.stdout.read(size)
        if len(data) != size:
            raise ChildFailed(f"graph process ended: {self._stderr()}")
        return data

    def _stderr(self) -> str:
        """End the child; the end of what it wrote to stderr, after the time limit it
        overran if it was killed for that."""
        words = self._child.last_words()
        late = self._child.timed_out
        return words if late is None else f"no answer in {late:.0f} s, killed. {words}".strip()


def temporary_graph_file(directory: Path) -> Path:
    """A new empty file in `directory`, named for this process (see `_remove_orphans`)."""
    handle, name = tempfile.mkstemp(prefix=f"{_PREFIX}{os.getpid()}-", suffix=".tmp", dir=directory)
    os.close(handle)
    return Path(name)


def _read(stream: BinaryIO, size: int) -> bytes | None:
    """Exactly `size` bytes, or None at the end of the stream."""
    data = stream.read(size)
    return data if len(data) == size else None


def _read_into(stream: BinaryIO, view: memoryview) -> bool:
    """Fill `view` from the stream; False at the end of the stream.

    Frames are read into buffers kept from one frame to the next: a fresh 6 MB object per
    frame left the child's heap fragmented (its peak RSS ~280 MB for a graph of ~100 MB).
    """
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            return False
        filled += got
    return True


def _serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    """The child: build the graph from the frames on stdin, save it when told."""
    from usearch.index import Index

    config = json.loads(stdin.readline())
    start = config.pop("start", None)
    dim = int(config["ndim"])
    graph = Index(**config) if start is None else _restored(start, config)
    if graph is None:
        return 1
    if start is not None:  # read: the parent's temporary file is no longer needed on disk
        with contextlib.suppress(OSError):
            os.unlink(start)
    # The rows ADD frames carry, by the parent's rule (`ChildGraph.row_type`): int8 for a
    # graph of dtype i8, else float32.
    row_type = np.int8 if config.get("dtype") == "i8" else np.float32
    keys = np.empty(0, dtype=np.uint64)
    matrix = np.empty((0, dim), dtype=row_type)
    queries = np.empty((0, dim), dtype=np.float32)
    while (head := _read(stdin, _FRAME.size)) is not None:
        kind, rows, first, second = _FRAME.unpack(head)
        if kind == _SAVE:
            name = _read(stdin, rows)
            if name is None:
                break
            graph.save(os.fsdecode(name))
            stdout.write(_DONE)
            stdout.flush()
            if not first:
                return 0
            continue
        if kind == _SEARCH:
            if rows > len(queries):
                queries = np.empty((rows, dim), dtype=np.float32)
            if not _read_into(stdin, memoryview(queries[:rows]).cast("B")):
                break
            _search(graph, queries[:rows], int(first), int(second), stdout)
            continue
        if rows > len(keys):
            keys = np.empty(rows, dtype=np.uint64)
            matrix = np.empty((rows, dim), dtype=row_type)
        if not _read_into(stdin, memoryview(keys[:rows]).cast("B")):
            break
        if kind == _REMOVE:  # the nodes are kept, renamed to tombstones' keys from `first`
            present = np.flatnonzero(graph.contains(keys[:rows]))
            if len(present):
                graph.rename(keys[:rows][present], np.uint64(first) + present.astype(np.uint64))
            continue
        if not _read_into(stdin, memoryview(matrix[:rows]).cast("B")):
            break
        graph.add(keys[:rows], matrix[:rows], threads=int(first))
    return 1  # the parent went away before asking for the graph


def _restored(path: str, config: dict[str, Any]) -> Any:
    """The child: the graph saved to `path` (its own metric and scalar type, this build's
    expansions), or None (reported on stderr) when the file holds none."""
    from usearch.index import Index

    graph = Index.restore(path)
    if graph is None:
        sys.stderr.write(f"{path} holds no graph\n")
        return None
    graph.expansion_add = config["expansion_add"]
    graph.expansion_search = config["expansion_search"]
    return graph


def _search(graph: Any, queries: np.ndarray, count: int, ef: int, stdout: BinaryIO) -> None:
    """The child: answer a search frame with the keys found and their counts."""
    graph.expansion_search = max(ef, count)
    found = graph.search(queries, count, threads=0)
    keys = np.asarray(found.keys, dtype=np.uint64).reshape(len(queries), count)
    counts = np.asarray(found.counts, dtype=np.int64).reshape(len(queries))
    stdout.write(np.ascontiguousarray(keys).data)
    stdout.write(np.ascontiguousarray(counts).data)
    stdout.flush()


if __name__ == "__main__":
    sys.exit(_serve(sys.stdin.buffer, sys.stdout.buffer))
