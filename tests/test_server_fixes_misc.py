"""Smaller server fixes, each through a real `huedb run`:

- a token holding ':' (or a token file line holding a space) stopped the start with
  "unknown role '<the rest of the token>'": the message now names the source and item only;
- without tokens, a `Host` or `Origin` that cannot be parsed (`[::1`, `http://[`) raised
  in the browser guard (a traceback per request, counted as a 500): now 403 `AuthError`;
- `--log-format json`: numpy's RuntimeWarnings (vectors that overflow float32 arithmetic)
  were printed to stderr as plain text: they are logged, as JSON lines;
- the console's database stats answered 404 when a listed collection was deleted before
  its figures were read: such collections are skipped;
- the console offered "Download a backup" to a tenant-scoped admin token, which the server
  refuses: it is shown to admin tokens of every tenant only.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import Browser, artifacts_dir, chromium_browser
from tests.cli import run_cli
from tests.http_checks import ADMIN, DB, TOKENS_ENV
from tests.servers import huedb_server
from tests.test_metrics import REQUESTS, scrape

SECRET_TAIL = "Xk39SecretTail99"


@pytest.mark.parametrize(
    ("tokens", "line", "named"),
    [
        (f"svc-prod:{SECRET_TAIL}", None, "token #1 from HUEDB_AUTH_TOKENS: unknown role"),
        (
            f"reader-token-1:read-only,svc-prod:Xk39:{SECRET_TAIL}:admin",
            None,
            "token #2 from HUEDB_AUTH_TOKENS: unknown role",
        ),
        (None, f"Xk39Secret {SECRET_TAIL}\n", "tokens.txt:1: unknown role"),
    ],
    ids=["colon in a single token", "colons in the second token", "space in a file line"],
)
def test_an_unknown_role_message_names_no_part_of_a_token(
    tmp_path: Path, tokens: str | None, line: str | None, named: str
) -> None:
    env = {"HUEDB_AUTH_TOKENS": tokens} if tokens else {}
    args: tuple[str, ...] = ()
    if line:
        (tmp_path / "tokens.txt").write_text(line)
        args = ("--auth-tokens-file", str(tmp_path / "tokens.txt"))
    res = run_cli("run", "--path", str(tmp_path / "data"), *args, env=env, timeout=60)
    assert res.returncode == 2, res.stderr
    assert named in res.stderr
    for part in (SECRET_TAIL, "Xk39", "svc-prod"):
        assert part not in res.stdout + res.stderr


def raw_status(port: int, head: bytes) -> tuple[int, bytes]:
    """Status and body of one request sent as raw bytes (a client that sends what httpx
    would refuse to)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    first, _, body = out.partition(b"\r\n\r\n")
    return int(first.split(b" ", 2)[1]), body


def test_unparsable_host_or_origin_is_refused_without_a_traceback(tmp_path: Path) -> None:
    with huedb_server(tmp_path / "data", "--log-format", "json") as server:
        own = f"127.0.0.1:{server.port}".encode()
        for headers in (
            b"Host: [::1\r\n",
            b"Host: [zz]:80\r\n",
            b"Host: " + own + b"\r\nOrigin: http://[\r\n",
            b"Host: " + own + b"\r\nOrigin: http://[::1\r\n",
        ):
            status, body = raw_status(
                server.port,
                b"GET /api/v2/heartbeat HTTP/1.1\r\n" + headers + b"Connection: close\r\n\r\n",
            )
            assert status == 403, (headers, body)
            assert json.loads(body)["error"] == "AuthError"
        samples = scrape(server, None)
        statuses = {dict(labels)["status"] for name, labels in samples if name == REQUESTS}
        assert "500" not in statuses, statuses
        log = server.log()
    assert "Traceback" not in log
    assert not [line for line in log.splitlines() if '"ERROR"' in line]


def test_numpy_warnings_are_json_log_lines(tmp_path: Path) -> None:
    """Vectors near float32's largest value overflow the distance arithmetic: numpy warns."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with huedb_server(tmp_path / "data", "--log-format", "json", env=TOKENS_ENV) as server:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            cid = client.post(f"{DB}/collections", json={"name": "huge"}).json()["id"]
            big = 3.0e38
            added = client.post(
                f"{DB}/collections/{cid}/add",
                json={"ids": ["a", "b", "z"], "embeddings": [[big, big], [-big, big], [0, 0]]},
            )
            assert added.status_code == 201, added.text
            query = {"query_embeddings": [[big, -big]], "n_results": 3, "include": ["distances"]}
            assert client.post(f"{DB}/collections/{cid}/query", json=query).status_code == 200
        log = server.log()
    lines = [line for line in log.splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("{")] == []
    warned = [json.loads(line) for line in lines if '"py.warnings"' in line]
    assert warned and all("RuntimeWarning" in entry["message"] for entry in warned), lines


def test_database_stats_skip_collections_deleted_meanwhile(tmp_path: Path) -> None:
    """Collections created and deleted in bulk while the stats are read: always 200."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    env = {**TOKENS_ENV, "HUEDB_FIGURES_TTL_S": "0"}
    with huedb_server(tmp_path / "data", env=env) as server:
        stop = threading.Event()

        def churn() -> None:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                while not stop.is_set():
                    names = [f"churn-{n}" for n in range(10)]
                    for name in names:
                        client.post(f"{DB}/collections", json={"name": name})
                    for name in names:
                        client.delete(f"{DB}/collections/{name}")

        thread = threading.Thread(target=churn)
        thread.start()
        statuses: list[int] = []
        try:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    answer = client.get(f"{DB}/stats")
                    statuses.append(answer.status_code)
        finally:
            stop.set()
            thread.join()
    assert len(statuses) > 20
    assert set(statuses) == {200}, [s for s in statuses if s != 200]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium_browser(artifacts_dir("server-fixes")) as launched:
        yield launched


def test_backup_is_offered_to_admin_tokens_of_every_tenant_only(
    tmp_path: Path, browser: Browser
) -> None:
    scoped = "acme-admin-token-1"
    env = {"HUEDB_AUTH_TOKENS": f"{ADMIN}:admin,{scoped}:admin@acme"}
    with huedb_server(tmp_path / "data", env=env) as server:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
        ) as client:
            assert client.post("/api/v2/tenants", json={"name": "acme"}).status_code == 200
            made = client.post("/api/v2/tenants/acme/databases", json={"name": "db1"})
            assert made.status_code == 200, made.text
            own = client.get("/api/v2/tenants/acme/databases/db1/stats").json()
            assert own["role"] == "admin" and own["scoped"] is False
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {scoped}"}, timeout=60
        ) as client:
            theirs = client.get("/api/v2/tenants/acme/databases/db1/stats").json()
            assert theirs["role"] == "admin" and theirs["scoped"] is True
        for token, offered in ((ADMIN, True), (scoped, False)):
            page = browser.new_page()
            page.goto(f"{server.url}/console")
            page.fill("#token", token)
            page.click("#signin-form button[type=submit]")
            page.wait_for_selector("body[data-ready=tenants]")
            page.goto(f"{server.url}/console#/db/acme/db1")
            page.wait_for_selector("body[data-ready=database]")
            assert (page.locator("#backup").count() == 1) is offered, token
            page.context.close()
    assert browser.js_errors == []
