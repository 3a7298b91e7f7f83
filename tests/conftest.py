"""Fixtures every test gets.

- `clean_environment`: no `HUEDB_*` / `CHROMA_*` setting (nor `ALLOW_RESET`) of the shell
  that started pytest reaches a test, so a developer's environment cannot change results.
  A test that needs one sets it itself with `monkeypatch.setenv`. The suite's own knobs
  (`HUEDB_CRASH_TRIALS`, ...) are captured before this runs: see `tests/knobs.py`.
- `close_engines`: after each test, every engine it opened is closed
  (`huedb.api.client.clear_system_cache()`), so no test sees another's shared engine and
  no file handle or lock outlives the test that took it.

`make test` runs the suite in two passes: every test not marked `serial` on several
pytest-xdist workers at once, then the `serial` ones alone (tests whose assertions bound
time or memory and would flake beside another test's load). So a test must not depend on
anything another test might use at the same time: each xdist worker gets its own
temporary directory (`TMPDIR`, inherited by every child process), its own PostgreSQL
cluster (`tests/pg_cluster.py`), and servers listen on free loopback ports.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from huedb.api.client import clear_system_cache
from tests import knobs  # noqa: F401 - captures the knobs before any test clears them
from tests.cli import huedb_setting

# The real-PostgreSQL fixtures (`pg_cluster`, `pg_url`) for any test file.
pytest_plugins = ["tests.pg_cluster"]

WORKER_TEMP_PREFIX = "huedb-tests-"
_worker_temp = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """In an xdist worker: a private temporary directory, made before collection (test
    modules may name files in it at import) and handed to child processes as `TMPDIR`.
    World-writable with the sticky bit like /tmp, so the unprivileged PostgreSQL user can
    use it too. The single-process run (and xdist's controller) keeps the system's."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker is None:
        return
    path = tempfile.mkdtemp(prefix=f"{WORKER_TEMP_PREFIX}{worker}-")
    os.chmod(path, 0o1777)
    os.environ["TMPDIR"] = tempfile.tempdir = path
    config.stash[_worker_temp] = path


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the worker's temporary directory (whatever tests left in it)."""
    path = config.stash.get(_worker_temp, None)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def clean_session_environment() -> Iterator[None]:
    """The same for module- and session-scoped fixtures (servers, stores built once)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if huedb_setting(n)]:
            mp.delenv(name)
        yield


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every huedb/chroma setting from the environment for the test."""
    for name in [n for n in os.environ if huedb_setting(n)]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def close_engines() -> Iterator[None]:
    """Close every engine the test opened once it ends (pass or fail)."""
    yield
    clear_system_cache()
