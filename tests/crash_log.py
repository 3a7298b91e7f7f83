"""The acknowledgement log of the crash tests, and their schedule knobs.

A child process that is going to be killed with SIGKILL logs each call it makes: a `begin`
line (the op and what the parent needs to replay it) appended and fsynced *before* the
call, an `ack` line appended and fsynced *after* it returned. After the kill the parent
reads the log back (`read_ack_log`): every acknowledged op must have survived, and at most
one op (the last begun) is in flight, which may be applied entirely or not at all.

`HUEDB_CRASH_TRIALS` (default 20) sets the number of kills and `HUEDB_CRASH_SEED` fixes the
random schedule (see `tests/knobs.py`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

from tests.knobs import knob


def crash_trials() -> int:
    """The number of kills a crash test makes (HUEDB_CRASH_TRIALS, default 20)."""
    return int(knob("HUEDB_CRASH_TRIALS", "20"))


def crash_seed() -> int:
    """The schedule's seed: HUEDB_CRASH_SEED or a random one (printed in failures)."""
    return int(knob("HUEDB_CRASH_SEED") or random.randrange(2**31))


def append_line(f: IO[str], record: dict[str, Any]) -> None:
    """Append one JSON line to an open file and fsync it."""
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def log_begin(f: IO[str], k: int, op: str, **fields: Any) -> None:
    """Log the intent of call `k` (before making it)."""
    append_line(f, {"t": "begin", "k": k, "op": op, **fields})


def log_ack(f: IO[str], k: int) -> None:
    """Log that call `k` returned (after it did)."""
    append_line(f, {"t": "ack", "k": k})


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


def in_call(path: Path) -> bool:
    """True when the log's last complete line is a `begin`: a call is in flight."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return data.endswith(b"\n") and last.startswith(b'{"t": "begin"')


def sigkill(proc: subprocess.Popen) -> bool:
    """SIGKILL `proc` if it still runs; True if it was killed (False: it had finished)."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL
