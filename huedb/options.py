"""Engine options: their defaults, written once, and the one order in which they are read.

Every entry point (embedded clients, `huedb run` and its workers, every CLI command) builds
its engine from an `EngineOptions` made by `resolve_options`, which reads, each layer
overriding the one before:

1. the defaults below;
2. a config file's keys (`huedb run --config`; the same names, `-` or `_`);
3. the environment: `HUEDB_<NAME>` (e.g. `HUEDB_SYNC=normal`);
4. explicit arguments (`huedb run --sync normal`, `Settings(huedb_sync="normal")`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from huedb.errors import ConfigError

SYNC_MODES = ("off", "normal", "full", "extra")
ENV_PREFIX = "HUEDB_"


@dataclass(frozen=True)
class EngineOptions:
    """What an engine is opened with (one process, one data directory or memory)."""

    # SQLite's synchronous level: "full" makes every acknowledged write survive power loss.
    sync: str = "full"
    # Collections up to this many floats (vectors x dimension) are searched exactly;
    # above it, an HNSW graph (2M: 5,200 vectors at 384 dims, from shared/ann-choice.md).
    exact_max_floats: int = 2_000_000
    # Filtered queries whose allowed vectors hold up to this many floats are searched
    # exactly (recall 1.0; measurements in docs/ARCHITECTURE.md).
    filtered_exact_max_floats: int = 40_000_000
    # A graph is snapshotted once this many changes (or 10 % of it) are not in its snapshot.
    snapshot_every: int = 1000

    def __post_init__(self) -> None:
        if self.sync not in SYNC_MODES:
            raise ConfigError(f"sync must be one of {', '.join(SYNC_MODES)}, got {self.sync!r}")
        for name in ("exact_max_floats", "filtered_exact_max_floats"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be at least 0")
        if self.snapshot_every < 1:
            raise ConfigError("snapshot_every must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON-able values."""
        return dataclasses.asdict(self)


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(EngineOptions))
_TYPES = {f.name: type(getattr(EngineOptions(), f.name)) for f in dataclasses.fields(EngineOptions)}


def env_name(option: str) -> str:
    """The environment variable of an option (`snapshot_every` -> `HUEDB_SNAPSHOT_EVERY`)."""
    return ENV_PREFIX + option.upper()


def resolve_options(
    file: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    args: Mapping[str, Any] | None = None,
) -> EngineOptions:
    """Defaults < config file < environment < arguments; None in a layer means "not set"."""
    values: dict[str, Any] = {}
    for key, raw in (file or {}).items():
        name = key.replace("-", "_")
        if name in OPTION_NAMES:
            values[name] = _parse(name, raw, "config file")
    for name in OPTION_NAMES:
        raw = (env or {}).get(env_name(name))
        if raw not in (None, ""):
            values[name] = _parse(name, raw, env_name(name))
    for name, raw in (args or {}).items():
        if raw is not None:
            if name not in OPTION_NAMES:
                raise ConfigError(f"unknown engine option {name!r}")
            values[name] = _parse(name, raw, name)
    return EngineOptions(**values)


def _parse(name: str, raw: Any, source: str) -> Any:
    wanted = _TYPES[name]
    if wanted is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{source}: {name} must be an integer, got {raw!r}")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str):
            try:
                return int(raw.strip().replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{source}: {name} must be an integer, got {raw!r}")
    if not isinstance(raw, str):
        raise ConfigError(f"{source}: {name} must be a string, got {raw!r}")
    return raw.strip().lower()
