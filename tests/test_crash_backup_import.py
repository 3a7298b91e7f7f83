"""Crash testing: SIGKILL `huedb backup` and `huedb import` at random moments.

`huedb backup` of a 20k x 32 store is killed at random; the source still verifies and
holds all its data, and the output path holds either nothing or a complete backup
(`read_manifest` works, `huedb restore` + verify pass, the restored data is exact).
`huedb import` of a 20k x 32 Parquet file is killed at random; the target verifies and
holds a batch-aligned prefix of the file, every record exact, and rerunning the import
completes it exactly.

`HUEDB_CRASH_TRIALS` (default 50) is the total number of kills, split 2:1:1:1 between the
server, collection, backup and import trials of `test_crash_server.py`,
`test_crash_collections.py` and `test_crash_backup_import.py` (at least 10 each);
`HUEDB_CRASH_SEED` fixes the random schedule. The counts are printed and written to
`<pytest basetemp>/crash_server_report.json` (`tests/crash_state.py`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli import check_cli, start_cli
from tests.crash_log import crash_seed, sigkill
from tests.crash_state import (
    State,
    describe,
    dump_collection,
    opened,
    record_report,
    same_state,
    trial_counts,
    verify_ok,
)
from tests.proc_workers import vectors_for

BIG_N, BIG_DIM = 20_000, 32
IMPORT_BATCH = 2500


@dataclass
class Source:
    """A 20k x 32 store (collection `big`, plus `small`) and its Parquet export."""

    data: Path
    parquet: Path
    ids: list[str]
    vectors: np.ndarray
    small: State


def big_records(n: int = BIG_N) -> tuple[list[str], np.ndarray, list[dict], list[str]]:
    """The `big` collection's ids, vectors, metadatas and documents."""
    ids = [f"big-{i:06d}" for i in range(n)]
    vecs = vectors_for(4242, n, BIG_DIM)
    metas = [{"i": i, "parity": i % 2, "tag": f"t{i % 7}"} for i in range(n)]
    docs = [f"document {i}" for i in range(n)]
    return ids, vecs, metas, docs


def expected_big() -> State:
    """The `big` collection as a State."""
    ids, vecs, metas, docs = big_records()
    return {rid: (vecs[i], metas[i], docs[i]) for i, rid in enumerate(ids)}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """Build the source store once and export `big` to Parquet."""
    from huedb.ops.parquet import export_collection

    root = tmp_path_factory.mktemp("source")
    data = root / "data"
    ids, vecs, metas, docs = big_records()
    small_vecs = vectors_for(99, 50, 8)
    small = {f"s-{i}": (small_vecs[i], {"i": i}, f"small {i}") for i in range(50)}
    with opened(data, huedb_sync="full") as client:
        big = client.create_collection("big", metadata={"kind": "big"})
        for s in range(0, BIG_N, 5000):
            big.add(
                ids=ids[s : s + 5000],
                embeddings=vecs[s : s + 5000],
                metadatas=metas[s : s + 5000],
                documents=docs[s : s + 5000],
            )
        client.create_collection("small").add(
            ids=list(small),
            embeddings=np.stack([v[0] for v in small.values()]),
            metadatas=[v[1] for v in small.values()],
            documents=[v[2] for v in small.values()],
        )
        parquet = root / "big.parquet"
        export_collection(big, parquet)
    return Source(data, parquet, ids, vecs, small)


def check_source_store(data: Path, small: State, context: str) -> None:
    """`data` verifies ok and holds exactly `big` and `small`."""
    verify_ok(data, context)
    with opened(data) as client:
        names = sorted(c.name for c in client.list_collections())
        assert names == ["big", "small"], f"{context}: collections {names}"
        big = dump_collection(client.get_collection("big"))
        want = expected_big()
        assert same_state(big, want), f"{context}: big: {describe(big, want)}"
        got_small = dump_collection(client.get_collection("small"))
        assert same_state(got_small, small), f"{context}: small: {describe(got_small, small)}"


def active_seconds(marker: Any, *args: str) -> float:
    """Seconds a complete `huedb *args` run works after `marker()` first holds."""
    proc = start_cli(*args)
    while not marker() and proc.poll() is None:
        time.sleep(0.001)
    t0 = time.monotonic()
    assert proc.wait(timeout=120) == 0, f"huedb {' '.join(args)} failed"
    return time.monotonic() - t0


def run_and_kill(marker: Any, active: float, rng: random.Random, *args: str) -> tuple[int, bool]:
    """Start `huedb *args`; once `marker()` holds (the work began), SIGKILL it at a random
    moment within its expected working time. Returns (exit code, killed)."""
    proc = start_cli(*args)
    deadline = time.monotonic() + 60
    while not marker() and proc.poll() is None:
        assert time.monotonic() < deadline, f"huedb {' '.join(args)} did not start working"
        time.sleep(0.001)
    time.sleep(rng.uniform(0.0, active * 1.1))
    killed = sigkill(proc)
    return proc.returncode, killed


