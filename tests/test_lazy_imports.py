"""Every huedb process (an embedded client, each CLI command, each server start and worker)
pays for what it imports: psycopg, httpx and asyncio cost ~70, ~70 and ~40 ms and most
processes never use them (no PostgreSQL store, no `--url`, no async client). They are
imported where they are used; a process that does not use them does not load them."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli import REPO_ROOT, child_env

LAZY = ("psycopg", "psycopg_pool", "httpx", "asyncio")


def _loaded_after(code: str) -> list[str]:
    """The LAZY modules loaded by a fresh interpreter after running `code`."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=REPO_ROOT,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_embedded_client_and_the_commands_load_none_of_them(tmp_path) -> None:
    code = (
        "import huedb, huedb.cli.commands\n"
        f"client = huedb.PersistentClient(path={str(tmp_path / 'data')!r})\n"
        "client.create_collection('docs').add(ids=['a'], embeddings=[[1.0, 2.0]])\n"
        "client.close()"
    )
    assert _loaded_after(code) == []


def test_a_postgresql_store_and_an_http_client_load_theirs(pg_url: str) -> None:
    code = (
        "import huedb\n"
        f"client = huedb.Client(huedb.Settings(huedb_store={pg_url!r}))\n"
        "client.heartbeat(); client.close()\n"
        "try:\n"
        "    huedb.HttpClient(host='127.0.0.1', port=9)\n"
        "except Exception:\n"
        "    pass"
    )
    assert set(_loaded_after(code)) >= {"psycopg", "psycopg_pool", "httpx"}
