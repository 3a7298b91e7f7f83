"""Prometheus metrics at `GET /metrics`, one consistent set over every worker.

`huedb run` points PROMETHEUS_MULTIPROC_DIR at a private, empty directory before its
workers start; each worker's counters and histograms are files there, and a scrape served
by any worker merges them (prometheus_client's multi-process mode). Without that variable
(an app built in-process) the metrics are this process's own.

Label values are bounded: requests are labelled by route template (never the raw path),
method, status and error name; queries by plan. The per-collection gauges are computed at
scrape time for the `MAX_COLLECTIONS` largest collections by disk bytes; all the others
are summed into one series with `collection="_other"` (docs/operations.md, "Metrics").

A metric update that fails (a worker's metric file cannot grow on a full disk,
`metric_files`) is logged and skipped: the request or the engine work it counts goes on.
A scrape never fails for the store either: when the per-collection figures cannot be read
(PostgreSQL down) or take longer than `GAUGES_WAIT_S`, they are left out and the rest is
served. The live gauges of a worker that died without shutting down (SIGKILL, the OOM
killer) are dropped at the next scrape.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match

from huedb.engine import events
from huedb.engine.engine import Engine
from huedb.errors import StorageIOError, StorageUnavailableError
from huedb.ops.stats import gather_stats
from huedb.process_ids import process_exists
from huedb.server import metric_files
from huedb.server.asgi import ASGIApp, Receive, Scope, Send
from huedb.server.log_context import ACCESS_LOGGER, TRACE_ID
from huedb.server.metrics_cache import FIGURES

metric_files.install()  # before the first metric below opens its worker's file

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
MAX_COLLECTIONS = 100
OTHER = "_other"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BUILD_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)
LAG_BUCKETS = (1, 10, 100, 1000, 10_000, 100_000, 1_000_000)
LAG_SECONDS_BUCKETS = (0.01, 0.1, 1, 10, 60, 600, 3600)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
TRACE_HEADER = b"chroma-trace-id"
_TRACE_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The start of Chroma's error body (`error_body.error_json` writes the name first): the
# name is read from it, so a body of any length gives its name.
_ERROR_NAME = re.compile(rb'\A\s*\{\s*"error"\s*:\s*"([A-Za-z][A-Za-z0-9_]{0,63})"')
ERROR_BODY_START = 128  # bytes of an error body kept: `{"error":"` and a 64-byte name fit
TEMPLATE_CACHE = 4096  # (method, path) pairs whose route template is remembered
TEMPLATE_PATH_MAX = 512  # longer paths (and paths of no route) are matched, never cached

SKIPPED_LOG_GAP_S = 60.0  # at most one warning per this long about skipped metric updates
GAUGES_WAIT_S = 3.0  # a scrape waits this long for the per-collection figures, then skips them
CLIENT_CLOSED = 499  # nginx's status of a request whose client went away before the answer

access_log = logging.getLogger(ACCESS_LOGGER)
logger = logging.getLogger(__name__)
_last_skip_logged = -SKIPPED_LOG_GAP_S


class SeriesRefused(OSError):
    """A labelled series whose creation failed recently is not tried again yet."""


REFUSED_SERIES_MAX = 1024  # series remembered as failed; forgotten all at once past it
_refused_series: dict[tuple[int, tuple[str, ...]], float] = {}


def series(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, unless creating that series failed (OSError: its file could
    not grow) less than `SKIPPED_LOG_GAP_S` ago: then `SeriesRefused`. A histogram's
    series that fails part-way keeps the values that fitted in prometheus_client's
    process-wide list; tried again at every request, that list grew by ~3.7 KB a request
    for as long as the disk stayed full."""
    key = (id(metric), labels)
    now = time.monotonic()
    if now < _refused_series.get(key, now):
        raise SeriesRefused(f"{metric._name}{labels}: its metric file could not grow")
    try:
        return metric.labels(*labels)
    except OSError:
        if len(_refused_series) >= REFUSED_SERIES_MAX:
            _refused_series.clear()
        _refused_series[key] = now + SKIPPED_LOG_GAP_S
        raise


def update_metrics(*updates: Callable[[], object]) -> None:
    """Run each metric update, logging and skipping one that raises OSError (a worker's
    metric file that cannot grow on a full disk): a new series is lost, never the other
    updates nor the work being counted."""
    global _last_skip_logged
    for update in updates:
        try:
            update()
        except OSError as exc:
            now = time.monotonic()
            if now - _last_skip_logged >= SKIPPED_LOG_GAP_S:
                _last_skip_logged = now
                logger.warning("metrics not recorded: %s", exc)


