"""Without tokens, answer only requests a web page cannot have made.

A server without tokens serves anyone who reaches its port, so `huedb run` then listens on a
loopback address only (`server_config`). A web page the local user opens can still reach
it: a cross-site POST (a form, or `fetch` in no-cors mode) sends the user's browser to
127.0.0.1 blind, and DNS rebinding points a page's own name at 127.0.0.1 so that it reads
the answers too. Browsers mark both: a cross-origin request carries an `Origin` that is not
the server's, and a rebound one a `Host` that is the page's name. So, on such a server, a
request whose `Host` is not a loopback name or address, or whose `Origin` is not the
server's own, gets 403 before anything else runs. Clients that are not browsers send no
`Origin` and address the server by the name they were given (localhost, 127.0.0.1, ::1).

Not installed when tokens are set (a page cannot know them: they travel in headers, never
in cookies) or when `--allow-unauthenticated` opens the server to a network on purpose.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from huedb.errors import ChromaAuthError
from huedb.server.asgi import ASGIApp, Receive, Scope, Send
from huedb.server.error_body import send_exception
from huedb.server.server_config import is_loopback


def _host_name(authority: str) -> str:
    """The host of a `Host` header value (`name:port`, `[v6]:port`); "" when it cannot be
    parsed (`[::1` without its bracket), which is then no loopback name."""
    try:
        return urlsplit(f"//{authority}").hostname or ""
    except ValueError:
        return ""


def _origin_authority(origin: str) -> str | None:
    """The `host:port` of an `Origin` header value, None when it cannot be parsed (`http://[`:
    foreign, as any origin that is not the server's)."""
    try:
        return urlsplit(origin).netloc
    except ValueError:
        return None


class BrowserGuardMiddleware:
    """403 for a request addressed to another name than a loopback one (DNS rebinding), or
    sent from a page of another origin (a cross-site request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        origin = headers.get(b"origin")
        refusal = None
        if not is_loopback(_host_name(host)):
            refusal = (
                f"Host {host!r} is not a loopback name: a server without tokens answers only "
                "requests addressed to localhost, 127.0.0.1 or ::1"
            )
        elif origin is not None and _origin_authority(origin.decode("latin-1")) != host:
            refusal = (
                "a request from a web page of another origin: a server without tokens "
                "answers only its own pages and clients that are not browsers"
            )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        where = f"{scope['method']} {scope['path']}"
        await send_exception(send, ChromaAuthError(refusal), where)
