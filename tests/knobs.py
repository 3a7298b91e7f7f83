"""The suite's own knobs (trial counts, seeds, example counts), read once at import.

`tests/conftest.py` removes every `HUEDB_*` / `CHROMA_*` variable from the environment of
each test, so a developer's shell cannot change how huedb behaves under test. The suite's
own knobs share the `HUEDB_` prefix; they are captured here, when the test modules are
collected (before any fixture runs), and read with `knob()`.
"""

from __future__ import annotations

import os

KNOBS = {
    "HUEDB_CRASH_TRIALS": "number of SIGKILL trials of the crash tests (default 20)",
    "HUEDB_CRASH_SEED": "seed of the crash tests' random schedule (default random)",
    "HUEDB_FUZZ_EXAMPLES": "hypothesis examples per HTTP fuzz test (default 10)",
    "HUEDB_FUZZ_SEED": "hypothesis seed of the HTTP fuzz tests (default random)",
    "HUEDB_HYPOTHESIS_EXAMPLES": "examples of the stateful/property tests (default 150)",
    "HUEDB_SOAK_SECONDS": "duration of the soak test in seconds (default 40)",
}

_CAPTURED = {name: os.environ[name] for name in KNOBS if name in os.environ}


def knob(name: str, default: str | None = None) -> str | None:
    """The value the suite was started with for knob `name` (one of `KNOBS`), or `default`."""
    if name not in KNOBS:
        raise KeyError(f"{name} is not a test knob; add it to tests/knobs.py KNOBS")
    return _CAPTURED.get(name, default)
