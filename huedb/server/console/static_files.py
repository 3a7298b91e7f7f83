"""GET/HEAD of the console's static files: content types, an ETag, revalidation, and a
Content-Security-Policy that allows scripts, styles and requests from this origin only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

from fastapi import APIRouter, Request
from fastapi.responses import Response

from huedb.errors import NotFoundError
from huedb.server.console import PREFIX, STATIC_DIR, STATIC_NAMES

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Revalidated on every load (a cheap 304): an upgraded server never mixes old and new modules.
CACHE_CONTROL = "no-cache"

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class StaticFile:
    """One file's bytes, content type and ETag."""

    body: bytes
    content_type: str
    etag: str


@cache
def static_file(name: str) -> StaticFile:
    """A console file, read once per process."""
    if name not in STATIC_NAMES:
        raise NotFoundError(f"{PREFIX}/{name} does not exist")
    path = STATIC_DIR / name
    body = path.read_bytes()
    content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return StaticFile(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def file_response(request: Request, name: str) -> Response:
    """The file, or 304 when the browser's copy is current."""
    found = static_file(name)
    headers = {
        "ETag": found.etag,
        "Cache-Control": CACHE_CONTROL,
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        # a page that opened the console keeps no handle on its window (it could send the
        # signed-in tab to a look-alike sign-in page)
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else found.body
    headers["Content-Length"] = str(len(found.body))
    return Response(body, media_type=found.content_type, headers=headers)


@router.api_route(PREFIX, methods=["GET", "HEAD"])
@router.api_route(PREFIX + "/", methods=["GET", "HEAD"])
def console_page(request: Request) -> Response:
    """The console's single page."""
    return file_response(request, "index.html")


@router.api_route(PREFIX + "/{name}", methods=["GET", "HEAD"])
def console_file(request: Request, name: str) -> Response:
    """A module, stylesheet or image of the console."""
    return file_response(request, name)
