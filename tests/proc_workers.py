"""Worker programs run in child OS processes by the multiprocess, crash and snapshot tests.

Run as `python tests/proc_workers.py <command> <json-args>` (`start_worker`, with the
environment policy of `tests/cli.py`); each command writes its findings to the file named
by the `out` argument (JSON), or its acknowledgement log (`tests/crash_log.py`), so the
parent test asserts on them.
Vectors are derived from seeds (`vectors_for`), so parent and children agree on them
without passing arrays around.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

import huedb  # noqa: E402
from tests.cli import child_env  # noqa: E402
from tests.crash_log import log_ack, log_begin  # noqa: E402

COLLECTION = "procs"
WORKER_SCRIPT = Path(__file__).resolve()


# --------------------------------------------------------------------------- shared helpers


def vectors_for(seed: int, n: int, dim: int) -> np.ndarray:
    """`n` float32 vectors of dimension `dim`, determined by `seed` (distinct in practice)."""
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def ids_for(prefix: str, n: int) -> list[str]:
    """The ids `prefix-0` .. `prefix-(n-1)`."""
    return [f"{prefix}-{i}" for i in range(n)]


def open_collection(path: str, settings: dict[str, Any]) -> tuple[Any, Any]:
    """A PersistentClient on `path` and its test collection (created if missing)."""
    client = huedb.PersistentClient(path=path, settings=huedb.Settings(**settings))
    return client, client.get_or_create_collection(COLLECTION)


def write_json(path: str, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (temp file + rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def exact_top1_misses(col: Any, ids: list[str], vecs: np.ndarray, chunk: int = 1000) -> list[str]:
    """Ids whose own vector, queried with n_results=1, does not return that id."""
    misses: list[str] = []
    for start in range(0, len(ids), chunk):
        res = col.query(
            query_embeddings=vecs[start : start + chunk], n_results=1, include=["distances"]
        )
        for offset, (got, dists) in enumerate(zip(res["ids"], res["distances"], strict=True)):
            want = ids[start + offset]
            if got != [want] or dists[0] > 1e-4:
                misses.append(f"{want} -> {got} {dists}")
    return misses


def start_worker(command: str, args: dict[str, Any], log_dir: Path) -> subprocess.Popen:
    """Start `command` of this module in a new Python process; stderr goes to a file."""
    stderr = open(log_dir / f"{command}-{time.monotonic_ns()}.stderr", "w+b")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), command, json.dumps(args)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=child_env(),
    )
    proc.stderr_file = stderr  # type: ignore[attr-defined]
    return proc


def stderr_of(proc: subprocess.Popen) -> str:
    """What a worker started by `start_worker` wrote to stderr so far."""
    f = proc.stderr_file  # type: ignore[attr-defined]
    f.flush()
    f.seek(0)
    return f.read().decode(errors="replace")


def wait_ok(proc: subprocess.Popen, timeout: float) -> str:
    """Wait for a worker to exit 0 (killing it on timeout); returns its stderr."""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"worker timed out after {timeout}s:\n{stderr_of(proc)}") from None
    err = stderr_of(proc)
    if rc != 0:
        raise AssertionError(f"worker exited with {rc}:\n{err}")
    return err


def run_worker(command: str, args: dict[str, Any], log_dir: Path, timeout: float = 300) -> str:
    """Run a worker to completion; returns its stderr (log lines)."""
    return wait_ok(start_worker(command, args, log_dir), timeout)


# --------------------------------------------------------------------------- multiprocess


def _await_other_writer(col: Any, own: int, timeout: float = 60.0) -> None:
    """Wait until count() shows a record besides this writer's `own` first ones: both
    writers pass their first batch before either goes on, so their writes overlap however
    the machine schedules them (under load one writer once did all its batches before the
    other began, and the test could not see the other's writes land). Returns after
    `timeout` regardless: the caller's assertions then tell what was never seen."""
    deadline = time.monotonic() + timeout
    while col.count() <= own and time.monotonic() < deadline:
        time.sleep(0.005)


def mp_writer(args: dict[str, Any]) -> None:
    """Add `n` ids in batches while querying; record count() after every batch."""
    dim, batch, n = args["dim"], args["batch"], args["n"]
    ids = ids_for(args["prefix"], n)
    vecs = vectors_for(args["seed"], n, dim)
    other_ids = ids_for(args["other_prefix"], n)
    other_vecs = vectors_for(args["other_seed"], n, dim)
    rng = np.random.default_rng(args["seed"] + 7)
    client, col = open_collection(args["path"], args["settings"])
    Path(args["ready"]).touch()
    while not Path(args["go"]).exists():
        time.sleep(0.005)
    counts: list[int] = []
    failures: list[str] = []
    seen_other = 0
    t_start = time.monotonic()
    t_add = t_query = 0.0
    for start in range(0, n, batch):
        end = min(start + batch, n)
        t0 = time.monotonic()
        col.add(ids=ids[start:end], embeddings=vecs[start:end])
        t_add += time.monotonic() - t0
        counts.append(col.count())
        if start == 0:
            _await_other_writer(col, end)
        t0 = time.monotonic()
        # Read-your-writes: a sample of the batch just acknowledged is found by query.
        pick = rng.choice(np.arange(start, end), size=min(10, end - start), replace=False)
        failures += exact_top1_misses(col, [ids[i] for i in pick], vecs[pick])
        # The other writer's records that get() sees must also be found by query.
        sample = rng.choice(n, size=min(n, 40), replace=False)
        got = col.get(ids=[other_ids[i] for i in sample], include=[])
        present = set(got["ids"])
        landed = [i for i in sample if other_ids[i] in present]
        seen_other = max(seen_other, len(present))
        if landed:
            failures += exact_top1_misses(col, [other_ids[i] for i in landed], other_vecs[landed])
        t_query += time.monotonic() - t0
    t_loop = time.monotonic() - t_start
    # Wait for the other writer to finish so both see the final total.
    deadline = time.monotonic() + 120
    while col.count() < args["expected_total"] and time.monotonic() < deadline:
        time.sleep(0.05)
    final = col.count()
    client.close()
    write_json(
        args["out"],
        {
            "counts": counts,
            "final": final,
            "failures": failures[:50],
            "seen_other": seen_other,
            "secs": {"add": t_add, "query": t_query, "loop": t_loop},
        },
    )


def mp_verifier(args: dict[str, Any]) -> None:
    """Check every writer's ids by get() and by exact-vector query with n_results=1."""
    client, col = open_collection(args["path"], args["settings"])
    all_ids: list[str] = []
    all_vecs: list[np.ndarray] = []
    for w in args["writers"]:
        all_ids += ids_for(w["prefix"], w["n"])
        all_vecs.append(vectors_for(w["seed"], w["n"], args["dim"]))
    vecs = np.vstack(all_vecs)
    got = col.get(ids=all_ids, include=["embeddings"])
    stored = dict(zip(got["ids"], got["embeddings"], strict=True))
    missing = [i for i in all_ids if i not in stored]
    wrong_vec = [
        i for n, i in enumerate(all_ids) if i in stored and not np.array_equal(stored[i], vecs[n])
    ]
    # This process queries its share of the records (several verifiers split the work).
    part, parts = args.get("part", 0), args.get("parts", 1)
    share = np.array_split(np.arange(len(all_ids)), parts)[part]
    t0 = time.monotonic()
    misses = exact_top1_misses(col, [all_ids[i] for i in share], vecs[share])
    query_secs = time.monotonic() - t0
    count = col.count()
    client.close()
    write_json(
        args["out"],
        {
            "count": count,
            "got": len(got["ids"]),
            "missing": missing[:50],
            "n_missing": len(missing),
            "wrong_vec": wrong_vec[:50],
            "misses": misses[:50],
            "n_misses": len(misses),
            "queried": len(share),
            "query_secs": query_secs,
        },
    )


# --------------------------------------------------------------------------- crash


def crash_writer(args: dict[str, Any]) -> None:
    """Apply random add/upsert/update/delete batches forever, logging intent and ack.

    Before each call a `begin` line (op, ids, vector seed) is appended and fsynced; after
    the call returns a `done` line is appended and fsynced. The parent kills us with
    SIGKILL at a random moment, so at most one op is in flight (begun, not done).
    """
    trial, dim = args["trial"], args["dim"]
    rng = np.random.default_rng(args["seed"])
    client, col = open_collection(args["path"], args["settings"])
    live = list(col.get(include=[])["ids"])
    live_set = set(live)
    Path(args["ready"]).touch()
    next_id = 0
    with open(args["log"], "a") as log:
        for k in range(1_000_000):
            size = len(live)
            weights = (
                [0.4, 0.25, 0.2, 0.15] if size < args["target_size"] else [0.1, 0.2, 0.25, 0.45]
            )
            op = str(rng.choice(["add", "upsert", "update", "delete"], p=weights))
            if op != "add" and size < 20:
                op = "add"
            seed = trial * 1_000_000 + k
            if op == "add":
                ids = [f"t{trial}-{next_id + i}" for i in range(int(rng.integers(1, 80)))]
                next_id += len(ids)
            elif op == "upsert":
                old = [live[i] for i in rng.choice(size, size=min(size, 25), replace=False)]
                new = [f"t{trial}-{next_id + i}" for i in range(int(rng.integers(0, 25)))]
                next_id += len(new)
                ids = old + new
            else:
                count = 30 if op == "update" else int(rng.integers(1, 40))
                ids = [live[i] for i in rng.choice(size, size=min(size, count), replace=False)]
            log_begin(log, k, op, ids=ids, seed=seed)
            vecs = vectors_for(seed, len(ids), dim)
            docs = [f"{i}@{seed}" for i in ids]
            if op == "add":
                col.add(ids=ids, embeddings=vecs, documents=docs)
            elif op == "upsert":
                col.upsert(ids=ids, embeddings=vecs, documents=docs)
            elif op == "update":
                col.update(ids=ids, embeddings=vecs, documents=docs)
            else:
                col.delete(ids=ids)
            log_ack(log, k)
            if op == "delete":
                gone = set(ids)
                live = [i for i in live if i not in gone]
                live_set -= gone
            else:
                for i in ids:
                    if i not in live_set:
                        live_set.add(i)
                        live.append(i)
            # Queries catch the index up and write snapshots (small snapshot_every).
            col.query(query_embeddings=vecs[:3], n_results=3, include=["distances"])
    client.close()


def crash_verifier(args: dict[str, Any]) -> None:
    """Reopen after a crash; dump every record and check each is found by its own vector."""
    t0 = time.monotonic()
    client, col = open_collection(args["path"], args["settings"])
    got = col.get(include=["embeddings", "documents"])
    ids = list(got["ids"])
    vecs = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(ids), args["dim"])
    misses = exact_top1_misses(col, ids, vecs) if ids else []
    count = col.count()
    client.close()
    np.save(args["out"] + ".npy", vecs)
    write_json(
        args["out"],
        {
            "ids": ids,
            "documents": list(got["documents"]),
            "count": count,
            "misses": misses[:50],
            "n_misses": len(misses),
            "secs": time.monotonic() - t0,
        },
    )


