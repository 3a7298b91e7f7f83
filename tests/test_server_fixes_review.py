"""Bodies and paths a review (2026-12-08) found mishandled, each now refused before
anything is stored, with Chroma's error shape:

- a configuration nested hundreds of levels deep was stored, then could not be echoed: its
  collection's GET failed forever, and at one depth every listing of its database did;
- a `delete` whose `where` nested ~400 levels deep answered 500 (a RecursionError) and
  dropped the connection, where 300 levels gave the filter's own 400;
- `NaN` / `Infinity` in a body (which JSON has no number for; Chroma's parser refuses
  them) were taken, and metadata stored without that key or with null;
- a path encoding a `/` (`%2F`) was routed as if it were one, past a proxy's prefix rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import huedb
from huedb.api.json_shape import MAX_JSON_DEPTH
from tests.servers import RunningServer, huedb_server

DB = "/api/v2/tenants/default_tenant/databases/default_database"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with huedb_server(tmp_path_factory.mktemp("review") / "data") as running:
        yield running


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def _deep_where(levels: int) -> dict[str, Any]:
    where: dict[str, Any] = {"k": 1}
    for _ in range(levels):
        where = {"$or": [where]}
    return where


def _error(response: httpx.Response, status: int, name: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == name, body
    return body["message"]


def _collection(http: httpx.Client, name: str) -> str:
    response = http.post(f"{DB}/collections", json={"name": name})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _names(http: httpx.Client) -> list[str]:
    response = http.get(f"{DB}/collections")
    assert response.status_code == 200, response.text
    return [c["name"] for c in response.json()]


@pytest.mark.parametrize("levels", [246, 247, 300, 2000])
def test_deeply_nested_configuration_is_refused_and_not_stored(
    http: httpx.Client, levels: int
) -> None:
    name = f"deep-config-{levels}"
    # As text: the JSON encoders refuse values this deep themselves.
    nested = '{"a": ' * levels + "1" + "}" * levels
    body = (
        f'{{"name": "{name}", "configuration": {{"embedding_function": '
        f'{{"type": "known", "name": "x", "config": {nested}}}}}}}'
    )
    response = _raw(http, "POST", f"{DB}/collections", body)
    message = _error(response, 400, "InvalidArgumentError")
    # refused by huedb's check, or past the JSON parser's own depth limit
    reasons = ("nested too deeply", "recursion limit exceeded", "depth limit exceeded")
    assert any(reason in message for reason in reasons), message
    assert name not in _names(http)  # not created, and the listing still answers
    assert http.get(f"{DB}/collections/{name}").status_code == 404


def test_deeply_nested_configuration_update_is_refused(http: httpx.Client) -> None:
    cid = _collection(http, "deep-update")
    config = {"embedding_function": {"type": "known", "name": "x", "config": _nested(300)}}
    response = http.put(f"{DB}/collections/{cid}", json={"new_configuration": config})
    assert "nested too deeply" in _error(response, 400, "InvalidArgumentError")
    echoed = http.get(f"{DB}/collections/deep-update")
    assert echoed.status_code == 200, echoed.text
    assert "deep-update" in _names(http)


def test_configuration_nested_within_the_limit_is_kept(http: httpx.Client) -> None:
    inner = _nested(MAX_JSON_DEPTH - 10)
    config = {"embedding_function": {"type": "known", "name": "x", "config": inner}}
    response = http.post(f"{DB}/collections", json={"name": "nested-ok", "configuration": config})
    assert response.status_code == 200, response.text
    got = http.get(f"{DB}/collections/nested-ok").json()
    assert got["configuration_json"]["embedding_function"]["config"] == inner
    assert "nested-ok" in _names(http)


@pytest.mark.parametrize("route", ["delete", "get"])
@pytest.mark.parametrize("levels", [70, 400, 470])
def test_deeply_nested_where_is_a_400_and_keeps_the_connection(
    http: httpx.Client, route: str, levels: int
) -> None:
    cid = _collection(http, f"deep-where-{route}-{levels}")
    added = http.post(
        f"{DB}/collections/{cid}/add", json={"ids": ["a"], "embeddings": [[1.0, 2.0]]}
    )
    assert added.status_code == 201, added.text
    response = http.post(f"{DB}/collections/{cid}/{route}", json={"where": _deep_where(levels)})
    message = _error(response, 400, "InvalidArgumentError")
    assert "nested too deeply" in message or "recursion limit exceeded" in message
    # the same keep-alive connection goes on, and nothing was deleted
    assert http.get(f"{DB}/collections/{cid}/count").json() == 1


def _raw(http: httpx.Client, method: str, path: str, text: str | bytes) -> httpx.Response:
    headers = {"content-type": "application/json"}
    content = text.encode() if isinstance(text, str) else text
    return http.request(method, path, content=content, headers=headers)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_bodies_are_refused(http: httpx.Client, token: str) -> None:
    name = f"nonfinite-{token.strip('-').lower()}-{token.startswith('-')}"
    create = f'{{"name": "{name}", "metadata": {{"x": {token}, "y": 1}}}}'
    message = _error(_raw(http, "POST", f"{DB}/collections", create), 400, "InvalidArgumentError")
    assert message.startswith("Failed to parse the request body as JSON"), message
    assert name not in _names(http)

    cid = _collection(http, name)
    modify = f'{{"new_metadata": {{"y": {token}, "z": 1}}}}'
    _error(_raw(http, "PUT", f"{DB}/collections/{cid}", modify), 400, "InvalidArgumentError")
    assert http.get(f"{DB}/collections/{name}").json()["metadata"] is None

    add = (
        '{"ids": ["a", "b"], "embeddings": [[1.0, 2.0], [3.0, 4.0]], '
        f'"metadatas": [{{"s": "a"}}, {{"x": {token}, "s": "b"}}]}}'
    )
    path = f"{DB}/collections/{cid}/add"
    assert "metadatas[1].x" in _error(_raw(http, "POST", path, add), 400, "InvalidArgumentError")
    in_list = (
        f'{{"ids": ["c"], "embeddings": [[1.0, 2.0]], "metadatas": [{{"l": [1.5, {token}]}}]}}'
    )
    upsert_path = f"{DB}/collections/{cid}/upsert"
    message = _error(_raw(http, "POST", upsert_path, in_list), 400, "InvalidArgumentError")
    assert "metadatas[0].l[1]" in message
    assert http.get(f"{DB}/collections/{cid}/count").json() == 0


def test_finite_metadata_still_written(http: httpx.Client) -> None:
    cid = _collection(http, "finite-metadata")
    body = {
        "ids": ["a", "b"],
        "embeddings": [[1.0, 2.0], [3.0, 4.0]],
        "metadatas": [{"x": 1.5, "l": [1.0, 2.5]}, None],
    }
    assert http.post(f"{DB}/collections/{cid}/add", json=body).status_code == 201
    got = http.post(f"{DB}/collections/{cid}/get", json={"include": ["metadatas"]}).json()
    assert got["metadatas"] == [{"x": 1.5, "l": [1.0, 2.5]}, None]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2%2Fadmin/stats",
        "/api/v2%2fheartbeat",
        "/api/v2/tenants/default_tenant%2Fdatabases%2Fdefault_database/collections",
    ],
)
def test_a_path_encoding_a_slash_is_not_found(http: httpx.Client, path: str) -> None:
    response = http.get(httpx.URL(path))
    _error(response, 404, "NotFoundError")
    assert response.headers.get("chroma-trace-id")


def test_plain_paths_still_routed(http: httpx.Client) -> None:
    assert http.get("/api/v2/heartbeat").status_code == 200
    assert http.get(f"{DB}/collections").status_code == 200


def test_in_process_deep_filters_and_configuration_are_refused(tmp_path: Path) -> None:
    """The embedded client: a filter nested deeper than huedb compiles is a ValueError
    (chromadb's checks would format the whole value into their message), a deep
    configuration an InvalidArgumentError, and nothing is changed."""
    client = huedb.PersistentClient(path=str(tmp_path / "data"))
    col = client.create_collection("deep")
    col.add(ids=["a"], embeddings=[[1.0, 2.0]])
    for call in (
        lambda: col.get(where=_deep_where(500)),
        lambda: col.query(query_embeddings=[[1.0, 2.0]], where=_deep_where(500)),
        lambda: col.delete(where=_deep_where(500)),
        lambda: col.get(where_document={"$and": [_nested(300)] * 2}),
    ):
        with pytest.raises(ValueError, match="nested too deeply"):
            call()
    assert col.count() == 1
    deep = {"embedding_function": {"type": "known", "name": "x", "config": _nested(300)}}
    with pytest.raises(huedb.errors.InvalidArgumentError, match="nested too deeply"):
        client.create_collection("deeper", configuration=deep)
    assert [c.name for c in client.list_collections()] == ["deep"]
    client.close()


def test_a_body_that_is_not_utf8_is_an_invalid_argument(http: httpx.Client) -> None:
    """FastAPI's routes (creating a tenant here) answered ChromaError with FastAPI's words;
    the fast path's routes answered Chroma's InvalidArgumentError."""
    response = http.post(
        "/api/v2/tenants", content=b'{"name": "\xff"}', headers={"content-type": "application/json"}
    )
    message = _error(response, 400, "InvalidArgumentError")
    assert message.startswith("Failed to parse the request body as JSON")


def test_count_refuses_an_unknown_read_level(http: httpx.Client) -> None:
    cid = _collection(http, "read-levels")
    path = f"{DB}/collections/{cid}/count"
    for level in ("index_and_wal", "index_only", "index_and_bounded_wal"):
        assert http.get(path, params={"read_level": level}).json() == 0
    message = _error(http.get(path, params={"read_level": "bogus"}), 400, "InvalidArgumentError")
    assert message == (
        "Failed to deserialize query string: read_level: unknown variant `bogus`, expected one "
        "of `index_and_wal`, `index_only`, `index_and_bounded_wal`"
    )


@pytest.mark.parametrize("path", ["/api/v2/heartbeat", "/api/v2/version", f"{DB}/collections"])
def test_head_answers_as_get_without_a_body(http: httpx.Client, path: str) -> None:
    got, head = http.get(path), http.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert head.headers["content-type"] == got.headers["content-type"]
    missing = http.head(f"{DB}/collections/no-such-collection")
    assert missing.status_code == 404 and missing.content == b""
    assert missing.headers.get("chroma-trace-id")  # an error's headers, as its GET's
    assert http.head(f"{DB}/collections/x/add").status_code == 405  # a POST route


def test_an_int_list_with_a_value_beyond_int64_is_a_float_list(http: httpx.Client) -> None:
    """As Chroma's parser reads it (no int list holds 2**63): all floats, not a mixed list."""
    cid = _collection(http, "wide-ints")
    body = (
        '{"ids": ["a", "b"], "embeddings": [[1.0, 2.0], [3.0, 4.0]], '
        '"metadatas": [{"l": [9223372036854775808, 1]}, {"l": [9223372036854775807, 1]}]}'
    )
    assert _raw(http, "POST", f"{DB}/collections/{cid}/add", body).status_code == 201
    got = http.post(f"{DB}/collections/{cid}/get", json={"include": ["metadatas"]}).json()
    wide, fits = got["metadatas"][0]["l"], got["metadatas"][1]["l"]
    assert wide == [9.223372036854776e18, 1.0] and all(isinstance(v, float) for v in wide)
    assert fits == [9223372036854775807, 1] and all(isinstance(v, int) for v in fits)
    huge = '{"ids": ["c"], "embeddings": [[1.0, 2.0]], "metadatas": [{"l": [1e400, 1]}]}'
    assert _raw(http, "POST", f"{DB}/collections/{cid}/add", huge).status_code == 400


BODY_ROUTES = [
    ("POST", "/api/v2/tenants", {"name": "bom-tenant"}),
    ("POST", "/api/v2/tenants/default_tenant/databases", {"name": "bom-database"}),
    ("POST", f"{DB}/collections", {"name": "bom-collection"}),
    ("PUT", f"{DB}/collections/{{cid}}", {"new_name": "bom-renamed"}),
    ("POST", f"{DB}/collections/{{cid}}/fork", {"new_name": "bom-fork"}),
    ("POST", f"{DB}/collections/{{cid}}/delete", {"ids": ["a"]}),
    ("POST", f"{DB}/collections/{{cid}}/add", {"ids": ["b"], "embeddings": [[1.0, 2.0]]}),
    ("POST", f"{DB}/collections/{{cid}}/search", {"searches": [{}]}),
]


@pytest.mark.parametrize(("method", "route", "body"), BODY_ROUTES, ids=lambda v: str(v)[-12:])
def test_a_byte_order_mark_or_an_empty_body_is_refused_on_every_route(
    http: httpx.Client, method: str, route: str, body: dict[str, Any]
) -> None:
    """FastAPI's routes took a UTF-8 byte order mark (Python's parser skips it) and answered
    an empty body 422 "Field required"; Chroma's parser, and the fast path's, refuse both
    with 400. Nothing is written either way; the plain body is then accepted."""
    name = f"bom-{method.lower()}-{route.rsplit('/', 1)[-1].strip('{}')}"
    cid = _collection(http, name)
    http.post(f"{DB}/collections/{cid}/add", json={"ids": ["a"], "embeddings": [[0.0, 1.0]]})
    path = route.format(cid=cid)
    before = (_names(http), http.get(f"{DB}/collections/{cid}/count").json())
    text = orjson.dumps(body)
    for raw, reason in ((b"\xef\xbb\xbf" + text, ""), (b"", "EOF while parsing a value")):
        message = _error(_raw(http, method, path, raw), 400, "InvalidArgumentError")
        assert message.startswith("Failed to parse the request body as JSON: " + reason), message
        assert (_names(http), http.get(f"{DB}/collections/{cid}/count").json()) == before
    response = _raw(http, method, path, text)
    assert response.status_code in (200, 201), response.text


def test_an_integer_beyond_a_doubles_range_is_a_parse_error(http: httpx.Client) -> None:
    """Python's parser reads any integer; serde_json (Chroma's) refuses one past a double."""
    huge = "9" * 400
    body = f'{{"name": "huge-int", "metadata": {{"n": {huge}}}}}'
    message = _error(_raw(http, "POST", f"{DB}/collections", body), 400, "InvalidArgumentError")
    assert "beyond the range of a double" in message
    assert "huge-int" not in _names(http)
