"""Crash testing: SIGKILL `huedb backup` and `huedb import` at random moments.

`huedb backup` of a 20k x 32 store is killed at random; the source still verifies and
holds all its data, and the output path holds either nothing or a complete backup
(`read_manifest` works, `huedb restore` + verify pass, the restored data is exact).
`huedb import` of a 20k x 32 Parquet file is killed at random; the target verifies and
holds a batch-aligned prefix of the file, every record exact, and rerunning the import
completes it exactly.

Both run on each store (`tests/stores.py`). On PostgreSQL the source is a database (its
backups are restored into SQLite directories: a backup is also the way between the stores)
and each import trial imports into a fresh database.

`HUEDB_CRASH_TRIALS` (default 20) is the total number of kills, split 2:1:1:1 between the
server, collection, backup and import trials of `test_crash_server.py`,
`test_crash_collections.py` and `test_crash_backup_import.py` (at least 6 each), per store;
`HUEDB_CRASH_SEED` fixes the random schedule. The counts are printed and written to
`<pytest basetemp>/crash_server_report.json` (`tests/crash_state.py`).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tests import stores
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
from tests.stores import SQLITE, StoreTarget, store_target

BIG_N, BIG_DIM = 20_000, 32
IMPORT_BATCH = 2500


@dataclass
class Source:
    """A 20k x 32 store (collection `big`, plus `small`) and its Parquet export."""

    store: StoreTarget
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


module_store = stores.module_store  # the fixture: each store in turn, for the module


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, module_store: StoreTarget) -> Source:
    """Build the source store once (on each store) and export `big` to Parquet."""
    from huedb.ops.parquet import export_collection

    root = tmp_path_factory.mktemp("source")
    data = root / "data"
    ids, vecs, metas, docs = big_records()
    small_vecs = vectors_for(99, 50, 8)
    small = {f"s-{i}": (small_vecs[i], {"i": i}, f"small {i}") for i in range(50)}
    with opened(data, module_store, huedb_sync="full") as client:
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
    return Source(module_store, data, parquet, ids, vecs, small)


def check_source_store(data: Path, small: State, context: str, store: StoreTarget = SQLITE) -> None:
    """The store (in `data`, or `store`'s database) verifies ok and holds exactly `big` and
    `small`."""
    verify_ok(data, context, store)
    with opened(data, store) as client:
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


@dataclass
class KillSchedule:
    """When to kill a command: at a random moment of its working time (`active` seconds
    after it began), which shrinks to the shortest complete run seen, so a calibration run
    slowed by a cold cache or a busy machine does not let most later runs finish first."""

    active: float
    rng: random.Random

    def run_and_kill(self, marker: Any, *args: str) -> tuple[int, bool]:
        """Start `huedb *args`; once `marker()` holds (the work began), SIGKILL it at a random
        moment within its working time. Returns (exit code, killed)."""
        proc = start_cli(*args)
        deadline = time.monotonic() + 60
        while not marker() and proc.poll() is None:
            assert time.monotonic() < deadline, f"huedb {' '.join(args)} did not start working"
            time.sleep(0.001)
        began = time.monotonic()
        kill_at = began + self.rng.uniform(0.0, self.active * 1.1)
        while time.monotonic() < kill_at and proc.poll() is None:
            time.sleep(0.001)
        if proc.poll() is not None:  # finished first: it works at most this long
            self.active = min(self.active, time.monotonic() - began)
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
    calib.parent.mkdir()
    from_source = ("--path", str(source.data), *source.store.cli_args())
    schedule = KillSchedule(
        active_seconds(
            lambda: calib.parent.exists() and any(calib.parent.iterdir()),
            *("backup", *from_source, "--out", str(calib)),
        ),
        rng,
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
        context = f"store={source.store.kind} seed={seed} trial={trial}"
        out = out_dir / f"b{trial}.tar"
        returncode, killed = schedule.run_and_kill(
            lambda out=out: any(p.name.startswith(f".{out.name}") for p in out_dir.iterdir()),
            *("backup", *from_source, "--out", str(out)),
        )
        if killed:
            stats["killed"] += 1
        else:
            assert returncode == 0, f"{context}: backup failed with {returncode}"
            stats["finished_before_kill"] += 1
            stats["acknowledged_checked"] += 1  # exit 0 acknowledges the backup
        check_source_store(source.data, source.small, context, source.store)
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
    record_report(tmp_path_factory, f"backup-{source.store.kind}", stats)
    assert stats["output_absent"] + stats["output_complete"] == trials
    assert stats["killed"] >= trials // 3, stats


def imported_state(data: Path, store: StoreTarget) -> State | None:
    """The imported collection of the store, or None when the import had not created it."""
    with opened(data, store) as client:
        names = [c.name for c in client.list_collections()]
        if not names:
            return None
        assert names == ["big"], names
        return dump_collection(client.get_collection("big"))


@contextlib.contextmanager
def store_probe(data: Path, store: StoreTarget) -> Iterator[Callable[[], bool]]:
    """A check, cheap enough to poll, of whether huedb created its store: the SQLite file in
    `data`, or its tables in the PostgreSQL database."""
    if not store.is_postgres:
        yield lambda: (data / "huedb.sqlite3").exists()
        return
    with psycopg.connect(store.url, autocommit=True, connect_timeout=10) as conn:
        query = "SELECT to_regclass('public.huedb_meta') IS NOT NULL"
        yield lambda: conn.execute(query).fetchone() == (True,)


def import_trial(
    source: Source,
    target: Path,
    store: StoreTarget,
    file_rows: tuple[State, list[str]],
    schedule: KillSchedule,
    context: str,
) -> tuple[int, bool, int]:
    """Import `source`'s Parquet file (its records and their order: `file_rows`) into the
    store (in `target`, or `store`'s database) and kill it at a random moment of `schedule`;
    the store then verifies and holds an exact, batch-aligned prefix of the file. Returns
    (exit code, killed, rows present)."""
    want, order = file_rows
    with store_probe(target, store) as began:
        returncode, killed = schedule.run_and_kill(
            began,
            *("import", str(source.parquet), "--path", str(target), *store.cli_args()),
            *("--batch-size", str(IMPORT_BATCH)),
        )
        created = began()
    if created:
        verify_ok(target, context, store)
    got = imported_state(target, store) if created else None
    n = 0 if got is None else len(got)
    assert n % IMPORT_BATCH == 0 or n == BIG_N, f"{context}: torn batch: {n} rows"
    if got is not None:
        prefix = {rid: want[rid] for rid in order[:n]}
        assert same_state(got, prefix), f"{context}: not a prefix: {describe(got, prefix)}"
    return returncode, killed, n


def test_import_sigkill(
    source: Source,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
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
    kind = source.store.kind
    calib = tmp_path / "calib"
    with store_target(kind, request) as store, store_probe(calib, store) as began:
        active = active_seconds(
            began, *("import", str(source.parquet), "--path", str(calib), *store.cli_args(), *args)
        )
    schedule = KillSchedule(active, rng)
    stats = {
        "trials": trials,
        "killed": 0,
        "finished_before_kill": 0,
        "prefix_rows": [],
        "acknowledged_checked": 0,
        "lost": 0,
    }
    for trial in range(trials):
        context = f"store={kind} seed={seed} trial={trial}"
        target = tmp_path / f"import-{trial}"
        with store_target(kind, request) as store:
            returncode, killed, n = import_trial(
                source, target, store, (want, order), schedule, context
            )
            if killed:
                stats["killed"] += 1
            else:
                assert returncode == 0, f"{context}: import failed with {returncode}"
                stats["finished_before_kill"] += 1
            if returncode == 0:
                assert n == BIG_N, f"{context}: import exited 0 with {n} rows"
                stats["acknowledged_checked"] += BIG_N
            else:  # every batch a killed import wrote is a committed transaction: all checked
                stats["acknowledged_checked"] += n
            stats["prefix_rows"].append(n)
            with opened(target, store) as client:
                report = import_collection(client, source.parquet, batch_size=IMPORT_BATCH)
            assert report.rows == BIG_N, f"{context}: rerun imported {report.rows}"
            verify_ok(target, f"{context} (rerun)", store)
            final = imported_state(target, store)
            assert final is not None and same_state(final, want), (
                f"{context}: rerun did not complete the import: {describe(final or {}, want)}"
            )
    record_report(tmp_path_factory, f"import-{kind}", stats)
    partial = [n for n in stats["prefix_rows"] if 0 < n < BIG_N]
    assert stats["killed"] >= trials // 3, stats
    assert partial or trials < 10, f"no kill landed mid-import: {stats}"
