"""`huedb compact` ends by truncating the WAL. SQLite's TRUNCATE checkpoint waits for
writers and readers but answers busy at once while another connection checkpoints (the
store's checkpointer thread, another process): compact then tries again rather than leave
the WAL at its size (`store_admin.truncate_wal`).

Another process holds the WAL-index's checkpoint lock here, as a checkpointing connection
does: SQLite's unix VFS takes it as a POSIX lock on byte 120 + 1 of the `-shm` file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import huedb
from huedb.engine.sqlite_store.connection import DB_FILENAME
from huedb.ops.store import compact

CHECKPOINT_LOCK_BYTE = 121  # the VFS's lock base (120) + WAL_CKPT_LOCK (1)
HOLD_S = 1.0

_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, int(sys.argv[2]))  # waits while the store's checkpointer has it
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_compact_truncates_the_wal_after_another_connections_checkpoint(tmp_path: Path) -> None:
    client = huedb.PersistentClient(path=tmp_path)
    try:
        col = client.create_collection("docs")
        vectors = np.random.default_rng(3).random((2_000, 16), dtype=np.float32)
        col.add(ids=[f"r{i}" for i in range(2_000)], embeddings=vectors)
        col.delete(ids=[f"r{i}" for i in range(1_500)])
        wal = tmp_path / f"{DB_FILENAME}-wal"
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _HOLDER,
                f"{tmp_path / DB_FILENAME}-shm",
                str(CHECKPOINT_LOCK_BYTE),
                str(HOLD_S),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            started = time.monotonic()
            report = compact(tmp_path)
            waited = time.monotonic() - started
        finally:
            holder.wait(timeout=30)
        assert wal.stat().st_size == 0, "the WAL was left as it was"
        assert waited >= HOLD_S / 2, "compact finished while the checkpoint lock was held"
        assert report.reclaimed_bytes > 0
        assert col.count() == 500
    finally:
        client.close()
