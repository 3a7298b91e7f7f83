"""Crash testing at scale: SIGKILL the HTTP server, collection churn, backup and import.

Three scenarios, each killing a process with SIGKILL at random moments and then checking,
with no manual repair, that everything acknowledged survived and nothing is half-done:

1. **HTTP server** (`huedb run`, alternating `--workers 1` and `--workers 2`): two client
   threads drive add/upsert/update/delete batches over raw httpx on disjoint id ranges. An
   operation counts as acknowledged only when its response is 2xx. The whole server process
   group is killed 0.2-2 s into the traffic; the server is restarted on the same directory
   and must hold every acknowledged effect (exact vector, metadata and document; deletes
   absent; updates applied), each thread's single in-flight batch either entirely applied or
   not at all, and every record must be found by a query for its own vector (n_results=1).
2. **Collection create/delete** (embedded, child process): a child creates collections,
   adds records and deletes collections, fsyncing an intent line before each call and an
   acknowledgement after it. After the kill, the collections and their records equal the
   acknowledged history (plus possibly the in-flight operation, applied whole),
   `verify()` is ok and SQLite holds no orphaned rows.
3. **Backup and import**: `huedb backup` of a 20k x 32 store is killed at random; the
   source still verifies and holds all its data, and the output path holds either nothing
   or a complete backup (`read_manifest` works, `huedb restore` + verify pass, the restored
   data is exact). `huedb import` of a 20k x 32 Parquet file is killed at random; the
   target verifies and holds a batch-aligned prefix of the file, every record exact, and
   rerunning the import completes it exactly.

`HUEDB_CRASH_TRIALS` (default 50) is the total number of kills, split 2:1:1:1 between the
server, collection, backup and import trials (at least 10 each); `HUEDB_CRASH_SEED` fixes
the random schedule. The counts are printed and written to
`<pytest basetemp>/crash_server_report.json`.

This file is also the program the child processes run: `python tests/test_crash_server.py
coll_writer <json-args>`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import huedb  # noqa: E402
from huedb.api.client import clear_system_cache  # noqa: E402

try:
    from tests.servers import free_port, wait_until_up
except ImportError:  # pragma: no cover - when run from inside tests/ or as a script
    from servers import free_port, wait_until_up  # type: ignore[no-redef]

THIS_FILE = Path(__file__).resolve()
DB = "/api/v2/tenants/default_tenant/databases/default_database"
DIM = 16
BIG_N, BIG_DIM = 20_000, 32
IMPORT_BATCH = 2500
REPORT: dict[str, Any] = {}

Record = tuple[np.ndarray, dict[str, Any] | None, str | None]  # (vector, metadata, document)
State = dict[str, Record]


# --------------------------------------------------------------------------- shared helpers


def trial_counts() -> dict[str, int]:
    """Trials per scenario: HUEDB_CRASH_TRIALS split 2:1:1:1, at least 10 each."""
    total = int(os.environ.get("HUEDB_CRASH_TRIALS", "50"))
    server = max(10, total * 2 // 5)
    coll = max(10, total // 5)
    backup = max(10, total // 5)
    return {
        "server": server,
        "collections": coll,
        "backup": backup,
        "import": max(10, total - server - coll - backup),
    }


def crash_seed() -> int:
    """The schedule's seed: HUEDB_CRASH_SEED or a random one (printed in failures)."""
    return int(os.environ.get("HUEDB_CRASH_SEED", str(random.randrange(2**31))))


def vectors_for(seed: int, n: int, dim: int = DIM) -> np.ndarray:
    """`n` float32 vectors determined by `seed`."""
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def clean_env() -> dict[str, str]:
    """The environment without HUEDB_/CHROMA_ settings that could change behaviour."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("HUEDB_", "CHROMA_"))}


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


def append_line(f: Any, record: dict[str, Any]) -> None:
    """Append one JSON line to an open file and fsync it."""
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def read_ack_log(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(acknowledged ops in order, the op in flight at the kill or None) of a child's log."""
    begun: list[dict[str, Any]] = []
    done: set[int] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line: its call had not started
            if rec["t"] == "begin":
                begun.append(rec)
            else:
                done.add(rec["k"])
    acked = [op for op in begun if op["k"] in done]
    pending = [op for op in begun if op["k"] not in done]
    assert len(pending) <= 1 and (not pending or pending[0] is begun[-1]), pending
    return acked, (pending[0] if pending else None)


