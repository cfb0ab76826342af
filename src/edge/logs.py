"""Structured logs: one JSON object per line, from the server and from every worker.

The same dictConfig configures the parent process and, through Granian's
``log_dictconfig``, each worker, so every line of ``splitedge serve`` has one shape:
``{"ts", "level", "logger", "pid", "msg"}``, the fields a call passed as ``extra=``, and
``exc`` when an exception is logged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = ["LOG_LEVELS", "JsonFormatter", "logging_config"]

LOG_LEVELS = ("debug", "info", "warning", "error")
"""The levels ``--log-level`` takes."""


# What every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON, with the fields passed as ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process or 0,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line, enc_hook=str).decode()


def logging_config(level: str = "info") -> dict[str, Any]:
    """The dictConfig of the server and its workers, their loggers at ``level`` (one of
    `LOG_LEVELS`)."""
    level = level.upper()
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
            # httpx logs every request at INFO; an edge node's puller and relay make one
            # every few seconds.
            "httpx": {"level": "ERROR" if level == "ERROR" else "WARNING"},
        },
    }
