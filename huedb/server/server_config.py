"""Server configuration: CLI flags, an optional TOML/JSON file, and environment variables."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import ipaddress
import json
import os
import re
import socket
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from huedb.config import TOKEN_CHARS
from huedb.engine.catalog import validate_name
from huedb.errors import ConfigError, InvalidArgumentError
from huedb.options import BYTE_OPTIONS, ENV_PREFIX, OPTION_NAMES, EngineOptions, env_name
from huedb.server.log_context import LOG_FORMATS

ROLES = ("admin", "read-only")
# Chroma's token check (chromadb.auth.token_authn): ASCII letters, digits and punctuation.
# Chroma's server token providers (1.x name, then the pre-0.5 one); their credentials are
# read from CHROMA_SERVER_AUTHN_CREDENTIALS / CHROMA_SERVER_AUTH_CREDENTIALS.
TOKEN_PROVIDERS = (
    "chromadb.auth.token_authn.TokenAuthenticationServerProvider",
    "chromadb.auth.token.TokenAuthServerProvider",
)
LEGACY_CREDENTIALS_PROVIDER = "chromadb.auth.token.TokenConfigServerAuthCredentialsProvider"
# huedb always accepts both `Authorization: Bearer` and `X-Chroma-Token`.
TOKEN_HEADERS = ("authorization", "x-chroma-token", "x_chroma_token")
CHROMA_CREDENTIALS = ("CHROMA_SERVER_AUTHN_CREDENTIALS", "CHROMA_SERVER_AUTH_CREDENTIALS")
USE_INSTEAD = (
    "HUEDB_AUTH_TOKENS, HUEDB_AUTH_TOKENS_FILE (one 'token [role[@tenant[/db+db]]]' per line), "
    "--auth-tokens-file or [auth] in --config"
)
# Chroma auth settings huedb cannot honour, and why.
UNSUPPORTED_AUTH = {
    "CHROMA_SERVER_AUTHN_CREDENTIALS_FILE": "Chroma's YAML users file is not supported "
    "(huedb's tokens carry a role and optionally a tenant and databases)",
    "CHROMA_SERVER_AUTH_CREDENTIALS_FILE": "credentials files are not supported",
    "CHROMA_SERVER_AUTHZ_PROVIDER": "Chroma's authorization providers are not supported; "
    "huedb's roles are admin and read-only",
    "CHROMA_SERVER_AUTHZ_CONFIG": "Chroma's authorization config is not supported; "
    "huedb's roles are admin and read-only",
    "CHROMA_SERVER_AUTHZ_CONFIG_FILE": "Chroma's authorization config is not supported; "
    "huedb's roles are admin and read-only",
    "CHROMA_SERVER_AUTH_IGNORE_PATHS": "the paths open without a token are fixed "
    "(heartbeat, version, healthcheck, docs)",
    "CHROMA_OVERWRITE_SINGLETON_TENANT_DATABASE_ACCESS_FROM_AUTH": "huedb never rewrites the "
    "tenant or database of a request from its token (a tenant-scoped token is refused "
    "outside its tenant; set this on the client, which then takes them from "
    "GET /api/v2/auth/identity)",
}
# The keys of a token in the [auth] table, and what the tenant of a token's scope may not
# contain (besides white space): the token syntax's separators, and `*` (no wildcards).
TOKEN_KEYS = frozenset({"token", "role", "tenant", "databases", "name"})
SCOPE_FORBIDDEN = frozenset("/@,+:*")
DEFAULT_MAX_BODY_BYTES = 40 * 1024 * 1024
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
MAX_TIMEOUT_S = 86400.0
MAX_PORT = 65535
ENV_CONFIG = "HUEDB_SERVER_CONFIG_JSON"
ENV_ALLOW_RESET = "HUEDB_ALLOW_RESET"
ENV_CORS = "HUEDB_CORS_ALLOW_ORIGINS"
# Chroma's variables for its `cors_allow_origins`: its 1.x server's (the `CHROMA_` prefix of
# its YAML keys) and its Python server's, which the chromadb JS client's connection error
# names. All three hold a JSON list (Chroma's form) or origins separated by commas.
CHROMA_CORS = ("CHROMA_CORS_ALLOW_ORIGINS", "CHROMA_SERVER_CORS_ALLOW_ORIGINS")
# An origin as a browser sends it in `Origin`: scheme://host[:port], nothing else.
_ORIGIN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#@\s]+)")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
DEFAULT_PORTS = {"http": 80, "https": 443}
# Schemes whose pages send no origin of their own (`Origin: null`, or no request at all);
# others are web pages' (http, https), extensions' and app webviews' (tauri:, capacitor:).
NO_ORIGIN_SCHEMES = frozenset(
    {"file", "data", "javascript", "about", "blob", "filesystem", "ftp", "ws", "wss"}
)
# A last host label a browser reads as a number: the host is then an IPv4 address.
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
# The HUEDB_* variables `huedb run` reads besides the engine options' HUEDB_<OPTION>.
SERVER_ENVIRONMENT = (
    "HUEDB_AUTH_TOKENS",
    "HUEDB_AUTH_TOKENS_FILE",
    ENV_ALLOW_RESET,
    ENV_CORS,
    "HUEDB_FIGURES_TTL_S",  # server/metrics_cache.py
    ENV_CONFIG,  # set by `huedb run` for its workers
)
# HUEDB_* variables read elsewhere, so never refused: the client commands' `--token`, and
# the test suite's knobs (tests/knobs.py, tests/test_index_memory.py, tests/test_cluster.py).
OTHER_ENVIRONMENT = (
    "HUEDB_TOKEN",
    "HUEDB_CRASH_TRIALS",
    "HUEDB_CRASH_SEED",
    "HUEDB_FUZZ_EXAMPLES",
    "HUEDB_FUZZ_SEED",
    "HUEDB_HYPOTHESIS_EXAMPLES",
    "HUEDB_SOAK_SECONDS",
    "HUEDB_MEMORY_BUDGET_FULL",
    "HUEDB_CLUSTER_WRITES",
)
# The words HUEDB_ALLOW_RESET may hold (any case).
ENV_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# ServerConfig's settings (all but tokens and engine): the type a config file must give
# each, and the unit of those that have one.
SETTINGS: dict[str, type] = {
    "path": str,
    "host": str,
    "port": int,
    "workers": int,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "allow_unauthenticated": bool,
    "allow_reset": bool,
    "max_body_bytes": int,
    "request_timeout_s": float,
    "header_timeout_s": float,
    "max_header_bytes": int,
    "metrics_public": bool,
    "log_format": str,
    "cors_allow_origins": list,
}
UNITS = {
    "max_body_bytes": "bytes",
    "max_header_bytes": "bytes",
    "request_timeout_s": "seconds",
    "header_timeout_s": "seconds",
}
TLS_FILES = {
    "ssl_certfile": ("--ssl-certfile", "certificate"),
    "ssl_keyfile": ("--ssl-keyfile", "private key"),
}
KINDS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list of origins",
}
# What a config file may give each engine option, and how to say it.
ENGINE_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    f.name: ((int, str), 'a whole number of bytes or a size with a unit ("2GiB")')
    if f.name in BYTE_OPTIONS
    else ((float,), "a number of seconds")
    if type(f.default) is float
    else ((type(f.default),), KINDS[type(f.default)])
    for f in dataclasses.fields(EngineOptions)
}


@dataclass
class TokenEntry:
    """One accepted token, kept only as its SHA-256 digest.

    `tenant` None: every tenant. `databases` None: every database of `tenant`.
    """

    digest: str
    role: str
    name: str = ""
    tenant: str | None = None
    databases: list[str] | None = None

    def scope(self) -> tuple[str, str | None, tuple[str, ...] | None]:
        """Role, tenant and databases: what a token may do."""
        dbs = None if self.databases is None else tuple(self.databases)
        return self.role, self.tenant, dbs


@dataclass
class ServerConfig:
    """Everything a server worker needs; serialisable so `--workers N` can pass it on."""

    path: str = "./data"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    allow_unauthenticated: bool = False
    allow_reset: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout_s: float = 60.0
    header_timeout_s: float = 10.0
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES  # request line and headers
    metrics_public: bool = False  # GET /metrics without a token
    log_format: str = "text"  # or "json": one object per line (server/log_context.py)
    # Origins of web pages that may call the API from a browser (CORS); "*" alone: any page,
    # only with tokens (browser_guard.py).
    cors_allow_origins: list[str] = field(default_factory=list)
    engine: EngineOptions = field(default_factory=EngineOptions)
    tokens: list[TokenEntry] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> ServerConfig:
        data = json.loads(raw)
        data["tokens"] = [TokenEntry(**t) for t in data.get("tokens", [])]
        data["engine"] = EngineOptions(**data.get("engine", {}))
        return cls(**data)

    def check(self) -> None:
        """Refuse configurations that would be unsafe or cannot work."""
        for key in SETTINGS:
            value = getattr(self, key)
            if not (key in TLS_FILES and value is None):
                check_setting(key, value)
        if not 1 <= self.port <= MAX_PORT:
            raise ConfigError(f"--port (port) must be from 1 to {MAX_PORT}, not {self.port}")
        check_data_path(self.path)
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ConfigError("--ssl-certfile and --ssl-keyfile must be given together")
        for f in (self.ssl_certfile, self.ssl_keyfile):
            if f and not Path(f).is_file():
                raise ConfigError(f"TLS file not found: {f}")
        if self.ssl_certfile and self.ssl_keyfile:
            check_tls(self.ssl_certfile, self.ssl_keyfile)
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if self.max_header_bytes < 1024:
            raise ConfigError("max_header_bytes must be at least 1024")
        for key, flag in (
            ("request_timeout_s", "--request-timeout"),
            ("header_timeout_s", "--header-timeout"),
        ):
            if not 0 < getattr(self, key) <= MAX_TIMEOUT_S:
                raise ConfigError(
                    f"{flag} ({key}) must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds"
                )
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(
                f"log_format must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}"
            )
        check_token_conflicts(self.tokens)
        if "*" in self.cors_allow_origins and not self.tokens:
            raise ConfigError(
                "cors_allow_origins '*' lets every web page its visitors open read and write "
                "the database through their browsers, and this server has no tokens: set "
                "tokens (HUEDB_AUTH_TOKENS, --auth-tokens-file or [auth] in --config), or "
                "list the origins of your pages instead of '*'"
            )
        if (
            not self.tokens
            and not self.allow_unauthenticated
            and not binds_loopback_only(self.host)
        ):
            raise ConfigError(
                f"refusing to serve {self.host} without authentication: set tokens "
                "(HUEDB_AUTH_TOKENS, --auth-tokens-file or [auth] in --config) or pass "
                "--allow-unauthenticated"
            )


def check_setting(key: str, value: Any, where: str = "") -> None:
    """Refuse a server setting of the wrong type (a config file's `"false"` is a string, not
    false) or an empty TLS path (it would serve plain HTTP); `where` names its file."""
    wanted = SETTINGS[key]
    what = KINDS[wanted] + (f" of {UNITS[key]}" if key in UNITS else "")
    # The port is named as its range check names it.
    check_type("--port (port)" if key == "port" else key, value, (wanted,), what, where)
    if key in TLS_FILES and not value.strip():
        flag, kind = TLS_FILES[key]
        raise ConfigError(
            f"{flag} ({key}) is empty{where}: give the path of the TLS {kind}, or leave out "
            "both --ssl-certfile and --ssl-keyfile to serve plain HTTP"
        )
    if key == "cors_allow_origins":
        check_origins(value, key, where)


def check_origins(origins: list, label: str, where: str = "") -> None:
    """Origins as browsers send them in `Origin` (`scheme://host[:port]`: lower case, no
    default port, no path, not even `/`), or `"*"` alone; anything else is refused, since it
    could never match a page (or would match more than meant)."""
    for n, origin in enumerate(origins, 1):
        if not isinstance(origin, str):
            shown = "null" if origin is None else repr(origin)
            raise ConfigError(f"{label} item #{n} must be a string, not {shown}{where}")
        if origin == "*":
            if len(origins) > 1:
                raise ConfigError(
                    f"{label}: '*' (every origin) must be the only item{where}, not one of "
                    f"{len(origins)}"
                )
            continue
        canonical = origin_as_sent(origin)
        if canonical is None:
            raise ConfigError(
                f"{label}: {origin!r} is not an origin{where}: write scheme://host[:port] "
                "(http://localhost:3000, https://app.example.com), without a path, of a "
                "scheme whose pages have an origin, with an IPv4 host in dotted form, or '*'"
            )
        if canonical != origin:
            raise ConfigError(
                f"{label}: {origin!r} would never match{where}: browsers send this origin "
                f"as {canonical!r}; write that"
            )


def origin_as_sent(origin: str) -> str | None:
    """`origin` as a browser writes it in `Origin` (lower-case scheme and host, IPv6
    compressed, no default port), or None when it is not `scheme://host[:port]` (a path,
    a query, user info, white space, a host that is not ASCII, a port out of range, a
    scheme whose pages send no origin of their own, an IPv4 host not in the dotted form
    browsers send or no address at all)."""
    match = _ORIGIN.fullmatch(origin)
    if match is None:
        return None
    scheme = match["scheme"].lower()
    if scheme in NO_ORIGIN_SCHEMES:
        return None
    host, colon, port = match["authority"].rpartition(":")
    if host.endswith(":") or host.startswith("[") != host.endswith("]"):
        host, port = match["authority"], ""  # an IPv6 address without a port
    elif colon and not port:
        return None  # `host:`
    elif not colon:
        host = port  # no port
        port = ""
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= MAX_PORT):
        return None
    if host.startswith("["):
        if not host.endswith("]") or "%" in host:  # `[::1`, a zone (`[fe80::1%eth0]`)
            return None
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1])}]"
        except ValueError:
            return None
    else:
        host = host.lower()
        if not host.isascii() or not _HOST_NAME.fullmatch(host):
            return None
        if _NUMERIC_LABEL.fullmatch(host.rstrip(".").rpartition(".")[2]):
            # `127.1`, `0x7f.0.0.1`, `2130706433` reach 127.0.0.1 as browsers parse them
            # (and `256.1.1.1` none): only the dotted form they send can match.
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                return None
    if port and int(port) == DEFAULT_PORTS.get(scheme):
        port = ""
    return f"{scheme}://{host}" + (f":{int(port)}" if port else "")


def parse_origin_list(raw: str, source: str) -> list[str]:
    """Origins from a variable or flag: a JSON list (`["http://localhost:3000"]`, Chroma's
    form; `[]` for none) or origins separated by commas. Set but empty is refused, never
    read as unset."""
    text = raw.strip(" \t\r\n")
    if text.startswith("["):
        try:
            origins = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{source} is not a JSON list of origins: {exc}") from None
    else:
        origins = [item.strip(" \t\r\n") for item in text.split(",") if item.strip(" \t\r\n")]
        if not origins:
            raise ConfigError(
                f"{source} is set but holds no origin: list them "
                "(http://localhost:3000,https://app.example.com) or write [] for none"
            )
    check_type(source, origins, (list,), "a list of origins")
    check_origins(origins, source)
    return origins


def origins_from_environment(env: Mapping[str, str]) -> list[str] | None:
    """The CORS origins of HUEDB_CORS_ALLOW_ORIGINS and Chroma's CHROMA_CORS_ALLOW_ORIGINS
    and CHROMA_SERVER_CORS_ALLOW_ORIGINS (merged), None when none is set. Chroma's names
    spelt in lower case are refused: huedb would ignore them."""
    for name in sorted(env):
        upper = name.upper()
        if name != upper and upper in CHROMA_CORS:
            raise ConfigError(
                f"{name} is spelt in lower case: huedb reads Chroma's settings by their "
                f"upper-case names only, so it would be ignored; rename it {upper}"
            )
    given = [parse_origin_list(env[name], name) for name in (ENV_CORS, *CHROMA_CORS) if name in env]
    if not given:
        return None
    merged = list(dict.fromkeys(origin for origins in given for origin in origins))
    check_origins(merged, " + ".join(name for name in (ENV_CORS, *CHROMA_CORS) if name in env))
    return merged


def check_type(
    label: str, value: Any, wanted: tuple[type, ...], what: str, where: str = ""
) -> None:
    """Refuse `value` unless it is one of `wanted` as a config file means it: a boolean is
    not a number, a whole number is a number, a string is never a boolean or a number.
    `what` says what is wanted."""
    if isinstance(value, bool):
        fits = bool in wanted
    else:
        fits = any(isinstance(value, int | float if w is float else w) for w in wanted)
    if fits:
        return
    shown = "null" if value is None else repr(value)
    quoted = bool in wanted and isinstance(value, str)
    hint = " (a string: write true or false without quotes)" if quoted else ""
    raise ConfigError(f"{label} must be {what}, not {shown}{where}{hint}")


def check_data_path(path: str) -> None:
    """Refuse a data directory that cannot be one: an existing file, or a path under one."""
    target = Path(path)
    for part in (target, *target.parents):
        if part.exists():
            if not part.is_dir():
                what = "is" if part == target else f"is under {part}, which is"
                raise ConfigError(f"--path (path) {path} {what} not a directory")
            return


def check_tls(certfile: str, keyfile: str) -> None:
    """Load the certificate and key as the server will, so a bad pair stops the start; an
    encrypted key too (OpenSSL would otherwise ask for its passphrase on the terminal, and
    again in every worker)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile, password=_no_passphrase)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load TLS certificate/key ({certfile}, {keyfile}): {exc}; "
            "the key must be an unencrypted PEM private key matching the certificate"
        ) from None


