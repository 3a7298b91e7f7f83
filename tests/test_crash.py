"""SIGKILL a writer at random moments; everything acknowledged survives, nothing is half-done.

One data directory is reused across trials so state accumulates. In each trial a child
process applies random add/upsert/update/delete batches to a collection with the HNSW index
forced and a small snapshot interval (so index snapshots are written often), logging each
call's intent before it and its acknowledgement after it returns (both fsynced). The parent
kills it with SIGKILL: at a random moment, while it is still starting up, or as soon as it
starts writing an index snapshot. A fresh process then reopens the directory (no repair)
and dumps every record, checking that each is found by its own vector (n_results=1). The
parent asserts that the stored state equals the acknowledged history, plus possibly the
one in-flight batch applied as a whole.

Each index kind gets two thirds of `HUEDB_CRASH_TRIALS` (default 20), at least 13: 26 kills
of a writer by default; `HUEDB_CRASH_SEED` fixes the random schedule (printed on failure);
the log and knobs are `tests/crash_log.py`.

SQLite only: this is the kill of a process that holds the SQLite store's file itself (its
WAL and fsyncs). On the PostgreSQL store a killed process holds no part of the store; the
kills there (of `huedb run`, an embedded writer of collections, `huedb backup` and `huedb
import`: 50 by default) are the parametrised `test_crash_server.py`,
`test_crash_collections.py` and `test_crash_backup_import.py`.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.crash_log import crash_seed, crash_trials, in_call, read_ack_log, sigkill
from tests.proc_workers import run_worker, start_worker, stderr_of, vectors_for

DIM = 16
HNSW = {"huedb_sync": "full", "huedb_exact_max_floats": DIM * 200, "huedb_snapshot_every": 60}
EXACT = {"huedb_sync": "full"}  # default thresholds: exact search, no snapshots
TARGET_SIZE = 1500

State = dict[str, tuple[np.ndarray, str]]  # id -> (vector, document)


def _apply(state: State, op: dict[str, Any]) -> State:
    """The state after one logged op (ops are applied as Chroma defines them)."""
    out = dict(state)
    ids = op["ids"]
    if op["op"] == "delete":
        for i in ids:
            out.pop(i, None)
        return out
    vecs = vectors_for(op["seed"], len(ids), DIM)
    for row, rid in enumerate(ids):
        if op["op"] == "add" and rid in out:
            continue
        if op["op"] == "update" and rid not in out:
            continue
        out[rid] = (vecs[row], f"{rid}@{op['seed']}")
    return out


def _same(actual: State, expected: State) -> bool:
    if actual.keys() != expected.keys():
        return False
    return all(
        actual[i][1] == expected[i][1] and np.array_equal(actual[i][0], expected[i][0])
        for i in expected
    )


def _describe(actual: State, expected: State, inflight: dict[str, Any] | None) -> str:
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    changed = sorted(
        i
        for i in expected.keys() & actual.keys()
        if actual[i][1] != expected[i][1] or not np.array_equal(actual[i][0], expected[i][0])
    )
    op = None if inflight is None else (inflight["op"], len(inflight["ids"]))
    return (
        f"acknowledged state not matched: {len(missing)} missing {missing[:10]}, "
        f"{len(extra)} unexpected {extra[:10]}, {len(changed)} changed {changed[:10]}; "
        f"in-flight op {op}"
    )


def _temp_files(index_dir: Path) -> set[str]:
    """Names in the index directory other than finished snapshots and lock files."""
    if not index_dir.exists():
        return set()
    return {p.name for p in index_dir.iterdir() if p.suffix not in (".hnsw", ".lock")}


def _kill_when(
    proc: Any, mode: str, ready: Path, log: Path, index_dir: Path, rng: random.Random
) -> bool:
    """Kill `proc` with SIGKILL at a moment chosen by `mode`; True if a snapshot was torn."""
    leftovers = _temp_files(index_dir)
    if mode == "early":
        time.sleep(rng.uniform(0.05, 0.8))
    else:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, f"writer died while starting:\n{stderr_of(proc)}"
            assert time.monotonic() < deadline, "writer did not start"
            time.sleep(0.002)
        if mode == "random":
            time.sleep(rng.uniform(0.0, 1.2))
        elif mode == "inflight":  # during an add/upsert/update/delete call
            time.sleep(rng.uniform(0.0, 0.5))
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and not in_call(log):
                time.sleep(0.0002)
        else:  # "snapshot": as soon as a temporary snapshot file appears
            deadline = time.monotonic() + rng.uniform(1.0, 3.0)
            while time.monotonic() < deadline and not (_temp_files(index_dir) - leftovers):
                time.sleep(0.0005)
    assert sigkill(proc), f"writer exited before the kill:\n{stderr_of(proc)}"
    return bool(_temp_files(index_dir) - leftovers)


@pytest.mark.parametrize("index", ["hnsw", "exact"])
def test_sigkill_keeps_every_acknowledged_batch(tmp_path: Path, index: str) -> None:
    """Kill a writer >= 13 times per index kind; every acked batch is present and findable,
    none half-done.

    Per trial: the directory opens in a fresh process, the stored records equal the
    acknowledged history (plus, possibly, the whole in-flight batch), and each record is
    returned by a query for its own vector.
    """
    settings = HNSW if index == "hnsw" else EXACT
    trials = max(13, crash_trials() * 2 // 3)
    seed = crash_seed()
    rng = random.Random(seed)
    data = tmp_path / "data"
    index_dir = data / "index"
    state: State = {}
    stats = {"acked": 0, "inflight_applied": 0, "inflight_absent": 0, "torn_snapshots": 0}
    unfindable: list[str] = []
    modes = ["random", "snapshot", "inflight", "early", "snapshot", "inflight"]
    for trial in range(trials):
        mode = modes[trial % len(modes)]
        log = tmp_path / f"ops-{trial}.jsonl"
        ready = tmp_path / f"ready-{trial}"
        writer = start_worker(
            "crash_writer",
            {
                "path": str(data),
                "settings": settings,
                "dim": DIM,
                "trial": trial,
                "seed": rng.randrange(2**31),
                "target_size": TARGET_SIZE,
                "log": str(log),
                "ready": str(ready),
            },
            tmp_path,
        )
        context = f"index={index} seed={seed} trial={trial} mode={mode}"
        stats["torn_snapshots"] += _kill_when(writer, mode, ready, log, index_dir, rng)
        acked, inflight = read_ack_log(log)
        stats["acked"] += len(acked)
        for op in acked:
            state = _apply(state, op)

        # Reopen in a fresh process: it must open without repair and find every record.
        out = tmp_path / f"verify-{trial}.json"
        run_worker(
            "crash_verifier",
            {"path": str(data), "settings": settings, "dim": DIM, "out": str(out)},
            tmp_path,
            timeout=120,
        )
        result = json.loads(out.read_text())
        vecs = np.load(str(out) + ".npy")
        actual: State = {
            rid: (vecs[n], doc)
            for n, (rid, doc) in enumerate(zip(result["ids"], result["documents"], strict=True))
        }
        assert len(actual) == len(result["ids"]), f"{context}: duplicate ids returned by get()"
        assert result["count"] == len(actual), context
        if _same(actual, state):
            stats["inflight_absent"] += inflight is not None
        else:
            assert inflight is not None, f"{context}: {_describe(actual, state, None)}"
            with_inflight = _apply(state, inflight)
            assert _same(actual, with_inflight), f"{context}: {_describe(actual, state, inflight)}"
            state = with_inflight
            stats["inflight_applied"] += 1
        # Findability is checked after all trials, so a search defect does not hide a
        # durability or atomicity failure in a later trial.
        if result["n_misses"]:
            unfindable.append(
                f"{context}: {result['n_misses']} of {len(actual)}: {result['misses']}"
            )

    print(f"crash test seed={seed} trials={trials} stats={stats}")
    # The schedule must really have exercised the interesting cases.
    assert stats["acked"] >= trials, stats
    assert stats["inflight_applied"] + stats["inflight_absent"] >= trials // 4, stats
    if index == "hnsw":
        assert trials < 6 or stats["torn_snapshots"] >= 1, stats
    assert len(state) > 0
    assert not unfindable, (
        "records present but not returned by a query for their own vector (n_results=1):\n"
        + "\n".join(unfindable)
    )
