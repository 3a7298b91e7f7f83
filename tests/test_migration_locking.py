"""Format migrations run under the directory's exclusive lock (issue 13 items 8 and 10).

A store another process has open (an older, lock-aware huedb server) is never migrated under
it: every command refuses with one clear line and the store stays as it was. Processes that
open an old store at the same moment all succeed: one migrates, the others wait for it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import huedb
from huedb.api.client import clear_system_cache
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.engine.sqlite_store.schema import FORMAT_VERSION
from huedb.errors import FormatVersionError
from tests.cli import REPO_ROOT, child_env, run_cli

N_RECORDS = 300
OLD_FORMAT = 3

# What an older huedb server does while it serves a format 3 store: it holds the shared
# directory lock and runs statements that need the format 3 tables (its metadata index).
OLD_SERVER = """
import fcntl, os, sqlite3, sys
data = sys.argv[1]
fd = os.open(os.path.join(data, "huedb.lock"), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_SH)
conn = sqlite3.connect(os.path.join(data, "huedb.sqlite3"))
print("ready", flush=True)
for _ in sys.stdin:
    try:
        sql = "SELECT count(*) FROM record_meta INDEXED BY record_meta_lookup WHERE cid > 0"
        print("ok", conn.execute(sql).fetchone()[0], flush=True)
    except sqlite3.Error as exc:
        print("error", exc, flush=True)
"""

# One of several processes opening the same old store at once (released by a line on stdin).
OPENER = """
import json, sys
import huedb
print("ready", flush=True)
sys.stdin.readline()
client = huedb.PersistentClient(path=sys.argv[1])
col = client.get_collection("meta", embedding_function=None)
threes = col.get(where={"b": 3})["ids"]
print(json.dumps({"count": col.count(), "threes": len(threes)}), flush=True)
client.close()
"""


def _format_3_store(data: Path) -> None:
    """A store as format 3 wrote it: the old metadata index, and version 3."""
    client = huedb.PersistentClient(path=data)
    col = client.create_collection("meta", embedding_function=None)
    vectors = np.random.default_rng(3).standard_normal((N_RECORDS, 4)).astype(np.float32)
    col.add(
        ids=[f"m{i}" for i in range(N_RECORDS)],
        embeddings=vectors,
        metadatas=[{"b": i % 10} for i in range(N_RECORDS)],
    )
    client.close()
    clear_system_cache()
    conn = sqlite3.connect(data / DB_FILENAME)
    conn.execute("DROP INDEX record_meta_keys")
    conn.execute("CREATE INDEX record_meta_lookup ON record_meta (cid, name, kind, value)")
    conn.execute("UPDATE huedb_meta SET value = ? WHERE key = 'format_version'", (OLD_FORMAT,))
    conn.commit()
    conn.close()


def _version(data: Path) -> int:
    conn = sqlite3.connect(data / DB_FILENAME)
    try:
        row = conn.execute("SELECT value FROM huedb_meta WHERE key = 'format_version'").fetchone()
        return int(row[0])
    finally:
        conn.close()


def _pre_migration_copies(data: Path) -> list[Path]:
    return sorted((data / "backups").glob(f"*huedb-format-{OLD_FORMAT}-*"))


@dataclass
class OldServer:
    """The stand-in for an older huedb server: answers one query per request."""

    process: subprocess.Popen

    def query(self) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("query\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()


@contextmanager
def old_server(data: Path) -> Iterator[OldServer]:
    process = subprocess.Popen(
        [sys.executable, "-c", OLD_SERVER, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield OldServer(process)
    finally:
        process.kill()
        process.wait()


def test_no_command_migrates_a_store_an_older_server_has_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _format_3_store(data)
    with old_server(data) as server:
        answer = server.query()
        assert answer.startswith("ok"), answer
        for command in (
            ["stats", "--path", str(data)],
            ["verify", "--path", str(data)],
            ["compact", "--path", str(data)],
            ["backup", "--path", str(data), "--out", str(tmp_path / "b.tar")],
        ):
            r = run_cli(*command, timeout=120)
            assert r.returncode == 2, (command, r.stdout, r.stderr)
            assert "Traceback" not in r.stderr, r.stderr
            assert f"process {server.process.pid}" in r.stderr, r.stderr
            assert "Stop that process" in r.stderr and "Nothing was changed" in r.stderr
            assert server.query() == answer, f"{command[0]} changed the store under the server"
        with pytest.raises(FormatVersionError, match="has it open"):
            huedb.PersistentClient(path=data)
        clear_system_cache()
        assert server.query() == answer
        assert _version(data) == OLD_FORMAT and not _pre_migration_copies(data)
        assert not (tmp_path / "b.tar").exists()
    r = run_cli("verify", "--path", str(data), timeout=120)
    assert r.returncode == 0, r.stderr
    assert _version(data) == FORMAT_VERSION and len(_pre_migration_copies(data)) == 1


def _open_at_once(data: Path, processes: int) -> list[subprocess.CompletedProcess]:
    """Start `processes` openers, wait until each has imported huedb, then release them all."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=REPO_ROOT,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = []
    for child in children:
        out, err = child.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(child.args, child.returncode, out, err))
    return results


def test_processes_opening_an_old_store_at_once_all_succeed(tmp_path: Path) -> None:
    template = tmp_path / "template"
    _format_3_store(template)
    for round_ in range(4):
        data = tmp_path / f"round-{round_}"
        shutil.copytree(template, data)
        results = _open_at_once(data, processes=5)
        for r in results:
            assert r.returncode == 0, f"round {round_}: {r.stderr}"
            assert json.loads(r.stdout) == {"count": N_RECORDS, "threes": N_RECORDS // 10}
        assert _version(data) == FORMAT_VERSION
        copies = _pre_migration_copies(data)
        assert len(copies) == 1, f"round {round_}: {copies}"
        old = sqlite3.connect(copies[0])
        assert old.execute("SELECT count(*) FROM records").fetchone()[0] == N_RECORDS
        old.close()
        assert not list((data / "backups").glob(".*")), "a partial pre-migration copy was left"
