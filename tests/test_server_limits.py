"""Security of `huedb run`: bad requests and limits.

Bad requests each get a 4xx JSON error, leave the data unchanged and the server up; body
limits give 413 (also for chunked bodies); extreme but valid requests are served; reset
when disabled is refused.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.http_checks import (
    DB,
    assert_error,
    ok,
    raw_http,
    snapshot,
)
from tests.servers import RunningServer, huedb_server

# --------------------------------------------------------------------------- bad requests

BODY_LIMIT = 2_000_000


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server without auth and with a 2 MB body limit."""
    data = tmp_path_factory.mktemp("bad") / "data"
    with huedb_server(data, "--max-body-bytes", str(BODY_LIMIT)) as server:
        yield server


def b64(values: list[float]) -> str:
    """Chroma's base64 encoding of a float32 vector."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def nested_where(depth: int) -> dict[str, Any]:
    """A valid-looking where clause nested `depth` levels of $and deep."""
    where: dict[str, Any] = {"i": 1}
    for _ in range(depth):
        where = {"$and": [where, {"i": {"$gte": 0}}]}
    return where


def bad_requests(cid: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(name, method, path, httpx kwargs) for requests that must get a 4xx error."""
    col = f"{DB}/collections/{cid}"
    js = {"content-type": "application/json"}

    def big_chunks() -> Iterator[bytes]:
        yield b'{"ids": ["big"], "embeddings": [['
        for _ in range(BODY_LIMIT // 50_000 + 10):
            yield b"1.0, " * 10_000
        yield b"1.0]]}"

    return [
        ("malformed JSON", "POST", f"{col}/add", {"content": b'{"ids": ["z"', "headers": js}),
        ("trailing garbage", "POST", f"{col}/get", {"content": b"{} {}", "headers": js}),
        ("not JSON at all", "POST", f"{col}/query", {"content": b"\xff\xfe", "headers": js}),
        ("JSON array body", "POST", f"{col}/add", {"json": [1, 2]}),
        ("ids not a list", "POST", f"{col}/add", {"json": {"ids": 5, "embeddings": [[1, 2, 3]]}}),
        (
            "embedding of strings",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [["a", "b", "c"]]}},
        ),
        ("missing embeddings", "POST", f"{col}/add", {"json": {"ids": ["z"]}}),
        (
            "n_results a string",
            "POST",
            f"{col}/query",
            {"json": {"query_embeddings": [[1, 0, 0]], "n_results": "many"}},
        ),
        (
            "oversized body",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["big"], "embeddings": [[1.0] * (BODY_LIMIT // 3)]}},
        ),
        (
            "wrong dimension add",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [[1, 2, 3, 4]]}},
        ),
        (
            "wrong dimension upsert",
            "POST",
            f"{col}/upsert",
            {"json": {"ids": ["a"], "embeddings": [[1, 2]]}},
        ),
        (
            "wrong dimension update",
            "POST",
            f"{col}/update",
            {"json": {"ids": ["a"], "embeddings": [[1, 2]]}},
        ),
        ("wrong dimension query", "POST", f"{col}/query", {"json": {"query_embeddings": [[1, 2]]}}),
        (
            "NaN literal",
            "POST",
            f"{col}/add",
            {"content": b'{"ids": ["z"], "embeddings": [[NaN, 1, 2]]}', "headers": js},
        ),
        (
            "Infinity literal in upsert",
            "POST",
            f"{col}/upsert",
            {"content": b'{"ids": ["a"], "embeddings": [[Infinity, 1, 2]]}', "headers": js},
        ),
        (
            "NaN in update",
            "POST",
            f"{col}/update",
            {"content": b'{"ids": ["a"], "embeddings": [[1, NaN, 2]]}', "headers": js},
        ),
        (
            "NaN query",
            "POST",
            f"{col}/query",
            {"content": b'{"query_embeddings": [[NaN, 0, 0]]}', "headers": js},
        ),
        (
            "NaN base64",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [b64([float("nan"), 1, 2])]}},
        ),
        (
            "float32 overflow",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [[1e39, 1, 2]]}},
        ),
        (
            "unknown collection add",
            "POST",
            f"{DB}/collections/00000000-0000-4000-8000-000000000001/add",
            {"json": {"ids": ["z"], "embeddings": [[1, 2, 3]]}},
        ),
        (
            "unknown collection get",
            "POST",
            f"{DB}/collections/00000000-0000-4000-8000-000000000001/get",
            {"json": {}},
        ),
        ("unknown collection name", "GET", f"{DB}/collections/no_such_collection", {}),
        ("unknown collection delete", "DELETE", f"{DB}/collections/no_such_collection", {}),
        ("unknown database", "GET", "/api/v2/tenants/default_tenant/databases/nope_db", {}),
        ("unknown tenant", "GET", "/api/v2/tenants/no_such_tenant", {}),
        ("invalid where operator", "POST", f"{col}/get", {"json": {"where": {"$foo": 1}}}),
        (
            "invalid where operand",
            "POST",
            f"{col}/get",
            {"json": {"where": {"i": {"$gt": "x"}}}},
        ),
        (
            "invalid where in delete",
            "POST",
            f"{col}/delete",
            {"json": {"where": {"i": {"$bogus": 1}}}},
        ),
        (
            "invalid where_document",
            "POST",
            f"{col}/query",
            {"json": {"query_embeddings": [[1, 0, 0]], "where_document": {"$bad": "x"}}},
        ),
        ("where depth 100", "POST", f"{col}/get", {"json": {"where": nested_where(100)}}),
        (
            "where depth 100 in delete",
            "POST",
            f"{col}/delete",
            {"json": {"where": nested_where(100)}},
        ),
        (
            "JSON nested 5000 deep",
            "POST",
            f"{col}/get",
            {"content": b'{"where":' + b"[" * 5000 + b"]" * 5000 + b"}", "headers": js},
        ),
        (
            "bad base64",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": ["!!!not-base64"]}},
        ),
        (
            "base64 not whole floats",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": ["AAAA"]}},
        ),
        (
            "non-UUID collection id",
            "POST",
            f"{DB}/collections/not-a-uuid/add",
            {"json": {"ids": ["z"], "embeddings": [[1, 2, 3]]}},
        ),
        ("non-UUID by-id", "GET", f"{DB}/collections/by-id/not-a-uuid", {}),
        ("non-UUID count", "GET", f"{DB}/collections/{cid[:-1]}/count", {}),
        ("negative limit", "POST", f"{col}/get", {"json": {"limit": -1}}),
        ("negative offset", "POST", f"{col}/get", {"json": {"offset": -5}}),
        ("negative list limit", "GET", f"{DB}/collections?limit=-1", {}),
        (
            "negative n_results",
            "POST",
            f"{col}/query",
            {"json": {"query_embeddings": [[1, 0, 0]], "n_results": -1}},
        ),
        ("empty ids add", "POST", f"{col}/add", {"json": {"ids": [], "embeddings": []}}),
        (
            "empty id string",
            "POST",
            f"{col}/add",
            {"json": {"ids": [""], "embeddings": [[1, 2, 3]]}},
        ),
        (
            "duplicate ids",
            "POST",
            f"{col}/upsert",
            {"json": {"ids": ["q", "q"], "embeddings": [[1, 2, 3], [1, 2, 3]]}},
        ),
        (
            "ids and embeddings differ in length",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["q", "r"], "embeddings": [[1, 2, 3]]}},
        ),
        (
            "mixed embedding types",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["q", "r"], "embeddings": [[1, 2, 3], b64([1, 2, 3])]}},
        ),
        ("empty query", "POST", f"{col}/query", {"json": {"query_embeddings": []}}),
        ("unknown include", "POST", f"{col}/get", {"json": {"include": ["passwords"]}}),
        ("distances in get", "POST", f"{col}/get", {"json": {"include": ["distances"]}}),
        (
            "nested metadata",
            "POST",
            f"{col}/add",
            {"json": {"ids": ["z"], "embeddings": [[1, 2, 3]], "metadatas": [{"a": {"b": 1}}]}},
        ),
        (
            "nested metadata update",
            "POST",
            f"{col}/update",
            {"json": {"ids": ["a"], "metadatas": [{"a": {"b": 1}}]}},
        ),
        ("nested collection metadata", "PUT", col, {"json": {"new_metadata": {"x": {"y": 1}}}}),
        ("bad collection name", "POST", f"{DB}/collections", {"json": {"name": "a"}}),
        (
            "bad space",
            "POST",
            f"{DB}/collections",
            {"json": {"name": "okname", "configuration": {"hnsw": {"space": "bogus"}}}},
        ),
        ("duplicate collection", "POST", f"{DB}/collections", {"json": {"name": "victim"}}),
        ("delete of an empty id list", "POST", f"{col}/delete", {"json": {"ids": []}}),
        ("v1 API", "GET", "/api/v1/heartbeat", {}),
        ("unknown route", "GET", "/api/v2/no/such/route", {}),
        ("method not allowed", "PATCH", f"{col}/add", {"json": {}}),
        (
            "oversized chunked body",
            "POST",
            f"{col}/add",
            {"content": big_chunks(), "headers": js},
        ),
    ]


def test_bad_requests_get_4xx_json_errors_and_change_nothing(plain_server: RunningServer) -> None:
    """Each bad request: 4xx, {"error", "message"} and a trace id; the data stays as it was."""
    with httpx.Client(base_url=plain_server.url, timeout=60) as client:
        cid = ok(client.post(f"{DB}/collections", json={"name": "victim"}))["id"]
        ok(
            client.post(
                f"{DB}/collections/{cid}/add",
                json={
                    "ids": ["a", "b", "c"],
                    "embeddings": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                    "documents": ["A", "B", "C"],
                    "metadatas": [{"i": 1}, {"i": 2}, None],
                },
            ),
            201,
        )
        before = snapshot(client)
        failures = []
        requests = bad_requests(cid)
        for name, method, path, kwargs in requests:
            try:
                r = client.request(method, path, **kwargs)
                assert_error(r, None)
            except (AssertionError, httpx.HTTPError, ValueError) as exc:
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
        assert not failures, "\n".join(failures)
        assert snapshot(client) == before
        assert ok(client.get("/api/v2/heartbeat"))["nanosecond heartbeat"] > 0
    assert plain_server.process.poll() is None
    assert len(requests) > 50


def test_body_limit_gives_413(plain_server: RunningServer) -> None:
    """A body over --max-body-bytes is refused with 413, by Content-Length or not."""
    url = f"{plain_server.url}{DB}/collections"
    body = {"name": "too_big", "metadata": {"blob": "x" * BODY_LIMIT}}
    assert_error(httpx.post(url, json=body, timeout=60), 413)
    # A declared Content-Length over the limit is refused before the body is read.
    head = (
        f"POST {DB}/collections HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {BODY_LIMIT + 1}\r\nConnection: close\r\n\r\n"
    )
    response = raw_http(plain_server.port, head.encode() + b'{"name": "declared"')
    assert response.startswith(b"HTTP/1.1 413 "), response[:300]
    assert b'"error"' in response and b"chroma-trace-id" in response.lower()
    # Just under the limit is fine.
    fits = {"name": "fits", "metadata": {"blob": "x" * (BODY_LIMIT - 200)}}
    assert httpx.post(url, json=fits, timeout=60).status_code == 200


