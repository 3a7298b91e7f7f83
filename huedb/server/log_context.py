"""Log lines in text or JSON, each carrying the trace id of the request that caused it.

The request middleware (`metrics.RequestMetricsMiddleware`) puts the request's
`chroma-trace-id` (or a generated id) in a context variable; the context travels into the
worker threads that run the handlers, so every line a request causes carries it. Request
lines add route, status and duration as `extra` fields. Nothing here reads headers or bodies:
tokens and request bodies never reach a log line.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
from typing import Any

TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("huedb_trace", default=None)
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The fields a request line adds (`logger.info(..., extra=...)`).
REQUEST_FIELDS = ("route", "method", "status", "duration_ms")
ACCESS_LOGGER = "huedb.access"


class TextFormatter(logging.Formatter):
    """Today's text format, with ` [trace <id>]` on lines a request caused."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace = TRACE_ID.get()
        return f"{line} [trace {trace}]" if trace else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id (+ request fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": TRACE_ID.get(),
        }
        for name in REQUEST_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the CLI and for every uvicorn worker."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    name = f"{formatter.__module__}.{formatter.__qualname__}"
    # Request lines are JSON mode's access log; in text mode they show at --log-level debug.
    access = "INFO" if log_format == "json" or level == "debug" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"huedb": {"()": name}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "huedb",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # uvicorn's own loggers go through the root handler, in the same format.
            **{n: {"handlers": [], "propagate": True} for n in ("uvicorn", "uvicorn.error")},
            "uvicorn.access": {"handlers": [], "propagate": False},
            ACCESS_LOGGER: {"level": access},
            # httpx logs every request at INFO: noise for `--url` commands.
            "httpx": {"level": "WARNING"},
            # psycopg's pool logs each failed connection over several lines; huedb reports
            # an unreachable PostgreSQL itself, in one line.
            "psycopg.pool": {"level": "ERROR"},
        },
    }
