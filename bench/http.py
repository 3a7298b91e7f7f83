"""HTTP benchmark: huedb's server against Chroma's Rust server (`chroma run`) on the same data.

Each server configuration (huedb `--workers 1`, huedb `--workers 2`, `chroma run`) is started
as a subprocess on a free loopback port with a fresh temporary data directory. Clients are the
real `chromadb.HttpClient`, one per client process (multiprocessing "spawn", so the client side
is not limited by one GIL); one extra figure runs 4 clients as threads of one process.

Per configuration it measures add throughput with 1 and 4 clients, the first query after the
add (huedb builds its HNSW index lazily there, in every worker process), the time until every
worker answers fast, and query QPS with p50/p99 latency for 1 and 4 clients, unfiltered and
with `where={"bucket": {"$lt": 10}}`, each over a fixed duration after warm-up.

Example: python -m bench http --n 20000 --dim 384 --duration 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import (
    QUERY_CASES,
    Dataset,
    DataSpec,
    GroundTruth,
    _fmt,
    machine_info,
    make_dataset,
    record_index,
)

HOST = "127.0.0.1"
BATCH = 500
K = 10
RESULTS = Path(__file__).resolve().parent / "results"
VENV_BIN = Path(sys.executable).parent
CASES = {c.key: c for c in QUERY_CASES if c.key in ("query", "filter10")}
CASE_LABELS = {"query": "query", "filter10": "where bucket<10"}
MAIN_COLLECTION = "bench"
ADD1_COLLECTION = "bench_add1"


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# -- servers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration under test."""

    label: str  # column name in the table
    kind: str  # "huedb" or "chroma"
    workers: int = 1

    def command(self, path: Path, port: int) -> list[str]:
        if self.kind == "huedb":
            exe = VENV_BIN / "huedb"
            return [
                str(exe),
                "run",
                "--path",
                str(path),
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
            ]
        exe = VENV_BIN / "chroma"
        return [str(exe), "run", "--path", str(path), "--host", HOST, "--port", str(port)]

    def available(self) -> bool:
        exe = VENV_BIN / ("huedb" if self.kind == "huedb" else "chroma")
        return exe.exists()


