"""Two OS processes write one store at once; a third verifies everything.

On each store (`tests/stores.py`): SQLite, where the processes share one data directory,
and PostgreSQL, where they share the database (and the directory of derived snapshots).

Each writer adds its own distinct ids in batches while querying, and records count() after
every batch: counts must never go down, each writer must at some point see the other's
writes land, and both must end at the combined total. A third process then finds every
record by get() and by an exact-vector query (n_results=1). The HNSW variant forces the
graph index (and snapshots) on smaller data so that catch-up of a graph is exercised.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests import stores
from tests.proc_workers import start_worker, wait_ok
from tests.stores import StoreTarget

DIM = 16
BATCH = 500
VERIFIERS = 2


def _run_two_writers(tmp_path: Path, n_each: int, settings: dict[str, Any]) -> None:
    data = tmp_path / "data"
    writers = [
        {"prefix": "a", "seed": 101, "other_prefix": "b", "other_seed": 202},
        {"prefix": "b", "seed": 202, "other_prefix": "a", "other_seed": 101},
    ]
    go = tmp_path / "go"
    procs = []
    for w in writers:
        args = {
            **w,
            "path": str(data),
            "settings": settings,
            "dim": DIM,
            "batch": BATCH,
            "n": n_each,
            "expected_total": 2 * n_each,
            "ready": str(tmp_path / f"ready-{w['prefix']}"),
            "go": str(go),
            "out": str(tmp_path / f"out-{w['prefix']}.json"),
        }
        procs.append(start_worker("mp_writer", args, tmp_path))
    # Release both writers at once, after both have opened the store.
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{w['prefix']}").exists() for w in writers):
        assert time.monotonic() < deadline, "writers did not open the store in time"
        assert all(p.poll() is None for p in procs), "a writer died while opening"
        time.sleep(0.01)
    go.touch()
    for p in procs:
        wait_ok(p, timeout=240)

    own_batches = [min(BATCH * (i + 1), n_each) for i in range(-(-n_each // BATCH))]
    for w in writers:
        out = json.loads((tmp_path / f"out-{w['prefix']}.json").read_text())
        counts = out["counts"]
        assert len(counts) == len(own_batches)
        assert counts == sorted(counts), f"writer {w['prefix']} saw count() go down: {counts}"
        # Every count includes at least this writer's own acknowledged batches...
        assert all(c >= own for c, own in zip(counts, own_batches, strict=True)), counts
        # ...and at some point also the other writer's, as they landed.
        assert any(c > own for c, own in zip(counts, own_batches, strict=True)), (
            f"writer {w['prefix']} never saw the other's writes in count(): {counts}"
        )
        assert out["seen_other"] > 0
        assert out["final"] == 2 * n_each
        assert out["failures"] == [], f"writer {w['prefix']} query misses: {out['failures']}"

    # Third-party readers: each does the full get() and queries its share of the records,
    # so that every record is checked by an exact-vector query (split to use both cores).
    verifiers = []
    for part in range(VERIFIERS):
        args = {
            "path": str(data),
            "settings": settings,
            "dim": DIM,
            "writers": [{"prefix": w["prefix"], "seed": w["seed"], "n": n_each} for w in writers],
            "part": part,
            "parts": VERIFIERS,
            "out": str(tmp_path / f"verify-{part}.json"),
        }
        verifiers.append(start_worker("mp_verifier", args, tmp_path))
    for p in verifiers:
        wait_ok(p, timeout=400)
    queried = 0
    for part in range(VERIFIERS):
        result = json.loads((tmp_path / f"verify-{part}.json").read_text())
        assert result["count"] == 2 * n_each
        assert result["n_missing"] == 0, result["missing"]
        assert result["got"] == 2 * n_each
        assert result["wrong_vec"] == []
        assert result["n_misses"] == 0, (
            f"{result['n_misses']} of {result['queried']} exact-vector queries (n_results=1) "
            f"did not return the record itself: {result['misses']}"
        )
        queried += result["queried"]
    assert queried == 2 * n_each


store = stores.store  # the fixture: each store in turn


def test_two_writers_exact_search(tmp_path: Path, store: StoreTarget) -> None:
    """2 x 20,000 ids (exact search path): all visible to both writers and a third process."""
    _run_two_writers(tmp_path, 20_000, store.settings)


def test_two_writers_forced_hnsw(tmp_path: Path, store: StoreTarget) -> None:
    """2 x 5,000 ids with HNSW forced and frequent snapshots: graph catch-up across processes."""
    settings = {"huedb_exact_max_floats": DIM * 1000, "huedb_snapshot_every": 1500}
    _run_two_writers(tmp_path, 5_000, {**store.settings, **settings})
    assert list((tmp_path / "data" / "index").glob("*.hnsw")), "no HNSW snapshot was written"
