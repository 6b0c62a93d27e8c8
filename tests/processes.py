"""The real program started as a process, for tests that kill, stop and restart it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python run.py` (or `command`) on a port and a database file, in a folder of its own; `start`
    again after a kill restarts it on the same port and file."""

    def __init__(
        self,
        folder: Path,
        *extra: str,
        command: Sequence[str] = (sys.executable, str(ROOT / "run.py")),
        db: str = "games.db",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.extra = extra
        self.command = list(command)
        self.db = db
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, env: Mapping[str, str] | None = None) -> Server:
        """Start (or restart) the program; `env`, if given, is its whole environment."""
        args = [*self.command, "--port", str(self.port), "--db", self.db, *self.extra]
        with open(self.folder / "server.log", "ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                args, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, env=self.env if env is None else env
            )
        deadline = time.monotonic() + 60  # a busy machine unpacking a one-file build is slow
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                assert self.process.poll() is None, self.log()
                time.sleep(0.05)
        raise AssertionError("server did not start: " + self.log())

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")

    def signal(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=15)

    def stop(self) -> None:
        """Kill the process if it still runs (test clean-up)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def tool(folder: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run an operator command (`tictactoe verify`, `export`, ...) as a process, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "tictactoe", *args], cwd=folder, capture_output=True, text=True, timeout=timeout
    )


async def call(session: aiohttp.ClientSession, method: str, url: str, **data: str):
    async with session.request(method, url, data=data or None) as response:
        body = await response.json() if response.status != 204 else None
        return response.status, body
