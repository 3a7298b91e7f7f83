"""Client and server settings, accepting chromadb's `Settings` field names."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from huedb.options import OPTION_NAMES, EngineOptions, resolve_options

logger = logging.getLogger(__name__)

DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"

ENGINE_PREFIX = "huedb_"


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name) or os.environ.get(name.lower())
    if raw is None:
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass(eq=True)
class Settings:
    """Settings for every client mode; chromadb's field names work as they do there.

    Fields prefixed `huedb_` are huedb's own engine options (`huedb.options`): left
    unset, they take `HUEDB_<NAME>` from the environment, then the defaults; after
    construction they hold the values in force.
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
    huedb_sync: str | None = None
    huedb_exact_max_floats: int | None = None
    huedb_filtered_exact_max_floats: int | None = None
    huedb_snapshot_every: int | None = None
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
        options = self.engine_options()
        for name in OPTION_NAMES:
            setattr(self, ENGINE_PREFIX + name, getattr(options, name))

    def engine_options(self) -> EngineOptions:
        """The engine options these settings ask for (environment, then defaults, if unset)."""
        given = {name: getattr(self, ENGINE_PREFIX + name) for name in OPTION_NAMES}
        return resolve_options(env=os.environ, args=given)

    def __getattr__(self, name: str) -> Any:
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(name)
