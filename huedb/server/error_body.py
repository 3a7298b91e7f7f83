"""Chroma's HTTP error body, written in one place for the app, the fast path and middlewares.

Every error response is `{"error": <wire name>, "message": ...}` with a `chroma-trace-id`
header; the status and wire name come from `huedb.errors.http_error`.
"""

from __future__ import annotations

import logging

import orjson
from starlette.responses import Response

from huedb.errors import http_error
from huedb.server.asgi import Send
from huedb.server.log_context import TRACE_ID as REQUEST_TRACE_ID

logger = logging.getLogger(__name__)

TRACE_ID = "0" * 32  # outside a request (e.g. a 408 before any request head)


def current_trace_id() -> str:
    """The trace id of the request being answered (the one its log lines carry), else zeros."""
    return REQUEST_TRACE_ID.get() or TRACE_ID


def error_json(name: str, message: str) -> bytes:
    """The JSON bytes of Chroma's error body."""
    return orjson.dumps({"error": name, "message": message})


def error_response(status: int, name: str, message: str) -> Response:
    """Chroma's error body as a Starlette response (for FastAPI routes and handlers)."""
    return Response(
        error_json(name, message),
        status_code=status,
        media_type="application/json",
        headers={"chroma-trace-id": current_trace_id()},
    )


async def send_error(send: Send, status: int, name: str, message: str, close: bool = False) -> None:
    """Send Chroma's error body from a pure ASGI middleware; `close` ends the connection."""
    body = error_json(name, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"chroma-trace-id", current_trace_id().encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def exception_fields(exc: BaseException, where: str) -> tuple[int, str, str]:
    """`http_error` of an exception, logging it with its traceback when it is a 500."""
    status, name, message = http_error(exc)
    if status == 500:
        logger.error("unhandled error on %s", where, exc_info=exc)
    return status, name, message


async def send_exception(send: Send, exc: BaseException, where: str, close: bool = False) -> None:
    """Send the error body of an exception (status and name decided by its class)."""
    await send_error(send, *exception_fields(exc, where), close=close)
