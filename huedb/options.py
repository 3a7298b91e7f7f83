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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import unquote, urlsplit

from huedb.errors import ConfigError

SYNC_MODES = ("off", "normal", "full", "extra")
ENV_PREFIX = "HUEDB_"
# URL schemes of the `store` option that select the PostgreSQL store.
POSTGRES_SCHEMES = ("postgresql", "postgres")
MAX_POOL_SIZE = 1000
MAX_POOL_TIMEOUT = 3600.0
# At most a day (PostgreSQL takes idle_in_transaction_session_timeout up to 2**31 - 1 ms).
MAX_WRITE_IDLE_TIMEOUT = 86_400.0
# At least a few of the statements a write's long Python scan sends to show it is alive
# (postgres_store/records.py, KEEPALIVE_S).
MIN_WRITE_IDLE_TIMEOUT = 5.0
MAX_BYTES = 2**63 - 1  # the largest size a byte option (`BYTE_OPTIONS`) takes: 8 EiB
# The largest value each request limit accepts. Filters beyond the first two cannot be
# compiled at all (SQLite takes at most 250,000 parameters per statement); the others
# keep one request's memory in bounds.
LIMIT_CEILINGS = {
    "max_filter_terms": 20_000,
    "max_in_values": 100_000,
    "max_query_embeddings": 100_000,
    "max_query_results": 10_000_000,
    "max_pattern_bytes": 64 * 1024 * 1024,
    "max_regex_terms": 20_000,
    "max_ids": 10_000_000,
}
MAX_QUERY_TIMEOUT = 86_400.0
# What `huedb run` starts from, under its config file, environment and flags: a server
# answers to every client, so each request is bounded (docs/deploy.md, "Limits").
SERVER_DEFAULTS: dict[str, Any] = {
    "max_query_embeddings": 1000,
    "max_query_results": 10_000,
    "max_filter_terms": 200,
    "max_in_values": 10_000,
    "max_pattern_bytes": 4096,
    "max_regex_terms": 4,
    "max_ids": 250_000,
    "query_timeout": 30.0,
}


