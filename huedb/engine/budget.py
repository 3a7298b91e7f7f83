"""What one request may cost the engine: its size limits and its time budget.

Limits are engine options (`EngineOptions.max_*`, one settings chain for every mode), so
they are checked here, where every read of every mode arrives (`Engine.get`, `query`,
`delete`), before the engine lock is taken (the results of a query, which depend on how
many records it can return, once its index is ready). The filter's sizes were measured
when it was checked (`filters.FilterSize`).

The time budget (`query_timeout`) bounds how long one read holds the engine lock: the
store stops a statement once the deadline passes (`StoreSession.time_budget`: SQLite's
progress handler, PostgreSQL's statement_timeout), Python loops call `Deadline.check`;
either way the read stops with `QueryTimeoutError`, its transaction is ended by the caller
and the lock released.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from huedb.engine.filters import FilterSize, RecordFilter
from huedb.errors import QueryTimeoutError, RequestLimitError
from huedb.options import EngineOptions, env_name


def _how_to_raise(option: str) -> str:
    flag = "--" + option.replace("_", "-")
    return f"huedb run {flag}, {env_name(option)} or Settings(huedb_{option}=...)"


def _refuse(what: str, got: int, option: str, limit: int) -> RequestLimitError:
    return RequestLimitError(
        f"{what} is {got:,}, over this server's limit of {limit:,} ({option}). "
        f"Split or narrow the request, or raise the limit: {_how_to_raise(option)}"
    )


def check_read(options: EngineOptions, flt: RecordFilter) -> None:
    """Refuse a get, query or delete whose ids or filter exceed the limits."""
    _check_filters(options, 0 if flt.ids is None else len(flt.ids), flt.size)


def check_reads(options: EngineOptions, filters: list[RecordFilter]) -> None:
    """Refuse a request of several reads (the searches of one search request) whose filters
    together exceed the limits: ids, `$in` values and regexes are counted over the whole
    request (100 searches of 4 regexes each held the engine 32 s), conditions and operand
    bytes per filter (each search's own filter may be as large as one read's)."""
    ids = sum(0 if flt.ids is None else len(flt.ids) for flt in filters)
    sizes = [flt.size for flt in filters]
    total = FilterSize(
        terms=max((s.terms for s in sizes), default=0),
        in_values=sum(s.in_values for s in sizes),
        pattern_bytes=max((s.pattern_bytes for s in sizes), default=0),
        regex_terms=sum(s.regex_terms for s in sizes),
    )
    _check_filters(options, ids, total)


def _check_filters(options: EngineOptions, ids: int, size: FilterSize) -> None:
    checks = (
        ("Number of ids", ids, "max_ids"),
        ("Number of filter operators and conditions", size.terms, "max_filter_terms"),
        ("Number of $in / $nin values", size.in_values, "max_in_values"),
        ("Bytes of a document filter operand", size.pattern_bytes, "max_pattern_bytes"),
        ("Number of $regex / $not_regex conditions", size.regex_terms, "max_regex_terms"),
    )
    for what, got, option in checks:
        limit = getattr(options, option)
        if got > limit:
            raise _refuse(what, got, option, limit)


def check_query_embeddings(options: EngineOptions, n_vectors: int) -> None:
    """Refuse a query with more query embeddings than the limit."""
    if n_vectors > options.max_query_embeddings:
        raise _refuse(
            "Number of query embeddings",
            n_vectors,
            "max_query_embeddings",
            options.max_query_embeddings,
        )


def check_query_results(options: EngineOptions, n_vectors: int, n_results: int) -> None:
    """Refuse a query whose answer would hold too many results in all.

    `n_results` is what the query can return: at most the records its filter lets through
    (a huge `n_results` on a small collection is served, as in Chroma).
    """
    if n_vectors * n_results > options.max_query_results:
        raise _refuse(
            f"Query embeddings x results ({n_vectors:,} x {n_results:,})",
            n_vectors * n_results,
            "max_query_results",
            options.max_query_results,
        )


class Deadline:
    """The end of one read's time budget; `paused()` lifts it for engine-internal work."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds if seconds > 0 else None
        self._paused = 0

    def expired(self) -> bool:
        """Whether the budget is spent (never while paused, nor without a budget)."""
        return self._end is not None and not self._paused and time.monotonic() > self._end

    def check(self) -> None:
        """Raise QueryTimeoutError once the budget is spent."""
        if self.expired():
            raise self.error()

    def error(self) -> QueryTimeoutError:
        """The error of a read stopped by this budget."""
        return QueryTimeoutError(
            f"The request held the engine for more than its time budget of {self.seconds:g} s "
            "(query_timeout) and was stopped; nothing was changed. Narrow it (a smaller "
            "filter, fewer query embeddings or results, a limit), or raise the budget: "
            f"{_how_to_raise('query_timeout')} (0 turns it off)"
        )

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Work that must not be cut halfway (e.g. loading an index) runs unbudgeted."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Make this the deadline of the calling thread's store statements, which functions
        called per row (`$regex`: one document can take seconds) look at with
        `check_running_deadline`."""
        previous = getattr(_running, "deadline", None)
        _running.deadline = self
        try:
            yield
        finally:
            _running.deadline = previous


_running = threading.local()


class DeadlinePassed(Exception):
    """Raised inside a store statement's per-row function once the thread's deadline
    passed; the statement stops and its session turns it into QueryTimeoutError."""


def check_running_deadline() -> None:
    """Raise DeadlinePassed when the calling thread runs under a spent deadline."""
    deadline = getattr(_running, "deadline", None)
    if deadline is not None and deadline.expired():
        raise DeadlinePassed
