"""The operations commands of the CLI: each parses nothing and calls one ops function."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import httpx

import huedb
from huedb.errors import BackupError, UsageError
from huedb.ops.backup import backup, restore

logger = logging.getLogger("huedb")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _check_target(args: argparse.Namespace) -> None:
    if getattr(args, "url", None) and args.path:
        raise UsageError("give either --path or --url, not both")
    if not getattr(args, "url", None) and not args.path:
        raise UsageError("give --path DATA or --url URL")


def _client(args: argparse.Namespace) -> huedb.Client:
    _check_target(args)
    if args.url:
        settings = huedb.Settings(chroma_client_auth_credentials=args.token)
        return huedb.HttpClient(host=args.url, settings=settings)
    return huedb.PersistentClient(path=args.path)


def _admin_request(args: argparse.Namespace, method: str, route: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    url = args.url.rstrip("/") + "/api/v2/admin/" + route
    resp = httpx.request(method, url, headers=headers, timeout=None)
    if resp.status_code >= 400:
        raise UsageError(f"{url}: HTTP {resp.status_code}: {resp.text}")
    return resp


def cmd_backup(args: argparse.Namespace) -> int:
    _check_target(args)
    if args.url:
        with httpx.stream(
            "POST",
            args.url.rstrip("/") + "/api/v2/admin/backup",
            headers={"Authorization": f"Bearer {args.token}"} if args.token else {},
            timeout=None,
        ) as resp:
            if resp.status_code >= 400:
                raise UsageError(f"HTTP {resp.status_code}: {resp.read().decode()}")
            with open(args.out, "wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
        _out(f"backup written to {args.out}")
        return 0
    manifest = backup(Path(args.path), Path(args.out))
    total = sum(c["count"] for c in manifest.collections)
    _out(f"backup written to {args.out}: {len(manifest.collections)} collections, {total} records")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    manifest = restore(Path(args.file), Path(args.path), force=args.force)
    total = sum(c["count"] for c in manifest.collections)
    _out(f"restored {args.file} into {args.path}: {total} records (checksum ok)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from huedb.ops.parquet import export_collection

    client = _client(args)
    try:
        report = export_collection(
            client.get_collection(args.collection), Path(args.out), batch_size=args.batch_size
        )
    finally:
        client.close()
    _out(f"exported {args.collection} to {args.out}: {report}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from huedb.ops.parquet import import_collection

    client = _client(args)
    try:
        report = import_collection(
            client, Path(args.file), collection_name=args.collection, batch_size=args.batch_size
        )
    finally:
        client.close()
    _out(f"imported {args.file}: {report}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from huedb.ops.chroma_import import migrate_chroma

    report = migrate_chroma(Path(args.source), Path(args.path))
    _out(f"migrated {args.source} into {args.path}: {report}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    _check_target(args)
    if args.url:
        stats: dict[str, Any] = _admin_request(args, "GET", "stats").json()
    else:
        from huedb.engine.engine import Engine
        from huedb.ops.stats import gather_stats

        engine = Engine(Path(args.path))
        try:
            stats = gather_stats(engine, Path(args.path))
        finally:
            engine.close()
    if args.json:
        _out(json.dumps(stats, indent=2))
        return 0
    _out(
        f"database {stats['database_bytes'] / 2**20:.1f} MiB, reclaimable "
        f"{stats['reclaimable_bytes'] / 2**20:.1f} MiB, indexes ~"
        f"{stats['index_memory_bytes'] / 2**20:.1f} MiB of {stats['ram_bytes'] / 2**30:.1f} GiB RAM"
    )
    for c in stats["collections"]:
        latency = (
            f", query p50 {c['query_p50_ms']:.2f} ms p99 {c['query_p99_ms']:.2f} ms"
            if c["query_p50_ms"] is not None
            else ""
        )
        _out(
            f"  {c['name']}: {c['count']} x {c['dimension']} ({c['space']}), disk "
            f"{c['disk_bytes'] / 2**20:.1f} MiB, index ~{c['index_memory_bytes'] / 2**20:.1f} MiB"
            f"{latency}"
        )
    for w in stats["warnings"]:
        _out(f"WARNING: {w}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from huedb.ops.verify import verify

    report = verify(Path(args.path), repair=args.repair)
    for line in report.lines():
        _out(line)
    return 0 if report.ok else 1


def cmd_compact(args: argparse.Namespace) -> int:
    from huedb.engine.engine import Engine

    engine = Engine(Path(args.path))
    try:
        rebuilt = [c.name for c in engine.collections() if engine.compact_index(c.uuid)]
        freed = engine.reclaim_space()
    finally:
        engine.close()
    _out(f"reclaimed {freed / 2**20:.1f} MiB; rebuilt graph indexes: {', '.join(rebuilt) or '-'}")
    return 0


def cmd_reembed(args: argparse.Namespace) -> int:
    from huedb.ops.model_versions import load_embedder, reembed

    client = _client(args)
    try:
        report = reembed(
            client, args.source, args.target, load_embedder(args.embedder), args.batch_size
        )
    finally:
        client.close()
    _out(str(report))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from huedb.ops.model_versions import evaluate, load_embedder, read_queries

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
        scores = [s for s in (report.candidate, report.baseline) if s is not None]
        _out(
            json.dumps(
                {
                    "k": report.k,
                    "scores": {
                        s.collection: {"recall_at_k": s.recall_at_k, "mrr": s.mrr} for s in scores
                    },
                    "overlap_at_k": report.overlap_at_k,
                    "failures": report.failures,
                    "passed": report.passed,
                },
                indent=2,
            )
        )
    else:
        for line in report.lines():
            _out(line)
    return 0 if report.passed else 1


COMMANDS = {
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
    """Run one operations command; user errors print a message and exit 2."""
    try:
        return COMMANDS[args.command](args)
    except (UsageError, BackupError, ValueError, huedb.errors.ChromaError, httpx.HTTPError) as exc:
        logger.error("%s: %s", args.command, exc)
        return 2
