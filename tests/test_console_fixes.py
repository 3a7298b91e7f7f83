"""Console fixes, in real headless Chromium against `huedb run` (tests/browser.py).

1. Integers beyond 2**53 (nanosecond timestamps) are shown and filtered on exactly: the
   console parsed answers and the filter editor with JSON.parse, so 1796434396980118950 and
   ...951 both showed as ...9000 and a filter on either matched nothing (or the other record).
2. No page of the server loads anything from another origin: FastAPI's /docs loaded Swagger
   UI from a CDN into the origin where the console keeps its token; /docs, /redoc and
   /docs/oauth2-redirect are now huedb's own script-free API reference.
3. A query whose answer holds a non-finite distance (null in JSON) shows all its rows, that
   distance marked "not finite"; before, the whole result was replaced by a TypeError.
4. (review, 2026-12-08) Pages send Cross-Origin-Opener-Policy: a page that opened the
   console could send its signed-in tab elsewhere; an address part "." or ".." is no page
   (it made a dot segment of the API path, and the token went to another path); delete
   checks that the name is still its collection's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from huedb.engine.registry import release_engine
from huedb.server.app import create_app
from huedb.server.console import STATIC_NAMES
from huedb.server.server_config import ServerConfig
from tests.browser import Browser, artifacts_dir, chromium_browser
from tests.http_checks import ADMIN, DB, TOKENS_ENV, admin_client, ok
from tests.servers import RunningServer, huedb_server

TS = 1796434396980118950  # a nanosecond timestamp: an int64 beyond 2**53
FAR = [-3e38, -3e38, -3e38]  # its float32 distance to the others overflows to infinity
DOC_PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with huedb_server(tmp_path_factory.mktemp("console-fixes") / "data", env=TOKENS_ENV) as up:
        yield up


@pytest.fixture(scope="module")
def collection(server: RunningServer) -> str:
    """`odd`: records a, b (ts TS and TS + 1) and far, the collection's metadata TS + 2."""
    with admin_client(server) as admin:
        body = {"name": "odd", "metadata": {"created_ns": TS + 2}}
        cid = ok(admin.post(f"{DB}/collections", json=body))["id"]
        records = {
            "ids": ["a", "b", "far"],
            "embeddings": [[1, 0, 0], [0, 1, 0], FAR],
            "documents": ["doc a", "doc b", "doc far"],
            "metadatas": [{"ts": TS}, {"ts": TS + 1}, {"ts": 1}],
        }
        ok(admin.post(f"{DB}/collections/{cid}/add", json=records), 201)
    return cid


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium_browser(artifacts_dir("console-fixes")) as launched:
        yield launched


def signed_in_page(server: RunningServer, browser: Browser, cid: str) -> Any:
    page = browser.new_page()
    page.goto(f"{server.url}/console")
    page.fill("#token", ADMIN)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("body[data-ready=tenants]")
    page.goto(f"{server.url}/console#/col/default_tenant/default_database/{cid}")
    page.wait_for_selector("body[data-ready=collection] #records[data-state=ready]")
    return page


def cells(page: Any, section: str, field: str) -> list[str]:
    return page.locator(f"{section} tbody td[data-field={field}]").all_inner_texts()


def api_ids(server: RunningServer, cid: str, path: str, body: dict[str, Any]) -> Any:
    with admin_client(server) as admin:
        return ok(admin.post(f"{DB}/collections/{cid}/{path}", json=body))["ids"]


def test_integers_beyond_2_53_are_shown_and_filtered_exactly(
    server: RunningServer, browser: Browser, collection: str
) -> None:
    page = signed_in_page(server, browser, collection)
    assert cells(page, "#records", "id") == ["a", "b", "far"]
    shown = cells(page, "#records", "metadata")
    assert shown == [f'{{"ts":{TS}}}', f'{{"ts":{TS + 1}}}', '{"ts":1}']
    figure = page.inner_text("#figures dd[data-field=metadata]")
    assert figure == f'{{"created_ns":{TS + 2}}}'
    filters = [
        ({"ts": TS}, ["a"]),
        ({"ts": TS + 1}, ["b"]),
        ({"ts": {"$gt": TS}}, ["b"]),
        ({"ts": {"$in": [TS + 1, 7]}}, ["b"]),
        ({"$and": [{"ts": {"$gte": TS}}, {"ts": {"$lt": TS + 1}}]}, ["a"]),
    ]
    for where, expected in filters:
        page.fill("#where", json.dumps(where))
        page.click("#apply-filters")
        page.wait_for_selector("#records[data-state=ready]")
        assert api_ids(server, collection, "get", {"where": where}) == expected, where
        assert cells(page, "#records", "id") == expected, where
        assert page.locator("#records tbody tr").count() == len(expected), where
    page.fill("#where", "12345678901234567890")
    page.click("#apply-filters")
    assert "must be a JSON object" in page.inner_text("#filter-status .error")
    assert browser.js_errors == []


def test_a_non_finite_distance_keeps_the_other_results(
    server: RunningServer, browser: Browser, collection: str
) -> None:
    page = signed_in_page(server, browser, collection)
    page.click("button[data-similar=a]")
    page.wait_for_selector("#query[data-state=ready], #query[data-state=error]")
    assert page.get_attribute("#query", "data-state") == "ready", page.inner_text("#query-status")
    with admin_client(server) as admin:
        answer = ok(
            admin.post(
                f"{DB}/collections/{collection}/query",
                json={"query_embeddings": [[1, 0, 0]], "n_results": 10},
            )
        )
    assert answer["ids"] == [["a", "b", "far"]] and answer["distances"][0][2] is None
    assert cells(page, "#query", "id") == ["a", "b", "far"]
    assert cells(page, "#query", "distance") == ["0.000000", "2.000000", "not finite"]
    assert page.inner_text("#query-status") == ""
    assert browser.js_errors == []


