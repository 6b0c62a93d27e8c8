"""The server's log: lines for people (`text`) or one JSON object per line for log shippers (`json`).

A record may carry `extra={"fields": {...}}`: the JSON form puts those fields beside the message,
so a shipper need not parse it.

Access lines (one per request) skip `logging`: `LogHandler.access` formats them (text: the common
log format with the duration after it; JSON: the object the JSON formatter would give, the facts
as fields) and keeps them in memory, to be written in one go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import TextIO

ACCESS_LOGGER = "tictactoe.access"
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Like nginx's `access_log ... buffer=64k flush=200ms`: one write for many lines, none held long.
_FLUSH_SECONDS = 0.2
_FLUSH_SIZE = 64 * 1024
_ARRIVAL_STAMPS_KEPT = 128
_ACCESS_TEXT = '%s - - [%s] "%s %s HTTP/%d.%d" %s %s %.3f'
# The bytes json.dumps(..., ensure_ascii=False) gives for the dictionary of these fields, in this order.
_ACCESS_JSON = (
    '{"time": "%s.%03dZ", "level": "info", "logger": "' + ACCESS_LOGGER + '", "message": %s, "remote": %s, '
    '"method": %s, "path": %s, "status": %d, "bytes": %s, "duration": %r}\n'
)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`."""

    def __init__(self) -> None:
        super().__init__(_TEXT)


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
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class LogHandler(logging.StreamHandler):
    """Records to `stream` as they come; access lines gathered and written in one go at most
    0.2 s later, when 64 KiB wait, before any other record (the lines stay in order) and on
    `flush()` (the server's clean-up; `logging` flushes its handlers at exit)."""

    def __init__(self, stream: TextIO, log_format: str) -> None:
        super().__init__(stream)
        self._json = log_format == "json"
        self.setFormatter(JsonFormatter() if self._json else TextFormatter())
        self._lines: list[str] = []
        self._size = 0
        # Time stamps are to the second (the JSON time's milliseconds apart): each made once. Several
        # are kept: a long poll's line is stamped with its arrival, up to a poll timeout back.
        self._arrival_stamps: dict[int, str] = {}
        self._now, self._now_stamp = -1, ""

    def access(
        self, remote: str | None, method: str, path: str, version: tuple[int, int], status: int, size: int, took: float
    ) -> None:
        """Write an access line: the request (its path without the query), its answer and its duration."""
        if not path.isprintable():  # a decoded %0A must not start a forged line of its own
            path = path.encode("unicode_escape").decode("ascii")
        now = time.time()
        arrived = int(now - took)
        stamp = self._arrival_stamps.get(arrived)
        if stamp is None:
            if len(self._arrival_stamps) >= _ARRIVAL_STAMPS_KEPT:
                self._arrival_stamps.clear()
            stamp = datetime.fromtimestamp(arrived).astimezone().strftime("%d/%b/%Y:%H:%M:%S %z")
            self._arrival_stamps[arrived] = stamp
        message = _ACCESS_TEXT % (remote or "-", stamp, method, path, *version, status, size or "-", took)
        if self._json:
            second = int(now)
            if second != self._now:
                self._now, self._now_stamp = second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            line = _ACCESS_JSON % (
                self._now_stamp,
                (now - second) * 1000,
                encode_basestring(message),
                encode_basestring(remote) if remote else "null",
                encode_basestring(method),
                encode_basestring(path),
                status,
                size or "null",
                round(took, 6),
            )
        else:
            line = message + "\n"
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
            self._size += len(line)
            if self._size > _FLUSH_SIZE:
                self._write_lines()
            elif len(self._lines) == 1:
                self._write_later()

    def _write_later(self) -> None:
        try:
            asyncio.get_running_loop().call_later(_FLUSH_SECONDS, self.flush)
        except RuntimeError:  # no event loop to wait in: at once
            self._write_lines()

    def _write_lines(self) -> None:
        if self._lines:
            lines, self._lines, self._size = self._lines, [], 0
            try:
                self.stream.write("".join(lines))
            except Exception:  # as StreamHandler.emit: the log's trouble never fails a request
                self.handleError(logging.makeLogRecord({"msg": f"{len(lines)} access lines lost"}))

    def emit(self, record: logging.LogRecord) -> None:
        self._write_lines()  # Handler.handle holds the lock
        super().emit(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_lines()
            super().flush()


def configure(level: str, log_format: str, stream: TextIO | None = None) -> LogHandler:
    """Send every logger's records at `level` and above to `stream` (stderr) in `log_format`."""
    handler = LogHandler(stream or sys.stderr, log_format)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def handler_of(logger: logging.Logger) -> LogHandler:
    """The `LogHandler` that `logger`'s records reach (`configure` puts it on the root logger)."""
    current: logging.Logger | None = logger
    while current:
        for handler in current.handlers:
            if isinstance(handler, LogHandler):
                return handler
        current = current.parent if current.propagate else None
    raise RuntimeError(f"no LogHandler for the logger {logger.name}: call logs.configure first")