def _no_passphrase() -> str:
    raise ValueError("the key is encrypted (it asks for a passphrase)")


def is_loopback(host: str) -> bool:
    """True for a host name or address only this machine can reach: `localhost`,
    `localhost.localdomain`, a name under `.localhost` (RFC 6761), 127.0.0.0/8, ::1 (no
    port; IPv6 without brackets)."""
    host = host.rstrip(".").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def binds_loopback_only(host: str) -> bool:
    """True when binding `host` listens on loopback addresses only: `is_loopback`, and a
    name (`localhost`, `x.localhost`) also resolves to loopback addresses alone (a hosts
    file can map one elsewhere); a name that does not resolve is not."""
    if not is_loopback(host):
        return False
    name = host.rstrip(".").lower()
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in found
    )


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def make_token(
    token: Any,
    role: Any,
    name: str = "",
    tenant: Any = None,
    databases: Any = None,
) -> TokenEntry:
    """Check one token, its role and its scope (a tenant, and databases of it)."""
    where = f" {name}" if name else ""
    if not isinstance(token, str) or len(token) < 8 or not set(token) <= TOKEN_CHARS:
        raise ConfigError(
            f"invalid token{where}: tokens must be printable ASCII without "
            "spaces (letters, digits, punctuation, as Chroma's clients send) and at least 8 "
            "characters long"
        )
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    if databases is not None and tenant is None:
        raise ConfigError(f"token{where}: databases are given without a tenant")
    if tenant is not None:
        check_scope_tenant(tenant, f"token{where}")
    if databases is not None:
        databases = check_scope_databases(databases, f"token{where}")
    return TokenEntry(digest(token), role, name, tenant, databases)


