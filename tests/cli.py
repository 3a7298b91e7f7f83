"""Run the `huedb` command line (`python -m huedb.cli ...`) the way every test does.

One environment policy for every child process the suite starts: the parent environment
minus every `HUEDB_*` / `CHROMA_*` setting (and `ALLOW_RESET`), plus what the caller
passes. So a developer's shell never changes a child's behaviour and a test states every
setting it relies on. PYTHONPATH and the rest of the environment are kept; children run in
the repository root, so `tests.embedders:v2`-style references import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli_fork import FORK_SERVER

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIXES = ("HUEDB_", "CHROMA_")
ENV_NAMES = ("ALLOW_RESET",)


def huedb_setting(name: str) -> bool:
    """True for environment variables that configure huedb or chromadb (any case)."""
    upper = name.upper()
    return upper.startswith(ENV_PREFIXES) or upper in ENV_NAMES


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: ours without huedb/chroma settings, plus `env`."""
    out = {k: v for k, v in os.environ.items() if not huedb_setting(k)}
    out.update(env or {})
    return out


def cli_command(*args: str) -> list[str]:
    """The argv of `huedb *args` run with this interpreter."""
    return [sys.executable, "-m", "huedb.cli", *args]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `huedb *args` to completion; stdout/stderr captured as text (exit code not checked).

    In a child forked from a process that has imported the CLI (`tests/cli_fork.py`), or
    an ordinary `python -m huedb.cli` where that cannot be used."""
    forked = FORK_SERVER.run(list(args), child_env(env), REPO_ROOT, timeout, child_env())
    if forked is not None:
        return forked
    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(env),
        cwd=REPO_ROOT,
    )


def check_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`run_cli`, failing with the command's stderr unless it exits 0."""
    res = run_cli(*args, env=env, timeout=timeout)
    assert res.returncode == 0, f"huedb {' '.join(args)} -> {res.returncode}:\n{res.stderr}"
    return res


def start_cli(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    """Start `huedb *args` without waiting (output discarded unless `stdout=`/`stderr=`)."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(cli_command(*args), env=child_env(env), cwd=REPO_ROOT, **popen)


def run_python(*argv: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run `python *argv` (a script or `-c code`) with the same policy; returns its stdout."""
    res = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(env),
        cwd=REPO_ROOT,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout
