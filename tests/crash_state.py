"""What the crash tests of the server, collections, backup and import share.

Records as (vector, metadata, document) and their exact comparison, the trial split of
`HUEDB_CRASH_TRIALS`, the JSON report, and opening/dumping/verifying a store in this
process (its engine closed afterwards, so the next process to open the store starts fresh),
on either store (`tests/stores.py`; SQLite by default).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from huedb.api.client import clear_system_cache
from tests.crash_log import crash_trials
from tests.stores import SQLITE, StoreTarget

REPORT: dict[str, Any] = {}

Record = tuple[np.ndarray, dict[str, Any] | None, str | None]  # (vector, metadata, document)
State = dict[str, Record]


# Kills of `huedb run` on a PostgreSQL store the server scenario makes at least (issue 14,
# acceptance 1: 0 lost over >= 50 trials of a server process killed on PostgreSQL).
PG_SERVER_KILLS_MIN = 50


def trial_counts(kind: str = SQLITE.kind) -> dict[str, int]:
    """Trials per scenario on a store of `kind`: HUEDB_CRASH_TRIALS split 2:1:1:1, at least
    6 each; on PostgreSQL at least PG_SERVER_KILLS_MIN server trials."""
    total = crash_trials()
    server = max(6, total * 2 // 5)
    coll = max(6, total // 5)
    backup = max(6, total // 5)
    imports = max(6, total - server - coll - backup)
    if kind != SQLITE.kind:
        server = max(server, PG_SERVER_KILLS_MIN)
    return {"server": server, "collections": coll, "backup": backup, "import": imports}


def record_report(tmp_path_factory: pytest.TempPathFactory, name: str, data: dict) -> None:
    """Print one scenario's counts and (re)write the JSON report in the pytest base temp."""
    REPORT[name] = data
    out = tmp_path_factory.getbasetemp() / "crash_server_report.json"
    totals = {
        "trials": sum(v.get("trials", 0) for v in REPORT.values()),
        "acknowledged_checked": sum(v.get("acknowledged_checked", 0) for v in REPORT.values()),
        "lost": sum(v.get("lost", 0) for v in REPORT.values()),
    }
    out.write_text(json.dumps({"scenarios": REPORT, "totals": totals}, indent=2))
    print(f"\ncrash[{name}]: {json.dumps(data)}\ncrash totals: {totals} -> {out}")


def same_record(a: Record, b: Record) -> bool:
    """Exact equality of (vector, metadata, document)."""
    return a[1] == b[1] and a[2] == b[2] and np.array_equal(a[0], b[0])


def diff(actual: State, expected: State) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, changed) ids of `actual` against `expected`."""
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    changed = sorted(
        i for i in expected.keys() & actual.keys() if not same_record(actual[i], expected[i])
    )
    return missing, extra, changed


def same_state(actual: State, expected: State) -> bool:
    """True when both hold the same ids with identical records."""
    return not any(diff(actual, expected))


def describe(actual: State, expected: State) -> str:
    """A short account of how `actual` differs from `expected`."""
    missing, extra, changed = diff(actual, expected)
    return (
        f"{len(missing)} missing {missing[:8]}, {len(extra)} unexpected {extra[:8]}, "
        f"{len(changed)} changed {changed[:8]}"
    )


# Rows that belong to no collection / no record; the same tables and columns on both stores.
ORPHAN_QUERIES = {
    "records": "SELECT count(*) FROM records WHERE cid NOT IN (SELECT cid FROM collections)",
    "embeddings": "SELECT count(*) FROM embeddings WHERE key NOT IN (SELECT key FROM records)",
    "record_meta": "SELECT count(*) FROM record_meta WHERE key NOT IN (SELECT key FROM records)",
}


def orphan_rows(data: Path, store: StoreTarget = SQLITE) -> dict[str, int]:
    """Rows of the store (SQLite in `data`, or the PostgreSQL database) that belong to no
    collection / no record (must all be 0)."""
    if store.is_postgres:
        with psycopg.connect(store.url, connect_timeout=10) as pg:
            return {name: pg.execute(q).fetchone()[0] for name, q in ORPHAN_QUERIES.items()}
    conn = sqlite3.connect(f"file:{data / 'huedb.sqlite3'}?mode=ro", uri=True)
    try:
        return {name: conn.execute(q).fetchone()[0] for name, q in ORPHAN_QUERIES.items()}
    finally:
        conn.close()


def verify_ok(data: Path, context: str, store: StoreTarget = SQLITE) -> None:
    """`huedb.ops.verify.verify(data).ok` on the store, with its report in the failure
    message."""
    from huedb.ops.verify import verify

    try:
        report = verify(data, store=store.url)
    finally:
        clear_system_cache()
    assert report.ok, f"{context}: verify failed:\n" + "\n".join(report.lines())


@contextlib.contextmanager
def opened(data: Path, store: StoreTarget = SQLITE, **settings: Any) -> Iterator[Any]:
    """A PersistentClient on `data` and the store, closed (and its shared engine released)
    afterwards."""
    client = store.client(data, settings)
    try:
        yield client
    finally:
        client.close()
        clear_system_cache()


def dump_pages(read_page: Callable[[int, int], dict[str, Any]], page: int) -> State:
    """Every record, read by `read_page(limit, offset)` (a get result) until a short page."""
    out: State = {}
    offset = 0
    while True:
        got = read_page(page, offset)
        for i, rid in enumerate(got["ids"]):
            assert rid not in out, f"get() returned {rid} twice"
            out[rid] = (
                np.asarray(got["embeddings"][i], dtype=np.float32),
                got["metadatas"][i],
                got["documents"][i],
            )
        if len(got["ids"]) < page:
            return out
        offset += page


def dump_collection(col: Any, page: int = 5000) -> State:
    """Every record of an embedded collection."""
    include = ["embeddings", "metadatas", "documents"]
    return dump_pages(
        lambda limit, offset: col.get(limit=limit, offset=offset, include=include), page
    )