def check_scope_tenant(tenant: Any, where: str) -> None:
    """A tenant a token may be limited to: a name a path can carry, nothing ambiguous."""
    if not isinstance(tenant, str) or len(tenant) < 3:
        raise ConfigError(f"{where}: the tenant must be a name of at least 3 characters")
    if not tenant.isprintable() or any(c.isspace() or c in SCOPE_FORBIDDEN for c in tenant):
        raise ConfigError(
            f"{where}: tenant {tenant!r} cannot be a token's scope: no white space, "
            f"control characters or any of {''.join(sorted(SCOPE_FORBIDDEN))} "
            "(there are no wildcards: leave the tenant out for every tenant)"
        )


def check_scope_databases(databases: Any, where: str) -> list[str]:
    """Databases a token may be limited to: one or more valid database names, each once."""
    if not isinstance(databases, list) or not databases:
        raise ConfigError(f"{where}: databases must be a non-empty list of database names")
    for name in databases:
        try:
            validate_name(name, "database")
        except InvalidArgumentError:
            raise ConfigError(
                f"{where}: {name!r} is not a database name (3-512 characters from "
                "[a-zA-Z0-9._-]; there are no wildcards: leave the databases out for every "
                "database of the tenant)"
            ) from None
    if len(set(databases)) != len(databases):
        raise ConfigError(f"{where}: a database is listed twice")
    return list(databases)


