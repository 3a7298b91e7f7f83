"""What the commands print: plain lines and JSON on stdout (messages go through logging)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from huedb.config import DEFAULT_DATABASE, DEFAULT_TENANT

if TYPE_CHECKING:
    from huedb.ops.backup import Manifest
    from huedb.ops.chroma_import import MigrationReport
    from huedb.ops.model_versions import EvalReport
    from huedb.ops.parquet import ExportReport, ImportReport
    from huedb.ops.store import CompactReport

MIB = 2**20
GIB = 2**30


def emit(*lines: str) -> None:
    """Print lines to stdout."""
    for line in lines:
        sys.stdout.write(line + "\n")


def emit_json(value: Any) -> None:
    """Print a value as indented JSON."""
    emit(json.dumps(value, indent=2))


def record_total(manifest: Manifest) -> int:
    """Records in every collection of a backup."""
    return sum(c["count"] for c in manifest.collections)


def stats_lines(stats: dict[str, Any]) -> Iterable[str]:
    """The human-readable form of `huedb stats`."""
    yield f"store {stats['store_kind']}" + (
        f" at {stats['engine']['store']}" if stats["engine"].get("store") else ""
    )
    yield (
        f"database {stats['database_bytes'] / MIB:.1f} MiB, reclaimable "
        f"{stats['reclaimable_bytes'] / MIB:.1f} MiB, indexes ~"
        f"{stats['index_memory_bytes'] / MIB:.1f} MiB of {stats['ram_bytes'] / GIB:.1f} GiB RAM"
    )
    cache = stats["index_cache"]
    budget = f"{cache['budget_bytes'] / MIB:.1f} MiB" if cache["budget_bytes"] else "no limit"
    yield (
        f"index memory budget {budget}: {cache['resident_bytes'] / MIB:.1f} MiB resident in "
        f"{len(cache['resident_collections'])} collection(s), "
        f"{len(cache['evicted_collections'])} evicted; hits {cache['hits']}, misses "
        f"{cache['misses']}, evictions {cache['evictions']}"
    )
    for c in stats["collections"]:
        latency = (
            f", query p50 {c['query_p50_ms']:.2f} ms p99 {c['query_p99_ms']:.2f} ms"
            if c["query_p50_ms"] is not None
            else ""
        )
        recall = "" if c["recall"] is None else f" recall@10 {c['recall']:.3f} at"
        yield (
            f"  {collection_label(c)}: {c['count']} x {c['dimension']} ({c['space']}), disk "
            f"{c['disk_bytes'] / MIB:.1f} MiB, index ~{c['index_memory_bytes'] / MIB:.1f} MiB"
            f"{latency}; recall target {c['recall_target']:.2f},{recall} ef_search "
            f"{c['ef_search']} ({c['ef_search_source']})"
        )
    for w in stats["warnings"]:
        yield f"WARNING: {printable(w)}"


def collection_label(entry: dict[str, Any]) -> str:
    """A stats entry's name, as `tenant/database/name` outside the default database (or from
    a server too old to report them: the name alone)."""
    tenant = entry.get("tenant", DEFAULT_TENANT)
    database = entry.get("database", DEFAULT_DATABASE)
    if (tenant, database) == (DEFAULT_TENANT, DEFAULT_DATABASE):
        return printable(entry["name"])
    return "/".join(map(printable, (tenant, database, entry["name"])))


def printable(text: str) -> str:
    """A name or message as printed on a line of text: quoted with its control characters
    escaped when it holds any (a tenant named "x\nWARNING: ..." must not print a line of
    its own)."""
    return text if text.isprintable() else repr(text)


def compact_line(report: CompactReport) -> str:
    """The one line `huedb compact` prints."""
    rebuilt = ", ".join(report.rebuilt) or "-"
    return f"reclaimed {report.reclaimed_bytes / MIB:.1f} MiB; rebuilt graph indexes: {rebuilt}"


def export_line(report: ExportReport) -> str:
    """The line `huedb export` prints."""
    return (
        f"exported {report.rows} records of {report.collection} ({report.dimension or '-'}-d, "
        f"{report.space}) to {report.path}: {report.bytes / MIB:.1f} MiB in {report.seconds:.1f} s"
    )


def import_lines(report: ImportReport) -> list[str]:
    """The lines `huedb import` prints (warnings go to the log as they happen)."""
    verb = "created" if report.created else "existing"
    return [
        f"imported {report.rows} records from {report.path} into {verb} collection "
        f"{report.collection} ({report.dimension or '-'}-d, {report.space}) in "
        f"{report.seconds:.1f} s",
        *(f"WARNING: {w}" for w in report.warnings),
    ]


def migrate_lines(report: MigrationReport) -> list[str]:
    """The lines `huedb migrate-chroma` prints: a total, then one line per collection."""
    lines = [
        f"migrated {len(report.collections)} collections, {report.total_records} records, "
        f"from {report.source} into {report.target}"
    ]
    for c in report.collections:
        skipped = f", skipped {c.skipped}" if c.skipped else ""
        deleted = f", deleted {c.deleted} gone from the source" if c.deleted else ""
        label = "/".join(map(printable, (c.tenant, c.database, c.name)))
        lines.append(f"  {label}: {c.records} records{skipped}{deleted}")
        lines.extend(f"  WARNING: {printable(w)}" for w in c.warnings)
    return lines


def eval_json(report: EvalReport) -> dict[str, Any]:
    """The JSON form of `huedb eval`."""
    scores = [s for s in (report.candidate, report.baseline) if s is not None]
    return {
        "k": report.k,
        "scores": {s.collection: {"recall_at_k": s.recall_at_k, "mrr": s.mrr} for s in scores},
        "overlap_at_k": report.overlap_at_k,
        "failures": report.failures,
        "passed": report.passed,
    }