def test_a_body_of_too_many_json_numbers_gives_413(plain_server: RunningServer) -> None:
    """A body's JSON numbers are bounded at one per 16 bytes of the body limit: each costs
    ~125 bytes while parsed, so 38 MiB of `0,0,...` in query_embeddings (a read-only
    token's request) took a worker from 81 to 1,536 MiB (review, 2026-12-08). Commas of
    text are no numbers: documents of prose pass."""
    limit = BODY_LIMIT // 16
    with httpx.Client(base_url=plain_server.url, timeout=60) as client:
        col = ok(client.post(f"{DB}/collections", json={"name": "many-values"}))
        path = f"{DB}/collections/{col['id']}"
        record = {"ids": ["a"], "embeddings": [[1, 0]]}
        ok(client.post(f"{path}/add", json=record), 201)

        def query_of(numbers: int) -> bytes:  # n_results, then the rest in one row
            row = b"[" + b",".join([b"0"] * (numbers - 1)) + b"]"
            return b'{"n_results": 1, "query_embeddings": [' + row + b"]}"

        headers = {"content-type": "application/json"}
        over = client.post(f"{path}/query", content=query_of(limit + 1), headers=headers)
        assert over.status_code == 413, over.text
        assert "too many JSON numbers: the limit is" in over.json()["message"]
        at = client.post(f"{path}/query", content=query_of(limit), headers=headers)
        assert at.status_code == 400 and "dimension" in at.json()["message"], at.text

        prose = "red, green, and blue, " * 60  # 180 commas a document
        documents = {
            "ids": [f"d{i}" for i in range(1_000)],
            "embeddings": [[1, 0]] * 1_000,
            "documents": [prose] * 1_000,
        }
        assert sum(d.count(",") for d in documents["documents"]) > limit
        ok(client.post(f"{path}/add", json=documents), 201)