def parse_scope(spec: str, token: str, name: str) -> TokenEntry:
    """`role[@tenant[/db1+db2]]`: the role and scope of a token in the one-line forms."""
    if "@" in token:
        raise ConfigError(
            f"token {name} contains '@', which is ambiguous in HUEDB_AUTH_TOKENS and token "
            "files (it starts a tenant scope, after the role: 'token:role@tenant'); put this "
            "token in the [auth] table of --config"
        )
    role, at, scope = spec.partition("@")
    if role not in ROLES:
        # The role of the one-line forms may be part of the token (`tok:en:admin`, or a
        # token file line `tok en`): name the item, never the text.
        raise ConfigError(
            f"token {name}: unknown role, expected one of {', '.join(ROLES)} after the token "
            "(a ':' inside a token, or white space in a token file line, splits it; put "
            "such a token in the [auth] table of --config)"
        )
    if not at:
        return make_token(token, role, name)
    tenant, slash, dbs = scope.partition("/")
    databases = dbs.split("+") if slash else None
    if databases is not None and "" in databases:
        raise ConfigError(f"token {name}: empty database name in '/{dbs}' (write /db1+db2)")
    return make_token(token, role, name, tenant, databases)


def check_token_conflicts(entries: list[TokenEntry]) -> None:
    """One token given twice with different roles or scopes is ambiguous: refuse it."""
    seen: dict[str, TokenEntry] = {}
    for entry in entries:
        first = seen.setdefault(entry.digest, entry)
        if first.scope() != entry.scope():
            raise ConfigError(
                f"token {entry.name or '(unnamed)'} is also given as {first.name or '(unnamed)'} "
                "with another role or scope; give each token once"
            )


