"""CORS: web pages of the origins `cors_allow_origins` lists may call the API from a browser.

Chroma has the setting (`cors_allow_origins` in its YAML, `CHROMA_CORS_ALLOW_ORIGINS`; the
chromadb JS client's connection error names `CHROMA_SERVER_CORS_ALLOW_ORIGINS`); huedb
refused the key, ignored the variables, and answered a browser's preflight with 403 (no
tokens) or 401 (tokens: a preflight carries none), without `Access-Control-Allow-Origin`, so
a page could not use it. Now, on real `huedb run` servers: a listed origin's preflight is
answered before auth, and every answer to it (401, 403, 404 included) is readable; another
origin's requests are refused as before. `"*"` needs tokens. Bad values stop the start. The
real chromadb JS client (tests/js/node_modules) runs in headless Chromium on a page of one
loopback origin against huedb on another.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from huedb.cli.parser import build_parser
from huedb.cli.serve import server_config
from huedb.errors import ConfigError
from huedb.server.app import create_app
from huedb.server.server_config import ServerConfig
from tests.browser import Browser, artifacts_dir, chromium_browser
from tests.cli import run_cli
from tests.http_checks import ADMIN, DB, READER, TOKENS_ENV, WRONG
from tests.servers import free_port, huedb_server

APP = "http://localhost:3000"
OTHER = "http://localhost:3001"
ACAO = "access-control-allow-origin"
JS_DIST = Path(__file__).parent / "js" / "node_modules" / "chromadb" / "dist"


def config_of(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> ServerConfig:
    """The configuration `huedb run --path <tmp>/data *flags` would start with under `env`."""
    args = build_parser().parse_args(["run", "--path", str(tmp_path / "data"), *flags])
    return server_config(args, env or {})


def config_file(tmp_path: Path, value: Any) -> Path:
    path = tmp_path / "server.json"
    path.write_text(json.dumps({"cors_allow_origins": value}))
    return path


def preflight(url: str, origin: str, method: str = "POST", path: str = f"{DB}/collections"):
    """A browser's preflight before a JSON request with a token (no token on it)."""
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,x-chroma-token",
    }
    return httpx.options(url + path, headers=headers, timeout=30)


