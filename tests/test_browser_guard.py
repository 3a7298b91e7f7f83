"""A server without tokens answers no request a web page can have made (browser_guard.py).

Real `huedb run` servers on loopback. Without tokens, a request whose `Host` is not a loopback
name (DNS rebinding: a page's own name pointed at 127.0.0.1, so the page reads the answers)
or whose `Origin` is another site's (a blind cross-site POST: a form, or `fetch` in no-cors
mode with a text/plain body) is refused with 403 and changes nothing; before, both were
served, `reset` included. Clients that are not browsers (no `Origin`, a loopback name) and
the server's own console pages (their `Origin` is the server's) are served. With tokens, or
with `--allow-unauthenticated`, nothing is checked: a page cannot know a token, and an
unauthenticated server on a network is opened on purpose.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.http_checks import ADMIN, TOKENS_ENV
from tests.servers import huedb_server

DB = "/api/v2/tenants/default_tenant/databases/default_database"
SIMPLE = {"Content-Type": "text/plain;charset=UTF-8"}  # what a page may send without asking


def _collections(url: str) -> list[str]:
    return [c["name"] for c in httpx.get(f"{url}{DB}/collections", timeout=30).json()]


def test_requests_a_web_page_can_make_are_refused(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", "--allow-reset") as server:
        url = server.url
        port = url.rsplit(":", 1)[1]
        httpx.post(f"{url}{DB}/collections", json={"name": "victim"}, timeout=30).raise_for_status()
        served = {
            "127.0.0.1": {"Host": f"127.0.0.1:{port}"},
            "localhost": {"Host": f"localhost:{port}"},
            "::1": {"Host": f"[::1]:{port}"},
            "a name under .localhost": {"Host": f"app.localhost:{port}"},
            "its own page": {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}"},
        }
        for case, headers in served.items():
            answer = httpx.get(f"{url}{DB}/collections", headers=headers, timeout=30)
            assert answer.status_code == 200, (case, answer.text)
        refused = {
            "rebound name": {"Host": f"evil.example:{port}"},
            "rebound address": {"Host": f"192.0.2.7:{port}"},
            "another site": {"Origin": "http://evil.example"},
            "another port": {"Origin": f"http://127.0.0.1:{int(port) + 1}"},
            "an opaque origin": {"Origin": "null"},
        }
        for case, headers in refused.items():
            for method, path, body in (
                ("GET", f"{DB}/collections", None),
                ("POST", f"{DB}/collections", '{"name": "planted"}'),
                ("POST", "/api/v2/reset", None),
            ):
                answer = httpx.request(
                    method, url + path, content=body, headers={**SIMPLE, **headers}, timeout=30
                )
                assert answer.status_code == 403, (case, method, path, answer.text)
                assert answer.json()["error"] == "AuthError"
        assert _collections(url) == ["victim"]


def test_tokens_or_an_open_server_are_not_checked(tmp_path: Path) -> None:
    foreign = {"Host": "evil.example", "Origin": "http://evil.example"}
    with huedb_server(tmp_path / "tokens", env=TOKENS_ENV) as server:
        headers = {**foreign, "Authorization": f"Bearer {ADMIN}"}
        answer = httpx.get(f"{server.url}{DB}/collections", headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
    with huedb_server(tmp_path / "open", "--allow-unauthenticated") as server:
        answer = httpx.get(f"{server.url}{DB}/collections", headers=foreign, timeout=30)
        assert answer.status_code == 200, answer.text
