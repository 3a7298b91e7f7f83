"""Smoke test of the hybrid search benchmark (`python -m bench search`) at 2,000 documents.

It runs the real command in a subprocess and checks the JSON it writes: every figure
present and finite, the three targets judged, and the rankings right (huedb's BM25 Knn and
bm25s against the benchmark's brute-force scan, the RRF list against the fusion of the two
Knn lists, the stored BM25 vectors against the benchmark's own weights). Speed is not judged.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from bench.search import FIGURES

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_bench_search_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "search",
        "--sizes",
        "2000",
        "--queries",
        "20",
        "--warmup",
        "2",
        "--vocabulary",
        "10000",
        "--workdir",
        str(tmp_path),
        "--out-dir",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "targets (issue 16" in proc.stdout

    report = json.loads((tmp_path / "search-2000.json").read_text())
    assert report["data"]["n"] == 2000
    figures = report["figures"]
    for key, _, _ in FIGURES:
        value = figures.get(key)
        assert isinstance(value, int | float), f"no figure {key}"
        assert math.isfinite(value), f"{key} = {value}"
    assert len(report["targets"]) == 3
    assert all(isinstance(t["met"], bool) for t in report["targets"])
    assert report["details"]["stored_vectors_differing"] == 0
    assert figures["bm25_agreement"] >= 0.99
    assert figures["bm25s_agreement"] >= 0.99
    assert figures["hybrid_agreement"] >= 0.99
    assert figures["dense_recall"] == 1.0  # 2,000 x 384 is searched exactly
    assert report["machine"]["versions"]["bm25s"]
    assert list(tmp_path.glob("huedb-bench-search-*")) == []  # databases removed