def assert_preflight_allowed(answer: httpx.Response, origin: str) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.headers[ACAO] == origin
    methods = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    allowed = {h.strip() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-chroma-token"} <= allowed


# --------------------------------------------------------------------------- the settings chain


def test_no_origin_is_allowed_by_default(tmp_path: Path) -> None:
    assert config_of(tmp_path).cors_allow_origins == []


def test_origins_come_from_the_file_the_environment_and_the_flag_in_order(tmp_path: Path) -> None:
    path = str(config_file(tmp_path, [APP, "https://app.example.com"]))
    assert config_of(tmp_path, "--config", path).cors_allow_origins == [
        APP,
        "https://app.example.com",
    ]
    env = {"HUEDB_CORS_ALLOW_ORIGINS": f"{OTHER}, http://[::1]:8080"}
    got = config_of(tmp_path, "--config", path, env=env).cors_allow_origins
    assert got == [OTHER, "http://[::1]:8080"]  # the environment replaces the file
    flag = ("--cors-allow-origins", '["tauri://localhost"]')
    assert config_of(tmp_path, "--config", path, *flag, env=env).cors_allow_origins == [
        "tauri://localhost"
    ]
    # `[]` is none: it switches off the file's origins.
    assert (
        config_of(tmp_path, "--config", path, "--cors-allow-origins", "[]").cors_allow_origins == []
    )
    # ServerConfig travels to the workers as JSON.
    config = config_of(tmp_path, "--config", path)
    assert ServerConfig.from_json(config.to_json()).cors_allow_origins == config.cors_allow_origins


def test_chromas_variables_are_read_and_merged(tmp_path: Path) -> None:
    """Chroma 1.x reads CHROMA_CORS_ALLOW_ORIGINS (a JSON list); the JS client's error names
    CHROMA_SERVER_CORS_ALLOW_ORIGINS, the variable of Chroma's Python server."""
    env = {"CHROMA_SERVER_CORS_ALLOW_ORIGINS": json.dumps([APP])}
    assert config_of(tmp_path, env=env).cors_allow_origins == [APP]
    env = {
        "CHROMA_CORS_ALLOW_ORIGINS": json.dumps([APP, OTHER]),
        "HUEDB_CORS_ALLOW_ORIGINS": APP,
    }
    assert config_of(tmp_path, env=env).cors_allow_origins == [APP, OTHER]


def test_any_origin_needs_tokens(tmp_path: Path) -> None:
    """`"*"` on a server without tokens would let every page its visitors open read and
    write the database through their browsers: refused, also with --allow-unauthenticated."""
    for flags, env in (
        (("--cors-allow-origins", "*"), {}),
        (("--config", str(config_file(tmp_path, ["*"]))), {}),
        ((), {"CHROMA_SERVER_CORS_ALLOW_ORIGINS": '["*"]'}),
        (("--cors-allow-origins", "*", "--allow-unauthenticated", "--host", "0.0.0.0"), {}),
    ):
        with pytest.raises(ConfigError, match=re.escape("cors_allow_origins '*' lets every web")):
            config_of(tmp_path, *flags, env=env)
    got = config_of(tmp_path, "--cors-allow-origins", "*", env=TOKENS_ENV)
    assert got.cors_allow_origins == ["*"]


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("file", APP, f"cors_allow_origins must be a list of origins, not '{APP}' in "),
        ("file", None, "cors_allow_origins must be a list of origins, not null in "),
        ("file", [3000], "cors_allow_origins item #1 must be a string, not 3000 in "),
        ("file", [f"{APP}/"], f"cors_allow_origins: '{APP}/' is not an origin in "),
        ("file", ["localhost:3000"], "'localhost:3000' is not an origin"),
        ("file", ["null"], "'null' is not an origin"),
        ("file", [""], "'' is not an origin"),
        ("file", ["http://*.example.com"], "'http://*.example.com' is not an origin"),
        ("file", ["http://user@localhost:3000"], "is not an origin"),
        ("file", ["http://localhost:99999"], "is not an origin"),
        ("file", [f" {APP}"], "is not an origin"),
        # Origins no browser sends: a scheme whose pages send `null`, an IPv4 host in a
        # form browsers rewrite or no address at all, non-ASCII white space.
        ("file", ["ftp://a:21"], "'ftp://a:21' is not an origin"),
        ("file", ["file://x"], "'file://x' is not an origin"),
        ("file", ["javascript://x"], "'javascript://x' is not an origin"),
        ("file", ["http://127.1:3000"], "'http://127.1:3000' is not an origin"),
        ("file", ["http://0x7f.0.0.1:3000"], "is not an origin"),
        ("file", ["http://2130706433"], "is not an origin"),
        ("file", ["http://256.1.1.1"], "is not an origin"),
        ("file", ["http://1.2.3.4.5"], "is not an origin"),
        ("HUEDB_CORS_ALLOW_ORIGINS", f"{APP}\u3000", "is not an origin"),
        (
            "file",
            ["HTTP://LocalHost:3000"],
            f"would never match in {{path}}: browsers send this origin as '{APP}'",
        ),
        (
            "file",
            ["https://app.example.com:443"],
            "browsers send this origin as 'https://app.example.com'",
        ),
        ("file", ["http://[0:0::1]:3000"], "browsers send this origin as 'http://[::1]:3000'"),
        ("file", ["*", APP], "'*' (every origin) must be the only item in"),
        ("HUEDB_CORS_ALLOW_ORIGINS", "", "HUEDB_CORS_ALLOW_ORIGINS is set but holds no origin"),
        ("HUEDB_CORS_ALLOW_ORIGINS", " , ", "HUEDB_CORS_ALLOW_ORIGINS is set but holds no origin"),
        (
            "HUEDB_CORS_ALLOW_ORIGINS",
            f"{APP}/",
            "HUEDB_CORS_ALLOW_ORIGINS: 'http://localhost:3000/' is not",
        ),
        (
            "CHROMA_SERVER_CORS_ALLOW_ORIGINS",
            f'["{APP}"',
            "CHROMA_SERVER_CORS_ALLOW_ORIGINS is not a JSON list",
        ),
        (
            "CHROMA_CORS_ALLOW_ORIGINS",
            '[{"a": 1}]',
            "CHROMA_CORS_ALLOW_ORIGINS item #1 must be a string",
        ),
        ("chroma_server_cors_allow_origins", json.dumps([APP]), "is spelt in lower case"),
        ("huedb_cors_allow_origins", APP, "did you mean HUEDB_CORS_ALLOW_ORIGINS?"),
        ("--cors-allow-origins", "", "--cors-allow-origins is set but holds no origin"),
        ("--cors-allow-origins", "localhost:3000", "--cors-allow-origins: 'localhost:3000' is not"),
    ],
)
def test_a_bad_value_is_refused(tmp_path: Path, where: str, value: Any, message: str) -> None:
    """Fail closed: never an origin that was not meant, never silently none."""
    flags: tuple[str, ...] = ()
    env: dict[str, str] = {}
    if where == "file":
        path = config_file(tmp_path, value)
        flags, message = ("--config", str(path)), message.replace("{path}", str(path))
    elif where.startswith("--"):
        flags = (where, value)
    else:
        env = {where: value}
    with pytest.raises(ConfigError) as refused:
        config_of(tmp_path, *flags, env={**TOKENS_ENV, **env})
    assert message in str(refused.value)


def test_huedb_run_stops_in_one_line(tmp_path: Path) -> None:
    proc = run_cli(
        *("run", "--path", str(tmp_path / "data"), "--port", str(free_port())),
        env={"CHROMA_SERVER_CORS_ALLOW_ORIGINS": '["*"]'},
        timeout=60,
    )
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2, output
    assert len(output.splitlines()) == 1 and "cannot start: cors_allow_origins '*'" in output


# --------------------------------------------------------------------------- real servers


def test_without_tokens_a_listed_origin_is_served_and_others_refused(tmp_path: Path) -> None:
    """The reviewer's start: CHROMA_SERVER_CORS_ALLOW_ORIGINS, no tokens. The listed page
    reads and writes; another page still gets 403 and changes nothing; the guard's `Host`
    check (DNS rebinding) still holds for the listed origin."""
    env = {"CHROMA_SERVER_CORS_ALLOW_ORIGINS": json.dumps([APP])}
    with huedb_server(tmp_path / "data", env=env) as server:
        url = server.url
        assert_preflight_allowed(preflight(url, APP), APP)
        made = httpx.post(
            f"{url}{DB}/collections", json={"name": "from-app"}, headers={"Origin": APP}, timeout=30
        )
        assert made.status_code == 200, made.text
        assert made.headers[ACAO] == APP
        listed = httpx.get(f"{url}{DB}/collections", headers={"Origin": APP}, timeout=30)
        assert [c["name"] for c in listed.json()] == ["from-app"]
        assert listed.headers[ACAO] == APP
        missing = httpx.get(f"{url}{DB}/collections/nope", headers={"Origin": APP}, timeout=30)
        assert missing.status_code == 404 and missing.headers[ACAO] == APP
        assert missing.json()["error"] == "NotFoundError"

        refused = preflight(url, OTHER)
        assert refused.status_code == 403 and ACAO not in refused.headers
        for method, body in (("GET", None), ("POST", '{"name": "planted"}')):
            answer = httpx.request(
                method,
                f"{url}{DB}/collections",
                content=body,
                headers={"Origin": OTHER, "Content-Type": "text/plain"},
                timeout=30,
            )
            assert answer.status_code == 403 and ACAO not in answer.headers, answer.text
        port = url.rsplit(":", 1)[1]
        rebound = httpx.get(
            f"{url}{DB}/collections", headers={"Origin": APP, "Host": f"evil.example:{port}"}
        )
        assert rebound.status_code == 403 and rebound.json()["error"] == "AuthError"
        plain = httpx.get(f"{url}{DB}/collections", timeout=30)  # not a browser: no Origin
        assert [c["name"] for c in plain.json()] == ["from-app"] and ACAO not in plain.headers


