"""The JSON response of every route: orjson bytes, as FastAPI's deprecated `ORJSONResponse`."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """`JSONResponse` rendered by orjson (non-string dict keys and numpy arrays allowed)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
