"""The `huedb` command line: parsing and printing only; the work is done by the library."""

from __future__ import annotations

import logging

from huedb.cli.parser import build_parser

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run one `huedb` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, getattr(args, "log_level", "info").upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: noise for `--url` commands (failures raise anyway).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # psycopg's pool logs every failed connection attempt over several lines; huedb reports
    # an unreachable PostgreSQL itself, in one line (503s, or `cannot start`).
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    if args.command == "run":
        from huedb.cli.serve import serve

        return serve(args)
    from huedb.cli.commands import run_command

    return run_command(args)
