"""uvicorn's HTTP protocols with a deadline on each request's head (request line and headers).

uvicorn bounds neither the time to send a request head nor a connection that sends
nothing: its keep-alive timer is armed only after a response and any byte cancels it. So a
client sending its headers a byte at a time (slowloris) kept a socket open for as long as
it liked. The subclasses here add one timer per connection:

- from the connection's start, and from the first byte after each response, the request
  head must be complete within `header_timeout_s`; otherwise the connection is closed,
  after a `408` JSON error when part of a head had arrived (a connection that sent nothing
  is closed silently, as uvicorn closes an idle keep-alive connection);
- after a response sent before the request's body was read (401, 403, 413), the rest of
  that body and the next head must arrive within `request_timeout_s`, then it is closed.

While a request is being served the timer is off: its body has the app's deadline
(`limits.ReceiveTimeoutMiddleware`), and an idle keep-alive connection uvicorn's
`timeout_keep_alive`. This relies on uvicorn's protocols keeping the current request in
`self.cycle`, with `response_complete` and `more_body` (true of h11 and httptools from 0.29
to 0.54); `tests/test_server_timeouts.py` checks it against the installed version.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from huedb.errors import RequestTimeoutError, http_error
from huedb.server.error_body import TRACE_ID, error_json
from huedb.server.server_config import ENV_CONFIG, ServerConfig

# The protocol uvicorn's "auto" picks: httptools when it is installed, else h11.
try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as UvicornProtocol

    PARSER = "httptools"
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as UvicornProtocol

    PARSER = "h11"

HEAD, REST_OF_BODY = "head", "rest of body"


@functools.cache
def configured_timeouts() -> tuple[float, float]:
    """(header, body) timeouts of this process, from the configuration `huedb run` passed on."""
    raw = os.environ.get(ENV_CONFIG)
    config = ServerConfig.from_json(raw) if raw else ServerConfig()
    return config.header_timeout_s, config.request_timeout_s


def request_timeout_response(timeout_s: float) -> bytes:
    """A complete `408` response with Chroma's JSON error body, closing the connection."""
    late = RequestTimeoutError(f"Request line and headers not received within {timeout_s:g}s")
    status, name, message = http_error(late)
    body = error_json(name, message)
    head = (
        f"HTTP/1.1 {status} Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"chroma-trace-id: {TRACE_ID}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class HeadDeadline:
    """Mixin for a uvicorn HTTP protocol: close connections slow to send a request head."""

    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s, self.request_timeout_s = configured_timeouts()
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: tuple[object, str | None] = (None, None)
        self._bytes_waited = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._watch(got_bytes=False)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(got_bytes=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def _watch(self, got_bytes: bool) -> None:
        """(Re)arm the timer when what the connection waits for has changed."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            what = None  # a request is being served
        elif cycle is not None and cycle.more_body:
            what = REST_OF_BODY  # answered before its body was read
        else:
            what = HEAD
        if (cycle, what) != self._waiting_for:
            self._stop()
            self._waiting_for = (cycle, what)
            self._bytes_waited = False
            if what is not None:
                timeout = self.header_timeout_s if what == HEAD else self.request_timeout_s
                self._deadline = self.loop.call_later(timeout, self._too_late)
        self._bytes_waited |= got_bytes

    def _stop(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._waiting_for[0] is not self.cycle:
            return
        if self._waiting_for[1] == HEAD and self._bytes_waited:
            self.transport.write(request_timeout_response(self.header_timeout_s))
        self.transport.close()


class HeadDeadlineProtocol(HeadDeadline, UvicornProtocol):
    """uvicorn's HTTP protocol (httptools or h11) with the head deadline, for `http=`."""
