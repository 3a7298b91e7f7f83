"""The official chromadb JavaScript client (npm `chromadb`, installed by `make test` from
`tests/js/package-lock.json`) against `huedb run` with a token, under the machine's Node.js."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.http_checks import ADMIN, TOKENS_ENV, WRONG
from tests.servers import huedb_server

JS_DIR = Path(__file__).parent / "js"


def test_js_client_against_huedb_with_a_token(tmp_path: Path) -> None:
    """create, add, query, get with where, delete, count, reopen; a wrong token refused."""
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "chromadb").is_dir():
        pytest.fail("node or tests/js/node_modules missing: run `make test` (its install step)")
    with huedb_server(tmp_path / "data", env=TOKENS_ENV) as server:
        run = subprocess.run(
            [node, str(JS_DIR / "client_test.mjs"), str(server.port), ADMIN, WRONG],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=JS_DIR,
        )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["queryIds"] == [["a", "c"]]
    assert result["queryDistances"][0][0] == 0
    assert result["queryDistances"][0][1] == pytest.approx(0.02, abs=1e-6)
    assert result["getIds"] == ["a", "c"]
    assert result["getDocuments"] == ["alpha", "gamma"]
    assert result["count"] == 2
    assert result["reopenedCount"] == 2
    assert result["reopenedMetadata"] == {"source": "js"}
    assert result["refused"] == {"name": "ChromaAuthError", "message": "Unauthorized"}