def sigkill(proc: subprocess.Popen) -> bool:
    """SIGKILL `proc` if it still runs; True if it was killed (False: it had finished)."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


def orphan_rows(data: Path) -> dict[str, int]:
    """Rows in SQLite that belong to no collection / no record (must all be 0)."""
    conn = sqlite3.connect(f"file:{data / 'huedb.sqlite3'}?mode=ro", uri=True)
    try:
        queries = {
            "records": "SELECT count(*) FROM records "
            "WHERE cid NOT IN (SELECT cid FROM collections)",
            "embeddings": "SELECT count(*) FROM embeddings "
            "WHERE key NOT IN (SELECT key FROM records)",
            "record_meta": "SELECT count(*) FROM record_meta "
            "WHERE key NOT IN (SELECT key FROM records)",
        }
        return {name: conn.execute(q).fetchone()[0] for name, q in queries.items()}
    finally:
        conn.close()


def verify_ok(data: Path, context: str) -> None:
    """`huedb.ops.verify.verify(data).ok`, with its report in the failure message."""
    from huedb.ops.verify import verify

    try:
        report = verify(data)
    finally:
        clear_system_cache()
    assert report.ok, f"{context}: verify failed:\n" + "\n".join(report.lines())


@contextlib.contextmanager
def opened(data: Path, **settings: Any) -> Iterator[Any]:
    """A PersistentClient on `data`, closed (and its shared engine released) afterwards."""
    client = huedb.PersistentClient(path=str(data), settings=huedb.Settings(**settings))
    try:
        yield client
    finally:
        client.close()
        clear_system_cache()


def dump_collection(col: Any, page: int = 5000) -> State:
    """Every record of an embedded collection."""
    out: State = {}
    offset = 0
    while True:
        got = col.get(limit=page, offset=offset, include=["embeddings", "metadatas", "documents"])
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


# --------------------------------------------------------------------------- 1. HTTP server


def apply_op(state: State, op: dict[str, Any]) -> State:
    """The state after one server op, with Chroma's semantics (add skips existing ids,
    update skips missing ones, a document-only update keeps vector and metadata)."""
    out = dict(state)
    ids = op["ids"]
    if op["op"] == "delete":
        for i in ids:
            out.pop(i, None)
        return out
    vecs = vectors_for(op["seed"], len(ids))
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
    vecs = vectors_for(op["seed"], len(ids))
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
        with httpx.Client(base_url=base, timeout=20) as http:
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


class ServerProcess:
    """`huedb run` in its own session, so SIGKILL of the group also kills uvicorn workers."""

    def __init__(self, data: Path, workers: int, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        cmd = [
            sys.executable,
            "-m",
            "huedb.cli",
            "run",
            "--path",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        self.pgid = self.process.pid
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_up(self) -> None:
        """Wait for the heartbeat (fails with the log if the server dies on start)."""
        wait_until_up(self.url, self.process, self.log_path, timeout=60)

    def group_alive(self) -> list[int]:
        """Live (non-zombie) processes of the server's process group."""
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text.rsplit(")", 1)[1].split()
            if int(fields[2]) == self.pgid and fields[0] != "Z":
                alive.append(int(stat.parent.name))
        return alive

    def kill(self) -> None:
        """SIGKILL the whole process group and wait until every member is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 15
        while left := self.group_alive():
            assert time.monotonic() < deadline, f"server processes survived SIGKILL: {left}"
            time.sleep(0.02)


def http_collection(http: httpx.Client) -> str:
    """The id of the crash collection (get_or_create)."""
    resp = http.post(f"{DB}/collections", json={"name": "crash", "get_or_create": True})
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def http_dump(http: httpx.Client, col: str) -> State:
    """Every record of the collection, read over HTTP."""
    out: State = {}
    offset, page = 0, 1000
    while True:
        resp = http.post(
            f"{DB}/collections/{col}/get",
            json={
                "limit": page,
                "offset": offset,
                "include": ["embeddings", "metadatas", "documents"],
            },
        )
        assert resp.status_code == 200, resp.text
        got = resp.json()
        for i, rid in enumerate(got["ids"]):
            assert rid not in out, f"get returned {rid} twice"
            out[rid] = (
                np.asarray(got["embeddings"][i], dtype=np.float32),
                got["metadatas"][i],
                got["documents"][i],
            )
        if len(got["ids"]) < page:
            return out
        offset += page


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


def test_server_sigkill_keeps_acknowledged_requests(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGKILL `huedb run` (1 or 2 workers) under write traffic, restart, check everything.

    Per trial: the server starts cleanly on the directory left by the previous kill; the
    stored records equal the acknowledged history with each thread's in-flight batch either
    entirely applied or entirely absent; every record is found by its own vector.
    """
    trials = trial_counts()["server"]
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
    for trial in range(trials + 1):  # the last start only verifies the last kill
        workers = 1 + trial % 2
        server = ServerProcess(data, workers, tmp_path / f"server-{trial}.log")
        context = f"seed={seed} trial={trial} workers={workers}"
        try:
            server.wait_up()
            with httpx.Client(base_url=server.url, timeout=60) as http:
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
            time.sleep(rng.uniform(0.2, 2.0))
            server.kill()
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
            server.kill()

    record_report(tmp_path_factory, "server", stats)
    assert stats["lost"] == 0
    assert stats["acknowledged_ops"] >= trials, stats
    assert stats["kills_with_request_in_flight"] >= trials // 2, stats
    assert stats["workers_1"] and stats["workers_2"], stats
    assert len(state) > 0
    assert not unfindable, "records not found by their own vector:\n" + "\n".join(unfindable)


