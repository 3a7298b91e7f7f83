"""Request bodies of the FastAPI routes parsed as strictly as Chroma's server parses them.

Starlette's `Request.json()` is Python's `json.loads` on bytes, which skips a UTF-8 byte
order mark and takes `NaN`, `Infinity` and numbers beyond a double's range (as infinity);
Chroma's parser (serde_json) refuses all three, and so does the fast path. The body is
decoded as strict UTF-8 first (a byte order mark is then a syntax error) and the
non-numbers refused; everything else parses as before. `StrictJsonRoute` gives each route
of a router such a request: a syntax error reaches `errors.body_error` as FastAPI's
`json_invalid`, the rest as its "error parsing the body" (`server.app`), both a 400.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is beyond the range of a double")
    return value


def _int_in_range(text: str) -> int:
    """An integer, refused past a double's range as serde_json refuses it (it reads an
    integer beyond 64 bits as a double)."""
    value = int(text)
    if abs(value) > sys.float_info.max:
        raise ValueError(f"{text[:40]}... is beyond the range of a double")
    return value


def loads_strict(body: bytes) -> Any:
    """`body` parsed as JSON text the way Chroma's parser takes it (see the module)."""
    return json.loads(
        body.decode("utf-8"),
        parse_constant=_refuse_constant,
        parse_float=_finite_float,
        parse_int=_int_in_range,
    )


class StrictJsonRequest(Request):
    """A request whose JSON body is parsed by `loads_strict`."""

    async def json(self) -> Any:
        """The body, parsed once."""
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose handler sees a `StrictJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        """FastAPI's handler, given the strict request."""
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
