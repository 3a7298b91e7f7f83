"""`huedb run`: the server configuration from file, environment and flags; then uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging.config
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from huedb.engine.registry import acquire_engine, release_engine
from huedb.engine.store_factory import postgres_errors
from huedb.errors import ChromaError, ConfigError
from huedb.options import (
    OPTION_NAMES,
    SERVER_DEFAULTS,
    masked_url,
    resolve_options,
    without_password,
)
from huedb.process_ids import remove_left_by_dead_processes
from huedb.server.http_protocol import PARSER, HeadDeadlineProtocol
from huedb.server.log_context import logging_config
from huedb.server.server_config import (
    ENV_ALLOW_RESET,
    ENV_CONFIG,
    ServerConfig,
    binds_loopback_only,
    check_environment_names,
    environment_boolean,
    load_config_file,
    origins_from_environment,
    parse_origin_list,
    parse_token_file,
    tokens_from_environment,
)

logger = logging.getLogger("huedb")
KEEP_ALIVE_S = 30
# Read by prometheus_client when it is first imported: set here, before any worker imports it
# (importing huedb.server.metrics here would import it too early).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_PREFIX = "huedb-metrics-"


def server_config(args: argparse.Namespace, env: dict[str, str]) -> ServerConfig:
    """Merge defaults < config file < environment < flags; a HUEDB_* variable huedb does
    not read (a misspelt one) is refused first."""
    check_environment_names(env)
    values: dict = {}
    if args.config:
        values.update(load_config_file(args.config))
    engine_file = values.pop("engine", {})
    tokens = list(values.pop("tokens", []))
    tokens += tokens_from_environment(env)
    if args.auth_tokens_file is not None:  # given but empty: refused, never ignored
        tokens += parse_token_file(args.auth_tokens_file, "--auth-tokens-file")
    allow_reset = environment_boolean(env, ENV_ALLOW_RESET)
    if allow_reset is not None:
        values["allow_reset"] = allow_reset
    origins = origins_from_environment(env)
    if origins is not None:  # the environment's list replaces the file's
        values["cors_allow_origins"] = origins
    flags = {
        "path": args.path,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "ssl_certfile": args.ssl_certfile,
        "ssl_keyfile": args.ssl_keyfile,
        "allow_unauthenticated": args.allow_unauthenticated,
        "allow_reset": args.allow_reset,
        "max_body_bytes": args.max_body_bytes,
        "request_timeout_s": args.request_timeout,
        "header_timeout_s": args.header_timeout,
        "metrics_public": args.metrics_public,
        "log_format": args.log_format,
        "cors_allow_origins": None
        if args.cors_allow_origins is None  # given but empty: refused, never ignored
        else parse_origin_list(args.cors_allow_origins, "--cors-allow-origins"),
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    engine_flags = {name: getattr(args, name) for name in OPTION_NAMES}
    engine = resolve_options(file=engine_file, env=env, args=engine_flags, defaults=SERVER_DEFAULTS)
    config = ServerConfig(**values, tokens=tokens, engine=engine)
    config.check()
    return config


def run_server(config: ServerConfig, log_level: str) -> int:
    """Start uvicorn with `config.workers` processes over one data directory."""
    import uvicorn

    os.makedirs(config.path, exist_ok=True)
    roles = sorted({t.role for t in config.tokens})
    if config.tokens:
        logger.info("auth: token auth with %d token(s), roles %s", len(config.tokens), roles)
    elif binds_loopback_only(config.host):
        logger.warning("auth: NONE (no tokens configured; serving loopback %s only)", config.host)
    else:
        logger.warning(
            "auth: NONE on %s (--allow-unauthenticated): anyone can connect", config.host
        )
    if config.cors_allow_origins:
        # Without tokens ("*" needs them), the listed pages can read and write everything.
        (logger.info if config.tokens else logger.warning)(
            "cors: web pages of %s may call the API from a browser%s",
            ", ".join(config.cors_allow_origins),
            " (with a token)" if config.tokens else ", without a token",
        )
    scheme = "https" if config.ssl_certfile else "http"
    if config.engine.store:
        logger.info(
            "store: PostgreSQL %s (two pools of up to %d connections per worker, %gs wait); "
            "index files in %s",
            masked_url(config.engine.store),
            config.engine.pg_pool_max_size,
            config.engine.pg_pool_timeout,
            config.path,
        )
    logger.info(
        "serving %s on %s://%s:%d with %d worker(s)",
        masked_url(config.engine.store) or config.path,
        scheme,
        config.host,
        config.port,
        config.workers,
    )
    logger.info(
        "timeouts: request line and headers %gs, request body %gs, idle keep-alive %ds "
        "(HTTP parser: %s)",
        config.header_timeout_s,
        config.request_timeout_s,
        KEEP_ALIVE_S,
        PARSER,
    )
    os.environ[ENV_CONFIG] = config.to_json()
    with metrics_directory():
        uvicorn.run(
            "huedb.server.app:app_from_environment",
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers,
            ssl_certfile=config.ssl_certfile,
            ssl_keyfile=config.ssl_keyfile,
            log_level=log_level,
            timeout_keep_alive=KEEP_ALIVE_S,
            http=HeadDeadlineProtocol,
            access_log=False,
            log_config=logging_config(config.log_format, log_level),
        )
    return 0


@contextlib.contextmanager
def metrics_directory() -> Iterator[None]:
    """A private, empty PROMETHEUS_MULTIPROC_DIR for the workers' metric files (set before
    any worker imports prometheus_client), removed when the server stops. Directories left
    by servers that were killed (their process is gone) are removed first."""
    remove_stale_metrics_directories()
    path = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROC_ENV] = path
    # A single-process uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, with
    # these handlers back in place: remove the directory, then die of the signal as before.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def remove_then_reraise(sig: int, frame: FrameType | None) -> None:
        shutil.rmtree(path, ignore_errors=True)
        signal.signal(sig, previous[sig] or signal.SIG_DFL)
        signal.raise_signal(sig)

    for sig in previous:
        signal.signal(sig, remove_then_reraise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler or signal.SIG_DFL)
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_metrics_directories() -> None:
    """Remove `huedb-metrics-<pid>-*` directories whose server process no longer runs."""
    left = Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}*-*")
    for removed in remove_left_by_dead_processes(
        left, lambda p: p.name.removeprefix(METRICS_DIR_PREFIX).partition("-")[0]
    ):
        logger.info("removed %s, the metrics directory of a server that was killed", removed)


def check_store(config: ServerConfig) -> None:
    """Open the store once before the workers do (migrating it if it is older), so a store
    that cannot be served (a newer format, an older server still on it, unreadable; a
    PostgreSQL server that does not answer within --pg-pool-timeout, refuses the login or
    the privileges huedb needs) stops the start with its reason instead of a worker's
    traceback. Start does not retry beyond that wait: a service manager restarts it. The
    directory's snapshots of collections the store no longer has (deleted through another
    node meanwhile) are removed then."""
    engine = acquire_engine(Path(config.path), config.engine)
    try:
        engine.remove_orphan_snapshots()
    finally:
        release_engine(engine)


def check_port(host: str, port: int) -> None:
    """Bind every address of `host` at `port` the way uvicorn will, then let go, so a port
    another process listens on stops the start with one line instead of uvicorn's log.

    An address family this machine lacks (EADDRNOTAVAIL) is skipped, as asyncio does; the
    port may still be taken between this check and uvicorn's bind (then uvicorn reports it).
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"cannot resolve --host {host}: {exc}") from None
    for family, kind, proto, _, address in dict.fromkeys(addresses):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    continue
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"{where} is already in use: stop what listens there or choose "
                        "another --port"
                    ) from None
                raise ConfigError(f"cannot bind {where}: {exc.strerror or exc}") from None


def serve(args: argparse.Namespace) -> int:
    """`huedb run`: a configuration or store error prints one line and exits 2."""
    config = None
    try:
        config = server_config(args, dict(os.environ))
        # The configured log format (flag or config file) from here on: the
        # store and port checks below log too, and their errors are the "cannot start" line.
        logging.config.dictConfig(logging_config(config.log_format, args.log_level))
        try:
            check_store(config)
        except OSError as exc:  # the data directory cannot be created or locked
            raise ConfigError(f"cannot use --path {config.path}: {exc.strerror or exc}") from None
        check_port(config.host, config.port)
    except (ConfigError, ChromaError) + postgres_errors() as exc:
        url = config.engine.store if config is not None else (args.store or "")
        logger.error("cannot start: %s", without_password(str(exc), url).replace("\n", " "))
        return 2
    return run_server(config, args.log_level)
