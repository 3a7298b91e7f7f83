"""What the engine reports to an observer (the server's metrics): each query's plan and
duration, graph builds and their progress, index catch-ups from the oplog, graph backlogs
applied in the background, snapshot writes, and the index cache's memory, hits, misses and
evictions.

The engine calls the functions below; with no listener registered they do nothing. The
observer lives in a higher layer and registers itself with `listen`.
"""

from __future__ import annotations

from typing import Protocol

QUERY_PLANS = ("exact", "graph", "filtered_exact", "filtered_graph")


class EngineListener(Protocol):
    """Receives the engine's events (called from request and build threads)."""

    def query(self, plan: str, seconds: float) -> None: ...

    def index_build_started(self, vectors: int) -> None: ...

    def index_build_progress(self, vectors: int) -> None: ...

    def index_build(self, seconds: float, ok: bool, vectors: int, added: int) -> None: ...

    def catch_up(self, entries: int, seconds: float) -> None: ...

    def graph_backlog(self, seconds: float, ok: bool, changes: int) -> None: ...

    def snapshot(self, ok: bool, nbytes: int) -> None: ...

    def index_access(self, hit: bool) -> None: ...

    def index_eviction(self) -> None: ...

    def index_memory(self, nbytes: int) -> None: ...


_listener: EngineListener | None = None


def listen(listener: EngineListener | None) -> None:
    """Send this process's engine events to `listener` (None: to nobody)."""
    global _listener
    _listener = listener


def query_done(plan: str, seconds: float) -> None:
    """A query call finished, served by `plan` (one of QUERY_PLANS)."""
    if _listener is not None:
        _listener.query(plan, seconds)


def index_build_started(vectors: int) -> None:
    """A background graph build of `vectors` vectors started."""
    if _listener is not None:
        _listener.index_build_started(vectors)


def index_build_progress(vectors: int) -> None:
    """A running graph build added `vectors` more vectors to its graph."""
    if _listener is not None:
        _listener.index_build_progress(vectors)


def index_build_done(seconds: float, ok: bool, vectors: int, added: int) -> None:
    """A background graph build of `vectors` vectors finished (or failed, or was stopped)
    after `seconds`, having added `added` of them."""
    if _listener is not None:
        _listener.index_build(seconds, ok, vectors, added)


def caught_up(entries: int, seconds: float) -> None:
    """An index applied `entries` oplog entries it was behind by; it had last been known
    current `seconds` ago (an upper bound on how long the oldest of them waited)."""
    if _listener is not None:
        _listener.catch_up(entries, seconds)


def graph_backlog_applied(seconds: float, ok: bool, changes: int) -> None:
    """A background pass applying `changes` changed keys to a graph (`graph_backlog`)
    finished (ok) or failed, after `seconds`."""
    if _listener is not None:
        _listener.graph_backlog(seconds, ok, changes)


def snapshot_written(ok: bool, nbytes: int) -> None:
    """A graph snapshot of `nbytes` bytes was written (ok), or writing one failed."""
    if _listener is not None:
        _listener.snapshot(ok, nbytes)


def index_cache_access(hit: bool) -> None:
    """A query found its collection's index held (hit) or had to load it (miss)."""
    if _listener is not None:
        _listener.index_access(hit)


def index_evicted() -> None:
    """An index was evicted to keep the indexes held within the memory budget."""
    if _listener is not None:
        _listener.index_eviction()


def index_memory_held(nbytes: int) -> None:
    """The indexes an engine holds now take `nbytes` bytes."""
    if _listener is not None:
        _listener.index_memory(nbytes)
