"""The `huedb` command line: parsing and printing only; the work is done by the library."""

from __future__ import annotations

import logging.config

from huedb.cli.parser import build_parser
from huedb.server.log_context import logging_config

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run one `huedb` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", "info")
    logging.config.dictConfig(logging_config(getattr(args, "log_format", None) or "text", level))
    if args.command == "run":
        from huedb.cli.serve import serve

        return serve(args)
    from huedb.cli.commands import run_command

    return run_command(args)
