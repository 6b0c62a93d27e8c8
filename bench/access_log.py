"""µs per access-log line: `app.AccessLogger.log` called in a loop on a fake request, the log
going to a file in /tmp, set up as `tictactoe serve` sets it up (text, then json)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from tictactoe import cli, logs
from tictactoe.app import AccessLogger

REQUEST = SimpleNamespace(remote="127.0.0.1", method="GET", path="/api/updates/9a3e5c07d1b24f68", version=(1, 1))
RESPONSE = SimpleNamespace(status=200, body_length=312)
ROUNDS = 5


async def per_line(log_format: str, lines: int) -> float:
    """µs per line, the best of the rounds; checks that every line reached the file."""
    path = Path(tempfile.mkdtemp(dir="/tmp")) / f"access.{log_format}.log"
    out = path.open("w")  # left open: the log's stream lives as long as the process
    logs.configure("info", log_format, out)
    cli._skip_unused_log_record_fields()
    access = AccessLogger(logging.getLogger("tictactoe.access"), "")
    assert access.enabled
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(lines):
            access.log(REQUEST, RESPONSE, 0.0123)
        best = min(best, time.perf_counter() - started)
        await asyncio.sleep(0.3)  # a buffered writer's timer writes the rest (not timed)
    for handler in logging.getLogger().handlers:
        handler.flush()
    with path.open() as written:
        assert sum(1 for _ in written) == ROUNDS * lines
    path.unlink()
    path.parent.rmdir()
    return best / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000, help="lines per round (5 rounds)")
    args = parser.parse_args()
    for log_format in ("text", "json"):
        print(f"{log_format}: {asyncio.run(per_line(log_format, args.lines)):.2f} µs per line")


if __name__ == "__main__":
    main()
