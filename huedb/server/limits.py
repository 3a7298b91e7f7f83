"""Request size limit as a pure ASGI middleware: 413 with a JSON body, never a reset socket."""

from __future__ import annotations

import asyncio

from huedb.errors import PayloadTooLargeError, RequestTimeoutError
from huedb.server.asgi import ASGIApp, Receive, Scope, Send
from huedb.server.error_body import send_exception
from huedb.server.json_numbers import NumberCounter

# A body's JSON numbers are bounded too (`json_numbers`): a body of `0,0,0,...` turned
# 38 MiB into 1.5 GB while parsed. One number per this many bytes of the body limit (2.6M
# at 40 MiB: ~330 MB; a number needs at least two bytes); embeddings as JSON text take
# 18-20 bytes a number as chromadb's clients write them, as base64 none.
BYTES_PER_VALUE = 16


class BodySizeLimitMiddleware:
    """Read the whole body first and refuse it with 413 once it passes `max_bytes`, or
    holds more than `max_bytes // BYTES_PER_VALUE` JSON numbers; bodies of over a quarter
    of those are handled one at a time (until their answer starts).

    Buffering (bounded by the limit) means the app never sees a partial body, and the
    refusal is a proper JSON response whether or not the client sent Content-Length.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_values = max_bytes // BYTES_PER_VALUE
        # Bodies of over a quarter of that many numbers are handled one at a time in a
        # worker: each may take ~330 MB while it is parsed.
        self._many_values = asyncio.Semaphore(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return
        chunks: list[bytes] = []
        seen = 0
        many = self.max_values // 4
        numbers: NumberCounter | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            # A number takes two bytes at least: a body under 2 x `many` bytes is not
            # counted; past that, counted as it arrives (refused before the rest is read).
            if numbers is not None:
                numbers.feed(chunk)
            elif seen > 2 * many:
                numbers = NumberCounter()
                numbers.feed(b"".join(chunks))
            if numbers is not None and numbers.total > self.max_values:
                await send_exception(send, self._too_many_values(), "request body")
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if numbers is None or numbers.total <= many:
            await self._serve(scope, receive, send, body)
            return
        await self._many_values.acquire()
        held = True

        async def send_releasing(message: dict) -> None:
            nonlocal held
            if held and message["type"] == "http.response.start":
                held = False  # the answer's bytes may go to a slow reader: let others in
                self._many_values.release()
            await send(message)

        try:
            await self._serve(scope, receive, send_releasing, body)
        finally:
            if held:
                self._many_values.release()

    async def _serve(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        """The app, given `body` as the whole request body."""
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_many_values(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"Request body holds too many JSON numbers: the limit is {self.max_values} (one "
            f"per {BYTES_PER_VALUE} bytes of the {self.max_bytes}-byte body limit); send "
            "fewer records or query embeddings per request, or embeddings as base64"
        )

    async def _reject(self, send: Send) -> None:
        too_large = PayloadTooLargeError(
            f"Request body too large: the limit is {self.max_bytes} bytes"
        )
        await send_exception(send, too_large, "request body")


class _SlowClient(Exception):
    pass


class ReceiveTimeoutMiddleware:
    """Answer 408 when the whole request body has not arrived within `timeout_s`.

    The deadline starts at the first `receive()` (right after the headers, auth passed) and
    bounds the sum of all chunks, so a client dripping one byte at a time is cut off too.
    Once the last chunk arrived, `receive()` (e.g. waiting for a disconnect) is not timed.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        deadline: float | None = None
        body_done = False

        async def timed_receive() -> dict:
            nonlocal deadline, body_done
            if body_done:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise _SlowClient from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracking_send)
        except _SlowClient:
            if not started:
                late = RequestTimeoutError(f"Request body not received within {self.timeout_s}s")
                # A client this slow is not kept: the connection ends after the 408.
                await send_exception(send, late, "request body", close=True)