def test_chunked_body_over_limit_gives_413(plain_server: RunningServer) -> None:
    """Without Content-Length the limit applies while streaming, and still answers 413."""

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "chunked", "metadata": {"blob": "'
        for _ in range(BODY_LIMIT // 100_000 + 2):
            yield b"x" * 100_000
        yield b'"}}'

    r = httpx.post(
        f"{plain_server.url}{DB}/collections",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert_error(r, 413)


def test_extreme_but_valid_requests_are_served(plain_server: RunningServer) -> None:
    """Huge n_results (up to Chroma's u32) is capped to the count, a larger one refused as
    Chroma's server refuses it; a get with 10^5 ids answers quickly."""
    with httpx.Client(base_url=plain_server.url, timeout=60) as client:
        col = ok(client.post(f"{DB}/collections", json={"name": "extreme"}))
        path = f"{DB}/collections/{col['id']}"
        ok(
            client.post(f"{path}/add", json={"ids": ["a", "b"], "embeddings": [[1, 0], [0, 1]]}),
            201,
        )
        for n in (2**31, 2**32 - 1):
            res = ok(
                client.post(f"{path}/query", json={"query_embeddings": [[1, 0]], "n_results": n})
            )
            assert res["ids"] == [["a", "b"]], n
        for n in (2**32, 10**20):
            for route, body in (
                ("query", {"query_embeddings": [[1, 0]], "n_results": n}),
                ("get", {"limit": n}),
                ("get", {"offset": n}),
                ("delete", {"where": {"k": 1}, "limit": n}),
            ):
                r = client.post(f"{path}/{route}", json=body)
                assert r.status_code == 422, (route, body, r.text)
                assert f"invalid value: integer `{n}`, expected u32" in r.json()["message"]
        ids = [f"id-{i:06d}" for i in range(10**5)] + ["b"]
        start = time.monotonic()
        got = ok(client.post(f"{path}/get", json={"ids": ids, "include": []}))
        assert got["ids"] == ["b"]
        assert time.monotonic() - start < 20
        assert ok(client.get(f"{path}/count")) == 2


def test_reset_when_disabled_is_refused_and_keeps_data(plain_server: RunningServer) -> None:
    """Without --allow-reset, POST /reset is a 4xx JSON error and deletes nothing."""
    with httpx.Client(base_url=plain_server.url, timeout=60) as client:
        col = ok(client.post(f"{DB}/collections", json={"name": "survivor"}))
        ok(
            client.post(
                f"{DB}/collections/{col['id']}/add", json={"ids": ["s"], "embeddings": [[1.0]]}
            ),
            201,
        )
        before = snapshot(client)
        assert_error(client.post("/api/v2/reset"), None)
        assert snapshot(client) == before


def test_reset_when_disabled_answers_403_like_chroma(plain_server: RunningServer) -> None:
    """chroma-compat.md: reset when not allowed is 403 (a 401 reads as a bad token)."""
    assert_error(httpx.post(f"{plain_server.url}/api/v2/reset", timeout=30), 403)
