"""The server's log: lines for people (`text`) or one JSON object per line for log shippers (`json`).

A record may carry `extra={"fields": {...}}`: the JSON form puts those fields beside the message,
so a shipper need not parse it. Access lines set `access=True` instead: as text they are the whole
line (the common log format with the duration after it), not prefixed by time and level, and as
JSON their arguments become the fields (so the hot path builds no dictionary per request).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`; access lines as they are."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "access", False):
            return record.getMessage()
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **(_access_fields(record) if getattr(record, "access", False) else getattr(record, "fields", {})),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _access_fields(record: logging.LogRecord) -> dict[str, object]:
    """The facts of an access line (app.AccessLogger's arguments), as fields."""
    remote, _, method, path, _, _, status, size, duration = record.args  # type: ignore[misc]
    return {
        "remote": None if remote == "-" else remote,
        "method": method,
        "path": path,
        "status": status,
        "bytes": None if size == "-" else size,
        "duration": round(duration, 6),
    }


def configure(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send every logger's records at `level` and above to `stream` (stderr) in `log_format`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
