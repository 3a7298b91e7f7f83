"""Load and soak test.

Acceptance (issue): "4 concurrent clients (2 writers, 2 readers) for 60 s against the server
with --workers 2: 0 errors, every acknowledged write present afterwards, RSS flat after
warm-up (report the growth). Repeated open/close of clients in one process leaks no file
descriptors or memory."

`test_soak_four_clients_two_workers` runs the client programs of this module in four
separate OS processes (`python tests/test_soak.py writer|reader <config.json>`): two writers
add, upsert and delete distinct ids through `huedb.HttpClient` and log every *acknowledged*
write (only after the call returned) to a JSON-lines file; two readers run queries (with and
without `where` filters), gets and counts, and check each answer for internal consistency.
Meanwhile the test samples the RSS of the server's worker processes once a second. The soak
lasts `HUEDB_SOAK_SECONDS` (default 40: a 15 s warm-up, then two 10 s windows).

RSS bound. Writers keep a sliding window of at most `LIVE_CAP` live ids each (they delete
their oldest ids once above it), so after warm-up the data held in memory stops growing and
RSS should be flat; 2 x LIVE_CAP x DIM floats stays below the default exact-search threshold
(2M floats), so no HNSW build starts mid-soak. Growth is measured as (mean RSS over the last
10 s) - (mean RSS over the first 10 s after a 15 s warm-up), summed over the workers. The
allowed growth is the expected index growth plus a fixed slack:

    workers x max(0, live vectors at end - live vectors at warm-up) x (DIM x 4 + 200 bytes)
    + 20 MB

- each worker process holds its own copy of the index, hence the factor `workers`;
- DIM x 4 bytes is the float32 vector, ~200 bytes covers the key arrays, the key -> row dict
  entry and the record's share of Python/SQLite bookkeeping;
- 20 MB of slack covers allocator noise (glibc arenas per thread, numpy temporaries) and the
  SQLite page cache (cache_size = 16 MiB per connection) finishing its warm-up.

The bound can fail for real leaks: on a 2-core machine the clients make ~100-180 requests/s
and the writers write ~1,000-1,900 vectors/s; between the two windows (~45 s) a leak of
~3-5 KB per request, or deleted vectors never being freed (256 bytes each in each of the
two workers, 45k-85k vectors written), would exceed the 20 MB. Measured growth so far: 1-5 MB.

The leak test of repeated client open/close is in `test_leaks.py`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import huedb  # noqa: E402
from tests.cli import child_env  # noqa: E402
from tests.knobs import knob  # noqa: E402
from tests.proc_stats import status_kb  # noqa: E402
from tests.servers import huedb_server  # noqa: E402

COLLECTION = "soak"
DIM = 64
BATCH = 50
LIVE_CAP = 4000  # live ids per writer; older ones are deleted (steady state after warm-up)
WRITERS = 2
READERS = 2
WORKERS = 2
WARMUP_S = 15.0
WINDOW_S = 10.0
BYTES_PER_VECTOR = DIM * 4 + 200
RSS_SLACK_BYTES = 20 * 1024 * 1024
SCRIPT = Path(__file__).resolve()


# --------------------------------------------------------------------------- shared helpers


def soak_seconds() -> float:
    """How long the clients run (HUEDB_SOAK_SECONDS, default 40)."""
    return float(knob("HUEDB_SOAK_SECONDS", "40"))


def vector_of(record_id: str, version: int) -> list[float]:
    """The embedding a writer stores for `record_id` at `version` (reproducible anywhere)."""
    rng = np.random.default_rng([zlib.crc32(record_id.encode()), version])
    return rng.standard_normal(DIM).astype(np.float32).tolist()


def metadata_of(writer: int, n: int, version: int) -> dict[str, Any]:
    """The metadata of the `n`-th id of `writer` at `version`."""
    return {"writer": writer, "n": n, "v": version, "tag": "even" if n % 2 == 0 else "odd"}


def document_of(record_id: str, version: int) -> str:
    """The document of `record_id` at `version`."""
    return f"doc {record_id} v{version}"


# --------------------------------------------------------------------------- client programs


@dataclass
class ClientReport:
    """What one client process did, written as JSON when it finishes."""

    role: str
    index: int
    ops: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "index": self.index,
            "ops": dict(self.ops),
            "total_ops": sum(self.ops.values()),
            "errors": len(self.errors),
            "error_samples": self.errors[:10],
            "violations": len(self.violations),
            "violation_samples": self.violations[:10],
        }


def wait_for_go(cfg: dict[str, Any]) -> float:
    """Signal readiness, then wait for the parent's go file; returns the end time (epoch)."""
    Path(cfg["ready"]).touch()
    go = Path(cfg["go"])
    deadline = time.time() + 60
    while not go.exists():
        if time.time() > deadline:
            raise RuntimeError("no go signal from the test")
        time.sleep(0.01)
    return float(json.loads(go.read_text())["end"])


