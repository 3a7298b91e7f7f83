"""A query string Chroma's server cannot parse (a list's `limit` / `offset` that is not an
unsigned 32-bit integer, a missing parameter) is its 400 `InvalidArgumentError` with its
parser's words, on `huedb run` as on `chroma run` (they were 422 `ChromaError` bodies
naming "the JSON body")."""

from __future__ import annotations

import httpx

from tests import side_by_side

servers = side_by_side.servers

BASE = "/api/v2/tenants/default_tenant"
PATHS = (f"{BASE}/databases", f"{BASE}/databases/default_database/collections")
QUERIES = (
    "limit=abc",
    "limit=",
    "limit=-1",
    "limit=1.5",
    "limit=4294967296",
    "offset=99999999999",
    "offset=-3",
    "limit=2&offset=x",
    "limit=4294967295",
    "offset=0",
)


def _answers(url: str) -> list[tuple[int, object]]:
    with httpx.Client(base_url=url, timeout=30) as http:
        return [
            (r.status_code, r.json())
            for r in (http.get(f"{path}?{query}") for path in PATHS for query in QUERIES)
        ]


def test_query_string_errors_as_chroma(servers: dict[str, str]) -> None:
    expected = _answers(servers["chroma"])
    assert _answers(servers["huedb"]) == expected
    assert expected[0] == (
        400,
        {
            "error": "InvalidArgumentError",
            "message": "Failed to deserialize query string: limit: invalid digit found in string",
        },
    )