def parse_token_list(raw: str, source: str) -> list[TokenEntry]:
    """`token[:role[@tenant[/db1+db2]]],...`, as in HUEDB_AUTH_TOKENS; a single token may
    leave its role out (admin).

    Several tokens must each name their role: a ',' inside a token splits it, and
    `part1,part2:read-only` meant as one read-only token would otherwise make `part1` a
    global admin token. A role-less item right after a tenant-scoped one reads as one more
    database (`tok:read-only@t/db1,db2`) or tenant (`tok:read-only@t1,tenant-two`): refused
    with its own message.
    """
    entries = []
    after_scope = False
    items = [(n, item) for n, item in enumerate(p.strip() for p in raw.split(",")) if item]
    for n, item in items:
        name = f"#{n + 1} from {source}"
        token, colon, spec = item.partition(":")
        if not colon and len(items) > 1 and not after_scope:
            raise ConfigError(
                f"item #{n + 1} of {source} has no role: when it lists several tokens, give "
                "each its role (tok:admin,tok2:read-only); a ',' inside a token would "
                "otherwise cut it into an admin token and another"
            )
        if not colon and after_scope:
            raise ConfigError(
                f"item #{n + 1} of {source} has no role right after a tenant-scoped token: "
                "a token has one tenant; separate databases with '+' "
                "(tok:read-only@tenant/db1+db2) and give every token after it a role "
                "(tok2:admin)"
            )
        entry = parse_scope(spec or "admin", token, name)
        after_scope = entry.tenant is not None
        entries.append(entry)
    if not entries:
        raise ConfigError(f"{source} is set but holds no token")
    return entries


