"""The data-plane routes (add, update, upsert, get, query) served without FastAPI's routing.

FastAPI's route matching, dependency solving and body handling cost about 1.5 ms of CPU
per request here, more than a query itself. This pure ASGI middleware sits inside auth and
the body limit: it matches the five hot paths, validates the body with the same pydantic
models straight from the JSON bytes, calls the same handlers as the FastAPI routes (which
stay registered, so the OpenAPI schema is unchanged) in a worker thread, and answers with
the same bodies and errors. Everything else goes on to FastAPI.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from huedb.api.local import LocalAPI
from huedb.errors import body_error
from huedb.server import routes, wire
from huedb.server.asgi import ASGIApp, Receive, Scope, Send
from huedb.server.error_body import send_error, send_exception

_PATH = re.compile(
    r"^/api/v2/tenants/(?P<tenant>[^/]+)/databases/(?P<database>[^/]+)/collections/(?P<cid>[^/]+)/"
    r"(?P<op>add|update|upsert|get|query)$"
)
Handler = Callable[[LocalAPI, str, str, str, Any], dict[str, Any]]
_ROUTES: dict[str, tuple[type[BaseModel], Handler, int]] = {
    "add": (wire.AddRecords, routes.run_add, 201),
    "update": (wire.UpdateRecords, routes.run_update, 200),
    "upsert": (wire.AddRecords, routes.run_upsert, 200),
    "get": (wire.GetRecords, routes.run_get, 200),
    "query": (wire.QueryRecords, routes.run_query, 200),
}


class FastPathMiddleware:
    """Serve POST .../{add,update,upsert,get,query}; pass every other request on."""

    def __init__(self, app: ASGIApp, api: LocalAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _PATH.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        model, handler, ok_status = _ROUTES[match["op"]]
        raw = await _read_body(receive)
        if raw is None:
            return
        try:
            body = model.model_validate_json(raw)
        except ValidationError as exc:
            errors = [e | {"loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
            await send_error(send, *body_error(errors))
            return
        try:
            result = await run_in_threadpool(
                handler, self.api, match["tenant"], match["database"], match["cid"], body
            )
        except Exception as exc:  # mapped exactly as the app's exception handlers do
            await send_exception(send, exc, f"POST {scope['path']}")
            return
        await _send(send, ok_status, result)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, status: int, payload: Any) -> None:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
