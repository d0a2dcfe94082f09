"""Structured logs: one JSON object per line, the same fields from every process of ours.

The bridge and the SFU log through it when their config says `log_format: json`; Synapse does
when log.config names `JsonLineFormatter` (what `sferumctl init` writes by default), so the
module's lines within Synapse come out the same way, with Synapse's request context on them.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Mapping
from typing import Any

from sferum_shared.config import ConfigError

LOG_FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record is context (Synapse's `request` and
# `server_name`, or `extra=` of a logging call) and goes into the line as it is. A plain
# LogRecord, not makeLogRecord: in Synapse that goes through its factory, which adds context.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


def log_event(record: logging.LogRecord, exception: str | None = None) -> dict[str, Any]:
    """The fields of one line: time (UTC, ISO 8601), level, logger, message, then context."""
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    event: dict[str, Any] = {
        "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in event:
            event[key] = value
    if exception:
        event["exception"] = exception
    return event


class JsonLineFormatter(logging.Formatter):
    """`log_event` as one line of JSON; a traceback stays inside the line (`exception`)."""

    def format(self, record: logging.LogRecord) -> str:
        exception = self.formatException(record.exc_info) if record.exc_info else None
        if record.stack_info:
            exception = "\n".join(filter(None, (exception, self.formatStack(record.stack_info))))
        return json.dumps(log_event(record, exception), ensure_ascii=False, default=str)


def parse_log_format(raw: Mapping[str, Any], default: str = "text") -> str:
    value = raw.get("log_format", default)
    if value not in LOG_FORMATS:
        raise ConfigError("log_format", f"must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
    return str(value)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Logs of the whole process to stderr (which `sferumctl start` keeps in logs/NAME.out)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLineFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])
