"""Smoke test of the benchmark's `huedb-pg` system (huedb on its PostgreSQL store).

`python -m bench --systems huedb,huedb-pg` at n=1,000 in a subprocess: the bench starts its
own throwaway PostgreSQL cluster (`bench/pg.py`) with durable settings. Checked in the JSON:
every figure of both systems present and finite, no problem recorded, the pg/huedb ratios and
the issue 14 targets evaluated. The figures themselves are not judged.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from bench.core import PG_TARGETS, figures_of

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_bench_huedb_pg_system(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    cmd = [
        sys.executable, "-m", "bench", "--sizes", "1000", "--queries", "10",
        "--systems", "huedb,huedb-pg", "--huedb-exact-max-floats", "100000",
        "--workdir", str(tmp_path), "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "pg/huedb" in proc.stdout

    (report,) = json.loads(out.read_text())["runs"]
    for name in ("huedb", "huedb-pg"):
        result = report["systems"][name]
        assert result["errors"] == [], f"{name}: {result['errors']}"
        for figure in figures_of(name):
            value = result["figures"].get(figure.key)
            assert isinstance(value, int | float), f"{name}: no figure {figure.key}"
            assert math.isfinite(value), f"{name}: {figure.key} = {value}"
    settings = report["systems"]["huedb-pg"]["settings"]["postgresql"]
    assert settings["fsync"] == "on" and settings["synchronous_commit"] == "on", settings
    assert report["systems"]["huedb-pg"]["details"]["disk_store_bytes_outside_path"] > 0
    evaluated = [t for t in report["targets"] if t["pair"] == "huedb-pg/huedb"]
    assert len(evaluated) == sum(t.pair == "huedb-pg/huedb" for t in PG_TARGETS)
    assert all(t["value"] is not None for t in evaluated), evaluated
