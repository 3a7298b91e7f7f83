"""Smoke test of `python -m bench writes` at a small size (a graph forced by the exact
threshold): the real command in a subprocess, its JSON checked for every figure. It does
not judge the figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_bench_writes_smoke(tmp_path: Path) -> None:
    out = tmp_path / "writes.json"
    cmd = [sys.executable, "-m", "bench", "writes", "--n", "3000", "--batches", "2"]
    env = {**os.environ, "HUEDB_EXACT_MAX_FLOATS": str(500 * 384)}
    subprocess.run([*cmd, "--out", str(out)], cwd=REPO_ROOT, env=env, check=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["benchmark"] == "writes" and result["n"] == 3000
    assert result["writes"] == 2 and result["queries"] >= 1
    for key in ("write_p50_ms", "write_max_ms", "query_p50_ms", "query_p99_ms", "query_max_ms"):
        assert math.isfinite(result[key]) and result[key] > 0, key