def free_port() -> int:
    """A currently free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess in its own session, stopped (with its workers) by `stop`."""

    def __init__(self, spec: ServerSpec, workdir: Path, rust_log: str = "") -> None:
        self.spec = spec
        self.rust_log = rust_log
        self.dir = Path(tempfile.mkdtemp(prefix=f"{spec.label.replace(' ', '-')}-", dir=workdir))
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self, timeout: float = 120.0) -> float:
        """Start the server and wait for its heartbeat; returns the seconds it took."""
        import httpx

        env = dict(os.environ)
        env.update(ANONYMIZED_TELEMETRY="False", CHROMA_ANONYMIZED_TELEMETRY="False")
        if self.spec.kind == "chroma" and self.rust_log:
            env["RUST_LOG"] = self.rust_log
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            self.spec.command(self.data, self.port),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        url = f"http://{HOST}:{self.port}/api/v2/heartbeat"
        while time.perf_counter() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.label} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.spec.label} not ready after {timeout} s: {self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self) -> int | None:
        """SIGTERM the server's process group, SIGKILL it after 15 s; returns the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.proc.wait(timeout=15)
            # make sure no worker of the group outlives its leader
            self._signal_group(signal.SIGKILL)
            code = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def log_problems(self) -> dict[str, Any]:
        """Counts of error-looking lines in the server log, and a few of them."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {}
        keys = ("Traceback", "ERROR", "Exception", "WARNING", "panicked")
        counts = {k: sum(k in line for line in lines) for k in keys}
        samples = [line[:300] for line in lines if any(k in line for k in keys)][:20]
        return {"lines": len(lines), "counts": counts, "samples": samples}

    def tree(self) -> list[int]:
        """The server pid and all its descendants."""
        if self.proc is None:
            return []
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    kids = (task / "children").read_text().split()
                    todo.extend(int(k) for k in kids)
            except OSError:
                continue
        return out

    def cpu_seconds(self) -> dict[int, float]:
        """User + system CPU seconds of every process of the server, by pid."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[int, float] = {}
        for pid in self.tree():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.tree():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    return {str(pid): round(after[pid] - before.get(pid, 0.0), 3) for pid in after}


# -- client side (runs in client processes or threads) ---------------------------------------


def http_client(port: int) -> Any:
    """A fresh `chromadb.HttpClient` (its own connection pool) on the loopback port."""
    import chromadb
    from chromadb.config import Settings

    return chromadb.HttpClient(host=HOST, port=port, settings=Settings(anonymized_telemetry=False))


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def task_add(
    data: Dataset, port: int, collection: str, lo: int, hi: int, start_at: float
) -> dict[str, Any]:
    """Add records [lo, hi) in batches of BATCH through one client."""
    client = http_client(port)
    col = client.get_collection(collection, embedding_function=None)
    errors: Counter[str] = Counter()
    added = 0
    _sleep_until(start_at)
    t_start = time.time()
    for b in range(lo, hi, BATCH):
        e = min(b + BATCH, hi)
        try:
            col.add(
                ids=data.ids(b, e),
                embeddings=data.vectors[b:e],
                metadatas=data.metadatas(b, e),
                documents=data.documents[b:e],
            )
            added += e - b
        except Exception as exc:  # noqa: BLE001 - a failed request is a result
            errors[_err(exc)] += 1
    return {"t_start": t_start, "t_end": time.time(), "added": added, "errors": dict(errors)}


def _query(col: Any, vec: np.ndarray, where: dict[str, Any] | None) -> list[str]:
    res = col.query(query_embeddings=vec[None, :], n_results=K, where=where)
    return list(res["ids"][0])


def task_first_query(data: Dataset, port: int, collection: str) -> dict[str, Any]:
    """One unfiltered query through a fresh client, timed alone."""
    client = http_client(port)
    col = client.get_collection(collection, embedding_function=None)
    start = time.perf_counter()
    ids = _query(col, data.warmup[0], None)
    return {"first_query_s": time.perf_counter() - start, "hits": len(ids)}


def _index_progress(col: Any) -> float:
    """The worker's indexing progress (1.0 when the server does not report one)."""
    try:
        return float(col.get_indexing_status().op_indexing_progress)
    except Exception:  # noqa: BLE001 - a server without the route indexes synchronously
        return 1.0


def task_warmup(
    data: Dataset,
    port: int,
    collection: str,
    t0: float,
    settle_ms: float,
    settle_rounds: int,
    min_s: float,
    max_s: float,
) -> dict[str, Any]:
    """Rounds of queries (every case) on fresh connections until latencies settle.

    A fresh client per round opens a new connection, so with several server workers every
    worker is reached and builds its index. Settled means `settle_rounds` consecutive rounds
    whose slowest query took at most `settle_ms` and whose worker reported its index ready
    (`get_indexing_status()` progress 1.0: huedb answers by exact search while its graph is
    built in the background, which is fast enough to pass a latency test alone), after at
    least `min_s` seconds.
    """
    errors: Counter[str] = Counter()
    rounds = 0
    calm = 0
    last_slow = t0
    slowest = 0.0
    while True:
        now = time.time()
        if now - t0 >= max_s or (calm >= settle_rounds and now - t0 >= min_s):
            break
        worst = 0.0
        try:
            col = http_client(port).get_collection(collection, embedding_function=None)
            for case in CASES.values():
                for j in range(2):
                    vec = data.warmup[(rounds * 2 + j) % len(data.warmup)]
                    start = time.perf_counter()
                    _query(col, vec, case.where)
                    worst = max(worst, (time.perf_counter() - start) * 1000.0)
            if _index_progress(col) < 1.0:
                worst = float("inf")
                time.sleep(0.1)
        except Exception as exc:  # noqa: BLE001
            errors[_err(exc)] += 1
            worst = float("inf")
            time.sleep(0.1)
        rounds += 1
        slowest = max(slowest, worst)
        if worst <= settle_ms:
            calm += 1
        else:
            calm = 0
            last_slow = time.time()
    return {
        "rounds": rounds,
        "elapsed_s": time.time() - t0,
        "last_slow_s": last_slow - t0,
        "settled": calm >= settle_rounds,
        "slowest_ms": slowest if slowest != float("inf") else None,
        "errors": dict(errors),
    }


