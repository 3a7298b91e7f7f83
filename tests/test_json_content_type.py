"""A request body declared as something other than JSON is Chroma's 415 on every route that
reads one, on `huedb run` as on `chroma run`; JSON types (with parameters, `+json`) and a
body without a Content-Type are read as JSON by both."""

from __future__ import annotations

import json

import httpx

from tests import side_by_side

servers = side_by_side.servers

DB = "/api/v2/tenants/default_tenant/databases/default_database"
CONTENT_TYPES = (
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/vnd.api+json",
    None,
)


def _answers(url: str) -> list[tuple[str, str | None, int, object]]:
    out = []
    with httpx.Client(base_url=url, timeout=30) as http:
        for n, content_type in enumerate(CONTENT_TYPES):
            headers = {} if content_type is None else {"content-type": content_type}
            created = http.post(
                f"{DB}/collections",
                content=json.dumps({"name": f"ct-{n}"}),
                headers=headers,
            )
            body = created.json()
            out.append(("create", content_type, created.status_code, body.get("error")))
            if created.status_code != 200:
                continue
            path = f"{DB}/collections/{body['id']}"
            for op, payload in (
                ("add", {"ids": ["a"], "embeddings": [[1.0, 2.0]]}),
                ("get", {}),
                ("query", {"query_embeddings": [[1.0, 2.0]], "n_results": 1}),
            ):
                r = http.post(f"{path}/{op}", content=json.dumps(payload), headers=headers)
                out.append(
                    (op, content_type, r.status_code, r.json() if r.status_code >= 400 else None)
                )
            refused = http.post(
                f"{path}/add",
                content=json.dumps({"ids": ["b"], "embeddings": [[1.0, 2.0]]}),
                headers={"content-type": "text/plain"},
            )
            out.append(("add text/plain", content_type, refused.status_code, refused.json()))
    return out


def test_content_types_as_chroma(servers: dict[str, str]) -> None:
    expected = _answers(servers["chroma"])
    assert _answers(servers["huedb"]) == expected
    assert ("create", "text/plain", 415, "ChromaError") in expected


def test_the_first_of_two_content_types_decides(servers: dict[str, str]) -> None:
    """Two Content-Type headers: the first is the one the routes read (and Chroma's)."""
    answers = {}
    for name, url in servers.items():
        with httpx.Client(base_url=url, timeout=30) as http:
            request = http.build_request(
                "POST", f"{DB}/collections", content=json.dumps({"name": f"two-{name}"})
            )
            for pair in (
                (b"text/plain", b"application/json"),
                (b"application/json", b"text/plain"),
            ):
                request.headers.pop("content-type", None)
                raw = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-type"]
                raw += [(b"content-type", pair[0]), (b"content-type", pair[1])]
                request = httpx.Request("POST", request.url, headers=raw, content=request.content)
                answers.setdefault(name, []).append(http.send(request).status_code)
    assert answers["huedb"] == answers["chroma"]
    assert answers["chroma"][0] == 415
