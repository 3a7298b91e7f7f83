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

A request head is also bounded in size (`max_header_bytes`, 64 KiB): httptools joins a
header value or URL arriving in pieces with `bytes +=`, quadratic in the pieces and run on
the event loop, so one client sending a header of megabytes stalled every other request.
The httptools protocol counts the bytes fed to its parser outside a body (from the end of
one request's body to the end of the next head) and, past the limit, answers `431` (`414`
while still in the request line: a URL that long) with a JSON error and closes the
connection without parsing more. Inside a body, the bytes the parser gives back as no body
(a chunked body's sizes and extensions, and its trailers) are bounded the same way: past
`max_header_bytes` of them in a row the connection is closed (a trailer of megabytes, sent
after the 401 to a request without a token, stalled the event loop). h11 (not quadratic) bounds a
head still incomplete itself: its limit is set to the same value (uvicorn answers 400 past
it).
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
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol as UvicornProtocol

    PARSER = "h11"

HEAD, REST_OF_BODY = "head", "rest of body"
# At shutdown, how long a response already handed to an idle TLS connection may take to
# leave its write buffer before the connection is dropped.
SHUTDOWN_SEND_S = 10.0


@functools.cache
def configured() -> ServerConfig:
    """The configuration `huedb run` passed on to this process (defaults without one)."""
    raw = os.environ.get(ENV_CONFIG)
    return ServerConfig.from_json(raw) if raw else ServerConfig()


def closing_response(status: int, reason: str, name: str, message: str) -> bytes:
    """A complete response with Chroma's JSON error body, closing the connection."""
    body = error_json(name, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"chroma-trace-id: {TRACE_ID}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def request_timeout_response(timeout_s: float) -> bytes:
    """The `408` of a request head not complete within `timeout_s`."""
    late = RequestTimeoutError(f"Request line and headers not received within {timeout_s:g}s")
    status, name, message = http_error(late)
    return closing_response(status, "Request Timeout", name, message)


def head_too_large_response(max_bytes: int, in_request_line: bool) -> bytes:
    """The `431` of a request head (request line and headers) over `max_bytes`, or `414`
    when its request line alone is (a URL that long)."""
    limit = f"the limit is {max_bytes} bytes (max_header_bytes)"
    if in_request_line:
        message = f"Request line too long: {limit}"
        return closing_response(414, "URI Too Long", "ChromaError", message)
    message = f"Request line and headers too large: {limit}"
    return closing_response(431, "Request Header Fields Too Large", "ChromaError", message)


class HeadDeadline:
    """Mixin for a uvicorn HTTP protocol: close connections slow to send a request head."""

    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = configured()
        self.header_timeout_s, self.request_timeout_s = (
            config.header_timeout_s,
            config.request_timeout_s,
        )
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

    def shutdown(self) -> None:
        """The server's shutdown: as uvicorn's, and an idle TLS connection is dropped at
        once. Closing it waits for the client's answer to TLS's close_notify, up to asyncio's
        `ssl_shutdown_timeout` (30 s), and an idle keep-alive client in a connection pool
        does not read: every such connection held SIGTERM's exit that long."""
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()  # type: ignore[misc]
        if idle and self.transport.get_extra_info("sslcontext") is not None:
            self._abort_once_sent(self.loop.time() + SHUTDOWN_SEND_S)

    def _abort_once_sent(self, give_up_at: float) -> None:
        """Abort the connection once its last response left the write buffer (uvicorn
        counts a response complete when handed to the transport), or at `give_up_at`."""
        if self.transport.get_write_buffer_size() and self.loop.time() < give_up_at:
            self.loop.call_later(0.05, self._abort_once_sent, give_up_at)
        else:
            self.transport.abort()

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


class HeadSizeLimit:
    """Mixin for uvicorn's httptools protocol: refuse a request head over `max_header_bytes`
    with 431 (414 for a request line) before the parser joins more of it (module doc)."""

    transport: asyncio.Transport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = configured().max_header_bytes
        self._head_bytes = 0  # fed to the parser since the last head was complete
        self._line_done = False  # a line end was among them: past the request line
        self._in_body = False  # between a head's end and its message's end
        self._framing_bytes = 0  # fed inside a body since the parser last gave body bytes
        self._gave_body = False

    def data_received(self, data: bytes) -> None:
        while data and not self.transport.is_closing():
            if self._in_body:
                data = self._feed_body(data)
                continue
            room = self.max_header_bytes - self._head_bytes
            if room <= 0:
                refusal = head_too_large_response(self.max_header_bytes, not self._line_done)
                self.transport.write(refusal)
                self.transport.close()
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            self._line_done = self._line_done or b"\n" in piece
            super().data_received(piece)

    def _feed_body(self, data: bytes) -> bytes:
        """Feed body bytes, at most `max_header_bytes` of them in a row that the parser gives
        back as no body (chunk sizes and extensions, trailers: httptools joins a trailer
        with `bytes +=` too); past that the connection is closed. Returns what is left."""
        room = self.max_header_bytes - self._framing_bytes
        if room <= 0:
            self.transport.close()
            return b""
        piece, rest = data[:room], data[room:]
        self._gave_body = False
        self._framing_bytes += len(piece)
        super().data_received(piece)
        if self._gave_body:
            self._framing_bytes = 0
        return rest

    def on_body(self, body: bytes) -> None:
        self._gave_body = True
        super().on_body(body)

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._head_bytes = 0
        self._line_done = False
        self._framing_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()


if PARSER == "httptools":

    class HeadDeadlineProtocol(HeadDeadline, HeadSizeLimit, UvicornProtocol):
        """uvicorn's httptools protocol with the head deadline and size limit, for `http=`."""

else:

    class HeadDeadlineProtocol(HeadDeadline, UvicornProtocol):
        """uvicorn's h11 protocol with the head deadline, and h11's own head limit set to
        `max_header_bytes`, for `http=`."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn = h11.Connection(h11.SERVER, configured().max_header_bytes)
