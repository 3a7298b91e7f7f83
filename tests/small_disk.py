"""Real file systems for tests, mounted for the duration of a test: a small tmpfs (a real
full disk) and a ramfs (no fallocate)."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(parent: Path, size_mb: int) -> Iterator[Path]:
    """Mount a `size_mb` tmpfs below `parent` (needs root; skips the test otherwise)."""
    with _mounted(parent, "tmpfs", f"size={size_mb}m") as mount:
        yield mount


@contextlib.contextmanager
def ramfs(parent: Path) -> Iterator[Path]:
    """Mount a ramfs below `parent` (needs root; skips the test otherwise)."""
    with _mounted(parent, "ramfs", "mode=0755") as mount:
        yield mount


def fill_up(disk: Path) -> None:
    """Write `disk`/filler until the file system refuses another byte."""
    with open(disk / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)


@contextlib.contextmanager
def _mounted(parent: Path, kind: str, options: str) -> Iterator[Path]:
    mount = parent / f"tiny-{kind}-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    r = subprocess.run(
        ["mount", "-t", kind, "-o", options, kind, str(mount)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a {kind} here: {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
