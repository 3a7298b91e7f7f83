"""Fixtures every test gets.

- `clean_environment`: no `HUEDB_*` / `CHROMA_*` setting (nor `ALLOW_RESET`) of the shell
  that started pytest reaches a test, so a developer's environment cannot change results.
  A test that needs one sets it itself with `monkeypatch.setenv`. The suite's own knobs
  (`HUEDB_CRASH_TRIALS`, ...) are captured before this runs: see `tests/knobs.py`.
- `close_engines`: after each test, every engine it opened is closed
  (`huedb.api.client.clear_system_cache()`), so no test sees another's shared engine and
  no file handle or lock outlives the test that took it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from huedb.api.client import clear_system_cache
from tests import knobs  # noqa: F401 - captures the knobs before any test clears them
from tests.cli import huedb_setting

# The real-PostgreSQL fixtures (`pg_cluster`, `pg_url`) for any test file.
pytest_plugins = ["tests.pg_cluster"]


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
