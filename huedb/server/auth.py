"""Token authentication, roles and tenant scopes, as a pure ASGI middleware.

Tokens come in `Authorization: Bearer <t>` or `X-Chroma-Token: <t>`. Each presented token is
hashed and compared with every configured digest in constant time; tokens are never logged.
No or an unknown token: 401; two different tokens too (which one counted would depend on
the order of the headers, and a proxy checking one header could be shown the other). A
token limited to a tenant (and databases) on a path outside them, or on a route that names
no tenant: 403. A read-only token on anything but a read: 403.
The app may open more exact paths (`open_paths`: the console's static files, whose page
asks for a token and sends it with every API call).
Everything is decided from the method, the path and the headers, before any body is read;
the token's entry is left in the scope (`TOKEN_KEY`) for `GET /api/v2/auth/identity`.
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
# Routes naming no tenant that a tenant-scoped token may call: they reveal nothing of any
# tenant (who the token is; the batch size limit).
SCOPED_OPEN = frozenset({("GET", "/api/v2/auth/identity"), ("GET", "/api/v2/pre-flight-checks")})
TENANTS_PREFIX = ("", "api", "v2", "tenants")
TOKEN_KEY = "huedb.token"
_READ_POST = re.compile(
    r"^/api/v2/tenants/[^/]+/databases/[^/]+/collections/[^/]+/(get|query|search)$"
)


def is_read(method: str, path: str) -> bool:
    """Requests a read-only token may make: GETs outside /admin, and POST get/query/search."""
    if path.startswith("/api/v2/admin"):
        return False
    return method in ("GET", "HEAD") or (method == "POST" and bool(_READ_POST.match(path)))


def presented_tokens(headers: list[tuple[bytes, bytes]]) -> set[str]:
    """The distinct tokens of the request headers (`Authorization: Bearer`, `X-Chroma-Token`;
    another Authorization scheme, e.g. a proxy's Basic, carries none)."""
    tokens = set()
    for name, value in headers:
        lname = name.lower()
        if lname == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                tokens.add(token.strip())
        elif lname == b"x-chroma-token" and value.strip():
            tokens.add(value.decode("latin-1").strip())
    return tokens


def entry_of(token: str | None, entries: list[TokenEntry]) -> TokenEntry | None:
    """The configured entry of a token, comparing against every entry (constant time per
    entry; the configuration never holds one token twice with different scopes)."""
    if token is None:
        return None
    presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
    found = None
    for entry in entries:
        if hmac.compare_digest(presented, entry.digest):
            found = entry
    return found


def in_scope(entry: TokenEntry, method: str, path: str) -> bool:
    """Whether a request stays inside the token's tenant (and databases).

    The path is split into segments exactly as the router matches it (`scope["path"]`,
    percent-decoded, one `{param}` per segment). A scoped token reaches only
    `/api/v2/tenants/<its tenant>/...`, and with databases only `GET /tenants/<tenant>` and
    `/tenants/<tenant>/databases/<one of them>/...`; empty and dot segments are refused.
    """
    if entry.tenant is None or (method, path) in SCOPED_OPEN:
        return True
    parts = path.split("/")
    if tuple(parts[:4]) != TENANTS_PREFIX or len(parts) < 5 or parts[4] != entry.tenant:
        return False
    if any(part in ("", ".", "..") for part in parts[4:]):
        return False
    if entry.databases is None:
        return True
    if len(parts) == 5:
        return method == "GET"
    return len(parts) >= 7 and parts[5] == "databases" and parts[6] in entry.databases


def scope_refusal(entry: TokenEntry) -> str:
    """The 403 message for a request outside a token's scope (names no secret)."""
    where = f"tenant {entry.tenant!r}"
    if entry.databases is not None:
        where += f", databases {', '.join(entry.databases)}"
    return f"Forbidden: this token is limited to {where}"


class TokenAuthMiddleware:
    """Reject requests without a valid token; keep scoped tokens in their tenant and
    databases; restrict read-only tokens to reads."""

    def __init__(
        self, app: ASGIApp, entries: list[TokenEntry], open_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.entries = entries
        self.open_paths = OPEN_PATHS | open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        tokens = presented_tokens(scope["headers"])
        if len(tokens) > 1:
            two = AuthorizationError(
                "Unauthorized: the request carries two different tokens; send one token, "
                "in Authorization: Bearer or in X-Chroma-Token"
            )
            await send_exception(send, two, "auth")
            return
        entry = entry_of(next(iter(tokens), None), self.entries)
        if entry is None:
            missing = AuthorizationError("Unauthorized: missing or invalid token")
            await send_exception(send, missing, "auth")
            return
        method, path = scope["method"], scope["path"]
        if not in_scope(entry, method, path):
            await send_exception(send, ChromaAuthError(scope_refusal(entry)), "auth")
            return
        if entry.role != "admin" and not is_read(method, path):
            forbidden = ChromaAuthError("Forbidden: this token is read-only")
            await send_exception(send, forbidden, "auth")
            return
        scope[TOKEN_KEY] = entry
        await self.app(scope, receive, send)
