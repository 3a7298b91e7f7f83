"""Smoke test of `python -m bench shared` at a small size (a graph forced by the exact
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


def test_bench_shared_smoke(tmp_path: Path) -> None:
    out = tmp_path / "shared.json"
    cmd = [sys.executable, "-m", "bench", "shared", "--n", "3000", "--updated", "0.5"]
    env = {**os.environ, "HUEDB_EXACT_MAX_FLOATS": str(500 * 384)}
    subprocess.run([*cmd, "--out", str(out)], cwd=REPO_ROOT, env=env, check=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["benchmark"] == "shared" and result["n"] == 3000 and result["updated"] == 1500
    assert len(result["ingest"]) == len(result["catch_up"]) == 2
    for process in result["ingest"]:
        for key in ("ingest_s", "ready_s", "cpu_s"):
            assert math.isfinite(process[key]) and process[key] > 0, key
        assert 0.9 <= process["recall"] <= 1.0
    assert any(p["built_here"] for p in result["ingest"])  # someone built the graph
    for process in result["catch_up"]:
        assert process["queries"] >= 1 and process["up_to_date_s"] > 0
    for key in ("ready_s_max", "ingest_cpu_s", "change_s", "up_to_date_s_max"):
        assert math.isfinite(result[key]) and result[key] > 0, key
