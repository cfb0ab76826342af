from __future__ import annotations

import json
import logging
import sys

from edge.logs import JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("splitedge.test")
    return logger.makeRecord("splitedge.test", logging.WARNING, __file__, 1, "flushed %s", ("seg",),
                             None, extra=extra)  # fmt: skip


def test_a_line_is_json_with_the_extra_fields() -> None:
    line = json.loads(JsonFormatter().format(record(rows=20, segment="seg")))
    assert line["msg"] == "flushed seg" and line["level"] == "warning"
    assert line["logger"] == "splitedge.test" and line["pid"] > 0
    assert line["rows"] == 20 and line["segment"] == "seg"
    assert "args" not in line and "exc" not in line


def test_exceptions_and_odd_values() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        r = record(path=object())
        r.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(r))
    assert "ValueError: boom" in line["exc"]
    assert line["path"].startswith("<object object")
