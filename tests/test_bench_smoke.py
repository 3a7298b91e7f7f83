"""Smoke test of the core benchmark (`python -m bench`) with both systems at n=1,000.

It runs the real command in a subprocess and checks the JSON it writes: every figure of both
systems present and finite, no problem recorded, ratios for every shared figure. It does not
judge the figures themselves. `--huedb-exact-max-floats 100000` makes huedb build (and
snapshot) its HNSW graph at this size, so the graph path and the raw-library comparison run
too; by default huedb searches 1,000 x 384 vectors exactly.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import FIGURES, figures_of

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_both_systems(tmp_path: Path) -> None:
    pytest.importorskip("chromadb", reason="chromadb is not installed")
    out = tmp_path / "core.json"
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--sizes",
        "1000",
        "--queries",
        "10",
        "--systems",
        "huedb,chromadb",
        "--huedb-exact-max-floats",
        "100000",
        "--workdir",
        str(tmp_path),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "huedb/chroma" in proc.stdout

    suite = json.loads(out.read_text())
    assert suite["sizes"] == [1000]
    assert [f["key"] for f in suite["figures"]] == [f.key for f in FIGURES]
    (report,) = suite["runs"]
    for name in ("huedb", "chromadb"):
        result = report["systems"][name]
        assert result["errors"] == [], f"{name}: {result['errors']}"
        for figure in figures_of(name):
            value = result["figures"].get(figure.key)
            assert isinstance(value, int | float), f"{name}: no figure {figure.key}"
            assert math.isfinite(value), f"{name}: {figure.key} = {value}"
    # The recall target's choice is recorded (graph at 1,000 x 384 with this threshold).
    status = report["systems"]["huedb"]["details"]["index_status_after_ingest"]
    assert status["ef_search"] >= 100 and status["recall_target"] == 0.95
    assert report["systems"]["chromadb"]["details"]["index_status_after_ingest"] == {}
    ratios = report["ratios_huedb_over_chromadb"]
    for figure in FIGURES:
        if figure.only is None:
            ratio = ratios.get(figure.key)
            assert ratio is not None and math.isfinite(ratio), f"ratio of {figure.key}: {ratio}"