class References(HTMLParser):
    """Every URL-valued attribute of a page, and whether it has inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        for name, value in attrs:
            if name in {"src", "href", "action", "data", "srcset", "poster"} and value:
                self.urls.append(value)


def walk(routes: list[Any]) -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, into FastAPI's included routers."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from walk(route.original_router.routes)
        else:
            yield route.path, set(route.methods)


def html_routes(data: Path) -> list[str]:
    """The GET paths of the app that can answer a page: every route without path
    parameters and each console file; the others are API routes (JSON)."""
    app = create_app(ServerConfig(path=str(data)))
    try:
        paths = [path for path, methods in walk(app.routes) if "GET" in methods]
    finally:
        release_engine(app.state.api.engine)
    with_parameters = {p for p in paths if "{" in p}
    assert all(p.startswith("/api/") or p == "/console/{name}" for p in with_parameters)
    console_files = [f"/console/{name}" for name in sorted(STATIC_NAMES)]
    return [p for p in paths if "{" not in p] + console_files


def test_no_page_loads_anything_from_another_origin(server: RunningServer, tmp_path: Path) -> None:
    pages = []
    with admin_client(server) as admin:
        for path in html_routes(tmp_path / "routes"):
            answer = admin.get(path)
            assert answer.status_code == 200, (path, answer.text[:200])
            if answer.headers["content-type"].startswith("text/html"):
                pages.append(path)
                found = References()
                found.feed(answer.text)
                foreign = [u for u in found.urls if urlsplit(u).scheme or urlsplit(u).netloc]
                assert foreign == [], (path, foreign)
                csp = answer.headers["content-security-policy"]
                assert "default-src 'none'" in csp and "http" not in csp and "*" not in csp
                # no handle on the window for a page that opened it (reverse tabnabbing)
                assert answer.headers["cross-origin-opener-policy"] == "same-origin", path
        assert set(DOC_PAGES) | {"/console", "/console/index.html"} <= set(pages), pages
        for path in DOC_PAGES:
            found = References()
            found.feed(admin.get(path).text)
            assert found.scripts == 0 and "/openapi.json" in found.urls, path
            assert "script-src" not in admin.get(path).headers["content-security-policy"]
        assert "/api/v2/tenants/{tenant}/databases" in admin.get("/docs").text
    assert httpx.get(f"{server.url}/docs", timeout=30).status_code == 200  # open, as Chroma's
    assert httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]


def test_docs_in_the_browser_asks_no_other_origin(
    server: RunningServer, browser: Browser, collection: str
) -> None:
    """After the console stored its token, /docs in the same tab loads nothing from a CDN
    (a stand-in CDN script would read the token) and renders without a CSP violation."""
    page = signed_in_page(server, browser, collection)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.route(
        "https://cdn.jsdelivr.net/**",
        lambda route: route.fulfill(
            content_type="text/javascript",
            body="document.title = sessionStorage.getItem('huedb.console.token');",
        ),
    )
    page.goto(f"{server.url}/docs")
    assert page.title() == "huedb API reference"
    assert page.locator("section h2").count() > 30
    assert requested and all(url.startswith(server.url + "/") for url in requested), requested
    assert browser.js_errors == []
    browser.screenshot(page, "docs")


def test_dot_segments_in_the_address_are_no_page(
    server: RunningServer, browser: Browser, collection: str
) -> None:
    """A part of the address that is "." or ".." would make a dot segment of the API path
    built from it, and fetch would send the token to another path: no such page, and no
    read of a view."""
    page = signed_in_page(server, browser, collection)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(urlsplit(request.url).path))
    for hash_path in ("#/db/../x", "#/db/default_tenant/..", "#/col/./a/b"):
        page.goto(f"{server.url}/console#/")
        page.wait_for_selector("body[data-ready=tenants]")
        asked.clear()
        page.goto(f"{server.url}/console{hash_path}")
        page.wait_for_selector("body[data-ready=missing]")
        assert "No such page" in page.inner_text("#main"), hash_path
        reads = [p for p in asked if p.startswith("/api/") and p != "/api/v2/auth/identity"]
        assert reads == [], (hash_path, reads)
    page.close()


def test_delete_refuses_a_name_another_collection_took(
    server: RunningServer, browser: Browser
) -> None:
    """Deleting goes by name (Chroma's API): a collection renamed after its page loaded,
    its name then taken by a new one, is not the one deleted; the page says so and both
    collections stay (review, 2026-12-08)."""
    with admin_client(server) as admin:
        old_id = ok(admin.post(f"{DB}/collections", json={"name": "victim"}))["id"]
    page = signed_in_page(server, browser, old_id)
    with admin_client(server) as admin:
        ok(admin.put(f"{DB}/collections/{old_id}", json={"new_name": "victim-moved"}))
        new_id = ok(admin.post(f"{DB}/collections", json={"name": "victim"}))["id"]
    page.fill("#delete-confirm", "victim")
    page.click("#delete-collection")
    page.wait_for_selector("#delete-status [role=alert]")
    assert "now belongs to another collection" in page.inner_text("#delete-status")
    with admin_client(server) as admin:
        assert ok(admin.get(f"{DB}/collections/victim"))["id"] == new_id
        assert ok(admin.get(f"{DB}/collections/victim-moved"))["id"] == old_id
    page.close()
