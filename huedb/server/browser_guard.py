"""What web pages may do. Without tokens, answer only requests a web page cannot have made;
and let the pages of the origins `cors_allow_origins` lists call the API (CORS).

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

`cors_allow_origins` names the origins whose pages may call the API from a browser, as
Chroma's setting of that name does: `CorsMiddleware` answers their CORS preflights before
auth (a browser sends no token with a preflight) and marks every answer to them, errors
included, readable by the page. The guard lets a listed origin through too; the `Host`
check still holds. `"*"` (any page) needs tokens (`server_config`), so it never reaches the
guard.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

from huedb.errors import ChromaAuthError, http_error
from huedb.server.asgi import ASGIApp, Message, Receive, Scope, Send
from huedb.server.error_body import send_error, send_exception
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
    sent from a page of another origin (a cross-site request) than `allowed_origins`."""

    def __init__(self, app: ASGIApp, allowed_origins: Collection[str] = ()) -> None:
        self.app = app
        self.allowed_origins = frozenset(o.encode("latin-1") for o in allowed_origins)

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
        elif (
            origin is not None
            and origin not in self.allowed_origins
            and _origin_authority(origin.decode("latin-1")) != host
        ):
            refusal = (
                "a request from a web page of another origin: a server without tokens "
                "answers only its own pages, those of cors_allow_origins and clients that "
                "are not browsers"
            )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        where = f"{scope['method']} {scope['path']}"
        await send_exception(send, ChromaAuthError(refusal), where)


class CorsMiddleware(CORSMiddleware):
    """Starlette's CORS for the origins of `cors_allow_origins` (or `"*"`), every method and
    header: a page may send `Authorization`, `X-Chroma-Token`, `Content-Type` and any header
    its chromadb client is given (the preflight's answer names the headers it asks for). No
    credentials (cookies): tokens travel in headers.

    A preflight from another origin is not answered here: it goes on, as any request, to the
    guard or auth, which refuse it (403 / 401), or to the router (405 on open paths).

    Answers on `unmarked_paths` are never marked: `/metrics`, which a Prometheus (not a
    browser) reads, may be open (`metrics_public`), and a page must not read every tenant's
    collection names from it through its visitors' browsers.

    An unexpected error (500) is answered here too, marked: Starlette answers it in its
    outermost middleware, outside this one, which then only logs it and raises it again."""

    def __init__(
        self,
        app: ASGIApp,
        allow_origins: Collection[str],
        unmarked_paths: Collection[str] = (),
    ) -> None:
        super().__init__(app, allow_origins=allow_origins, allow_methods=["*"], allow_headers=["*"])
        self._unmarked_paths = frozenset(unmarked_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._unmarked_paths:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if (
            scope["method"] == "OPTIONS"
            and origin is not None
            and not self.is_allowed_origin(origin)
        ):
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await super().__call__(scope, receive, watch)
        except Exception as exc:
            if not started:
                marked = functools.partial(self.send, send=watch, request_headers=headers)
                await send_error(marked, *http_error(exc))
            raise
