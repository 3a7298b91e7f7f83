"""Client and server settings, accepting chromadb's `Settings` field names."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"

SYNC_MODES = ("off", "normal", "full", "extra")


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name) or os.environ.get(name.lower())
    if raw is None:
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass(eq=True)
class Settings:
    """Settings for every client mode; chromadb's field names work as they do there.

    Fields prefixed `huedb_` are huedb's own: the SQLite sync level and the planner's
    exact-search and snapshot thresholds.
    """

    is_persistent: bool = False
    persist_directory: str = "./chroma"
    allow_reset: bool = field(default_factory=lambda: _env_bool("ALLOW_RESET", False))
    anonymized_telemetry: bool = False
    chroma_api_impl: str = "huedb.api.local.LocalAPI"
    chroma_server_host: str | None = None
    chroma_server_http_port: int | None = None
    chroma_server_ssl_enabled: bool = False
    chroma_server_ssl_verify: bool | str | None = None
    chroma_server_headers: dict[str, str] | None = None
    chroma_server_api_default_path: str = "/api/v2"
    chroma_client_auth_provider: str | None = None
    chroma_client_auth_credentials: str | None = None
    chroma_auth_token_transport_header: str | None = None
    chroma_http_keepalive_secs: float = 40.0
    chroma_http_max_connections: int | None = None
    huedb_sync: str = field(default_factory=lambda: os.environ.get("HUEDB_SYNC", "full"))
    huedb_exact_max_floats: int = 2_000_000
    huedb_filtered_exact_max_floats: int = 40_000_000
    huedb_snapshot_every: int = 1000
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    def __init__(self, **kwargs: Any) -> None:
        known = {f.name for f in dataclasses.fields(self)} - {"extras"}
        for f in dataclasses.fields(self):
            if f.name == "extras":
                continue
            if f.name in kwargs:
                setattr(self, f.name, kwargs.pop(f.name))
            elif f.default_factory is not dataclasses.MISSING:
                setattr(self, f.name, f.default_factory())
            else:
                setattr(self, f.name, f.default)
        self.extras = dict(kwargs)
        if kwargs:
            logger.debug("settings not used by huedb: %s", sorted(set(kwargs) - known))
        if self.huedb_sync not in SYNC_MODES:
            raise ValueError(f"huedb_sync must be one of {SYNC_MODES}, got {self.huedb_sync!r}")

    def __getattr__(self, name: str) -> Any:
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(name)

    def require(self, key: str) -> Any:
        """Return a setting that must be set, raising ValueError when it is not."""
        value = getattr(self, key, None)
        if value is None:
            raise ValueError(f"Missing required config value '{key}'")
        return value
