"""Crash testing: SIGKILL the HTTP server under write traffic, restart, check everything.

`huedb run` (`--workers 2` every other start, every third of PostgreSQL's 50, else
`--workers 1`), on each store (`tests/stores.py`:
a SQLite data directory, or a PostgreSQL database that keeps running while the huedb server
is killed, with the server's derived files in the directory): two client threads drive
add/upsert/update/delete batches over raw httpx on disjoint id ranges. An operation counts
as acknowledged only when its response is 2xx. The whole server process group is killed
0.2-1.2 s into the traffic; the server is restarted on the same directory, with no manual
repair, and must hold every acknowledged effect (exact vector, metadata and document;
deletes absent; updates applied), each thread's single in-flight batch either entirely
applied or not at all, and every record must be found by a query for its own vector
(n_results=1).

`HUEDB_CRASH_TRIALS` (default 20) is the total number of kills, split 2:1:1:1 between the
server, collection, backup and import trials of `test_crash_server.py`,
`test_crash_collections.py` and `test_crash_backup_import.py` (at least 6 each), per store;
on PostgreSQL the server scenario makes 50 kills at least;
`HUEDB_CRASH_SEED` fixes the random schedule. The counts are printed and written to
`<pytest basetemp>/crash_server_report.json` (`tests/crash_state.py`).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import stores
from tests.crash_log import crash_seed
from tests.crash_state import (
    Record,
    State,
    describe,
    diff,
    dump_pages,
    record_report,
    same_state,
    trial_counts,
)
from tests.proc_workers import vectors_for
from tests.servers import start_server
from tests.stores import StoreTarget

DB = "/api/v2/tenants/default_tenant/databases/default_database"
DIM = 16


def apply_op(state: State, op: dict[str, Any]) -> State:
    """The state after one server op, with Chroma's semantics (add skips existing ids,
    update skips missing ones, a document-only update keeps vector and metadata)."""
    out = dict(state)
    ids = op["ids"]
    if op["op"] == "delete":
        for i in ids:
            out.pop(i, None)
        return out
    vecs = vectors_for(op["seed"], len(ids), DIM)
    for row, rid in enumerate(ids):
        new: Record = (vecs[row], {"seed": op["seed"], "row": row}, f"{rid}@{op['seed']}")
        if op["op"] == "add" and rid in out:
            continue
        if op["op"] in ("update", "update_doc") and rid not in out:
            continue
        if op["op"] == "update_doc":
            new = (out[rid][0], out[rid][1], new[2])
        out[rid] = new
    return out


def op_body(op: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The route and JSON body of one server op."""
    ids = op["ids"]
    if op["op"] == "delete":
        return "delete", {"ids": ids}
    vecs = vectors_for(op["seed"], len(ids), DIM)
    docs = [f"{rid}@{op['seed']}" for rid in ids]
    if op["op"] == "update_doc":
        return "update", {"ids": ids, "documents": docs}
    body = {
        "ids": ids,
        "embeddings": vecs.tolist(),
        "metadatas": [{"seed": op["seed"], "row": r} for r in range(len(ids))],
        "documents": docs,
    }
    return op["op"], body


@dataclass
class Driver:
    """One client thread's history: acknowledged ops, the op in flight, unexpected errors."""

    name: str
    seed: int
    acked: list[dict[str, Any]] = field(default_factory=list)
    inflight: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    pool: int = 300

    def run(self, base: str, stop: threading.Event) -> None:
        """Send random batches until the connection fails (the kill) or `stop` is set."""
        rng = random.Random(self.seed)
        counter = 0
        # Plain HTTP on loopback: verify=False only skips loading a CA bundle (~26 ms).
        with httpx.Client(base_url=base, timeout=20, verify=False) as http:
            while not stop.is_set():
                kind = rng.choices(
                    ["add", "upsert", "update", "update_doc", "delete"], [3, 3, 2, 1, 2]
                )[0]
                n = rng.randint(1, 40)
                ids = [f"{self.name}-{i}" for i in rng.sample(range(self.pool), n)]
                counter += 1
                op = {"op": kind, "ids": ids, "seed": self.seed * 10_000 + counter}
                route, body = op_body(op)
                self.inflight = op
                try:
                    resp = http.post(f"/{route}", json=body)
                except httpx.HTTPError:
                    return  # the server died: `op` stays in flight
                if not 200 <= resp.status_code < 300:
                    self.errors.append(f"{route} -> {resp.status_code} {resp.text[:300]}")
                    return  # unexpected while alive: reported as a failure by the test
                self.inflight = None
                self.acked.append(op)


def http_collection(http: httpx.Client) -> str:
    """The id of the crash collection (get_or_create)."""
    resp = http.post(f"{DB}/collections", json={"name": "crash", "get_or_create": True})
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def http_dump(http: httpx.Client, col: str) -> State:
    """Every record of the collection, read over HTTP."""

    def read_page(limit: int, offset: int) -> dict[str, Any]:
        include = ["embeddings", "metadatas", "documents"]
        body = {"limit": limit, "offset": offset, "include": include}
        resp = http.post(f"{DB}/collections/{col}/get", json=body)
        assert resp.status_code == 200, resp.text
        return resp.json()

    return dump_pages(read_page, page=1000)