def parse_token_file(path: str, source: str = "--auth-tokens-file") -> list[TokenEntry]:
    """A file with one `token [role[@tenant[/db1+db2]]]` per line; a comment starts with
    `#` at the start of a line or after white space. A `#` inside a token is part of it:
    read as a comment, `tok#x read-only@acme` was the global admin token `tok`.

    `source` (the flag or variable that named the file) is refused when it is empty."""
    if not path.strip():
        raise ConfigError(f"{source} is set but names no file, so it holds no token")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc}") from None
    except UnicodeDecodeError as exc:  # a Latin-1 or UTF-16 file: no token is guessed
        raise ConfigError(
            f"cannot read token file {path}: it is not UTF-8 text (byte {exc.start})"
        ) from None
    entries = []
    for n, line in enumerate(lines, 1):
        parts = line.split()
        comment = next((i for i, part in enumerate(parts) if part.startswith("#")), len(parts))
        parts = parts[:comment]
        if not parts:
            continue
        if len(parts) > 2:
            raise ConfigError(f"{path}:{n}: expected 'token [role]' or 'token role@tenant[/db+db]'")
        if len(parts) == 1 and parts[0].partition(":")[2].partition("@")[0] in ROLES:
            raise ConfigError(
                f"{path}:{n}: 'token:role' is the HUEDB_AUTH_TOKENS form; in a token file "
                "write 'token role' (white space between them)"
            )
        spec = parts[1] if len(parts) == 2 else "admin"
        entries.append(parse_scope(spec, parts[0], f"{path}:{n}"))
    if not entries:
        raise ConfigError(f"token file {path} holds no token")
    return entries


