"""Request bodies must be JSON, as Chroma's server takes them: a body sent with another
Content-Type is refused with its 415, before anything reads it."""

from __future__ import annotations

from huedb.server.asgi import ASGIApp, Receive, Scope, Send
from huedb.server.error_body import send_error

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
NOT_JSON = "Expected request with `Content-Type: application/json`"


def is_json_media_type(value: bytes) -> bool:
    """`application/json` or an `application/*+json` type, parameters aside."""
    essence = value.split(b";", 1)[0].strip().lower()
    return essence == b"application/json" or (
        essence.startswith(b"application/") and essence.endswith(b"+json")
    )


class JsonContentTypeMiddleware:
    """Refuse (415, Chroma's message) an API request whose body is declared as something
    other than JSON; a body without a Content-Type is read as JSON, as Chroma reads it (the
    header is added for the routes behind)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _BODY_METHODS
            and scope["path"].startswith("/api/")
        ):
            headers = dict(scope["headers"])
            # the first, as the routes behind read it (a dict keeps the last)
            declared = next((v for k, v in scope["headers"] if k == b"content-type"), None)
            has_body = headers.get(b"content-length", b"0") != b"0" or (
                b"transfer-encoding" in headers
            )
            if declared is not None and has_body and not is_json_media_type(declared):
                await send_error(send, 415, "ChromaError", NOT_JSON)
                return
            if declared is None and has_body:  # read as JSON, by every route
                scope = dict(scope)
                scope["headers"] = [*scope["headers"], (b"content-type", b"application/json")]
        await self.app(scope, receive, send)