def test_with_tokens_the_preflight_needs_none_and_errors_are_readable(tmp_path: Path) -> None:
    """Preflights carry no token: answered before auth. 401 and 403 reach the page (the JS
    client then reports ChromaUnauthorizedError / ChromaForbiddenError, not a connection
    error). Another origin's preflight gets 401 as before, and no answer is readable by it."""
    path = config_file(tmp_path, [APP])
    with huedb_server(tmp_path / "data", "--config", str(path), env=TOKENS_ENV) as server:
        url = server.url
        assert_preflight_allowed(preflight(url, APP), APP)
        assert_preflight_allowed(preflight(url, APP, "DELETE", f"{DB}/collections/x"), APP)
        for token, status in ((None, 401), (WRONG, 401), (READER, 403), (ADMIN, 200)):
            headers = {"Origin": APP, **({"X-Chroma-Token": token} if token else {})}
            answer = httpx.post(
                f"{url}{DB}/collections", json={"name": "made-by-app"}, headers=headers, timeout=30
            )
            assert answer.status_code == status, (token, answer.text)
            assert answer.headers[ACAO] == APP, token
        got = httpx.get(
            f"{url}{DB}/collections/made-by-app",
            headers={"Origin": APP, "Authorization": f"Bearer {ADMIN}"},
        )
        assert got.status_code == 200 and got.headers[ACAO] == APP

        refused = preflight(url, OTHER)
        assert refused.status_code == 401 and ACAO not in refused.headers
        answer = httpx.get(
            f"{url}{DB}/collections",
            headers={"Origin": OTHER, "Authorization": f"Bearer {ADMIN}"},
            timeout=30,
        )
        assert answer.status_code == 200 and ACAO not in answer.headers