def test_backup_sigkill(
    source: Source, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Kill `huedb backup` at random: the source is intact, the output complete or absent."""
    trials = trial_counts()["backup"]
    seed = crash_seed()
    rng = random.Random(seed)
    out_dir = tmp_path / "backups"
    out_dir.mkdir()
    calib = tmp_path / "calib" / "full.tar"
    active = active_seconds(
        lambda: calib.parent.exists() and any(calib.parent.iterdir()),
        *("backup", "--path", str(source.data), "--out", str(calib)),
    )
    stats = {
        "trials": trials,
        "killed": 0,
        "finished_before_kill": 0,
        "output_absent": 0,
        "output_complete": 0,
        "leftover_temp_entries": 0,
        "acknowledged_checked": 0,
        "lost": 0,
    }
    for trial in range(trials):
        context = f"seed={seed} trial={trial}"
        out = out_dir / f"b{trial}.tar"
        returncode, killed = run_and_kill(
            lambda out=out: any(p.name.startswith(f".{out.name}") for p in out_dir.iterdir()),
            active,
            rng,
            *("backup", "--path", str(source.data), "--out", str(out)),
        )
        if killed:
            stats["killed"] += 1
        else:
            assert returncode == 0, f"{context}: backup failed with {returncode}"
            stats["finished_before_kill"] += 1
            stats["acknowledged_checked"] += 1  # exit 0 acknowledges the backup
        check_source_store(source.data, source.small, context)
        if not out.exists():
            assert returncode != 0, f"{context}: backup exited 0 but wrote no file"
            stats["output_absent"] += 1
            continue
        from huedb.ops.backup import read_manifest

        manifest = read_manifest(out)
        counts = {c["name"]: c["count"] for c in manifest.collections}
        assert counts == {"big": BIG_N, "small": len(source.small)}, f"{context}: {counts}"
        restored = tmp_path / f"restored-{trial}"
        check_cli("restore", str(out), "--path", str(restored), timeout=120)
        check_source_store(restored, source.small, f"{context} (restored)")
        stats["output_complete"] += 1
    final_names = {f"b{t}.tar" for t in range(trials)}
    leftovers = sorted(p.name for p in out_dir.iterdir() if p.name not in final_names)
    stats["leftover_temp_entries"] = len(leftovers)
    stats["leftover_examples"] = leftovers[:3]
    record_report(tmp_path_factory, "backup", stats)
    assert stats["output_absent"] + stats["output_complete"] == trials
    assert stats["killed"] >= trials // 3, stats


def imported_state(data: Path) -> State | None:
    """The imported collection of `data`, or None when the import had not created it."""
    with opened(data) as client:
        names = [c.name for c in client.list_collections()]
        if not names:
            return None
        assert names == ["big"], names
        return dump_collection(client.get_collection("big"))


def test_import_sigkill(
    source: Source, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Kill `huedb import` at random: a verified, exact, batch-aligned prefix; rerun completes."""
    from huedb.ops.parquet import import_collection, read_batches

    trials = trial_counts()["import"]
    seed = crash_seed()
    rng = random.Random(seed)
    batches = list(read_batches(source.parquet))
    want: State = {
        rid: (
            b.embeddings[n],
            (b.metadatas or [None] * len(b))[n],
            (b.documents or [None] * len(b))[n],
        )
        for b in batches
        for n, rid in enumerate(b.ids)
    }
    order = [rid for b in batches for rid in b.ids]
    assert same_state(want, expected_big()), "the Parquet export differs from its source"
    args = ("--batch-size", str(IMPORT_BATCH))
    calib = tmp_path / "calib"
    active = active_seconds(
        lambda: (calib / "huedb.sqlite3").exists(),
        *("import", str(source.parquet), "--path", str(calib), *args),
    )
    stats = {
        "trials": trials,
        "killed": 0,
        "finished_before_kill": 0,
        "prefix_rows": [],
        "acknowledged_checked": 0,
        "lost": 0,
    }
    for trial in range(trials):
        context = f"seed={seed} trial={trial}"
        target = tmp_path / f"import-{trial}"
        returncode, killed = run_and_kill(
            lambda target=target: (target / "huedb.sqlite3").exists(),
            active,
            rng,
            *("import", str(source.parquet), "--path", str(target), *args),
        )
        if killed:
            stats["killed"] += 1
        else:
            assert returncode == 0, f"{context}: import failed with {returncode}"
            stats["finished_before_kill"] += 1
        if (target / "huedb.sqlite3").exists():
            verify_ok(target, context)
        got = imported_state(target) if target.exists() else None
        n = 0 if got is None else len(got)
        assert n % IMPORT_BATCH == 0 or n == BIG_N, f"{context}: torn batch: {n} rows"
        prefix = {rid: want[rid] for rid in order[:n]}
        if got is not None:
            assert same_state(got, prefix), f"{context}: not a prefix: {describe(got, prefix)}"
        if returncode == 0:
            assert n == BIG_N, f"{context}: import exited 0 with {n} rows"
            stats["acknowledged_checked"] += BIG_N
        else:  # every batch a killed import wrote is a committed transaction: all checked
            stats["acknowledged_checked"] += n
        stats["prefix_rows"].append(n)
        with opened(target) as client:
            report = import_collection(client, source.parquet, batch_size=IMPORT_BATCH)
        assert report.rows == BIG_N, f"{context}: rerun imported {report.rows}"
        verify_ok(target, f"{context} (rerun)")
        final = imported_state(target)
        assert final is not None and same_state(final, want), (
            f"{context}: rerun did not complete the import: {describe(final or {}, want)}"
        )
    record_report(tmp_path_factory, "import", stats)
    partial = [n for n in stats["prefix_rows"] if 0 < n < BIG_N]
    assert stats["killed"] >= trials // 3, stats
    assert partial or trials < 10, f"no kill landed mid-import: {stats}"