# --------------------------------------------------------------------------- 2. collections

COLL_SETTINGS = {
    "huedb_sync": "full",
    "huedb_exact_max_floats": DIM * 20,
    "huedb_snapshot_every": 25,
}
Catalog = dict[str, State]  # collection name -> its records


def coll_writer(args: dict[str, Any]) -> None:
    """Child: create collections, add records, delete collections; log intent and acks."""
    rng = random.Random(args["seed"])
    trial = args["trial"]
    with open(args["log"], "a") as log:
        client = huedb.PersistentClient(path=args["path"], settings=huedb.Settings(**COLL_SETTINGS))
        names = [c.name for c in client.list_collections()]
        sizes = {n: client.get_collection(n).count() for n in names}
        Path(args["ready"]).touch()
        k = 0
        while True:
            k += 1
            roll = rng.random()
            if not names or (roll < 0.3 and len(names) < 25):
                name = f"c{trial}-{k}"
                op = {"t": "begin", "k": k, "op": "create", "name": name}
                append_line(log, op)
                client.create_collection(name, metadata={"trial": trial})
                names.append(name)
                sizes[name] = 0
            elif roll < 0.85 or len(names) < 3:
                name = rng.choice(names)
                n = rng.randint(1, 30)
                ids = [f"{name}-r{sizes[name] + i}" for i in range(n)]
                seed = trial * 1_000_000 + k
                op = {"t": "begin", "k": k, "op": "add", "name": name, "ids": ids, "seed": seed}
                append_line(log, op)
                vecs = vectors_for(seed, n)
                client.get_collection(name).add(
                    ids=ids,
                    embeddings=vecs,
                    metadatas=[{"seed": seed, "row": r} for r in range(n)],
                    documents=[f"{rid}@{seed}" for rid in ids],
                )
                sizes[name] += n
            else:
                name = rng.choice(names)
                uuid = str(client.get_collection(name).id)
                op = {"t": "begin", "k": k, "op": "delete", "name": name, "uuid": uuid}
                append_line(log, op)
                client.delete_collection(name)
                names.remove(name)
            append_line(log, {"t": "ack", "k": k})


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
        vecs = vectors_for(op["seed"], len(op["ids"]))
        for row, rid in enumerate(op["ids"]):
            recs[rid] = (vecs[row], {"seed": op["seed"], "row": row}, f"{rid}@{op['seed']}")
        out[name] = recs
    return out


