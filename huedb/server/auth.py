"""Token authentication and roles, as a pure ASGI middleware.

Tokens come in `Authorization: Bearer <t>` or `X-Chroma-Token: <t>`. Each presented token is
hashed and compared with every configured digest in constant time; tokens are never logged.
No or an unknown token: 401. A read-only token on anything but a read: 403.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from huedb.errors import AuthorizationError, ChromaAuthError
from huedb.server.asgi import ASGIApp, Receive, Scope, Send
from huedb.server.error_body import send_exception
from huedb.server.server_config import TokenEntry

OPEN_PATHS = frozenset(
    {
        "/api/v2",
        "/api/v2/",
        "/api/v2/heartbeat",
        "/api/v2/version",
        "/api/v2/healthcheck",
        "/docs",
        "/docs/oauth2-redirect",
        "/openapi.json",
    }
)
_READ_POST = re.compile(r"^/api/v2/tenants/[^/]+/databases/[^/]+/collections/[^/]+/(get|query)$")


def is_read(method: str, path: str) -> bool:
    """Requests a read-only token may make: GETs outside /admin, and POST get/query."""
    if path.startswith("/api/v2/admin"):
        return False
    return method in ("GET", "HEAD") or (method == "POST" and bool(_READ_POST.match(path)))


def presented_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token in the request headers, if any."""
    for name, value in headers:
        lname = name.lower()
        if lname == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif lname == b"x-chroma-token" and value.strip():
            return value.decode("latin-1").strip()
    return None


def role_of(token: str | None, entries: list[TokenEntry]) -> str | None:
    """The role of a token, comparing against every entry (constant time per entry)."""
    if token is None:
        return None
    presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
    role = None
    for entry in entries:
        if hmac.compare_digest(presented, entry.digest):
            role = entry.role
    return role


class TokenAuthMiddleware:
    """Reject requests without a valid token; restrict read-only tokens to reads."""

    def __init__(self, app: ASGIApp, entries: list[TokenEntry]) -> None:
        self.app = app
        self.entries = entries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        role = role_of(presented_token(scope["headers"]), self.entries)
        if role is None:
            missing = AuthorizationError("Unauthorized: missing or invalid token")
            await send_exception(send, missing, "auth")
            return
        if role != "admin" and not is_read(scope["method"], scope["path"]):
            forbidden = ChromaAuthError("Forbidden: this token is read-only")
            await send_exception(send, forbidden, "auth")
            return
        await self.app(scope, receive, send)