def test_any_origin_with_tokens(tmp_path: Path) -> None:
    args = ("--cors-allow-origins", "*")
    with huedb_server(tmp_path / "data", *args, env=TOKENS_ENV) as server:
        answer = preflight(server.url, "https://anywhere.example")
        assert answer.status_code == 200 and answer.headers[ACAO] == "*"
        for token, status in ((None, 401), (ADMIN, 200)):
            headers = {"Origin": "https://anywhere.example"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            got = httpx.get(f"{server.url}{DB}/collections", headers=headers, timeout=30)
            assert got.status_code == status and got.headers[ACAO] == "*"


def test_public_metrics_are_never_marked(tmp_path: Path) -> None:
    """`--metrics-public` opens /metrics to a Prometheus, not to web pages: with `"*"` (or a
    listed origin) a page would otherwise read every tenant's collection names from it
    through its visitors' browsers, without a token."""
    args = ("--cors-allow-origins", "*", "--metrics-public")
    with huedb_server(tmp_path / "data", *args, env=TOKENS_ENV) as server:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        created = httpx.post(
            f"{server.url}{DB}/collections", json={"name": "secret-plans"}, headers=headers
        )
        assert created.status_code == 200, created.text
        page = {"Origin": "https://anywhere.example"}
        scraped = httpx.get(f"{server.url}/metrics", headers=page, timeout=30)
        assert scraped.status_code == 200 and "secret-plans" in scraped.text  # a scraper reads it
        assert ACAO not in scraped.headers  # a page cannot
        answer = preflight(server.url, "https://anywhere.example", "GET", "/metrics")
        assert ACAO not in answer.headers
        listed = httpx.get(f"{server.url}{DB}/collections", headers={**page, **headers})
        assert listed.headers[ACAO] == "*"  # the API itself is still marked


def test_without_the_setting_nothing_changes(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data") as server:
        answer = preflight(server.url, APP)
        assert answer.status_code == 403 and ACAO not in answer.headers
        answer = httpx.get(f"{server.url}{DB}/collections", headers={"Origin": APP}, timeout=30)
        assert answer.status_code == 403 and ACAO not in answer.headers


def test_an_unexpected_error_is_readable_too(tmp_path: Path) -> None:
    """Starlette answers an unexpected error (500) in its outermost middleware, outside the
    others: the CORS layer answers it itself, so the page gets the error, not a connection
    failure. (In process: no route of huedb fails on purpose.)"""
    app = create_app(ServerConfig(path=str(tmp_path / "data"), cors_allow_origins=[APP]))

    @app.get("/fails")
    def fails() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        answer = client.get("/fails", headers={"Origin": APP})
        assert answer.status_code == 500 and answer.headers[ACAO] == APP
        assert answer.json() == {"error": "InternalError", "message": "RuntimeError: a bug"}
        answer = client.get("/fails", headers={"Origin": OTHER})
        assert answer.status_code == 403 and ACAO not in answer.headers


# --------------------------------------------------------------------------- real Chromium

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>chromadb JS client</title>
<link rel="icon" href="data:,">
<script type="importmap">
{"imports": {"chromadb": "/chromadb/chromadb.mjs", "node:process": "/process.mjs"}}
</script>
<script type="module">
import { ChromaClient } from "chromadb";

window.runClient = async (port, token) => {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const chroma = new ChromaClient({ host: "127.0.0.1", port, headers });
  const out = {};
  try {
    const collection = await chroma.getOrCreateCollection({
      name: "from-a-page",
      embeddingFunction: null,
    });
    await collection.upsert({ ids: ["a", "b"], embeddings: [[1, 0], [0, 1]] });
    const query = await collection.query({ queryEmbeddings: [[1, 0]], nResults: 1 });
    out.queryIds = query.ids;
    out.count = await collection.count();
  } catch (error) {
    out.error = { name: error.name, message: String(error.message) };
  }
  return out;
};
window.clientReady = true;
</script>
"""


@contextlib.contextmanager
def page_server(directory: Path) -> Iterator[int]:
    """A static server on 127.0.0.1 for the page and the chromadb client's files; the page
    is at http://localhost:<port> (a listed origin) and http://127.0.0.1:<port> (not)."""
    if not (JS_DIST / "chromadb.mjs").is_file():
        pytest.fail("tests/js/node_modules is missing: run `make test` (its install step)")
    directory.mkdir()
    (directory / "index.html").write_text(PAGE)
    (directory / "process.mjs").write_text("export const env = {};\n")
    shutil.copytree(JS_DIST, directory / "chromadb", ignore=shutil.ignore_patterns("*.map"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield httpd.server_address[1]
        finally:
            httpd.shutdown()
            thread.join()


def run_in_page(browser: Browser, page_url: str, port: int, token: str | None) -> dict:
    """What the page's client got; without a JavaScript error, but for Chromium's own
    report of a request it blocked, which a page of an origin that is not listed gets."""
    page = browser.new_page()
    try:
        page.goto(page_url)
        page.wait_for_function("window.clientReady === true")
        got = page.evaluate("([port, token]) => window.runClient(port, token)", [port, token])
    finally:
        page.context.close()
    blocked = f"from origin '{page_url.rstrip('/')}' has been blocked by CORS policy"
    for error in browser.js_errors:
        assert blocked in error or "net::ERR_FAILED" in error, error
    browser.js_errors.clear()
    return got


def test_the_chromadb_js_client_in_chromium(tmp_path: Path) -> None:
    """The real chromadb JS client on a page of http://localhost:<p> (listed) against huedb
    on 127.0.0.1, with a token (its header makes every call preflighted) and without: it
    reads and writes; a wrong token gives its own error (the 401 was readable). The same
    page from http://127.0.0.1:<p> (not listed) gets the client's connection error, which
    names CHROMA_SERVER_CORS_ALLOW_ORIGINS, and writes nothing. No JavaScript error but
    Chromium's reports of the requests it blocked for that page."""
    served = {"queryIds": [["a"]], "count": 2}
    with (
        page_server(tmp_path / "page") as page_port,
        chromium_browser(artifacts_dir("server-cors")) as browser,
    ):
        listed, unlisted = f"http://localhost:{page_port}/", f"http://127.0.0.1:{page_port}/"
        origins = ("--cors-allow-origins", listed.rstrip("/"))
        with huedb_server(tmp_path / "tokens", *origins, env=TOKENS_ENV) as server:
            assert run_in_page(browser, listed, server.port, ADMIN) == served
            refused = run_in_page(browser, listed, server.port, WRONG)["error"]
            assert refused["message"] == "Unauthorized", refused
            blocked = run_in_page(browser, unlisted, server.port, ADMIN)["error"]
            assert "CHROMA_SERVER_CORS_ALLOW_ORIGINS" in blocked["message"], blocked
        env = {"CHROMA_SERVER_CORS_ALLOW_ORIGINS": json.dumps([listed.rstrip("/")])}
        with huedb_server(tmp_path / "open", env=env) as server:
            blocked = run_in_page(browser, unlisted, server.port, None)["error"]
            assert "CHROMA_SERVER_CORS_ALLOW_ORIGINS" in blocked["message"], blocked
            assert httpx.get(f"{server.url}{DB}/collections", timeout=30).json() == []
            assert run_in_page(browser, listed, server.port, None) == served