def http_unfindable(http: httpx.Client, col: str, state: State) -> list[str]:
    """Ids not returned (at distance ~0) by a query for their own vector, n_results=1."""
    ids = sorted(state)
    misses: list[str] = []
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        resp = http.post(
            f"{DB}/collections/{col}/query",
            json={
                "query_embeddings": [state[i][0].tolist() for i in chunk],
                "n_results": 1,
                "include": ["distances"],
            },
        )
        assert resp.status_code == 200, resp.text
        res = resp.json()
        for want, got, dist in zip(chunk, res["ids"], res["distances"], strict=True):
            if got != [want] or dist[0] > 1e-4:
                misses.append(f"{want} -> {got} {dist}")
    return misses


store = stores.store  # the fixture: each store in turn


def test_server_sigkill_keeps_acknowledged_requests(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, store: StoreTarget
) -> None:
    """SIGKILL `huedb run` (1 or 2 workers) under write traffic, restart, check everything.

    Per trial: the server starts cleanly on the directory left by the previous kill; the
    stored records equal the acknowledged history with each thread's in-flight batch either
    entirely applied or entirely absent; every record is found by its own vector.
    """
    trials = trial_counts(store.kind)["server"]
    seed = crash_seed()
    rng = random.Random(seed)
    data = tmp_path / "data"
    state: State = {}
    stats = {
        "trials": trials,
        "workers_1": 0,
        "workers_2": 0,
        "kills_with_request_in_flight": 0,
        "inflight_applied": 0,
        "inflight_absent": 0,
        "acknowledged_ops": 0,
        "acknowledged_checked": 0,
        "records_checked": 0,
        "lost": 0,
    }
    unfindable: list[str] = []
    drivers: list[Driver] = []
    period = 2 if trials < 20 else 3  # a start of two workers takes twice as long
    for trial in range(trials + 1):  # the last start only verifies the last kill
        workers = 2 if trial % period == 1 else 1
        server = start_server(
            data,
            *("--workers", str(workers)),
            *store.cli_args(),
            log_path=tmp_path / f"server-{trial}.log",
            new_session=True,
        )
        context = f"store={store.kind} seed={seed} trial={trial} workers={workers}"
        try:
            server.wait_up(timeout=60)
            with httpx.Client(base_url=server.url, timeout=60, verify=False) as http:
                col = http_collection(http)
                actual = http_dump(http, col)
                for d in drivers:  # settle each thread's in-flight batch: all or nothing
                    mine = {k: v for k, v in actual.items() if k.startswith(d.name + "-")}
                    expected = {k: v for k, v in state.items() if k.startswith(d.name + "-")}
                    if same_state(mine, expected):
                        stats["inflight_absent"] += d.inflight is not None
                        continue
                    if d.inflight is not None:
                        applied = apply_op(expected, d.inflight)
                        if same_state(mine, applied):
                            stats["inflight_applied"] += 1
                            state = apply_op(state, d.inflight)
                            continue
                    stats["lost"] += len(diff(mine, expected)[0])
                    raise AssertionError(
                        f"{context}: thread {d.name}: acknowledged state not matched: "
                        f"{describe(mine, expected)}; in-flight {d.inflight}"
                    )
                assert actual.keys() == state.keys(), f"{context}: {describe(actual, state)}"
                stats["acknowledged_checked"] += sum(len(d.acked) for d in drivers)
                stats["records_checked"] += len(actual)
                misses = http_unfindable(http, col, actual)
                if misses:
                    unfindable.append(f"{context}: {len(misses)}/{len(actual)}: {misses[:5]}")
            if trial == trials:
                break
            stats[f"workers_{workers}"] += 1
            base = f"{server.url}{DB}/collections/{col}"
            drivers = [Driver(f"t{k}", rng.randrange(1, 2**20)) for k in range(2)]
            stop = threading.Event()
            threads = [
                threading.Thread(target=d.run, args=(base, stop), daemon=True) for d in drivers
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.2, 1.2))
            server.kill_group()
            stop.set()
            for t in threads:
                t.join(timeout=30)
                assert not t.is_alive(), f"{context}: client thread hung after the kill"
            for d in drivers:
                assert not d.errors, f"{context}: non-2xx while the server was up: {d.errors}"
                stats["acknowledged_ops"] += len(d.acked)
                for op in d.acked:
                    state = apply_op(state, op)
            stats["kills_with_request_in_flight"] += any(d.inflight for d in drivers)
        except BaseException:
            print(f"{context}: server log:\n{server.log_path.read_text(errors='replace')[-3000:]}")
            raise
        finally:
            server.kill_group()

    record_report(tmp_path_factory, f"server-{store.kind}", stats)
    assert stats["lost"] == 0
    assert stats["acknowledged_ops"] >= trials, stats
    assert stats["kills_with_request_in_flight"] >= trials // 2, stats
    assert stats["workers_1"] and stats["workers_2"], stats
    assert len(state) > 0
    assert not unfindable, "records not found by their own vector:\n" + "\n".join(unfindable)
