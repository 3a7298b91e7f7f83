"""The argument parser of every `huedb` command."""

from __future__ import annotations

import argparse
import os

from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT
from huedb.options import SYNC_MODES
from huedb.server.log_context import LOG_FORMATS
from huedb.version import __version__


def build_parser() -> argparse.ArgumentParser:
    """`huedb run` and the operations commands."""
    parser = argparse.ArgumentParser(prog="huedb", description="huedb vector database")
    parser.add_argument("--version", action="version", version=f"huedb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_ops_commands(sub)
    return parser


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="serve Chroma's v2 HTTP API over a data directory")
    run.add_argument(
        "--path", help="data directory (default ./data; with --store: this node's index files)"
    )
    _store_arg(run)
    run.add_argument(
        "--pg-pool-max-size",
        type=int,
        help="PostgreSQL store: connections per pool, two pools per worker process (default 4)",
    )
    run.add_argument(
        "--pg-pool-timeout",
        type=float,
        help="PostgreSQL store: seconds a request waits for a connection, then 503 (default 5)",
    )
    run.add_argument(
        "--pg-write-idle-timeout",
        type=float,
        help="PostgreSQL store: seconds a write may sit idle inside its transaction before "
        "PostgreSQL ends it and gives its locks back (default 30, at least 5; 0: no limit)",
    )
    run.add_argument(
        "--pg-row-cache",
        help="PostgreSQL store: bytes of record rows each worker keeps for warm queries, "
        "e.g. 256MiB (default 64MiB; 0: none)",
    )
    run.add_argument("--host", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port (default 8000)")
    run.add_argument("--workers", type=int, help="worker processes sharing the directory")
    run.add_argument("--config", help="TOML or JSON file with server settings and [auth] tokens")
    run.add_argument(
        "--auth-tokens-file", help="file with one 'token [role[@tenant[/db+db]]]' per line"
    )
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
    run.add_argument(
        "--header-timeout",
        type=float,
        help="seconds a client may take to send a request line and headers (default 10)",
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
    run.add_argument(
        "--index-memory",
        help="bytes of indexes each worker keeps in memory, e.g. 2GiB (default 0: no limit); "
        "least recently used collections are evicted past it",
    )
    _add_request_limits(run)
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text (default) or json: one JSON object per line, with each request's trace id",
    )
    run.add_argument(
        "--cors-allow-origins",
        metavar="ORIGINS",
        help="origins of web pages that may call the API from a browser (CORS), separated "
        "by commas or as a JSON list: http://localhost:3000,https://app.example.com; '*' "
        "(any page) only with tokens",
    )
    run.add_argument(
        "--metrics-public",
        action="store_true",
        default=None,
        help="serve GET /metrics without a token (every other route still needs one)",
    )


def _add_request_limits(run: argparse.ArgumentParser) -> None:
    """The per-request limits and time budget (docs/deploy.md, "Limits")."""
    limits = run.add_argument_group("request limits (beyond one: 422 QuotaError)")
    for flag, default, what in (
        ("--max-query-embeddings", "1,000", "query vectors of one query"),
        ("--max-query-results", "10,000", "query vectors x results"),
        ("--max-filter-terms", "200", "operators and conditions of where + where_document"),
        ("--max-in-values", "10,000", "values of all $in / $nin lists of a request"),
        ("--max-pattern-bytes", "4,096", "bytes of one $contains / $regex operand"),
        ("--max-regex-terms", "4", "$regex / $not_regex conditions of a request"),
        ("--max-ids", "250,000", "ids named by one get, query or delete"),
    ):
        limits.add_argument(flag, type=int, help=f"{what} (default {default})")
    limits.add_argument(
        "--query-timeout",
        type=float,
        help="seconds a read may hold the engine before it is stopped (default 30; 0: none)",
    )


def _store_arg(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--store",
        help="postgresql://USER[:PASSWORD]@HOST[:PORT]/DB: the PostgreSQL store "
        "(default: HUEDB_STORE, else SQLite in --path)",
    )


def _local_args(cmd: argparse.ArgumentParser, what: str = "data directory") -> None:
    """`--path` and `--store`: a data directory, or a PostgreSQL store (with --path for
    this node's index files, optional)."""
    cmd.add_argument("--path", help=what)
    _store_arg(cmd)


def _remote_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--url", help="server URL instead of --path, e.g. https://db:8000")
    cmd.add_argument("--token", default=os.environ.get("HUEDB_TOKEN"), help="token for --url")


def _scope_args(cmd: argparse.ArgumentParser) -> None:
    """`--tenant` and `--database` of the collections a command works on (with --path,
    --store or --url); they must exist."""
    cmd.add_argument(
        "--tenant",
        default=DEFAULT_TENANT,
        help=f"tenant of the collections (default {DEFAULT_TENANT})",
    )
    cmd.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help=f"database of the collections, in --tenant (default {DEFAULT_DATABASE})",
    )


