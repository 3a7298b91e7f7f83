"""Files named after the process that made them: whether that process still runs, and
removing what processes that were killed left behind.

Temporary files and directories (backup work directories, restore staging, downloads,
metrics directories; graph builds too, whose module imports no huedb and has its own loop)
carry their maker's process id in their name, so a
later run can tell a live process's file from a dead one's without any shared state.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path


def process_exists(pid: int | str) -> bool:
    """Whether a process with this id runs, whoever owns it; False for a text that is not
    a process id (as read from a file name)."""
    if isinstance(pid, str):
        if not pid.isdigit():
            return False
        pid = int(pid)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # a number no process id reaches
        return False
    return True


def remove_left_by_dead_processes(
    paths: Iterable[Path], pid_of: Callable[[Path], str]
) -> list[Path]:
    """Remove each file or directory of `paths` whose maker (`pid_of(path)`, a text read from
    its name) no longer runs; the paths removed. A name without a process id is kept."""
    removed = []
    for path in paths:
        pid = pid_of(path)
        if not pid.isdigit() or process_exists(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path)
    return removed