def load_config_file(path: str) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict of ServerConfig fields.

    Engine options (`sync`, `exact_max_floats`, ...) are returned unparsed under "engine",
    for `resolve_options` to layer under the environment and the flags.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode())
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot parse config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/object")
    known = set(ServerConfig.__dataclass_fields__) - {"tokens", "engine"}
    out: dict[str, Any] = {"engine": {}}
    for key, value in data.items():
        name = key.replace("-", "_")
        if key == "auth":
            out["tokens"] = _tokens_from_table(value, path)
        elif name in OPTION_NAMES:
            check_type(name, value, *ENGINE_KINDS[name], f" in {path}")
            out["engine"][name] = value
        elif name in known:
            check_setting(name, value, f" in {path}")
            out[name] = value
        else:
            raise ConfigError(f"unknown setting {key!r} in {path}")
    return out


def _tokens_from_table(value: Any, path: str) -> list[TokenEntry]:
    """The tokens of a config file's [auth] table: one at least (an [auth] without any
    would start the server without the authentication it was meant to turn on)."""
    if not isinstance(value, dict) or set(value) - {"tokens"}:
        raise ConfigError(f"[auth] in {path} must hold only 'tokens'")
    tokens = value.get("tokens", [])
    if not isinstance(tokens, list):
        raise ConfigError(f"auth.tokens in {path} must be a list")
    if not tokens:
        raise ConfigError(f"[auth] in {path} is set but holds no token")
    entries = []
    for n, item in enumerate(tokens, 1):
        if not isinstance(item, dict) or set(item) - TOKEN_KEYS:
            raise ConfigError(
                f"auth.tokens[{n}] in {path} must be {{token, role[, tenant[, databases]][, name]}}"
            )
        nulls = [key for key, given in item.items() if given is None]
        if nulls:
            # A null tenant would read as "no tenant": a token of every tenant.
            raise ConfigError(
                f"auth.tokens[{n}] in {path}: {' and '.join(nulls)} may not be null; give a "
                "value or leave the key out"
            )
        name = item.get("name", f"#{n}")
        check_type(f"auth.tokens[{n}].name", name, (str,), "a string", f" in {path}")
        entries.append(
            make_token(
                item.get("token"),
                item.get("role", "admin"),
                f"{name} in {path}",
                item.get("tenant"),
                item.get("databases"),
            )
        )
    return entries


def tokens_from_environment(env: dict[str, str] | None = None) -> list[TokenEntry]:
    """Tokens from HUEDB_AUTH_TOKENS, HUEDB_AUTH_TOKENS_FILE and CHROMA_SERVER_AUTH_CREDENTIALS.

    Chroma's other auth variables are checked first: any huedb cannot honour is refused.
    """
    env = dict(os.environ) if env is None else env
    check_chroma_auth(env)
    entries: list[TokenEntry] = []
    # Set means set: an empty value holds no token and is refused, never read as unset.
    if "HUEDB_AUTH_TOKENS" in env:
        entries += parse_token_list(env["HUEDB_AUTH_TOKENS"], "HUEDB_AUTH_TOKENS")
    if "HUEDB_AUTH_TOKENS_FILE" in env:
        entries += parse_token_file(env["HUEDB_AUTH_TOKENS_FILE"], "HUEDB_AUTH_TOKENS_FILE")
    for name in CHROMA_CREDENTIALS:
        if name not in env:
            continue
        if not env[name].strip():  # set means set here too
            raise ConfigError(f"{name} is set but holds no token")
        entries.append(make_token(env[name].strip(), "admin", name))
    return entries