def run_writer(cfg: dict[str, Any]) -> ClientReport:
    """Add, upsert and delete this writer's ids until the end time; log acknowledged writes.

    The ack log gets one JSON line per call *after* it returned: op, ids, versions, time.
    A call that raised is logged as op "error" (its effect is unknown) and counted.
    """
    w = int(cfg["index"])
    report = ClientReport("writer", w)
    rng = random.Random(1000 + w)
    client = huedb.HttpClient(host=cfg["host"], port=cfg["port"])
    col = client.get_collection(COLLECTION)
    live: dict[str, int] = {}  # id -> version, insertion-ordered (oldest first)
    number_of: dict[str, int] = {}
    next_n = 0

    def new_ids(k: int) -> list[str]:
        nonlocal next_n
        out = []
        for _ in range(k):
            rid = f"w{w}-{next_n}"
            number_of[rid] = next_n
            next_n += 1
            out.append(rid)
        return out

    end = wait_for_go(cfg)
    with open(cfg["ack"], "a") as ack:

        def log(op: str, ids: list[str], versions: list[int]) -> None:
            line = {"op": op, "ids": ids, "v": versions, "t": time.time()}
            ack.write(json.dumps(line) + "\n")
            ack.flush()

        step = 0
        while time.time() < end:
            step += 1
            kind = ("add", "upsert", "delete")[step % 3]
            if kind == "delete" and len(live) <= LIVE_CAP:
                kind = "delete_random" if live else "add"
            if kind in ("add", "upsert"):
                if kind == "upsert" and len(live) >= BATCH // 2:
                    ids = rng.sample(list(live), BATCH // 2) + new_ids(BATCH - BATCH // 2)
                else:
                    ids = new_ids(BATCH)
                versions = [live.get(i, -1) + 1 for i in ids]
                kwargs = {
                    "ids": ids,
                    "embeddings": [vector_of(i, v) for i, v in zip(ids, versions, strict=True)],
                    "metadatas": [
                        metadata_of(w, number_of[i], v) for i, v in zip(ids, versions, strict=True)
                    ],
                    "documents": [document_of(i, v) for i, v in zip(ids, versions, strict=True)],
                }
                try:
                    (col.add if kind == "add" else col.upsert)(**kwargs)
                except Exception as exc:  # noqa: BLE001 - every failure is a finding
                    report.errors.append(f"{kind}: {exc!r}")
                    log("error", ids, versions)
                    time.sleep(0.05)
                    continue
                log(kind, ids, versions)
                for i, v in zip(ids, versions, strict=True):
                    live.pop(i, None)  # re-insert: an upserted id counts as newest
                    live[i] = v
            else:
                if kind == "delete":  # the oldest ids, back down to the cap
                    ids = list(live)[: min(2 * BATCH, len(live) - LIVE_CAP)]
                else:
                    ids = rng.sample(list(live), min(BATCH // 5, len(live)))
                try:
                    col.delete(ids=ids)
                except Exception as exc:  # noqa: BLE001
                    report.errors.append(f"delete: {exc!r}")
                    log("error", ids, [])
                    time.sleep(0.05)
                    continue
                log("delete", ids, [])
                for i in ids:
                    live.pop(i)
            report.ops[kind] += 1
    client.close()
    return report


def check_query(
    res: dict[str, Any], n_results: int, where: dict[str, Any] | None, report: ClientReport
) -> list[str]:
    """Record violations of a query answer's invariants; return the ids it found."""
    ids, dists, metas = res["ids"][0], res["distances"][0], res["metadatas"][0]
    if len(ids) > n_results or len(ids) != len(dists) or len(ids) != len(metas):
        report.violations.append(f"query shape: {len(ids)} ids, {len(dists)} distances")
    if any(a > b + 1e-4 for a, b in zip(dists, dists[1:], strict=False)):
        report.violations.append(f"query distances not ascending: {dists}")
    if len(set(ids)) != len(ids):
        report.violations.append(f"query returned duplicates: {ids}")
    for rid, meta in zip(ids, metas, strict=False):
        if meta is None or not rid.startswith(f"w{meta.get('writer')}-"):
            report.violations.append(f"metadata {meta} does not belong to {rid}")
        elif where is not None and not matches(meta, where):
            report.violations.append(f"{rid} {meta} does not match {where}")
    return ids


def matches(meta: dict[str, Any], where: dict[str, Any]) -> bool:
    """The few `where` shapes the readers use: equality, $gte and $and."""
    if "$and" in where:
        return all(matches(meta, clause) for clause in where["$and"])
    ((key, cond),) = where.items()
    if isinstance(cond, dict) and "$gte" in cond:
        return meta.get(key) is not None and meta[key] >= cond["$gte"]
    return meta.get(key) == cond


def run_reader(cfg: dict[str, Any]) -> ClientReport:
    """Query (plain and filtered), get and count until the end time; check every answer."""
    r = int(cfg["index"])
    report = ClientReport("reader", r)
    rng = np.random.default_rng(2000 + r)
    client = huedb.HttpClient(host=cfg["host"], port=cfg["port"])
    col = client.get_collection(COLLECTION)
    end = wait_for_go(cfg)
    step = 0
    while time.time() < end:
        step += 1
        q = rng.standard_normal((1, DIM)).astype(np.float32)
        writer = step % WRITERS
        wheres: list[dict[str, Any] | None] = [
            None,
            {"tag": "even"},
            {"$and": [{"writer": writer}, {"v": {"$gte": 1}}]},
        ]
        try:
            found: list[str] = []
            for where in wheres:
                res = col.query(
                    query_embeddings=q,
                    n_results=10,
                    where=where,
                    include=["metadatas", "distances"],
                )
                found += check_query(res, 10, where, report)
                report.ops["query" if where is None else "query_where"] += 1
            if found:
                got = col.get(ids=found[:10], include=["metadatas", "documents"])
                report.ops["get_ids"] += 1
                for rid, meta, doc in zip(
                    got["ids"], got["metadatas"], got["documents"], strict=True
                ):
                    if rid not in found[:10]:
                        report.violations.append(f"get(ids) returned unasked {rid}")
                    elif doc != document_of(rid, meta["v"]):
                        report.violations.append(f"{rid}: document {doc!r} vs metadata {meta}")
            where = {"writer": writer}
            got = col.get(where=where, limit=20, include=["metadatas"])
            report.ops["get_where"] += 1
            if len(got["ids"]) > 20:
                report.violations.append(f"get(limit=20) returned {len(got['ids'])}")
            for rid, meta in zip(got["ids"], got["metadatas"], strict=True):
                if not matches(meta, where):
                    report.violations.append(f"get: {rid} {meta} does not match {where}")
            if step % 5 == 0:
                col.count()
                report.ops["count"] += 1
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            report.errors.append(repr(exc))
            time.sleep(0.05)
    client.close()
    return report


def client_main(role: str, config_path: str) -> None:
    """Entry point of a client process: run the role, write its report JSON."""
    cfg = json.loads(Path(config_path).read_text())
    report = run_writer(cfg) if role == "writer" else run_reader(cfg)
    Path(cfg["report"]).write_text(json.dumps(report.to_json()))


# --------------------------------------------------------------------------- soak test


class RssSampler(threading.Thread):
    """Samples VmRSS/RssAnon/RssFile (kB) of some processes once a second."""

    def __init__(self, pids: list[int], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.samples: list[tuple[float, dict[int, tuple[int, int, int]]]] = []
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            now = time.time()
            sample = {}
            for pid in self.pids:
                try:
                    sample[pid] = (
                        status_kb(pid, "VmRSS"),
                        status_kb(pid, "RssAnon"),
                        status_kb(pid, "RssFile"),
                    )
                except (FileNotFoundError, ProcessLookupError, KeyError) as exc:
                    self.failures.append(f"{pid}: {exc!r}")
            self.samples.append((now, sample))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def mean_total_kb(self, start: float, end: float, which: int = 0) -> float:
        """Mean over samples in [start, end) of the summed RSS field of all pids."""
        totals = [sum(v[which] for v in s.values()) for t, s in self.samples if start <= t < end]
        assert totals, f"no RSS samples between {start} and {end}"
        return float(np.mean(totals))


def replay_acks(path: Path) -> tuple[dict[str, int], set[str], set[str], list[tuple[float, int]]]:
    """From a writer's ack log: live id -> version, deleted ids, uncertain ids, live count(t)."""
    live: dict[str, int] = {}
    deleted: set[str] = set()
    uncertain: set[str] = set()
    timeline: list[tuple[float, int]] = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["op"] == "error":
            uncertain.update(entry["ids"])
        elif entry["op"] == "delete":
            for rid in entry["ids"]:
                live.pop(rid)
                deleted.add(rid)
        else:
            for rid, v in zip(entry["ids"], entry["v"], strict=True):
                live[rid] = v
        timeline.append((entry["t"], len(live)))
    return live, deleted - set(live), uncertain, timeline


def live_at(timelines: list[list[tuple[float, int]]], t: float) -> int:
    """Total live ids over all writers at time `t` (from their ack timelines)."""
    total = 0
    for timeline in timelines:
        count = 0
        for when, n in timeline:
            if when > t:
                break
            count = n
        total += count
    return total


def verify_store(
    col: Any, model: dict[str, int], deleted: set[str], uncertain: set[str]
) -> dict[str, Any]:
    """Compare the collection with the writers' acknowledged model; return the findings."""
    present: dict[str, tuple[dict[str, Any], str, np.ndarray]] = {}
    page = 2000
    offset = 0
    while True:
        got = col.get(limit=page, offset=offset, include=["metadatas", "documents", "embeddings"])
        for rid, meta, doc, emb in zip(
            got["ids"], got["metadatas"], got["documents"], got["embeddings"], strict=True
        ):
            present[rid] = (meta, doc, np.asarray(emb, dtype=np.float32))
        if len(got["ids"]) < page:
            break
        offset += page
    missing = sorted(set(model) - set(present))
    resurrected = sorted((deleted - uncertain) & set(present))
    unexpected = sorted(set(present) - set(model) - uncertain)
    wrong: list[str] = []
    for rid, version in model.items():
        if rid not in present or rid in uncertain:
            continue
        meta, doc, emb = present[rid]
        if meta.get("v") != version or doc != document_of(rid, version):
            wrong.append(f"{rid}: want v{version}, got {meta} {doc!r}")
        elif not np.allclose(emb, vector_of(rid, version), atol=1e-6):
            wrong.append(f"{rid}: embedding differs from v{version}")
    # And by id, as a client would look them up (deleted ones must stay absent).
    by_id_missing: list[str] = []
    ids = sorted(model)
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        got_ids = set(col.get(ids=chunk, include=[])["ids"])
        by_id_missing += [rid for rid in chunk if rid not in got_ids]
    dead = sorted(deleted - uncertain)
    by_id_resurrected: list[str] = []
    for start in range(0, len(dead), 1000):
        by_id_resurrected += col.get(ids=dead[start : start + 1000], include=[])["ids"]
    return {
        "count": col.count(),
        "listed": len(present),
        "model_live": len(model),
        "model_deleted": len(deleted),
        "uncertain": len(uncertain),
        "missing": missing[:20],
        "missing_n": len(missing),
        "resurrected": resurrected[:20],
        "resurrected_n": len(resurrected),
        "unexpected": unexpected[:20],
        "unexpected_n": len(unexpected),
        "wrong": wrong[:20],
        "wrong_n": len(wrong),
        "by_id_missing_n": len(by_id_missing),
        "by_id_resurrected_n": len(by_id_resurrected),
    }


def start_client(role: str, index: int, base: dict[str, Any], tmp: Path) -> subprocess.Popen:
    """Start one client process running `role`; its config/report/ack files live in tmp."""
    name = f"{role}{index}"
    cfg = dict(
        base,
        index=index,
        ready=str(tmp / f"{name}.ready"),
        report=str(tmp / f"{name}.report.json"),
        ack=str(tmp / f"{name}.acks.jsonl"),
    )
    config = tmp / f"{name}.config.json"
    config.write_text(json.dumps(cfg))
    stderr = open(tmp / f"{name}.stderr", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), role, str(config)],
        cwd=REPO_ROOT,
        stdout=stderr,
        stderr=subprocess.STDOUT,
        env=child_env(),
    )
    proc.name = name  # type: ignore[attr-defined]
    proc.log_file = stderr  # type: ignore[attr-defined]
    return proc


def test_soak_four_clients_two_workers(tmp_path: Path) -> None:
    """2 writers + 2 readers (separate processes) against `--workers 2` for the soak time.

    Asserts: 0 errors and 0 invariant violations in every client; every acknowledged write
    present with its last acknowledged content, deleted ids absent, count() equal to the
    model; the same worker processes throughout; worker RSS growth after warm-up within the
    bound explained in the module docstring. Figures go to stdout and soak_results.json.
    """
    seconds = soak_seconds()
    warmup = min(WARMUP_S, seconds / 4)
    window = min(WINDOW_S, (seconds - warmup) / 2)
    data = tmp_path / "data"
    data.mkdir()
    with huedb_server(data, "--workers", str(WORKERS)) as server:
        workers = server.worker_pids(WORKERS)
        setup = huedb.HttpClient(host="127.0.0.1", port=server.port)
        setup.create_collection(COLLECTION)
        base = {"host": "127.0.0.1", "port": server.port, "go": str(tmp_path / "go.json")}
        procs = [start_client("writer", i, base, tmp_path) for i in range(WRITERS)]
        procs += [start_client("reader", i, base, tmp_path) for i in range(READERS)]
        try:
            deadline = time.monotonic() + 60
            while not all((tmp_path / f"{p.name}.ready").exists() for p in procs):  # type: ignore[attr-defined]
                dead = [p for p in procs if p.poll() is not None]
                assert not dead, [Path(p.log_file.name).read_text() for p in dead]  # type: ignore[attr-defined]
                assert time.monotonic() < deadline, "clients did not get ready"
                time.sleep(0.05)
            sampler = RssSampler([server.process.pid, *workers])
            t0 = time.time()
            end = t0 + seconds
            sampler.start()
            go = tmp_path / "go.json"
            (tmp_path / "go.tmp").write_text(json.dumps({"end": end}))
            os.replace(tmp_path / "go.tmp", go)
            for p in procs:
                rc = p.wait(timeout=seconds + 60)
                assert rc == 0, f"{p.name} exited {rc}:\n{Path(p.log_file.name).read_text()}"  # type: ignore[attr-defined]
            sampler.stop()
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                p.log_file.close()  # type: ignore[attr-defined]
        assert server.worker_pids(WORKERS) == workers, "a worker process was replaced"
        assert server.process.poll() is None, server.log()

        reports = [
            json.loads((tmp_path / f"{p.name}.report.json").read_text())  # type: ignore[attr-defined]
            for p in procs
        ]
        model: dict[str, int] = {}
        deleted: set[str] = set()
        uncertain: set[str] = set()
        timelines = []
        for i in range(WRITERS):
            live, dead, unsure, timeline = replay_acks(tmp_path / f"writer{i}.acks.jsonl")
            model.update(live)
            deleted |= dead
            uncertain |= unsure
            timelines.append(timeline)
        store = verify_store(setup.get_collection(COLLECTION), model, deleted, uncertain)
        setup.close()

        # RSS of the worker processes (the master only supervises; reported, not bounded).
        first = (t0 + warmup, t0 + warmup + window)
        last = (end - window, end + 1)
        worker_sampler_view = RssSampler(workers)
        worker_sampler_view.samples = [
            (t, {pid: v for pid, v in s.items() if pid in workers}) for t, s in sampler.samples
        ]
        rss = {
            name: (
                worker_sampler_view.mean_total_kb(*first, which),
                worker_sampler_view.mean_total_kb(*last, which),
            )
            for which, name in enumerate(("VmRSS", "RssAnon", "RssFile"))
        }
        start_kb, end_kb = rss["VmRSS"]
        growth_bytes = (end_kb - start_kb) * 1024
        live_start = live_at(timelines, first[0])
        live_end = live_at(timelines, end)
        expected_index_bytes = WORKERS * max(0, live_end - live_start) * BYTES_PER_VECTOR
        bound_bytes = expected_index_bytes + RSS_SLACK_BYTES
        master_kb = [s[server.process.pid][0] for _, s in sampler.samples if s]
        per_worker = {
            pid: (
                float(np.mean([s[pid][0] for t, s in sampler.samples if first[0] <= t < first[1]])),
                float(np.mean([s[pid][0] for t, s in sampler.samples if last[0] <= t < last[1]])),
            )
            for pid in workers
        }

    results = {
        "seconds": seconds,
        "warmup_s": warmup,
        "window_s": window,
        "clients": reports,
        "ops_total": sum(r["total_ops"] for r in reports),
        "errors_total": sum(r["errors"] for r in reports),
        "violations_total": sum(r["violations"] for r in reports),
        "store": store,
        "rss_workers_kb": {
            k: {"start": v[0], "end": v[1], "growth": v[1] - v[0]} for k, v in rss.items()
        },
        "rss_per_worker_kb": {
            str(p): {"start": a, "end": b, "growth": b - a} for p, (a, b) in per_worker.items()
        },
        "rss_master_kb": {"first": master_kb[0], "last": master_kb[-1]} if master_kb else {},
        "rss_growth_mb": growth_bytes / 2**20,
        "rss_bound_mb": bound_bytes / 2**20,
        "live_at_warmup": live_start,
        "live_at_end": live_end,
        "sampler_failures": sampler.failures[:10],
        "rss_samples": [
            (round(t - t0, 2), {str(k): v for k, v in s.items()}) for t, s in sampler.samples
        ],
    }
    (tmp_path / "soak_results.json").write_text(json.dumps(results, indent=1))
    summary = {k: v for k, v in results.items() if k != "rss_samples"}
    print("\nsoak results:", json.dumps(summary, indent=1))
    print(f"soak results file: {tmp_path / 'soak_results.json'}")

    assert not sampler.failures, sampler.failures
    for r in reports:
        assert r["errors"] == 0, f"{r['role']}{r['index']}: {r['error_samples']}"
        assert r["violations"] == 0, f"{r['role']}{r['index']}: {r['violation_samples']}"
        assert r["total_ops"] > 0, r
    assert not uncertain
    assert store["missing_n"] == 0 and store["by_id_missing_n"] == 0, store
    assert store["resurrected_n"] == 0 and store["by_id_resurrected_n"] == 0, store
    assert store["unexpected_n"] == 0, store
    assert store["wrong_n"] == 0, store
    assert store["count"] == len(model) == store["listed"], store
    assert growth_bytes < bound_bytes, (
        f"worker RSS grew {growth_bytes / 2**20:.1f} MB after warm-up "
        f"(bound {bound_bytes / 2**20:.1f} MB); samples in {tmp_path / 'soak_results.json'}"
    )


if __name__ == "__main__":
    client_main(sys.argv[1], sys.argv[2])
