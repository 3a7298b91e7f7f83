"""What the engine reports to an observer (the server's metrics): each query's plan and
duration, graph builds, index catch-ups from the oplog.

The engine calls the functions below; with no listener registered they do nothing. The
observer lives in a higher layer and registers itself with `listen`.
"""

from __future__ import annotations

from typing import Protocol

QUERY_PLANS = ("exact", "graph", "filtered_exact", "filtered_graph")


class EngineListener(Protocol):
    """Receives the engine's events (called from request and build threads)."""

    def query(self, plan: str, seconds: float) -> None: ...

    def index_build(self, seconds: float, ok: bool) -> None: ...

    def catch_up(self, entries: int) -> None: ...


_listener: EngineListener | None = None


def listen(listener: EngineListener | None) -> None:
    """Send this process's engine events to `listener` (None: to nobody)."""
    global _listener
    _listener = listener


def query_done(plan: str, seconds: float) -> None:
    """A query call finished, served by `plan` (one of QUERY_PLANS)."""
    if _listener is not None:
        _listener.query(plan, seconds)


def index_build_done(seconds: float, ok: bool) -> None:
    """A background graph build finished (or failed) after `seconds`."""
    if _listener is not None:
        _listener.index_build(seconds, ok)


def caught_up(entries: int) -> None:
    """An index applied `entries` oplog entries it was behind by."""
    if _listener is not None:
        _listener.catch_up(entries)