def check_chroma_auth(env: dict[str, str]) -> None:
    """Refuse Chroma server auth settings huedb cannot honour (fail closed, never open),
    and any spelt in lower case (chromadb's settings read `chroma_server_authn_provider`
    as the upper-case name; huedb reads names as they are, so it would ignore it)."""
    for name in sorted(env):
        upper = name.upper()
        if name != upper and upper.startswith(("CHROMA_SERVER_AUTH", "CHROMA_AUTH_")):
            raise ConfigError(
                f"{name} is spelt in lower case: huedb reads Chroma's auth settings by their "
                f"upper-case names only, so it would be ignored; rename it {upper}"
            )
    for name, why in UNSUPPORTED_AUTH.items():
        if env.get(name, "").strip():
            raise ConfigError(f"{name} is set but {why}: use {USE_INSTEAD} instead")
    for name in ("CHROMA_SERVER_AUTHN_PROVIDER", "CHROMA_SERVER_AUTH_PROVIDER"):
        provider = env.get(name, "").strip()
        if not provider:
            continue
        if provider not in TOKEN_PROVIDERS:
            raise ConfigError(
                f"{name}={provider} is not supported: huedb implements only Chroma's token "
                f"provider ({TOKEN_PROVIDERS[0]}); use it with CHROMA_SERVER_AUTHN_CREDENTIALS, "
                f"or {USE_INSTEAD}"
            )
        if not any(env.get(c, "").strip() for c in CHROMA_CREDENTIALS) and not any(
            env.get(h, "").strip() for h in ("HUEDB_AUTH_TOKENS", "HUEDB_AUTH_TOKENS_FILE")
        ):
            raise ConfigError(
                f"{name} is set but no credentials are: set CHROMA_SERVER_AUTHN_CREDENTIALS "
                f"(one token) or {USE_INSTEAD}"
            )
    legacy = env.get("CHROMA_SERVER_AUTH_CREDENTIALS_PROVIDER", "").strip()
    if legacy and legacy != LEGACY_CREDENTIALS_PROVIDER:
        raise ConfigError(
            f"CHROMA_SERVER_AUTH_CREDENTIALS_PROVIDER={legacy} is not supported: only "
            f"{LEGACY_CREDENTIALS_PROVIDER} (one token in CHROMA_SERVER_AUTH_CREDENTIALS); "
            f"or use {USE_INSTEAD}"
        )
    for name in ("CHROMA_AUTH_TOKEN_TRANSPORT_HEADER", "CHROMA_SERVER_AUTH_TOKEN_TRANSPORT_HEADER"):
        header = env.get(name, "").strip()
        if header and header.lower() not in TOKEN_HEADERS:
            raise ConfigError(
                f"{name}={header} is not supported: huedb reads tokens from "
                "'Authorization: Bearer <token>' and 'X-Chroma-Token: <token>' (both always "
                "accepted); unset it or set Authorization or X-Chroma-Token"
            )


def check_environment_names(env: Mapping[str, str]) -> None:
    """Refuse a HUEDB_* variable huedb does not read: a misspelt one (HUEDB_AUTH_TOKEN)
    would otherwise be ignored, and the server start without the tokens it names."""
    server = [*SERVER_ENVIRONMENT, *(env_name(name) for name in OPTION_NAMES)]
    known = {*server, *OTHER_ENVIRONMENT}
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX) or name in known:
            continue
        suffixes = [known_name.removeprefix(ENV_PREFIX) for known_name in server]
        close = difflib.get_close_matches(name.upper().removeprefix(ENV_PREFIX), suffixes, n=1)
        hint = f"did you mean {ENV_PREFIX}{close[0]}?" if close else "unset it"
        if not name.startswith(ENV_PREFIX):
            hint += " (names are case-sensitive)"
        raise ConfigError(
            f"unknown environment variable {name}: huedb reads no such variable, so it "
            f"would be ignored; {hint}"
        )


def environment_boolean(env: Mapping[str, str], name: str) -> bool | None:
    """A true/false variable (`true`/`false`, `1`/`0`, `yes`/`no`, any case); None when it
    is not set. Anything else is refused: it must never be read as one or the other."""
    if name not in env:
        return None
    word = env[name].strip().lower()
    if word not in ENV_BOOLEANS:
        raise ConfigError(
            f"{name}={env[name]!r} is not a boolean: use true or false (or 1/0, yes/no)"
        )
    return ENV_BOOLEANS[word]
