"""Refuse a request whose path encodes a `/` (`%2F`): Starlette routes on the decoded path,
where it would separate segments, but a proxy matching the raw path (say, one denying
`/api/v2/admin` to the outside) sees one segment. Chroma's server routes on the raw path,
where no route has such a segment, so its answer is a 404 too; no tenant, database or
collection name can hold a `/`, so no valid request is refused."""

from __future__ import annotations

from huedb.server.asgi import ASGIApp, Receive, Scope, Send
from huedb.server.error_body import send_error

_ENCODED_SLASH = b"%2f"


class EncodedSlashMiddleware:
    """Answer 404 (NotFoundError) to a path holding `%2F` or `%2f`; pass the rest on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode()
            if _ENCODED_SLASH in raw.lower():
                await send_error(send, 404, "NotFoundError", "Not Found")
                return
        await self.app(scope, receive, send)