def coll_writer(args: dict[str, Any]) -> None:
    """Create collections, add records, delete collections; log intent and acks.

    Records of `add` get vectors `vectors_for(seed, n, dim)`, metadata {"seed", "row"} and
    document `<id>@<seed>`. Runs until killed.
    """
    rng = random.Random(args["seed"])
    trial, dim = args["trial"], args["dim"]
    settings = huedb.Settings(**args["settings"])
    with open(args["log"], "a") as log:
        client = huedb.PersistentClient(path=args["path"], settings=settings)
        names = [c.name for c in client.list_collections()]
        sizes = {n: client.get_collection(n).count() for n in names}
        Path(args["ready"]).touch()
        k = 0
        while True:
            k += 1
            roll = rng.random()
            if not names or (roll < 0.3 and len(names) < 25):
                name = f"c{trial}-{k}"
                log_begin(log, k, "create", name=name)
                client.create_collection(name, metadata={"trial": trial})
                names.append(name)
                sizes[name] = 0
            elif roll < 0.85 or len(names) < 3:
                name = rng.choice(names)
                n = rng.randint(1, 30)
                ids = [f"{name}-r{sizes[name] + i}" for i in range(n)]
                seed = trial * 1_000_000 + k
                log_begin(log, k, "add", name=name, ids=ids, seed=seed)
                vecs = vectors_for(seed, n, dim)
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
                log_begin(log, k, "delete", name=name, uuid=uuid)
                client.delete_collection(name)
                names.remove(name)
            log_ack(log, k)


# --------------------------------------------------------------------------- snapshots


def apply_ops(args: dict[str, Any]) -> None:
    """Another client: apply adds/updates/deletes, optionally exiting without close()."""
    client, col = open_collection(args["path"], args["settings"])
    for op in args["ops"]:
        ids = op["ids"]
        if op["op"] == "delete":
            col.delete(ids=ids)
            continue
        vecs = vectors_for(op["seed"], len(ids), args["dim"])
        getattr(col, op["op"])(ids=ids, embeddings=vecs)
    if args.get("hard_exit"):
        # Exit like a crashed client: no close(), so no snapshot is written at exit.
        write_json(args["out"], {"ok": True})
        os._exit(0)
    client.close()
    write_json(args["out"], {"ok": True})


COMMANDS = {
    "mp_writer": mp_writer,
    "mp_verifier": mp_verifier,
    "crash_writer": crash_writer,
    "crash_verifier": crash_verifier,
    "coll_writer": coll_writer,
    "apply_ops": apply_ops,
}


def main() -> None:
    """Entry point: `proc_workers.py <command> <json-args>`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    COMMANDS[sys.argv[1]](json.loads(sys.argv[2]))


if __name__ == "__main__":
    main()
