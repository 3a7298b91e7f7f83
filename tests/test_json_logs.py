"""`huedb run --log-format json` (issue 17, acceptance 2).

Every line the server writes (both workers and the supervisor) is one JSON object with
time, level, logger, message and trace_id; request lines add route, method, status and
duration_ms. The `chroma-trace-id` a request sends is on every line it causes (here the
engine's "loaded ... vectors" line of a first query, besides its request line); other
requests get a generated id. Token values and a unique string from a request body appear
on no line.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.http_checks import chroma_client, token_settings
from tests.servers import huedb_server

ADMIN, READER = "json-logs-admin-7f3", "json-logs-read-9q2"
TOKENS_ENV = {"HUEDB_AUTH_TOKENS": f"{ADMIN}:admin,{READER}:read-only"}
SECRET = "body-secret-5b8e1c"
DB = "/api/v2/tenants/default_tenant/databases/default_database"
QUERY_ROUTE = "/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}/query"


def test_json_log_lines_carry_trace_ids_and_no_secrets(tmp_path: Path) -> None:
    args = ("--workers", "2", "--log-format", "json")
    with huedb_server(tmp_path / "data", *args, env=TOKENS_ENV) as server:
        client = chroma_client(server.port, settings=token_settings(ADMIN))
        col = client.create_collection("logs")
        col.add(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], documents=[SECRET, "x"])
        col.get(where_document={"$contains": SECRET})
        with httpx.Client(base_url=server.url, headers={"x-chroma-token": READER}) as http:
            query = http.post(
                f"{DB}/collections/{col.id}/query",
                json={"query_embeddings": [[1.0, 0.0]], "n_results": 1, "include": []},
                headers={"chroma-trace-id": "trace-query-0001"},
            )
            assert query.status_code == 200
            refused = http.post(
                f"{DB}/collections/{col.id}/add",
                json={"ids": ["c"], "embeddings": [[1.0, 1.0]], "documents": [SECRET]},
                headers={"chroma-trace-id": "trace-refused-0002"},
            )
            assert refused.status_code == 403
            assert refused.headers["chroma-trace-id"] == "trace-refused-0002"
            missing = http.get(f"{DB}/collections/nope", headers={"chroma-trace-id": "t-404"})
            assert missing.status_code == 404
            assert missing.headers["chroma-trace-id"] == "t-404"
        log = server.log()

    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert len(lines) > 10
    for line in lines:
        assert {"time", "level", "logger", "message", "trace_id"} <= line.keys()
    requests = [line for line in lines if line["logger"] == "huedb.access"]
    for line in requests:
        assert {"route", "method", "status", "duration_ms"} <= line.keys()
        assert line["trace_id"] and "{" not in line["trace_id"]
    assert len({line["trace_id"] for line in requests}) == len(requests)

    traced = [line for line in lines if line["trace_id"] == "trace-query-0001"]
    assert {line["logger"] for line in traced} == {"huedb.access", "huedb.engine.index_cache"}
    request_line = next(line for line in traced if line["logger"] == "huedb.access")
    assert request_line["route"] == QUERY_ROUTE
    assert request_line["status"] == 200 and request_line["duration_ms"] > 0
    (refusal,) = [line for line in lines if line["trace_id"] == "trace-refused-0002"]
    assert refusal["status"] == 403 and refusal["method"] == "POST"

    for secret in (ADMIN, READER, SECRET):
        assert secret not in log
