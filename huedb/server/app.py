"""The ASGI app: routes, Chroma-shaped errors, auth and size limits around one `LocalAPI`."""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from huedb.api.local import LocalAPI
from huedb.config import ENGINE_PREFIX, Settings
from huedb.engine.registry import acquire_engine, release_engine
from huedb.errors import ChromaError, body_error
from huedb.ops.backup import remove_stale_admin_backups
from huedb.server import admin
from huedb.server.auth import TokenAuthMiddleware
from huedb.server.browser_guard import BrowserGuardMiddleware, CorsMiddleware
from huedb.server.console import OPEN_PATHS as CONSOLE_PATHS
from huedb.server.console import api_reference
from huedb.server.console import reads as console_reads
from huedb.server.console import static_files as console_files
from huedb.server.content_type import JsonContentTypeMiddleware
from huedb.server.error_body import error_response, exception_fields
from huedb.server.fastpath import FastPathMiddleware
from huedb.server.head_requests import HeadAsGetMiddleware
from huedb.server.json_response import OrjsonResponse
from huedb.server.limits import BodySizeLimitMiddleware, ReceiveTimeoutMiddleware
from huedb.server.metrics import (
    METRICS_PATH,
    RequestMetricsMiddleware,
    mark_worker_dead,
    scrape,
    start_engine_metrics,
)
from huedb.server.path_guard import EncodedSlashMiddleware
from huedb.server.routes import router
from huedb.server.server_config import ENV_CONFIG, ServerConfig
from huedb.version import __version__

logger = logging.getLogger(__name__)


def create_app(config: ServerConfig) -> FastAPI:
    """A server over the data directory in `config.path`."""
    for left in remove_stale_admin_backups():
        logger.info("removed %s, left by a server killed during an admin backup", left)
    engine = acquire_engine(Path(config.path), config.engine, owner=config.allow_reset)
    settings = Settings(
        is_persistent=True,
        persist_directory=config.path,
        allow_reset=config.allow_reset,
        **{ENGINE_PREFIX + name: value for name, value in config.engine.to_dict().items()},
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        release_engine(engine)
        mark_worker_dead()

    app = FastAPI(
        lifespan=lifespan,
        title="huedb",
        version=__version__,
        description="Chroma's v2 HTTP API, served by huedb.",
        default_response_class=OrjsonResponse,
        redirect_slashes=False,
        # FastAPI's Swagger UI and ReDoc load scripts from a CDN into the console's origin:
        # /docs is huedb's own script-free page instead (console/api_reference.py).
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = LocalAPI(engine, settings)
    app.state.config = config
    app.include_router(router)
    app.include_router(admin.router)
    app.include_router(console_reads.router)
    app.include_router(console_files.router)
    app.include_router(api_reference.router)
    _install_error_handlers(app)

    # Out of the schema, as in Chroma's: one route of four methods would give /openapi.json
    # four operations of one operationId (and a "Duplicate Operation ID" warning).
    @app.api_route(
        "/api/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False
    )
    def v1_gone(rest: str) -> Response:
        return error_response(410, "Unimplemented", "The v1 API is deprecated. Please use /v2 apis")

    @app.get(METRICS_PATH, include_in_schema=False)
    def metrics() -> Response:
        """Prometheus metrics of every worker (docs/operations.md, "Metrics")."""
        body, content_type = scrape(engine, Path(config.path))
        return Response(body, media_type=content_type)

    # Innermost first. Request metrics and the trace id of log lines are outermost (they see
    # refusals too); HEAD served as GET without the body (`head_requests`); then CORS for
    # `cors_allow_origins` (it answers their preflights, which carry no token, and marks
    # every answer to them, refusals too); then auth (or, without tokens, the browser
    # guard), which refuses from the headers alone, before any body is read; then a path
    # encoding a `/` (404, `path_guard`: after auth, so a token's scope is refused as
    # such); then a body that is not JSON (415); then the deadline on the whole body, the
    # body limit, the fast path.
    start_engine_metrics()
    app.add_middleware(FastPathMiddleware, api=app.state.api)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(ReceiveTimeoutMiddleware, timeout_s=config.request_timeout_s)
    app.add_middleware(JsonContentTypeMiddleware)
    app.add_middleware(EncodedSlashMiddleware)
    if config.tokens:
        open_paths = CONSOLE_PATHS | ({METRICS_PATH} if config.metrics_public else set())
        app.add_middleware(TokenAuthMiddleware, entries=config.tokens, open_paths=open_paths)
    elif not config.allow_unauthenticated:
        app.add_middleware(BrowserGuardMiddleware, allowed_origins=config.cors_allow_origins)
    if config.cors_allow_origins:
        app.add_middleware(
            CorsMiddleware, allow_origins=config.cors_allow_origins, unmarked_paths={METRICS_PATH}
        )
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(RequestMetricsMiddleware, routes=lambda: app.routes)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    # Each class is registered on its own: a handler found only through `Exception` would
    # run in Starlette's outermost middleware, which logs and re-raises the error.
    for handled in (
        ChromaError,
        RequestValidationError,
        HTTPException,
        TypeError,
        ValueError,
        OverflowError,
        IndexError,
    ):
        app.add_exception_handler(handled, any_error)
    app.add_exception_handler(Exception, any_error)


async def any_error(request: Request, exc: Exception) -> Response:
    """Chroma's error body for any exception a route raised."""
    if isinstance(exc, RequestValidationError):
        status, name, message = body_error(exc.errors())
    elif isinstance(exc, HTTPException) and exc.detail == FASTAPI_BODY_ERROR:
        status, name = 400, "InvalidArgumentError"
        message = f"Failed to parse the request body as JSON: {_parse_failure(exc.__cause__)}"
    elif isinstance(exc, HTTPException):
        name = "NotFoundError" if exc.status_code == 404 else "ChromaError"
        status, message = exc.status_code, str(exc.detail)
    else:
        status, name, message = exception_fields(exc, f"{request.method} {request.url.path}")
    return error_response(status, name, message)


# FastAPI's answer to a body its JSON parser failed on other than by a syntax error (bytes
# that are not UTF-8, nesting past Python's recursion limit), the error as its cause: given
# the words and error name the fast path's parser gives (Chroma's: InvalidArgumentError).
FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _parse_failure(cause: BaseException | None) -> str:
    if isinstance(cause, RecursionError):
        return "recursion limit exceeded"
    if isinstance(cause, UnicodeError):
        return "the body is not valid UTF-8"
    return str(cause) if cause is not None else "unreadable body"


def app_from_environment() -> FastAPI:
    """Factory used by uvicorn workers: the config travels in an environment variable.
    A worker killed by a fatal signal (SIGSEGV, SIGBUS, ...) first prints every thread's
    Python stack to stderr, the server's log. Python warnings (numpy's RuntimeWarning on
    overflowing vectors, ...) go through logging, so they take the log format too."""
    faulthandler.enable()
    logging.captureWarnings(True)
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        raise RuntimeError(f"{ENV_CONFIG} is not set; start the server with `huedb run`")
    return create_app(ServerConfig.from_json(raw))
