"""The `huedb` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from huedb.options import OPTION_NAMES, SYNC_MODES, resolve_options
from huedb.server.server_config import (
    ENV_CONFIG,
    ConfigError,
    ServerConfig,
    is_loopback,
    load_config_file,
    parse_token_file,
    tokens_from_environment,
)
from huedb.version import __version__

logger = logging.getLogger("huedb")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="huedb", description="huedb vector database")
    parser.add_argument("--version", action="version", version=f"huedb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve Chroma's v2 HTTP API over a data directory")
    run.add_argument("--path", help="data directory (default ./data)")
    run.add_argument("--host", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port (default 8000)")
    run.add_argument("--workers", type=int, help="worker processes sharing the directory")
    run.add_argument("--config", help="TOML or JSON file with server settings and [auth] tokens")
    run.add_argument("--auth-tokens-file", help="file with one 'token [admin|read-only]' per line")
    run.add_argument("--ssl-certfile", help="TLS certificate (PEM)")
    run.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    run.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="serve a non-loopback address without tokens (not recommended)",
    )
    run.add_argument(
        "--allow-reset",
        action="store_true",
        default=None,
        help="allow POST /reset to delete everything",
    )
    run.add_argument("--max-body-bytes", type=int, help="largest accepted request body")
    run.add_argument(
        "--request-timeout", type=float, help="seconds a client may take to send a request body"
    )
    run.add_argument("--sync", choices=SYNC_MODES, help="SQLite sync level (default full)")
    run.add_argument(
        "--exact-max-floats", type=int, help="exact search up to vectors x dim (default 2M)"
    )
    run.add_argument(
        "--filtered-exact-max-floats",
        type=int,
        help="filtered exact search up to allowed vectors x dim (default 40M)",
    )
    run.add_argument("--snapshot-every", type=int, help="changes between graph snapshots")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    _add_ops_commands(sub)
    return parser


def _remote_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--url", help="server URL instead of --path, e.g. https://db:8000")
    cmd.add_argument("--token", default=os.environ.get("HUEDB_TOKEN"), help="token for --url")


def _add_ops_commands(sub: argparse._SubParsersAction) -> None:
    backup = sub.add_parser("backup", help="online backup to one file (while serving)")
    backup.add_argument("--path", help="data directory")
    _remote_args(backup)
    backup.add_argument("--out", required=True, help="backup file to write")
    restore = sub.add_parser("restore", help="restore a backup into a data directory")
    restore.add_argument("file", help="backup file")
    restore.add_argument("--path", required=True, help="data directory to restore into")
    restore.add_argument("--force", action="store_true", help="replace a non-empty directory")
    export = sub.add_parser("export", help="stream a collection to a Parquet file")
    export.add_argument("--path", help="data directory")
    _remote_args(export)
    export.add_argument("--collection", required=True)
    export.add_argument("--out", required=True, help="Parquet file to write")
    export.add_argument("--batch-size", type=int, default=5000)
    imp = sub.add_parser("import", help="load a Parquet file into a collection (upsert)")
    imp.add_argument("file", help="Parquet file (huedb export or the pandas export of Chroma)")
    imp.add_argument("--path", help="data directory")
    _remote_args(imp)
    imp.add_argument("--collection", help="target collection (default: from the file)")
    imp.add_argument("--batch-size", type=int, default=5000)
    migrate = sub.add_parser("migrate-chroma", help="import every collection of a Chroma dir")
    migrate.add_argument("--from", dest="source", required=True, help="Chroma persist directory")
    migrate.add_argument("--path", required=True, help="huedb data directory")
    stats = sub.add_parser("stats", help="sizes, memory, latency and scale warnings")
    stats.add_argument("--path", help="data directory")
    _remote_args(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")
    verify = sub.add_parser("verify", help="check integrity and index/record agreement")
    verify.add_argument("--path", required=True, help="data directory")
    verify.add_argument("--repair", action="store_true", help="rebuild indexes that disagree")
    compact = sub.add_parser("compact", help="return space freed by deletes to the disk")
    compact.add_argument("--path", required=True, help="data directory")
    reembed = sub.add_parser("reembed", help="build a collection from another's documents")
    reembed.add_argument("--path", help="data directory")
    _remote_args(reembed)
    reembed.add_argument("--source", required=True, help="collection to read documents from")
    reembed.add_argument("--target", required=True, help="collection to create or complete")
    reembed.add_argument(
        "--embedder", required=True, help="'default' (offline MiniLM) or 'module:factory'"
    )
    reembed.add_argument("--batch-size", type=int, default=256)
    evaluate = sub.add_parser("eval", help="score a collection on queries; gate a model switch")
    evaluate.add_argument("--path", help="data directory")
    _remote_args(evaluate)
    evaluate.add_argument("--collection", required=True, help="the candidate collection")
    evaluate.add_argument("--baseline", help="the collection in service now")
    evaluate.add_argument("--queries", required=True, help='JSON lines {"query", "relevant"}')
    evaluate.add_argument("--embedder", default="default", help="embedder of the candidate")
    evaluate.add_argument("--baseline-embedder", help="embedder of the baseline (default: same)")
    evaluate.add_argument("--k", type=int, default=10)
    evaluate.add_argument("--min-recall", type=float, help="fail below this recall@k")
    evaluate.add_argument("--min-overlap", type=float, help="fail below this top-k overlap")
    evaluate.add_argument(
        "--max-recall-drop",
        type=float,
        default=0.02,
        help="fail when recall@k is more than this below the baseline's (default 0.02)",
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON")


def server_config(args: argparse.Namespace, env: dict[str, str]) -> ServerConfig:
    """Merge defaults < config file < environment < flags."""
    values: dict = {}
    if args.config:
        values.update(load_config_file(args.config))
    engine_file = values.pop("engine", {})
    tokens = list(values.pop("tokens", []))
    tokens += tokens_from_environment(env)
    if args.auth_tokens_file:
        tokens += parse_token_file(args.auth_tokens_file)
    if env.get("HUEDB_ALLOW_RESET", "").lower() in ("1", "true", "yes"):
        values["allow_reset"] = True
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
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    engine_flags = {name: getattr(args, name) for name in OPTION_NAMES}
    engine = resolve_options(file=engine_file, env=env, args=engine_flags)
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
    elif is_loopback(config.host):
        logger.warning("auth: NONE (no tokens configured; serving loopback %s only)", config.host)
    else:
        logger.warning(
            "auth: NONE on %s (--allow-unauthenticated): anyone can connect", config.host
        )
    scheme = "https" if config.ssl_certfile else "http"
    logger.info(
        "serving %s on %s://%s:%d with %d worker(s)",
        config.path,
        scheme,
        config.host,
        config.port,
        config.workers,
    )
    os.environ[ENV_CONFIG] = config.to_json()
    uvicorn.run(
        "huedb.server.app:app_from_environment",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        ssl_certfile=config.ssl_certfile,
        ssl_keyfile=config.ssl_keyfile,
        log_level=log_level,
        timeout_keep_alive=30,
        access_log=False,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, getattr(args, "log_level", "info").upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "run":
        try:
            config = server_config(args, dict(os.environ))
        except ConfigError as exc:
            logger.error("cannot start: %s", exc)
            return 2
        return run_server(config, args.log_level)
    from huedb.ops.commands import run_command

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
