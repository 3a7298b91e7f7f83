"""Figures of processes from /proc: memory fields, open file descriptors."""

from __future__ import annotations

import os
from pathlib import Path


def status_kb(pid: int | str, field_name: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, RssAnon, RssFile), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def open_fds() -> list[str]:
    """What each open file descriptor of this process points at."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the fd of the listdir itself, closed by now
            continue
    return targets


def fd_count(pid: int) -> int:
    """Number of open file descriptors of `pid`."""
    return len(os.listdir(f"/proc/{pid}/fd"))