def same_catalog(a: Catalog, b: Catalog) -> bool:
    """Same collections holding identical records."""
    return a.keys() == b.keys() and all(same_state(a[n], b[n]) for n in a)


def read_catalog(data: Path) -> tuple[Catalog, list[str]]:
    """(every collection with its records, findability misses) from a fresh open."""
    cat: Catalog = {}
    misses: list[str] = []
    with opened(data, **COLL_SETTINGS) as client:
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


def orphan_snapshots(data: Path, cat: Catalog) -> set[str]:
    """Collection uuids with an index snapshot file but no collection."""
    index_dir = data / "index"
    if not index_dir.exists():
        return set()
    with opened(data, **COLL_SETTINGS) as client:
        live = {str(client.get_collection(n).id) for n in cat}
    return {p.stem for p in index_dir.glob("*.hnsw") if p.stem not in live}


def start_child(command: str, args: dict[str, Any], log_dir: Path) -> subprocess.Popen:
    """Run `command` of this file in a child Python process (stderr to a file)."""
    err = open(log_dir / f"{command}-{time.monotonic_ns()}.stderr", "w+b")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(THIS_FILE), command, json.dumps(args)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=err,
        env=clean_env(),
    )
    proc.stderr_file = err  # type: ignore[attr-defined]
    return proc


def child_stderr(proc: subprocess.Popen) -> str:
    """What a child started by `start_child` wrote to stderr."""
    f = proc.stderr_file  # type: ignore[attr-defined]
    f.flush()
    f.seek(0)
    return f.read().decode(errors="replace")


def test_collection_churn_sigkill(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
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
        child = start_child(
            "coll_writer",
            {
                "path": str(data),
                "trial": trial,
                "seed": rng.randrange(2**31),
                "log": str(log),
                "ready": str(ready),
            },
            tmp_path,
        )
        context = f"seed={seed} trial={trial}"
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, f"{context}: child died:\n{child_stderr(child)}"
            assert time.monotonic() < deadline, f"{context}: child did not start"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 1.5))
        assert sigkill(child), f"{context}: child exited early:\n{child_stderr(child)}"
        acked, inflight = read_ack_log(log)
        for op in acked:
            cat = apply_coll_op(cat, op)
            stats[op["op"] + "s"] += 1
        stats["acknowledged_checked"] += len(acked)

        actual, misses = read_catalog(data)
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
        orphans = orphan_rows(data)
        assert not any(orphans.values()), f"{context}: orphaned rows {orphans}"
        verify_ok(data, context)
        if inflight is not None and inflight["op"] == "delete":
            killed_deletes.add(inflight["uuid"])
        # A delete commits in SQLite, then removes the snapshot file: a kill in between may
        # leave the file behind, but an acknowledged delete must have removed it.
        orphans = orphan_snapshots(data, cat)
        assert orphans <= killed_deletes, (
            f"{context}: snapshot files of deleted collections {sorted(orphans - killed_deletes)}"
        )
        stats["orphan_snapshot_files_after_killed_delete"] = len(orphans)

    record_report(tmp_path_factory, "collections", stats)
    assert stats["lost"] == 0
    assert stats["creates"] >= trials and stats["deletes"] >= 1 and stats["adds"] >= trials, stats
    assert stats["inflight_applied"] + stats["inflight_absent"] >= trials // 4, stats
    assert not unfindable, "records not found by their own vector:\n" + "\n".join(unfindable)


# --------------------------------------------------------------------------- 3. backup, import


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


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `huedb *args` to completion; fail with its output unless it exits 0."""
    res = subprocess.run(
        [sys.executable, "-m", "huedb.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        cwd=REPO_ROOT,
    )
    assert res.returncode == 0, f"huedb {' '.join(args)} -> {res.returncode}:\n{res.stderr}"
    return res


def start_cli(*args: str) -> subprocess.Popen:
    """Start `huedb *args` without waiting."""
    return subprocess.Popen(
        [sys.executable, "-m", "huedb.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
        cwd=REPO_ROOT,
    )


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
        cli("restore", str(out), "--path", str(restored))
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


# --------------------------------------------------------------------------- child entry

if __name__ == "__main__":
    commands = {"coll_writer": coll_writer}
    commands[sys.argv[1]](json.loads(sys.argv[2]))
