"""Request size limit as a pure ASGI middleware: 413 with a JSON body, never a reset socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from huedb.server.auth import ASGIApp, Scope, send_json_error


class _TooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuse bodies larger than `max_bytes`, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Callable) -> None:
        await send_json_error(
            send,
            413,
            "ChromaError",
            f"Request body too large: the limit is {self.max_bytes} bytes",
        )


class _SlowClient(Exception):
    pass


class ReceiveTimeoutMiddleware:
    """Answer 408 when a client takes longer than `timeout_s` to send its request body."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def timed_receive() -> dict:
            try:
                return await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                raise _SlowClient from None

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracking_send)
        except _SlowClient:
            if not started:
                await send_json_error(
                    send, 408, "ChromaError", f"Request body not received within {self.timeout_s}s"
                )
