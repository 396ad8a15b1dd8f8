"""Structured logging: one JSON object per line on stdout."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else was passed with ``extra=`` and belongs in the line.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


class JSONFormatter(logging.Formatter):
    """Render a record as one JSON line: time, level, logger, message, then the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str = "info") -> None:
    """Route the root logger (and uvicorn's) to stdout as JSON; idempotent."""
    # Our lines carry none of the caller's file and line, thread or process: not collecting them takes a
    # third off every log call, one per request with the access log (the logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # yoyo logs every step of every migration at INFO (130 lines on a first start); datasvc.migrations
    # logs one line per migration instead, and yoyo's detail stays for DATASVC_LOG_LEVEL=debug.
    logging.getLogger("yoyo").setLevel("DEBUG" if level.upper() == "DEBUG" else "WARNING")
    # uvicorn's own access log is replaced by ours, which carries the request id and database time.
    logging.getLogger("uvicorn.access").disabled = True
