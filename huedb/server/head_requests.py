"""HEAD on every GET route, as Chroma's router (axum) answers it: the GET's status and
headers (its Content-Length included), no body. FastAPI registers GET routes without HEAD,
so a load balancer's `HEAD /api/v2/heartbeat` got 405."""

from __future__ import annotations

from huedb.server.asgi import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    """Serve a HEAD request as its GET, the response's body left out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # only the last (empty) body message is sent
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