def _add_ops_commands(sub: argparse._SubParsersAction) -> None:
    backup = sub.add_parser("backup", help="online backup to one file (while serving)")
    _local_args(backup)
    _remote_args(backup)
    backup.add_argument("--out", required=True, help="backup file to write")
    restore = sub.add_parser(
        "restore", help="restore a backup into a data directory or an empty PostgreSQL store"
    )
    restore.add_argument("file", help="backup file")
    restore.add_argument("--path", help="data directory to restore into")
    _store_arg(restore)
    restore.add_argument("--force", action="store_true", help="replace a non-empty directory")
    export = sub.add_parser("export", help="stream a collection to a Parquet file")
    _local_args(export)
    _remote_args(export)
    _scope_args(export)
    export.add_argument("--collection", required=True)
    export.add_argument("--out", required=True, help="Parquet file to write")
    export.add_argument("--batch-size", type=int, default=5000)
    imp = sub.add_parser("import", help="load a Parquet file into a collection (upsert)")
    imp.add_argument("file", help="Parquet file (huedb export or the pandas export of Chroma)")
    _local_args(imp)
    _remote_args(imp)
    _scope_args(imp)
    imp.add_argument("--collection", help="target collection (default: from the file)")
    imp.add_argument("--batch-size", type=int, default=5000)
    imp.add_argument(
        "--space",
        choices=["l2", "cosine", "ip"],
        help="distance of a collection the import creates, for files that carry none",
    )
    migrate = sub.add_parser("migrate-chroma", help="import every collection of a Chroma dir")
    migrate.add_argument("--from", dest="source", required=True, help="Chroma persist directory")
    _local_args(migrate, "huedb data directory")
    stats = sub.add_parser("stats", help="sizes, memory, latency and scale warnings")
    _local_args(stats)
    _remote_args(stats)
    stats.add_argument("--json", action="store_true", help="print JSON")
    verify = sub.add_parser("verify", help="check integrity and index/record agreement")
    _local_args(verify)
    verify.add_argument(
        "--repair",
        action="store_true",
        help="rebuild indexes that disagree; link in records a graph leaves unreachable",
    )
    compact = sub.add_parser("compact", help="return space freed by deletes to the disk")
    _local_args(compact)
    reembed = sub.add_parser("reembed", help="build a collection from another's documents")
    _local_args(reembed)
    _remote_args(reembed)
    _scope_args(reembed)
    reembed.add_argument("--source", required=True, help="collection to read documents from")
    reembed.add_argument("--target", required=True, help="collection to create or complete")
    reembed.add_argument(
        "--embedder", required=True, help="'default' (offline MiniLM) or 'module:factory'"
    )
    reembed.add_argument("--batch-size", type=int, default=256)
    evaluate = sub.add_parser("eval", help="score a collection on queries; gate a model switch")
    _local_args(evaluate)
    _remote_args(evaluate)
    _scope_args(evaluate)
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
