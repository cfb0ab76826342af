"""Structured logs: one JSON object per line, from the server and from every worker.

The same dictConfig configures the parent process and, through Granian's
``log_dictconfig``, each worker, so every line of ``splitedge serve`` has one shape:
``{"ts", "level", "logger", "pid", "msg"}`` plus ``exc`` when an exception is logged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = ["JsonFormatter", "logging_config"]


class _Line(msgspec.Struct, omit_defaults=True):
    ts: str
    level: str
    logger: str
    pid: int
    msg: str
    exc: str | None = None


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line = _Line(
            ts=datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            level=record.levelname.lower(),
            logger=record.name,
            pid=record.process or 0,
            msg=record.getMessage(),
            exc=self.formatException(record.exc_info) if record.exc_info else None,
        )
        return msgspec.json.encode(line).decode()


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """The dictConfig of the server and its workers."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": level, "propagate": False},
            "granian.access": {"handlers": ["console"], "level": level, "propagate": False},
        },
    }
