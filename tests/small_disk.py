"""A real full disk for tests: a small tmpfs mounted for the duration of a test."""

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
    mount = parent / f"tiny-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
