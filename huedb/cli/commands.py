"""The operations commands: each takes parsed arguments, makes one library call, prints."""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huedb.api.checks import MAX_BATCH_SIZE
from huedb.api.client import HTTP_API_IMPL, Client, claim_http_settings, connect_http
from huedb.cli.output import (
    compact_line,
    emit,
    emit_json,
    eval_json,
    export_line,
    import_lines,
    migrate_lines,
    record_total,
    stats_lines,
)
from huedb.config import Settings
from huedb.engine.catalog import validate_name
from huedb.engine.store_factory import postgres_errors
from huedb.errors import (
    BackupError,
    ChromaError,
    ConfigError,
    StorageFullError,
    StorageIOError,
    StorageUnavailableError,
    UsageError,
    errors_if_loaded,
)
from huedb.ops.backup import backup, restore, storage_error
from huedb.ops.stats import store_stats
from huedb.ops.store import (
    compact,
    describe,
    refuse_inside_data,
    require_out_directory,
    require_scope_store,
    require_store,
    scoped_client,
    store_client,
    store_url,
)
from huedb.ops.verify import verify
from huedb.options import env_name, without_password

logger = logging.getLogger("huedb")

EXIT_ERROR = 2  # a usage error, or refused input or state
EXIT_STORAGE = 3  # the disk is full or failed, or a file could not be read or written
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + its signal number, as shells report it
EXIT_TERMINATED = 143  # SIGTERM, likewise
EXIT_OUTPUT_CLOSED = 141  # the reader of stdout went away (`| head`): 128 + SIGPIPE
# How long a command given --url waits for each answer from the server.
CLI_HTTP_TIMEOUT_S = 60.0


# Storage failures: exit 3, one line (a PostgreSQL store: unreachable, or its errors,
# `_storage_errors`).
STORAGE_ERRORS = (StorageFullError, StorageIOError, StorageUnavailableError, OSError, sqlite3.Error)


def _storage_errors() -> tuple[type[BaseException], ...]:
    return STORAGE_ERRORS + postgres_errors()


def _transport_errors() -> tuple[type[BaseException], ...]:
    """httpx's errors of a connection (refused, TLS, timeout, reset): a `--url` command's."""
    return errors_if_loaded("httpx", "TransportError")


def _path(args: argparse.Namespace) -> Path | None:
    return Path(args.path) if args.path else None


def _check_target(args: argparse.Namespace) -> None:
    """`--url`, or a local store: `--path` and/or `--store` (HUEDB_STORE)."""
    if getattr(args, "url", None) and (args.path or args.store):
        raise UsageError("give either --path or --url, not both (--store goes with --path)")
    if not getattr(args, "url", None) and not args.path and not store_url(args.store):
        remote_too = ", or --url URL" if hasattr(args, "url") else ""
        raise UsageError(f"give --path DATA or --store URL{remote_too}")


def _client(args: argparse.Namespace, create: bool = False) -> Client:
    """A client of `--tenant`/`--database` (which must exist) at `--url` (with `--token`),
    in the data directory `--path`, or in the PostgreSQL store `--store` (with --path for
    this node's index files).

    Only a command that creates a store (`create`) accepts a `--path` without one, and
    only for the default tenant and database (a new store holds no other).
    """
    _check_target(args)
    tenant, database = args.tenant, args.database
    if getattr(args, "url", None):
        settings = Settings(chroma_client_auth_credentials=args.token)
        return scoped_client(
            lambda: _http_client(args.url, settings, tenant, database),
            tenant,
            database,
        )
    return store_client(_path(args), args.store, create=create, tenant=tenant, database=database)


def _require_at_least_one(value: int, option: str) -> None:
    """Refuse a count option below 1 (a batch size, results per query)."""
    if value < 1:
        raise UsageError(f"{option} must be at least 1, got {value}")


