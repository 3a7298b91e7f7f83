"""Client and server settings, accepting chromadb's `Settings` field names."""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import string
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from huedb.errors import ConfigError
from huedb.options import OPTION_NAMES, EngineOptions, resolve_options

# The characters a token may hold (chromadb's client checks them; huedb's server too):
# printable ASCII without white space.
TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + string.punctuation)

logger = logging.getLogger(__name__)

DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"

ENGINE_PREFIX = "huedb_"


# pydantic's words for booleans (chromadb's `Settings` is a pydantic `BaseSettings`).
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
# Not a setting of chromadb's: never read from the environment.
_NOT_FROM_ENV = {"extras"}

# `chroma_api_impl` values (read from CHROMA_API_IMPL too, as chromadb does): huedb's
# engine in this process, or a server over HTTP (`huedb.api.client` picks the API).
LOCAL_API_IMPL = "huedb.api.local.LocalAPI"
HTTP_API_IMPL = "chromadb.api.fastapi.FastAPI"
ASYNC_HTTP_API_IMPL = "chromadb.api.async_fastapi.AsyncFastAPI"
# chromadb's names of its embedded modes, and the chromadb bridge's: huedb's engine here.
_LOCAL_API_ALIASES = {
    "chromadb.api.rust.RustBindingsAPI",
    "chromadb.api.segment.SegmentAPI",
    "huedb.chroma_bridge.server_api.HuedbServerAPI",
}


def _env_value(name: str, annotation: str, raw: str) -> Any:
    """`raw` (from env var NAME) converted to the field's type, as pydantic would."""
    word = raw.strip().lower()
    if annotation.startswith("bool | str"):
        return raw  # pydantic keeps the string for chromadb's `bool | str` fields
    if annotation.startswith("bool"):
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ConfigError(f"{name.upper()}={raw!r} is not a boolean")
    try:
        if annotation.startswith("int"):
            return int(raw)
        if annotation.startswith("float"):
            return float(raw)
        if annotation.startswith("dict"):
            return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name.upper()}={raw!r}: {exc}") from exc
    return raw


def _from_environment(fields: dict[str, str]) -> dict[str, Any]:
    """Field values set by environment variables named like the fields (any case), as
    chromadb's `Settings` reads them; huedb's own `huedb_*` options resolve elsewhere."""
    env = {key.lower(): value for key, value in os.environ.items()}
    return {
        name: _env_value(name, annotation, env[name])
        for name, annotation in fields.items()
        if name in env and name not in _NOT_FROM_ENV and not name.startswith(ENGINE_PREFIX)
    }


@dataclass(eq=True)
class Settings:
    """Settings for every client mode; chromadb's field names work as they do there.

    Like chromadb's, a field not passed takes the environment variable of its name (any
    case: `CHROMA_CLIENT_AUTH_CREDENTIALS`, `ALLOW_RESET`), then its default. Fields
    prefixed `huedb_` are huedb's own engine options (`huedb.options`): left unset, they
    take `HUEDB_<NAME>` from the environment, then the defaults; after construction they
    hold the values in force.

    `chroma_api_impl` picks a client's API as in chromadb: huedb's engine in this process
    (the default; chromadb's embedded implementations mean the same), or
    `chromadb.api.fastapi.FastAPI`, the server at `chroma_server_host` and
    `chroma_server_http_port` (`chroma_server_ssl_enabled`, headers and auth as given).
    """

    is_persistent: bool = False
    persist_directory: str = "./chroma"
    allow_reset: bool = False
    anonymized_telemetry: bool = False
    chroma_api_impl: str = LOCAL_API_IMPL
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
    # A postgresql:// URL: the PostgreSQL store (persist_directory then holds only this
    # node's derived files); not in repr, since the URL may carry a password.
    huedb_store: str | None = field(default=None, repr=False)
    huedb_pg_pool_max_size: int | None = None
    huedb_pg_pool_timeout: float | None = None
    huedb_pg_write_idle_timeout: float | None = None
    huedb_pg_row_cache: int | str | None = None  # bytes, or with a unit: "256MiB"
    huedb_sync: str | None = None
    huedb_exact_max_floats: int | None = None
    huedb_filtered_exact_max_floats: int | None = None
    huedb_snapshot_every: int | None = None
    huedb_index_memory: int | str | None = None  # bytes, or with a unit: "2GiB"
    huedb_max_query_embeddings: int | None = None
    huedb_max_query_results: int | None = None
    huedb_max_filter_terms: int | None = None
    huedb_max_in_values: int | None = None
    huedb_max_pattern_bytes: int | None = None
    huedb_max_regex_terms: int | None = None
    huedb_max_ids: int | None = None
    huedb_query_timeout: float | None = None
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    def __init__(self, **kwargs: Any) -> None:
        known = {f.name for f in dataclasses.fields(self)} - {"extras"}
        _refuse_unknown_own_fields(set(kwargs) - known)
        from_env = _from_environment({f.name: str(f.type) for f in dataclasses.fields(self)})
        for f in dataclasses.fields(self):
            if f.name == "extras":
                continue
            if f.name in kwargs:
                setattr(self, f.name, kwargs.pop(f.name))
            elif f.name in from_env:
                setattr(self, f.name, from_env[f.name])
            elif f.default_factory is not dataclasses.MISSING:
                setattr(self, f.name, f.default_factory())
            else:
                setattr(self, f.name, f.default)
        if self.chroma_api_impl in _LOCAL_API_ALIASES:
            self.chroma_api_impl = LOCAL_API_IMPL
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


def _refuse_unknown_own_fields(unknown: set[str]) -> None:
    """Refuse a `huedb_*` name that is no field (a typo would otherwise leave the option at
    its default, silently); other unknown names are kept in `extras`, as chromadb code
    passes settings huedb has no use for."""
    own = sorted(name for name in unknown if name.lower().startswith(ENGINE_PREFIX))
    if not own:
        return
    close = difflib.get_close_matches(own[0].lower()[len(ENGINE_PREFIX) :], OPTION_NAMES, n=1)
    fields = ", ".join(ENGINE_PREFIX + name for name in OPTION_NAMES)
    hint = f"did you mean '{ENGINE_PREFIX}{close[0]}'?" if close else f"huedb's are {fields}"
    raise ConfigError(f"unknown huedb setting {own[0]!r}: {hint}")


def settings_of(value: Any) -> Settings:
    """huedb's `Settings` for what a client was given: huedb's own (as they are), None (the
    defaults), or chromadb's `Settings`, whose fields that were set carry over by name (code
    written for chromadb passes them, e.g. `Settings(anonymized_telemetry=False)`)."""
    if value is None:
        return Settings()
    if isinstance(value, Settings):
        return value
    chosen = getattr(value, "model_fields_set", None)
    if not isinstance(chosen, set):
        raise TypeError(
            f"Expected huedb.Settings or chromadb.config.Settings, got {type(value).__name__}"
        )
    return Settings(**{name: getattr(value, name) for name in chosen - _NOT_FROM_ENV})


class TokenTransportHeader(StrEnum):
    """The headers a token may travel in (chromadb's enum, for
    `chroma_auth_token_transport_header`)."""

    AUTHORIZATION = "Authorization"
    X_CHROMA_TOKEN = "X-Chroma-Token"


_configured: Settings | None = None


def configure(**fields: Any) -> None:
    """Set the settings `get_settings` returns (chromadb's `configure`; as in chromadb,
    clients still take theirs from their `settings` argument)."""
    global _configured
    _configured = Settings(**fields)


def get_settings() -> Settings:
    """The settings `configure` set, else the defaults (and environment)."""
    return _configured if _configured is not None else Settings()