def task_query(
    data: Dataset,
    port: int,
    collection: str,
    case_key: str,
    duration: float,
    start_at: float,
    offset: int,
) -> dict[str, Any]:
    """Closed-loop queries for `duration` seconds through one client; latencies in ms."""
    where = CASES[case_key].where
    client = http_client(port)
    col = client.get_collection(collection, embedding_function=None)
    for j in range(5):  # this connection's own warm-up
        _query(col, data.warmup[j % len(data.warmup)], where)
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    first_ids: dict[int, list[str]] = {}
    nq = len(data.queries)
    i = offset
    _sleep_until(start_at)
    cpu_start = time.process_time()
    t_start = time.time()
    stop = t_start + duration
    while time.time() < stop:
        qi = i % nq
        i += 1
        start = time.perf_counter()
        try:
            ids = _query(col, data.queries[qi], where)
        except Exception as exc:  # noqa: BLE001
            errors[_err(exc)] += 1
            continue
        latencies.append((time.perf_counter() - start) * 1000.0)
        if qi not in first_ids:
            first_ids[qi] = ids
    return {
        "t_start": t_start,
        "t_end": time.time(),
        "client_process_cpu_s": time.process_time() - cpu_start,
        "latencies_ms": latencies,
        "first_ids": first_ids,
        "errors": dict(errors),
    }


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "add": task_add,
    "first_query": task_first_query,
    "warmup": task_warmup,
    "query": task_query,
}