@dataclass(frozen=True)
class EngineOptions:
    """What an engine is opened with (one process, one data directory or memory)."""

    # Where the truth lives: "" is the SQLite store in the data directory (or memory); a
    # `postgresql://` (or `postgres://`) URL is the PostgreSQL store in that database, and
    # the data directory then holds only this node's derived files (docs/postgres.md).
    store: str = ""
    # PostgreSQL store: most connections this process keeps to the database, and seconds a
    # request waits for a working one before it is refused with 503 (StorageUnavailable).
    pg_pool_max_size: int = 4
    pg_pool_timeout: float = 5.0
    # PostgreSQL store: seconds a write transaction may sit idle between its statements before
    # PostgreSQL ends it (rolled back, its locks given back): how long a node stopped inside
    # a write (SIGSTOP, a paused VM, a network cut) holds that collection's writers on every
    # other node (0: no limit; docs/scale-out.md).
    pg_write_idle_timeout: float = 30.0
    # PostgreSQL store: bytes of record rows this process keeps as of each collection's
    # oplog head, so a warm query needs no round trip for its rows (0: none kept; bytes or
    # with a unit, "256MiB"; postgres_store/row_cache.py).
    pg_row_cache: int = 64 * 2**20
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
    # Bytes of indexes this process keeps in memory (0: no limit). Past it, the least
    # recently used collections' indexes are evicted (their graphs stay in snapshot files);
    # given as bytes or with a unit ("512MiB", "2GiB", "1.5G"; docs/ARCHITECTURE.md).
    index_memory: int = 0
    # What one request may ask of the engine (docs/deploy.md, "Limits"); beyond a limit the
    # request is refused with QuotaError (422) before the engine lock is taken. These class
    # defaults are those of embedded clients and CLI commands (the ceilings, no time budget:
    # in-process code answers to itself, as with Chroma); `huedb run` starts from
    # SERVER_DEFAULTS instead.
    # Query vectors of one query (per-vector search cost grows with the collection).
    max_query_embeddings: int = LIMIT_CEILINGS["max_query_embeddings"]
    # Query vectors x results (the size of the answer; n_results counts up to the records
    # the query can return, so a huge n_results on a small collection is served).
    max_query_results: int = LIMIT_CEILINGS["max_query_results"]
    # Operators and conditions of `where` and `where_document` together.
    max_filter_terms: int = LIMIT_CEILINGS["max_filter_terms"]
    # Values of all `$in` / `$nin` lists of one request together.
    max_in_values: int = LIMIT_CEILINGS["max_in_values"]
    # UTF-8 bytes of one `$contains` / `$not_contains` / `$regex` / `$not_regex` operand.
    max_pattern_bytes: int = LIMIT_CEILINGS["max_pattern_bytes"]
    # `$regex` / `$not_regex` conditions of one request (each scans every document).
    max_regex_terms: int = LIMIT_CEILINGS["max_regex_terms"]
    # Ids named by one get, query or delete.
    max_ids: int = LIMIT_CEILINGS["max_ids"]
    # Seconds an engine read (get, query, count, a delete's selection) may hold the engine
    # lock before it is stopped and refused (QueryTimeoutError); 0 turns the budget off.
    query_timeout: float = 0.0

    def __post_init__(self) -> None:
        if self.store and urlsplit(self.store).scheme.lower() not in POSTGRES_SCHEMES:
            raise ConfigError(
                "store must be empty (SQLite in the data directory) or a postgresql:// URL, "
                f"got {store_kind_shown(self.store)}"
            )
        if not 1 <= self.pg_pool_max_size <= MAX_POOL_SIZE:
            raise ConfigError(
                f"pg_pool_max_size must be between 1 and {MAX_POOL_SIZE}, "
                f"got {self.pg_pool_max_size}"
            )
        if not 0 < self.pg_pool_timeout <= MAX_POOL_TIMEOUT:
            raise ConfigError(
                f"pg_pool_timeout must be above 0 and at most {MAX_POOL_TIMEOUT:g} seconds, "
                f"got {self.pg_pool_timeout}"
            )
        idle = self.pg_write_idle_timeout
        if idle != 0 and not MIN_WRITE_IDLE_TIMEOUT <= idle <= MAX_WRITE_IDLE_TIMEOUT:
            raise ConfigError(
                f"pg_write_idle_timeout must be 0 (no limit) or between "
                f"{MIN_WRITE_IDLE_TIMEOUT:g} and {MAX_WRITE_IDLE_TIMEOUT:g} seconds, got {idle}"
            )
        if self.sync not in SYNC_MODES:
            raise ConfigError(f"sync must be one of {', '.join(SYNC_MODES)}, got {self.sync!r}")
        for name in ("exact_max_floats", "filtered_exact_max_floats"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be at least 0")
        if self.snapshot_every < 1:
            raise ConfigError("snapshot_every must be at least 1")
        if self.index_memory < 0:
            raise ConfigError("index_memory must be at least 0 bytes (0: no limit)")
        if self.pg_row_cache < 0:
            raise ConfigError("pg_row_cache must be at least 0 bytes (0: keep no rows)")
        for name in ("index_memory", "pg_row_cache"):
            if getattr(self, name) > MAX_BYTES:
                raise ConfigError(f"{name} must be at most {MAX_BYTES} bytes (8 EiB)")
        for name, ceiling in LIMIT_CEILINGS.items():
            value = getattr(self, name)
            if not 1 <= value <= ceiling:
                raise ConfigError(f"{name} must be between 1 and {ceiling:,}, got {value}")
        if not 0 <= self.query_timeout <= MAX_QUERY_TIMEOUT:
            raise ConfigError(
                f"query_timeout must be between 0 (no budget) and {MAX_QUERY_TIMEOUT:g} "
                f"seconds, got {self.query_timeout}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON-able values (the store URL with its password)."""
        return dataclasses.asdict(self)

    def public_dict(self) -> dict[str, Any]:
        """The options to show (stats, logs): the store URL's password masked."""
        return {**self.to_dict(), "store": masked_url(self.store)}

    @property
    def store_kind(self) -> str:
        """The store these options select: `postgresql` for a store URL, else `sqlite`."""
        return "postgresql" if self.store else "sqlite"


def store_kind_shown(url: str) -> str:
    """What a `store` value that is no postgresql:// URL is, for an error: its scheme only
    (never what follows `://`, which may hold a password)."""
    scheme, sep, _ = url.partition("://")
    if sep and _SCHEME.fullmatch(scheme):
        return f"a {scheme}:// URL"
    return "a value that is no URL (no 'scheme://')"


# A URL scheme (RFC 3986): a letter, then letters, digits, `+`, `-`, `.`.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def without_password(text: str, url: str) -> str:
    """`text` (an error message) with the URL `url` masked and its passwords removed."""
    if not url:
        return text
    text = text.replace(url, masked_url(url))
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def masked_url(url: str) -> str:
    """`url` with its passwords (user-info, `password=`, `sslpassword=`) replaced by `***`,
    for logs, stats and errors; `<unparsable store URL>` when it cannot be split safely."""
    if not url:
        return url
    parts = _split_url(url)
    if parts is None:
        return UNPARSABLE_URL
    prefix, userinfo, rest, query = parts
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        prefix += f"{user}:***@" if colon else f"{userinfo}@"
    if query is not None:
        pairs = [pair.partition("=") for pair in query.split("&")]
        query = "&".join(
            f"{key}=***" if _is_secret_key(key) else key + sep + value for key, sep, value in pairs
        )
        rest += f"?{query}"
    return prefix + rest


UNPARSABLE_URL = "<unparsable store URL>"
_SECRET_KEYS = ("password", "sslpassword")


def _is_secret_key(key: str) -> bool:
    return unquote(key).strip().lower() in _SECRET_KEYS


def _split_url(url: str) -> tuple[str, str | None, str, str | None] | None:
    """`url` split the way libpq reads it: (`scheme://`, user-info or None, hosts and path,
    query or None); None when it is no postgresql:// URL or an `@` lies outside the
    user-info (a password with an unencoded `/`), where no split is safe to show."""
    scheme, sep, tail = url.partition("://")
    if not sep or scheme.lower() not in POSTGRES_SCHEMES:
        return None
    # libpq: the user-info is what precedes an `@` ahead of the authority's first `/`.
    at = tail.split("/", 1)[0].rfind("@")
    userinfo = None
    if at >= 0:
        userinfo, tail = tail[:at], tail[at + 1 :]
    rest, qmark, query = tail.partition("?")
    hosts = rest.split("/", 1)[0]
    if "@" in rest or not all(_PORT.fullmatch(h) for h in hosts.split(",")):
        return None
    if qmark and not all(_KEY.fullmatch(p.partition("=")[0]) for p in query.split("&")):
        return None
    return f"{scheme}://", userinfo, rest, query if qmark else None


# A host of the authority with an optional numeric port; a query parameter's name.
_PORT = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(:[0-9]*)?")
_KEY = re.compile(r"[A-Za-z_]+")


def _secrets(url: str) -> set[str]:
    """Every password `url` may hold, as written and percent-decoded."""
    found: set[str] = set()
    parts = _split_url(url)
    if parts is not None:
        _, userinfo, _, query = parts
        if userinfo is not None and ":" in userinfo:
            found.add(userinfo.partition(":")[2])
        for key, _, value in (pair.partition("=") for pair in (query or "").split("&")):
            if _is_secret_key(key):
                found.add(value)
    else:  # whatever lies between the user's `:` and the last `@`
        tail = url.partition("://")[2]
        userinfo = tail.rpartition("@")[0]
        if ":" in userinfo:
            found.add(userinfo.partition(":")[2])
        for key in _SECRET_KEYS:
            for piece in tail.split(f"{key}=")[1:]:
                found.add(piece.split("&", 1)[0])
    return {s for v in found for s in (v, unquote(v)) if s}


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(EngineOptions))
_TYPES = {f.name: type(getattr(EngineOptions(), f.name)) for f in dataclasses.fields(EngineOptions)}


def env_name(option: str) -> str:
    """The environment variable of an option (`snapshot_every` -> `HUEDB_SNAPSHOT_EVERY`)."""
    return ENV_PREFIX + option.upper()


def resolve_options(
    file: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    args: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> EngineOptions:
    """Defaults (the class's, then `defaults`, e.g. SERVER_DEFAULTS) < config file <
    environment < arguments; None in a layer means "not set"."""
    values: dict[str, Any] = dict(defaults or {})
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


# Options given in bytes, which also accept a number with a unit ("2GiB").
BYTE_OPTIONS = frozenset({"index_memory", "pg_row_cache"})
_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 10**3,
    "kib": 2**10,
    "m": 2**20,
    "mb": 10**6,
    "mib": 2**20,
    "g": 2**30,
    "gb": 10**9,
    "gib": 2**30,
    "t": 2**40,
    "tb": 10**12,
    "tib": 2**40,
}
_BYTE_SIZE = re.compile(r"([0-9][0-9_]*(?:\.[0-9]+)?)\s*([a-z]*)")


# Longer numbers are refused as no size: Python converts at most 4,300 digits to an int
# (and any size up to MAX_BYTES needs 19 digits and a few decimals).
_MAX_SIZE_CHARS = 4000


def parse_bytes(raw: str) -> int | None:
    """Bytes from "1073741824", "512MiB", "2GiB", "1.5G" (K/M/G/T alone are binary, KB/MB/GB/TB
    decimal), computed exactly and rounded down to whole bytes; None when `raw` is no such
    size. ValueError, saying why, for a size above 0 but below one byte ("0.5", which
    rounded down would mean 0) or above `MAX_BYTES`."""
    match = _BYTE_SIZE.fullmatch(raw.strip().lower())
    if match is None or match.group(2) not in _BYTE_UNITS:
        return None
    if len(match.group(1)) > _MAX_SIZE_CHARS:  # Python's own limits would answer instead
        raise ValueError(f"is no size: {len(match.group(1))} characters of digits")
    size = Fraction(match.group(1).replace("_", "")) * _BYTE_UNITS[match.group(2)]
    if 0 < size < 1:
        raise ValueError("must be 0 or at least one byte")
    if size > MAX_BYTES:
        raise ValueError(f"must be at most {MAX_BYTES} bytes (8 EiB)")
    return int(size)


def _parse(name: str, raw: Any, source: str) -> Any:
    wanted = _TYPES[name]
    if name in BYTE_OPTIONS and isinstance(raw, str):
        try:
            size = parse_bytes(raw)
        except ValueError as exc:
            shown = raw.strip() if len(raw.strip()) <= 80 else raw.strip()[:80] + "..."
            raise ConfigError(f"{source}: {name} {exc}, got {shown!r}") from None
        if size is None:
            raise ConfigError(
                f"{source}: {name} must be a number of bytes, optionally with a unit "
                f"(512MiB, 2GiB), got {raw!r}"
            )
        return size
    if wanted is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw.strip())
            except ValueError:
                pass
        raise ConfigError(f"{source}: {name} must be a number of seconds, got {raw!r}")
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
    if name == "store":
        return raw.strip()  # a URL: user, password and database names keep their case
    return raw.strip().lower()
