"""Crash testing: SIGKILL a child creating, filling and deleting collections.

An embedded child process (`proc_workers.coll_writer`) creates collections, adds records
and deletes collections, logging an intent line before each call and an acknowledgement
after it (`tests/crash_log.py`). After each SIGKILL, with no manual repair, the collections
and their records equal the acknowledged history (plus possibly the in-flight operation,
applied whole), `verify()` is ok and the store holds no orphaned rows. On each store
(`tests/stores.py`): the child's SQLite data directory, or its PostgreSQL database (which
keeps running; the directory then holds the child's index snapshots).

`HUEDB_CRASH_TRIALS` (default 20) is the total number of kills, split 2:1:1:1 between the
server, collection, backup and import trials of `test_crash_server.py`,
`test_crash_collections.py` and `test_crash_backup_import.py` (at least 6 each), per store;
`HUEDB_CRASH_SEED` fixes the random schedule. The counts are printed and written to
`<pytest basetemp>/crash_server_report.json` (`tests/crash_state.py`).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import stores
from tests.crash_log import crash_seed, read_ack_log, sigkill
from tests.crash_state import (
    State,
    describe,
    dump_collection,
    opened,
    orphan_rows,
    record_report,
    same_state,
    trial_counts,
    verify_ok,
)
from tests.proc_workers import start_worker, stderr_of, vectors_for
from tests.stores import StoreTarget

DIM = 16


COLL_SETTINGS = {
    "huedb_sync": "full",
    "huedb_exact_max_floats": DIM * 20,
    "huedb_snapshot_every": 25,
}
Catalog = dict[str, State]  # collection name -> its records


def apply_coll_op(cat: Catalog, op: dict[str, Any]) -> Catalog:
    """The catalog after one collection-churn op."""
    out = dict(cat)
    name = op["name"]
    if op["op"] == "create":
        assert name not in out
        out[name] = {}
    elif op["op"] == "delete":
        del out[name]
    else:
        recs = dict(out[name])
        vecs = vectors_for(op["seed"], len(op["ids"]), DIM)
        for row, rid in enumerate(op["ids"]):
            recs[rid] = (vecs[row], {"seed": op["seed"], "row": row}, f"{rid}@{op['seed']}")
        out[name] = recs
    return out


def same_catalog(a: Catalog, b: Catalog) -> bool:
    """Same collections holding identical records."""
    return a.keys() == b.keys() and all(same_state(a[n], b[n]) for n in a)


def read_catalog(data: Path, store: StoreTarget) -> tuple[Catalog, list[str]]:
    """(every collection with its records, findability misses) from a fresh open."""
    cat: Catalog = {}
    misses: list[str] = []
    with opened(data, store, **COLL_SETTINGS) as client:
        for c in client.list_collections():
            col = client.get_collection(c.name)
            recs = dump_collection(col)
            assert col.count() == len(recs)
            cat[c.name] = recs
            if recs:
                ids = sorted(recs)
                res = col.query(
                    query_embeddings=np.stack([recs[i][0] for i in ids]),
                    n_results=1,
                    include=["distances"],
                )
                for want, got, dist in zip(ids, res["ids"], res["distances"], strict=True):
                    if got != [want] or dist[0] > 1e-4:
                        misses.append(f"{c.name}/{want} -> {got}")
    return cat, misses


def orphan_snapshots(data: Path, cat: Catalog, store: StoreTarget) -> set[str]:
    """Collection uuids with an index snapshot file but no collection."""
    index_dir = data / "index"
    if not index_dir.exists():
        return set()
    with opened(data, store, **COLL_SETTINGS) as client:
        live = {str(client.get_collection(n).id) for n in cat}
    return {p.stem for p in index_dir.glob("*.hnsw") if p.stem not in live}


store = stores.store  # the fixture: each store in turn


def test_collection_churn_sigkill(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, store: StoreTarget
) -> None:
    """Kill a child creating/filling/deleting collections; the catalog equals its acks."""
    trials = trial_counts()["collections"]
    seed = crash_seed()
    rng = random.Random(seed)
    data = tmp_path / "data"
    cat: Catalog = {}
    stats = {
        "trials": trials,
        "acknowledged_checked": 0,
        "creates": 0,
        "adds": 0,
        "deletes": 0,
        "inflight_applied": 0,
        "inflight_absent": 0,
        "orphan_snapshot_files_after_killed_delete": 0,
        "lost": 0,
    }
    unfindable: list[str] = []
    killed_deletes: set[str] = set()
    for trial in range(trials):
        log = tmp_path / f"ops-{trial}.jsonl"
        ready = tmp_path / f"ready-{trial}"
        child = start_worker(
            "coll_writer",
            {
                "path": str(data),
                "settings": {**COLL_SETTINGS, **store.settings},
                "dim": DIM,
                "trial": trial,
                "seed": rng.randrange(2**31),
                "log": str(log),
                "ready": str(ready),
            },
            tmp_path,
        )
        context = f"store={store.kind} seed={seed} trial={trial}"
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, f"{context}: child died:\n{stderr_of(child)}"
            assert time.monotonic() < deadline, f"{context}: child did not start"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 1.5))
        assert sigkill(child), f"{context}: child exited early:\n{stderr_of(child)}"
        acked, inflight = read_ack_log(log)
        for op in acked:
            cat = apply_coll_op(cat, op)
            stats[op["op"] + "s"] += 1
        stats["acknowledged_checked"] += len(acked)

        actual, misses = read_catalog(data, store)
        applied = None if inflight is None else apply_coll_op(cat, inflight)
        if same_catalog(actual, cat):
            stats["inflight_absent"] += inflight is not None
        elif applied is not None and same_catalog(actual, applied):
            cat = applied
            stats["inflight_applied"] += 1
        else:
            lost = sorted(set(cat) - set(actual))
            lost_records = sum(len(set(cat[n]) - set(actual[n])) for n in cat if n in actual)
            stats["lost"] += len(lost) + lost_records
            detail = {n: describe(actual.get(n, {}), cat[n]) for n in cat if n in actual}
            raise AssertionError(
                f"{context}: not the acknowledged history, nor it plus the whole in-flight "
                f"op {inflight}: have {sorted(actual)}, acked {sorted(cat)}; lost "
                f"collections {lost}, lost records {lost_records}; per collection {detail}"
            )
        if misses:
            unfindable.append(f"{context}: {misses[:5]}")
        orphans = orphan_rows(data, store)
        assert not any(orphans.values()), f"{context}: orphaned rows {orphans}"
        verify_ok(data, context, store)
        if inflight is not None and inflight["op"] == "delete":
            killed_deletes.add(inflight["uuid"])
        # A delete commits in the store, then removes the snapshot file: a kill in between
        # may leave the file behind, but an acknowledged delete must have removed it.
        orphans = orphan_snapshots(data, cat, store)
        assert orphans <= killed_deletes, (
            f"{context}: snapshot files of deleted collections {sorted(orphans - killed_deletes)}"
        )
        stats["orphan_snapshot_files_after_killed_delete"] = len(orphans)

    record_report(tmp_path_factory, f"collections-{store.kind}", stats)
    assert stats["lost"] == 0
    assert stats["creates"] >= trials and stats["deletes"] >= 1 and stats["adds"] >= trials, stats
    assert stats["inflight_applied"] + stats["inflight_absent"] >= trials // 4, stats
    assert not unfindable, "records not found by their own vector:\n" + "\n".join(unfindable)