def _run_task(data: Dataset, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return TASKS[name](data, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        return {"fatal": _err(exc)}


def client_process(spec: DataSpec, tasks: Any, results: Any, index: int) -> None:
    """Body of a client process: regenerates the seeded data, then serves tasks until None."""
    import chromadb  # noqa: F401 - import once, before any timing

    data = make_dataset(spec)
    results.put((index, {"ready": True}))
    while True:
        item = tasks.get()
        if item is None:
            return
        name, kwargs = item
        results.put((index, _run_task(data, name, kwargs)))


class ClientPool:
    """`size` benchmark clients: spawned processes, or threads of this process."""

    def __init__(self, spec: DataSpec, data: Dataset, size: int, mode: str) -> None:
        self.size = size
        self.mode = mode
        self._data = data
        if mode == "process":
            ctx = multiprocessing.get_context("spawn")
            self._results: Any = ctx.Queue()
            self._tasks: list[Any] = [ctx.Queue() for _ in range(size)]
            self._procs = [
                ctx.Process(
                    target=client_process,
                    args=(spec, self._tasks[i], self._results, i),
                    daemon=True,
                )
                for i in range(size)
            ]
            for p in self._procs:
                p.start()
            for _ in range(size):
                self._get(timeout=300)

    def _get(self, timeout: float) -> tuple[int, dict[str, Any]]:
        deadline = time.time() + timeout
        while True:
            try:
                return self._results.get(timeout=1.0)
            except queue.Empty:
                dead = [p.exitcode for p in self._procs if p.exitcode is not None]
                if dead:
                    raise RuntimeError(f"client process died with exit codes {dead}") from None
                if time.time() > deadline:
                    raise RuntimeError("client processes did not answer in time") from None

    def run(self, name: str, kwargs_list: list[dict[str, Any]], timeout: float = 3600) -> list:
        """Run task `name` on the first len(kwargs_list) clients at once; results in order."""
        n = len(kwargs_list)
        if n > self.size:
            raise ValueError(f"{n} tasks for {self.size} clients")
        if self.mode == "thread":
            out: list[dict[str, Any]] = [{} for _ in range(n)]

            def body(i: int) -> None:
                out[i] = _run_task(self._data, name, kwargs_list[i])

            threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return out
        for i, kw in enumerate(kwargs_list):
            self._tasks[i].put((name, kw))
        got: dict[int, dict[str, Any]] = {}
        while len(got) < n:
            i, res = self._get(timeout)
            got[i] = res
        return [got[i] for i in range(n)]

    def close(self) -> None:
        if self.mode != "process":
            return
        for q in self._tasks:
            q.put(None)
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


# -- one server configuration -----------------------------------------------------------------


@dataclass
class ConfigResult:
    """Figures and problems of one server configuration."""

    label: str
    kind: str
    workers: int
    figures: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """Run options shared by every configuration."""

    clients: tuple[int, ...]
    duration: float
    threads: bool
    settle_ms: float
    settle_rounds: int
    warmup_min_s: float
    warmup_max_s: float
    chroma_rust_log: str


def _merge_errors(results: list[dict[str, Any]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for r in results:
        total.update(r.get("errors", {}))
        if "fatal" in r:
            total["fatal: " + r["fatal"]] += 1
    return dict(total)


def measure_add(
    pool: ClientPool, server: Server, data: Dataset, clients: int, collection: str
) -> dict[str, Any]:
    """Create `collection`, add all records with `clients` clients (disjoint ranges)."""
    admin = http_client(server.port)
    admin.create_collection(
        collection, metadata={"hnsw:space": data.spec.space}, embedding_function=None
    )
    n = data.spec.n
    bounds = np.linspace(0, n, clients + 1).astype(int)
    start_at = time.time() + 1.5
    cpu0 = server.cpu_seconds()
    kw = [
        dict(port=server.port, collection=collection, lo=int(lo), hi=int(hi), start_at=start_at)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    res = pool.run("add", kw)
    cpu1 = server.cpu_seconds()
    ends = [r["t_end"] for r in res if "t_end" in r]
    starts = [r["t_start"] for r in res if "t_start" in r]
    elapsed = max(ends) - min(starts) if ends else float("nan")
    added = sum(r.get("added", 0) for r in res)
    count = int(admin.get_collection(collection, embedding_function=None).count())
    return {
        "clients": clients,
        "elapsed_s": elapsed,
        "vps": added / elapsed if ends else None,
        "added": added,
        "count": count,
        "server_cpu_s": cpu_delta(cpu0, cpu1),
        "errors": _merge_errors(res),
    }


def measure_queries(
    pool: ClientPool,
    server: Server,
    data: Dataset,
    truth: dict[str, list[set[int]]],
    case_key: str,
    clients: int,
    duration: float,
) -> dict[str, Any]:
    """`clients` closed-loop clients for `duration` s; pooled QPS, p50, p99 and recall."""
    start_at = time.time() + 2.0
    nq = len(data.queries)
    kw = [
        dict(
            port=server.port,
            collection=MAIN_COLLECTION,
            case_key=case_key,
            duration=duration,
            start_at=start_at,
            offset=i * nq // clients,
        )
        for i in range(clients)
    ]
    cpu0 = server.cpu_seconds()
    res = pool.run("query", kw)
    cpu1 = server.cpu_seconds()
    lat = np.concatenate([np.asarray(r.get("latencies_ms", []), dtype=float) for r in res])
    ok = [r for r in res if "t_end" in r]
    window = max(r["t_end"] for r in ok) - min(r["t_start"] for r in ok) if ok else float("nan")
    seen: dict[int, list[str]] = {}
    for r in ok:
        for qi, ids in r["first_ids"].items():
            seen.setdefault(int(qi), ids)
    exact = truth[case_key]
    recalls = [len({record_index(i) for i in ids} & exact[qi]) / K for qi, ids in seen.items()]
    out: dict[str, Any] = {
        "case": case_key,
        "clients": clients,
        "queries": int(lat.size),
        "window_s": window,
        "per_client_queries": [len(r.get("latencies_ms", [])) for r in res],
        "server_cpu_s": cpu_delta(cpu0, cpu1),
        # CPU of each client's process over its run (threads of one process all see the same)
        "client_process_cpu_s": [round(r.get("client_process_cpu_s", 0.0), 3) for r in res],
        "client_mode": pool.mode,
        "errors": _merge_errors(res),
        "recall_queries": len(recalls),
    }
    if lat.size:
        out.update(
            qps=lat.size / window,
            p50_ms=float(np.percentile(lat, 50)),
            p99_ms=float(np.percentile(lat, 99)),
            mean_ms=float(lat.mean()),
            max_ms=float(lat.max()),
            recall=float(np.mean(recalls)) if recalls else None,
        )
    return out


def run_config(
    spec: ServerSpec,
    data: Dataset,
    truth: dict[str, list[set[int]]],
    pool: ClientPool,
    opts: Options,
    workdir: Path,
) -> ConfigResult:
    """Start the server, measure everything, stop it; a failing phase is recorded, not raised."""
    result = ConfigResult(label=spec.label, kind=spec.kind, workers=spec.workers)
    figs, det = result.figures, result.details
    server = Server(spec, workdir, rust_log=opts.chroma_rust_log)
    try:
        log(f"{spec.label}: starting on port {server.port}")
        det["start_s"] = server.start()
        max_clients = max(opts.clients)

        # add: one client into a scratch collection (then dropped), then the main collection
        # with the most clients, which the queries then use
        add_runs = [
            (c, ADD1_COLLECTION if c != max_clients else MAIN_COLLECTION) for c in opts.clients
        ]
        add_runs.sort(key=lambda t: t[1] == MAIN_COLLECTION)
        for clients, name in add_runs:
            log(f"{spec.label}: add {data.spec.n} x {data.spec.dim} with {clients} client(s)")
            r = measure_add(pool, server, data, clients, name)
            det[f"add_{clients}"] = r
            if r["vps"] is not None:
                figs[f"add_{clients}_vps"] = r["vps"]
            if r["errors"]:
                result.errors.append(f"add {clients} clients: errors {r['errors']}")
            if r["count"] != data.spec.n:
                result.errors.append(
                    f"add {clients} clients: count() is {r['count']}, expected {data.spec.n}"
                )
            if name != MAIN_COLLECTION:
                http_client(server.port).delete_collection(name)
            if not server.alive():
                raise RuntimeError("server died during add")

        log(f"{spec.label}: first query after add")
        first = pool.run("first_query", [dict(port=server.port, collection=MAIN_COLLECTION)])[0]
        det["first_query"] = first
        if "first_query_s" in first:
            figs["first_query_s"] = first["first_query_s"]
        else:
            result.errors.append(f"first query: {first}")

        log(f"{spec.label}: warm-up on fresh connections until latencies settle")
        t0 = time.time()
        kw = dict(
            port=server.port,
            collection=MAIN_COLLECTION,
            t0=t0,
            settle_ms=opts.settle_ms,
            settle_rounds=opts.settle_rounds,
            min_s=opts.warmup_min_s,
            max_s=opts.warmup_max_s,
        )
        warm = pool.run("warmup", [kw] * max_clients)
        det["warmup"] = warm
        figs["ready_s"] = first.get("first_query_s", 0.0) + max(
            w.get("last_slow_s", 0.0) for w in warm
        )
        if not all(w.get("settled") for w in warm):
            result.errors.append(f"warm-up did not settle within {opts.warmup_max_s} s")
        werr = _merge_errors(warm)
        if werr:
            result.errors.append(f"warm-up: errors {werr}")

        for case_key in CASES:
            for clients in opts.clients:
                log(
                    f"{spec.label}: {case_key} with {clients} client process(es), "
                    f"{opts.duration:g} s"
                )
                r = measure_queries(pool, server, data, truth, case_key, clients, opts.duration)
                _record_queries(result, r, f"{case_key}_{clients}")
                if not server.alive():
                    raise RuntimeError(f"server died during {case_key} x{clients}")
        if opts.threads:
            clients = max_clients
            log(f"{spec.label}: query with {clients} threads in one process, {opts.duration:g} s")
            tpool = ClientPool(data.spec, data, clients, "thread")
            r = measure_queries(tpool, server, data, truth, "query", clients, opts.duration)
            _record_queries(result, r, f"query_{clients}t")
        det["server_rss_bytes"] = server.rss_bytes()
        figs["server_rss_mib"] = det["server_rss_bytes"] / 2**20
    except Exception as exc:  # noqa: BLE001 - a crash is a result
        result.errors.append(f"{type(exc).__name__}: {exc}")
        log(f"{spec.label}: PROBLEM: {exc}")
    finally:
        alive = server.alive()
        code = server.stop()
        det["server_alive_at_end"] = alive
        det["server_exit_code"] = code
        det["server_log"] = server.log_problems()
        if not alive:
            result.errors.append(f"server was not running at the end (exit code {code})")
            det["server_log_tail"] = server.log_tail()
        server.cleanup()
    return result


def _record_queries(result: ConfigResult, r: dict[str, Any], key: str) -> None:
    result.details[key] = r
    for stat in ("qps", "p50_ms", "p99_ms", "recall"):
        if r.get(stat) is not None:
            result.figures[f"{key}_{stat}"] = r[stat]
    if r["errors"]:
        result.errors.append(f"{key}: errors {r['errors']}")
    if r.get("recall") is not None and r["recall"] < 0.9:
        result.errors.append(f"{key}: recall@{K} {r['recall']:.3f}")


# -- table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the result table."""

    key: str
    label: str
    unit: str
    higher_is_better: bool


def figures(clients: tuple[int, ...], threads: bool) -> list[Figure]:
    out: list[Figure] = []
    for c in clients:
        out.append(Figure(f"add_{c}_vps", f"add, {c} client{'s' * (c > 1)}", "vec/s", True))
    out.append(Figure("first_query_s", "first query after add", "s", False))
    out.append(Figure("ready_s", "all workers index-ready after add", "s", False))
    for case_key, label in CASE_LABELS.items():
        for c in clients:
            name = f"{label}, {c} client{'s' * (c > 1)}"
            out.append(Figure(f"{case_key}_{c}_qps", f"{name}: QPS", "q/s", True))
            out.append(Figure(f"{case_key}_{c}_p50_ms", f"{name}: p50", "ms", False))
            out.append(Figure(f"{case_key}_{c}_p99_ms", f"{name}: p99", "ms", False))
    if threads:
        c = max(clients)
        name = f"query, {c} threads in 1 process"
        out.append(Figure(f"query_{c}t_qps", f"{name}: QPS", "q/s", True))
        out.append(Figure(f"query_{c}t_p50_ms", f"{name}: p50", "ms", False))
        out.append(Figure(f"query_{c}t_p99_ms", f"{name}: p99", "ms", False))
    c = max(clients)
    out.append(Figure(f"query_{c}_recall", "query recall@10", "", True))
    out.append(Figure(f"filter10_{c}_recall", "where bucket<10 recall@10", "", True))
    out.append(Figure("server_rss_mib", "server RSS at end (all processes)", "MiB", False))
    return out


def best_ratios(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per figure: the better huedb configuration and its value / chroma's."""
    configs = report["configs"]
    chroma = next((c for c in configs.values() if c["kind"] == "chroma"), None)
    out: dict[str, dict[str, Any]] = {}
    if chroma is None:
        return out
    for f in map(lambda d: Figure(**d), report["figures"]):
        vals = [
            (c["figures"][f.key], label)
            for label, c in configs.items()
            if c["kind"] == "huedb" and f.key in c["figures"]
        ]
        y = chroma["figures"].get(f.key)
        if not vals or y in (None, 0):
            continue
        best = max(vals) if f.higher_is_better else min(vals)
        out[f.key] = {"ratio": best[0] / y, "best": best[1]}
    return out


def format_table(report: dict[str, Any]) -> str:
    """figure | unit | better | one column per configuration | best huedb / chroma."""
    labels = list(report["configs"])
    ratios = report.get("ratios_best_huedb_over_chroma", {})
    header = ["figure", "unit", "better", *labels, "best huedb / chroma"]
    rows = [header]
    for f in map(lambda d: Figure(**d), report["figures"]):
        row = [f.label, f.unit, "higher" if f.higher_is_better else "lower"]
        row += [_fmt(report["configs"][lab]["figures"].get(f.key)) for lab in labels]
        r = ratios.get(f.key)
        row.append("-" if r is None else f"{r['ratio']:.2f}x ({r['best'].removeprefix('huedb ')})")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for j, r in enumerate(rows):
        rest = [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append(" | ".join([r[0].ljust(widths[0]), *rest]))
        if j == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


# -- run ------------------------------------------------------------------------------------


def run(
    data_spec: DataSpec,
    servers: list[ServerSpec],
    opts: Options,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run every server configuration on one data set; returns the JSON-able report."""
    info = machine_info()
    started = time.time()
    log(f"generating {data_spec.n} x {data_spec.dim} (seed {data_spec.seed})")
    data = make_dataset(data_spec)
    gt = GroundTruth(data)
    truth = {key: gt.top_k(K, case.mask(data)) for key, case in CASES.items()}
    log(f"starting {max(opts.clients)} client processes (spawn)")
    pool = ClientPool(data_spec, data, max(opts.clients), "process")
    base = Path(tempfile.mkdtemp(prefix="huedb-http-bench-", dir=workdir))
    configs: dict[str, Any] = {}
    try:
        for spec in servers:
            res = run_config(spec, data, truth, pool, opts, base)
            configs[spec.label] = asdict(res)
            for err in res.errors:
                log(f"{spec.label}: PROBLEM: {err}")
    finally:
        pool.close()
        shutil.rmtree(base, ignore_errors=True)
    report: dict[str, Any] = {
        "benchmark": "http",
        "started_unix": started,
        "elapsed_s": time.time() - started,
        "machine": info | {"loadavg_end": list(os.getloadavg())},
        "data": asdict(data_spec)
        | {
            "batch": BATCH,
            "k": K,
            "cases": {k: CASES[k].where for k in CASES},
            "selectivity_filter10": float(np.mean(data.buckets < 10)),
        },
        "options": asdict(opts),
        "client": "chromadb.HttpClient, one per spawned process (threads where marked)",
        "figures": [asdict(f) for f in figures(opts.clients, opts.threads)],
        "configs": configs,
    }
    report["ratios_best_huedb_over_chroma"] = best_ratios(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench http", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="records (default 20000)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per query run")
    parser.add_argument(
        "--clients", default="1,4", help="comma-separated client counts (default 1,4)"
    )
    parser.add_argument(
        "--servers",
        default="huedb:1,huedb:2,chroma",
        help="comma-separated configurations: huedb:<workers> or chroma",
    )
    parser.add_argument("--no-threads", action="store_true", help="skip the threads figure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--settle-ms", type=float, default=1000.0, help="warm-up threshold")
    parser.add_argument("--settle-rounds", type=int, default=8)
    parser.add_argument("--warmup-min", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--warmup-max", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument(
        "--chroma-rust-log",
        default="warn",
        help="RUST_LOG for `chroma run` (default warn: like huedb, no per-request log lines; "
        "'' keeps chroma's default INFO request logging)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where temp dirs go")
    parser.add_argument(
        "--out", default=None, help="JSON path (default bench/results/http-<timestamp>.json)"
    )
    args = parser.parse_args(argv)

    clients = tuple(sorted({int(c) for c in args.clients.split(",") if c.strip()}))
    if not clients or min(clients) < 1:
        parser.error("--clients needs positive integers")
    servers: list[ServerSpec] = []
    for item in (s.strip() for s in args.servers.split(",") if s.strip()):
        kind, _, workers = item.partition(":")
        if kind == "huedb":
            w = int(workers or 1)
            servers.append(ServerSpec(f"huedb w{w}", "huedb", w))
        elif kind == "chroma":
            servers.append(ServerSpec("chroma", "chroma"))
        else:
            parser.error(f"unknown server {item!r}")
    for s in [s for s in servers if not s.available()]:
        log(f"{s.label}: executable not found next to {sys.executable}: skipping it")
        servers.remove(s)
    if not servers:
        log("no server to benchmark")
        return 2

    spec = DataSpec(n=args.n, dim=args.dim, clusters=args.clusters, seed=args.seed)
    opts = Options(
        clients=clients,
        duration=args.duration,
        threads=not args.no_threads,
        settle_ms=args.settle_ms,
        settle_rounds=args.settle_rounds,
        warmup_min_s=args.warmup_min,
        warmup_max_s=args.warmup_max,
        chroma_rust_log=args.chroma_rust_log,
    )
    report = run(spec, servers, opts, workdir=args.workdir)
    out = Path(args.out) if args.out else RESULTS / f"http-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    m = report["machine"]
    print(
        f"http benchmark: n={spec.n} dim={spec.dim} space={spec.space} seed={spec.seed} "
        f"batch={BATCH} k={K} clients={','.join(map(str, clients))} "
        f"duration={opts.duration:g}s per query run"
    )
    print(
        f"machine: {m['cpu_model']} x{m['cpu_count']}, {m['platform']}, python {m['python']}, "
        f"loadavg {m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end; "
        f"versions {m['versions']}"
    )
    print()
    print(format_table(report))
    problems = [(lab, e) for lab, c in report["configs"].items() for e in c["errors"]]
    logs = [
        (lab, c["details"].get("server_log", {}).get("counts", {}))
        for lab, c in report["configs"].items()
    ]
    if problems:
        print()
        print("problems:")
        for lab, err in problems:
            print(f"  {lab}: {err}")
    print()
    print("server log lines with: " + "; ".join(f"{lab} {counts}" for lab, counts in logs))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