REQUESTS = Counter(
    "huedb_http_requests",
    "HTTP requests answered, by route template, method, status and error name",
    ["route", "method", "status", "error"],
)
REQUEST_SECONDS = Histogram(
    "huedb_http_request_duration_seconds",
    "Time from request to the end of the response, by route template and method",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
STORAGE_ERRORS = Counter(
    "huedb_storage_errors",
    "Requests refused for storage: 507 (disk full) and 503 (store unavailable, I/O)",
    ["status"],
)
QUERY_SECONDS = Histogram(
    "huedb_query_duration_seconds",
    "Engine time of one query call, by plan (exact, graph, filtered_exact, filtered_graph)",
    ["plan"],
    buckets=LATENCY_BUCKETS,
)
INDEX_BUILD_SECONDS = Histogram(
    "huedb_index_build_duration_seconds",
    "Background HNSW graph builds, by outcome (ok, failed)",
    ["outcome"],
    buckets=BUILD_BUCKETS,
)
CATCH_UP_ENTRIES = Histogram(
    "huedb_oplog_catch_up_entries",
    "Oplog entries an index was behind by when it caught up (its lag, in entries)",
    buckets=LAG_BUCKETS,
)
CATCH_UP_SECONDS = Histogram(
    "huedb_oplog_catch_up_lag_seconds",
    "At a catch-up that applied entries: seconds since the index was last known current "
    "(an upper bound on how long the oldest applied change waited for this process)",
    buckets=LAG_SECONDS_BUCKETS,
)
BACKLOG_SECONDS = Histogram(
    "huedb_graph_backlog_duration_seconds",
    "Background passes applying a graph's backlog (a catch-up too large to apply in a "
    "query), by outcome (ok, failed)",
    ["outcome"],
    buckets=BUILD_BUCKETS,
)
BACKLOG_CHANGES = Counter(
    "huedb_graph_backlog_changes", "Changed keys applied to graphs by background passes"
)
# Gauges of running builds are summed over the live workers.
BUILDS_RUNNING = Gauge(
    "huedb_index_builds_running",
    "Background HNSW graph builds running",
    multiprocess_mode="livesum",
)
BUILD_VECTORS = Gauge(
    "huedb_index_build_vectors",
    "Vectors of the graph builds running (their progress: huedb_index_build_vectors_done / this)",
    multiprocess_mode="livesum",
)
BUILD_VECTORS_DONE = Gauge(
    "huedb_index_build_vectors_done",
    "Vectors the graph builds running have added so far",
    multiprocess_mode="livesum",
)
BUILD_VECTORS_ADDED = Counter(
    "huedb_index_build_added_vectors", "Vectors added to graphs by background builds"
)
SNAPSHOT_WRITES = Counter(
    "huedb_index_snapshot_writes", "Index snapshot writes, by outcome (ok, failed)", ["outcome"]
)
SNAPSHOT_BYTES = Counter("huedb_index_snapshot_written_bytes", "Bytes of index snapshots written")
INDEX_HITS = Counter(
    "huedb_index_cache_hits", "Queries that found their collection's index held in memory"
)
INDEX_MISSES = Counter(
    "huedb_index_cache_misses", "Queries that had to load their collection's index"
)
INDEX_EVICTIONS = Counter(
    "huedb_index_evictions", "Indexes evicted to stay within the index memory budget"
)
# Per worker (a `pid` label in multi-process mode): each worker has its own budget.
INDEX_RESIDENT = Gauge(
    "huedb_index_resident_bytes",
    "Bytes of the indexes, dense and sparse, a worker holds in memory (under index_memory)",
    multiprocess_mode="liveall",
)


class EngineMetrics:
    """Turns the engine's events (`huedb.engine.events`) into metrics."""

    def query(self, plan: str, seconds: float) -> None:
        update_metrics(lambda: series(QUERY_SECONDS, plan).observe(seconds))

    def index_build_started(self, vectors: int) -> None:
        update_metrics(BUILDS_RUNNING.inc, lambda: BUILD_VECTORS.inc(vectors))

    def index_build_progress(self, vectors: int) -> None:
        update_metrics(
            lambda: BUILD_VECTORS_DONE.inc(vectors), lambda: BUILD_VECTORS_ADDED.inc(vectors)
        )

    def index_build(self, seconds: float, ok: bool, vectors: int, added: int) -> None:
        update_metrics(
            lambda: series(INDEX_BUILD_SECONDS, "ok" if ok else "failed").observe(seconds),
            BUILDS_RUNNING.dec,
            lambda: BUILD_VECTORS.dec(vectors),
            lambda: BUILD_VECTORS_DONE.dec(added),
        )

    def catch_up(self, entries: int, seconds: float) -> None:
        update_metrics(
            lambda: CATCH_UP_ENTRIES.observe(entries), lambda: CATCH_UP_SECONDS.observe(seconds)
        )

    def graph_backlog(self, seconds: float, ok: bool, changes: int) -> None:
        update_metrics(lambda: series(BACKLOG_SECONDS, "ok" if ok else "failed").observe(seconds))
        if ok:
            update_metrics(lambda: BACKLOG_CHANGES.inc(changes))

    def snapshot(self, ok: bool, nbytes: int) -> None:
        update_metrics(
            lambda: series(SNAPSHOT_WRITES, "ok" if ok else "failed").inc(),
            lambda: SNAPSHOT_BYTES.inc(nbytes),
        )

    def index_access(self, hit: bool) -> None:
        update_metrics((INDEX_HITS if hit else INDEX_MISSES).inc)

    def index_eviction(self) -> None:
        update_metrics(INDEX_EVICTIONS.inc)

    def index_memory(self, nbytes: int) -> None:
        update_metrics(lambda: INDEX_RESIDENT.set(nbytes))


def start_engine_metrics() -> None:
    """Record this process's engine events. Its resident-bytes gauge exists from the
    start (0), so every scrape lists every live worker, not only those that held an index."""
    update_metrics(lambda: INDEX_RESIDENT.set(0))
    events.listen(EngineMetrics())


def mark_worker_dead() -> None:
    """Drop this worker's live gauge files (multi-process mode) as it shuts down."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())


LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]*_(\d+)\.db$")


def remove_dead_workers(directory: str) -> None:
    """Drop the live gauge files of workers that died without shutting down (SIGKILL, the
    OOM killer): their builds running and resident bytes would otherwise stay in every
    scrape. A pid counts as this server's live worker only while it runs and is this
    process or a sibling (uvicorn's workers share a parent), so a pid reused by another
    program does not keep a dead worker's gauges."""
    pids = {int(m[1]) for name in os.listdir(directory) if (m := LIVE_GAUGE_FILE.match(name))}
    for pid in pids - {os.getpid()}:
        if not is_sibling_worker(pid):
            with contextlib.suppress(FileNotFoundError):  # another worker's scrape was first
                multiprocess.mark_process_dead(pid, directory)


def is_sibling_worker(pid: int) -> bool:
    """Whether `pid` runs and shares this process's parent (a worker of the same server)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: a running process is given the benefit of the doubt
        return process_exists(pid)
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return fields[0] != "Z" and int(fields[1]) == os.getppid()


class FiguresRun:
    """The per-collection figures of a scrape, computed in a thread of their own so that a
    scrape waits at most `GAUGES_WAIT_S` for them; one computation at a time (a scrape
    arriving meanwhile waits for the running one), so a store that hangs holds one thread.
    A storage error or the wait running out leaves the figures out of that scrape, with a
    warning at most once a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: tuple[tuple[int, Path], Future] | None = None
        self._last_warning = -SKIPPED_LOG_GAP_S

    def figures(
        self, engine: Engine, data: Path
    ) -> tuple[dict[str, tuple[str, str]], list[dict[str, Any]]] | None:
        """(tenant and database by collection id, collection stats), or None."""
        key = (id(engine), data)
        with self._lock:
            if self._running is None or self._running[0] != key or self._running[1].done():
                future: Future = Future()
                context = contextvars.copy_context()  # its log lines carry the trace id
                threading.Thread(
                    target=context.run, args=(self._compute, engine, data, future), daemon=True
                ).start()
                self._running = (key, future)
            future = self._running[1]
        try:
            return future.result(timeout=GAUGES_WAIT_S)
        except TimeoutError:
            self._warn(f"not computed within {GAUGES_WAIT_S:g}s")
        except (StorageUnavailableError, StorageIOError) as exc:
            self._warn(f"the store cannot be read ({exc})")
        return None

    @staticmethod
    def _compute(engine: Engine, data: Path, future: Future) -> None:
        try:
            where = {col.uuid: engine.database_of(col) for col in engine.collections()}
            stats = gather_stats(engine, data, FIGURES.figures)
            FIGURES.keep_only(set(where))
        except BaseException as exc:  # handed to the waiting scrape
            future.set_exception(exc)
        else:
            future.set_result((where, stats["collections"]))

    def _warn(self, why: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= SKIPPED_LOG_GAP_S:
            self._last_warning = now
            logger.warning("/metrics without the per-collection gauges: %s", why)


FIGURES_RUN = FiguresRun()


class CollectionGauges(Collector):
    """Per-collection record counts, disk bytes and index memory at scrape time (the counts
    and bytes from the worker's figures cache, `metrics_cache`), left out when the store
    cannot give them in time (`FiguresRun`)."""

    def __init__(self, engine: Engine, data: Path) -> None:
        self.engine = engine
        self.data = data

    def collect(self) -> Iterable[Metric]:
        computed = FIGURES_RUN.figures(self.engine, self.data)
        if computed is not None:
            yield from collection_families(*computed)
        yield GaugeMetricFamily(
            "huedb_index_memory_budget_bytes",
            "Bytes of indexes each worker may hold (index_memory; 0: no limit)",
            value=self.engine.options.index_memory,
        )


def collection_families(
    where: dict[str, tuple[str, str]], stats: list[dict[str, Any]]
) -> Iterable[Metric]:
    """The per-collection gauges of the `MAX_COLLECTIONS` largest collections, the others
    summed into `_other`, and the number of collections."""
    figures = sorted(stats, key=lambda c: -c["disk_bytes"])
    labels = ["tenant", "database", "collection"]
    families = {
        key: GaugeMetricFamily(f"huedb_collection_{key}", text, labels=labels)
        for key, text in (
            ("records", "Records of a collection"),
            ("disk_bytes", "Bytes of vectors, documents and metadata of a collection"),
            ("index_memory_bytes", "Estimated RAM of a collection's HNSW index"),
        )
    }
    other = dict.fromkeys(families, 0)
    for n, col in enumerate(figures):
        values = {"records": col["count"], **{k: col[k] for k in families if k != "records"}}
        if n < MAX_COLLECTIONS:
            tenant, database = where.get(col["id"], ("", ""))
            for key, family in families.items():
                family.add_metric([tenant, database, col["name"]], values[key])
        else:
            for key in families:
                other[key] += values[key]
    if len(figures) > MAX_COLLECTIONS:
        for key, family in families.items():
            family.add_metric(["", "", OTHER], other[key])
    yield from families.values()
    yield GaugeMetricFamily("huedb_collections", "Collections in the store", value=len(figures))


class _ThisProcess(Collector):
    """The default registry's metrics (single-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class CompleteHistograms(Collector):
    """The metrics of every worker's file, merged, without the histogram series a full disk
    left half-written. prometheus_client stores a new histogram series key by key (its sum,
    then each bucket up to `le="+Inf"`); when the file cannot grow part-way the series is
    not created (`series`), but the keys that fitted stay in the file, and merged they
    would show a series without its `+Inf` bucket and with `_count` 0. A series whose
    `+Inf` bucket (its last key) is in no worker's file is left out: it was not recorded."""

    def __init__(self, directory: str) -> None:
        self.merged = multiprocess.MultiProcessCollector(None, directory)

    def collect(self) -> Iterable[Metric]:
        for metric in self.merged.collect():
            if metric.type == "histogram":
                complete = {
                    _without_le(sample.labels)
                    for sample in metric.samples
                    if sample.labels.get("le") == "+Inf"
                }
                metric.samples = [s for s in metric.samples if _without_le(s.labels) in complete]
            yield metric


def _without_le(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A histogram sample's labels but its bucket bound: the series it belongs to."""
    return tuple(sorted((name, value) for name, value in labels.items() if name != "le"))


def scrape(engine: Engine, data: Path) -> tuple[bytes, str]:
    """The metrics text of every worker plus the scrape-time gauges, and its content type."""
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        remove_dead_workers(directory)
        registry.register(CompleteHistograms(directory))
    else:
        registry.register(_ThisProcess())
    registry.register(CollectionGauges(engine, data))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class RequestMetricsMiddleware:
    """Outermost: set the request's trace id for logging, then count and time the request by
    route template, and write its request log line (no headers, no body)."""

    def __init__(self, app: ASGIApp, routes: Callable[[], list[BaseRoute]]) -> None:
        self.app = app
        self.routes = routes
        self.leaves: list[BaseRoute] | None = None
        self.templates: dict[tuple[str, str], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reset = TRACE_ID.set(trace_id(scope["headers"]))
        started = time.perf_counter()
        response = _Response()

        async def watch(message: dict) -> None:
            response.see(message)
            await send(message)

        async def watch_receive() -> dict:
            message = await receive()
            response.see(message)
            return message

        try:
            await self.app(scope, watch_receive, watch)
        finally:
            self.record(scope, response, time.perf_counter() - started)
            TRACE_ID.reset(reset)

    def record(self, scope: Scope, response: _Response, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else "other"
        route = self.template(scope)
        status = response.status
        count_request(route, method, status, response.error_name(), seconds)
        access_log.info(
            "%s %s %d %.1f ms",
            method,
            route,
            status,
            seconds * 1000,
            extra={
                "route": route,
                "method": method,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            },
        )

    def template(self, scope: Scope) -> str:
        """The path template of the route the request went to (or would have: the fast
        path's routes and refusals before routing), "unmatched" when none matches."""
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path", None) or "unmatched"
        return self.template_of(scope["method"], scope["path"])

    def template_of(self, method: str, path: str) -> str:
        """The first route matching a method and path (~170 us over every route). Cached
        only for paths of at most `TEMPLATE_PATH_MAX` bytes that match a route, so that
        requests (before auth) cannot fill memory with paths; the oldest go first."""
        key = (method, path)
        template = self.templates.get(key)
        if template is not None:
            return template
        template = self.match_template(method, path)
        if template != "unmatched" and len(path) <= TEMPLATE_PATH_MAX:
            if len(self.templates) >= TEMPLATE_CACHE:
                del self.templates[next(iter(self.templates))]
            self.templates[key] = template
        return template

    def match_template(self, method: str, path: str) -> str:
        """The path template of the first route matching a method and path, or "unmatched"."""
        if self.leaves is None:
            self.leaves = leaf_routes(self.routes())
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        for route in self.leaves:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path", None) or "unmatched"
        return "unmatched"


def count_request(route: str, method: str, status: int, error: str, seconds: float) -> None:
    """Count and time one answered request."""
    update_metrics(
        lambda: series(REQUESTS, route, method, str(status), error).inc(),
        lambda: series(REQUEST_SECONDS, route, method).observe(seconds),
    )
    if status in (503, 507):
        update_metrics(lambda: series(STORAGE_ERRORS, str(status)).inc())


def leaf_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    """The routes with a path, inside the routers FastAPI includes lazily (`original_router`;
    huedb includes its routers without a prefix, so each route's path is whole)."""
    leaves: list[BaseRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            leaves += leaf_routes(inner.routes)
        elif hasattr(route, "path"):
            leaves.append(route)
    return leaves


class _Response:
    """The status of a response and the start of an error body (for its error name)."""

    def __init__(self) -> None:
        # A request that ends without a response counts as a 500, or as a 499 when its
        # client went away first (a body cut off mid-upload: not the server's fault).
        self.status = 500
        self.started = False
        self.body = b""

    def see(self, message: dict) -> None:
        """Note a message sent to the client, or received from it."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
        elif message["type"] == "http.response.body" and self.status >= 400:
            if len(self.body) < ERROR_BODY_START:
                self.body = (self.body + message.get("body", b""))[:ERROR_BODY_START]
        elif message["type"] == "http.disconnect" and not self.started:
            self.status = CLIENT_CLOSED

    def error_name(self) -> str:
        """Chroma's error name from the start of an error response's body ("" below 400 and
        for a request whose client went away, "other" for a body that does not start
        with one)."""
        if self.status < 400 or self.status == CLIENT_CLOSED:
            return ""
        found = _ERROR_NAME.match(self.body)
        return found[1].decode() if found else "other"


def trace_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's `chroma-trace-id` if it is a plain token, else a new id."""
    for name, value in headers:
        if name.lower() == TRACE_HEADER:
            text = value.decode("latin-1").strip()
            if _TRACE_OK.match(text):
                return text
    return uuid.uuid4().hex