def cmd_backup(args: argparse.Namespace) -> int:
    _check_target(args)
    if args.url:
        require_out_directory(Path(args.out))  # `backup` checks it after refuse_inside_data
        from huedb.ops import remote  # httpx: only for --url

        manifest = remote.download_backup(args.url, args.token, Path(args.out))
    else:
        manifest = backup(_path(args), Path(args.out), store=args.store)
    emit(
        f"backup written to {args.out}: {len(manifest.collections)} collections, "
        f"{record_total(manifest)} records"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    url = store_url(args.store)
    manifest = restore(Path(args.file), _path(args), force=args.force, store=url)
    emit(
        f"restored {args.file} into {describe(_path(args), url)}: {record_total(manifest)} "
        "records (checksum ok)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from huedb.ops.parquet import export_collection

    _require_at_least_one(args.batch_size, "--batch-size")
    refuse_inside_data(Path(args.out), _path(args), "export file")  # before the store opens
    require_out_directory(Path(args.out))
    client = _client(args)
    try:
        report = export_collection(
            client.get_collection(args.collection), Path(args.out), batch_size=args.batch_size
        )
    finally:
        client.close()
    emit(export_line(report))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from huedb.ops.parquet import (
        check_file,
        import_collection,
        import_space,
        target_collection_name,
    )

    _require_at_least_one(args.batch_size, "--batch-size")
    if not Path(args.file).is_file():  # before a store is created for it
        raise UsageError(f"{args.file} is not a file; nothing was imported")
    _check_target(args)
    if _creates_store(args):
        # A tenant or database a new store would not hold is refused before the file is read.
        require_scope_store(_path(args), args.store, args.tenant, args.database)
        # The whole file is checked before a store is created for it: a file that is no
        # Parquet, corrupt, or holds a record the import would refuse leaves nothing behind
        # (import_collection checks it again, against an existing store's batch size).
        check_file(Path(args.file), min(args.batch_size, MAX_BATCH_SIZE))
        import_space(Path(args.file), args.space)
        validate_name(target_collection_name(Path(args.file), args.collection))
    client = _client(args, create=True)
    try:
        report = import_collection(
            client,
            Path(args.file),
            collection_name=args.collection,
            batch_size=args.batch_size,
            space=args.space,
        )
    finally:
        client.close()
    emit(*import_lines(report))
    return 0


def _creates_store(args: argparse.Namespace) -> bool:
    """Whether opening the target of a local command may create a store: a `--path`
    holding no SQLite store yet, or a PostgreSQL store (created on first use)."""
    if getattr(args, "url", None):
        return False
    if store_url(args.store):
        return True
    try:
        require_store(Path(args.path))
    except UsageError:
        return True
    return False


def cmd_migrate(args: argparse.Namespace) -> int:
    from huedb.ops.chroma_import import migrate_chroma

    report = migrate_chroma(Path(args.source), _path(args), store=args.store)
    emit(*migrate_lines(report))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    _check_target(args)
    if args.url:
        from huedb.ops import remote  # httpx: only for --url

        stats = remote.fetch_stats(args.url, args.token)
    else:
        stats = store_stats(_path(args), store=args.store)
    if args.json:
        emit_json(stats)
    else:
        emit(*stats_lines(stats))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    report = verify(_path(args), repair=args.repair, store=args.store)
    emit(*report.lines())
    return 0 if report.ok else 1


def cmd_compact(args: argparse.Namespace) -> int:
    emit(compact_line(compact(_path(args), store=args.store)))
    return 0


def cmd_reembed(args: argparse.Namespace) -> int:
    from huedb.ops.model_versions import load_embedder, reembed

    _require_at_least_one(args.batch_size, "--batch-size")  # checked before anything is made
    embedder = load_embedder(args.embedder)
    client = _client(args)
    try:
        report = reembed(client, args.source, args.target, embedder, args.batch_size)
    finally:
        client.close()
    emit(str(report))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from huedb.ops.model_versions import evaluate, load_embedder, read_queries

    _require_at_least_one(args.k, "--k")  # a usage error (2), not a failed gate (1)
    if not Path(args.queries).is_file():  # a missing input file is a usage error
        raise UsageError(f"--queries {args.queries} is not a file")
    queries = read_queries(Path(args.queries))
    embedder = load_embedder(args.embedder)
    baseline_embedder = load_embedder(args.baseline_embedder) if args.baseline_embedder else None
    client = _client(args)
    try:
        report = evaluate(
            client,
            args.collection,
            queries,
            embedder,
            baseline=args.baseline,
            baseline_embedder=baseline_embedder,
            k=args.k,
            min_recall=args.min_recall,
            min_overlap=args.min_overlap,
            max_recall_drop=args.max_recall_drop,
        )
    finally:
        client.close()
    if args.json:
        emit_json(eval_json(report))
    else:
        emit(*report.lines())
    return 0 if report.passed else 1


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "backup": cmd_backup,
    "restore": cmd_restore,
    "export": cmd_export,
    "import": cmd_import,
    "migrate-chroma": cmd_migrate,
    "stats": cmd_stats,
    "verify": cmd_verify,
    "compact": cmd_compact,
    "reembed": cmd_reembed,
    "eval": cmd_eval,
}


def run_command(args: argparse.Namespace) -> int:
    """Run one operations command; errors print one line: exit 3 for storage, 2 otherwise,
    130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM: `kill`, a service stop),
    both after the command's own cleanup."""
    terminated = _SigtermAsInterrupt()
    try:
        with terminated:
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _error(args, "terminated" if terminated.received else "interrupted")
        return EXIT_TERMINATED if terminated.received else EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        if _stdout_closed():  # `huedb stats | head -1`: quiet, as other tools are
            return EXIT_OUTPUT_CLOSED
        return _storage_failure(args, exc)
    except _storage_errors() as exc:
        return _storage_failure(args, exc)
    except _transport_errors() as exc:
        _error(args, _unreachable(args, exc))
        return EXIT_ERROR
    except (UsageError, BackupError, ConfigError, ChromaError, ValueError) + errors_if_loaded(
        "httpx", "HTTPError"
    ) as exc:
        # A backup that failed on a file (one that cannot be written or read, a database
        # too damaged to copy) is a storage failure, as in every other command.
        if isinstance(exc, BackupError) and (
            storage_error(exc) is not None or isinstance(exc.__cause__, STORAGE_ERRORS)
        ):
            return _storage_failure(args, exc)
        if str(exc).startswith("Could not connect") and isinstance(
            exc.__cause__, _transport_errors()
        ):  # the client's own words for a server it cannot reach: name the server
            _error(args, _unreachable(args, exc.__cause__))
        else:
            _error(args, str(exc))
        return EXIT_ERROR


def _http_client(url: str, settings: Settings, tenant: str, database: str) -> Client:
    """`HttpClient(host=url, ...)`, but waiting at most CLI_HTTP_TIMEOUT_S for each answer:
    a server that accepts the connection and never answers must not hang a command."""
    host, port, ssl = claim_http_settings(settings, HTTP_API_IMPL, url, 8000, False, None)
    return connect_http(settings, host, port, ssl, tenant, database, CLI_HTTP_TIMEOUT_S)


def _unreachable(args: argparse.Namespace, exc: BaseException) -> str:
    """The one line for a `--url` server that cannot be reached or does not answer."""
    url = getattr(args, "url", None)
    return f"cannot reach the huedb server at {url}: {exc or type(exc).__name__}"


class _SigtermAsInterrupt:
    """While entered (in the main thread), SIGTERM raises KeyboardInterrupt, so a command
    killed by `kill` or a service manager cleans up as on Ctrl-C (no partial export or
    backup, no temporary copy, nothing half-created left behind)."""

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def _interrupt(self, signum: int, frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._interrupt)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _storage_failure(args: argparse.Namespace, exc: BaseException) -> int:
    """Report a storage failure (disk full, I/O error, store unavailable): exit 3."""
    _error(args, f"storage error, the command did not complete: {exc}")
    return EXIT_STORAGE


def _stdout_closed() -> bool:
    """Whether stdout's reader went away; if so stdout is pointed at /dev/null, so the
    interpreter's flush at exit does not fail once more."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (a test's capture): not a closed pipe
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not any(events & select.POLLERR for _, events in poller.poll(0)):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


def _error(args: argparse.Namespace, message: str) -> None:
    """One line on the log, never a store URL's password."""
    url = getattr(args, "store", None) or os.environ.get(env_name("store"), "")
    logger.error("%s: %s", args.command, without_password(message, url).replace("\n", " "))
