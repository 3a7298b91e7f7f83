"""Files named after their maker's process: a dead maker's are removed, the rest kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from huedb.process_ids import process_exists, remove_left_by_dead_processes


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_process_exists() -> None:
    dead = _dead_pid()
    assert process_exists(os.getpid()) and process_exists(str(os.getpid()))
    assert process_exists(1)  # init: another user's process where tests run unprivileged
    assert not process_exists(dead) and not process_exists(str(dead))
    for not_a_pid in ("", "abc", "-1", "0", "12a", str(2**70), 0, -5):
        assert not process_exists(not_a_pid), not_a_pid


def test_only_what_dead_processes_left_is_removed(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / f"work-{dead}").mkdir()
    (tmp_path / f"work-{dead}" / "part").write_bytes(b"x")
    (tmp_path / f"file-{dead}").write_bytes(b"x")
    (tmp_path / f"work-{alive}").mkdir()
    (tmp_path / f"file-{alive}").write_bytes(b"x")
    (tmp_path / "file-nopid").write_bytes(b"x")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").write_bytes(b"x")
    (tmp_path / f"link-{dead}").symlink_to(target)  # the link goes, not what it points to

    removed = remove_left_by_dead_processes(
        tmp_path.glob("*-*"), lambda p: p.name.rsplit("-", 1)[-1]
    )

    assert sorted(p.name for p in removed) == sorted(
        [f"work-{dead}", f"file-{dead}", f"link-{dead}"]
    )
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([f"work-{alive}", f"file-{alive}", "file-nopid", "elsewhere"])
    assert (target / "keep").exists()
