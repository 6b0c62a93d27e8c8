"""A/B two servers under the same machine conditions: both run at the same time, each under its
own load generator, for several rounds; prints CPU µs per move of each and the ratio B/A.

    python bench/ab.py . /path/to/other/checkout            # this checkout against another
    python bench/ab.py . .:TICTACTOE_LOG_LEVEL=warning      # what the access log costs
    python bench/ab.py reference . --rounds 10 --games 300
    python bench/ab.py . /tmp/other --games 200 --spectators 3 --think 1   # the spectators' tail

With `--think`, the servers are not saturated and what matters is the notify latency: each
round also prints both sides' p99, and the end the median of the p99 ratios.

A side is `reference` (bench/reference_server.py) or a checkout's folder (its `run.py` is
started, so its own `tictactoe` package is the one that runs), optionally followed by
`:NAME=VALUE,...` environment settings. Run one after the other, two servers' CPU per move
swings by +-15% with whatever else this shared machine does; run together, both see the same
weather. One checkout against itself, 8 rounds: median 0.979, rounds from 0.93 to 1.10; so
trust a median beyond about 5 %, and run more rounds for less. The side started first
alternates from round to round. Both sides share the two cores, so the absolute figures are
not those of `run.py`: use this to decide whether a change helps, and `run.py` for the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

Server = tuple[str, subprocess.Popen[bytes]]  # its URL and its process


def free_port() -> int:
    """A TCP port free on 127.0.0.1 (also used by run.py)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(side: str, folder: Path) -> Server:
    """Start one side in `folder`; its URL and process once `/healthz` answers."""
    port = free_port()
    env = dict(os.environ)
    if side == "reference":
        args = [sys.executable, str(BENCH / "reference_server.py"), "--port", str(port)]
    else:
        checkout, _, settings = side.partition(":")
        for setting in filter(None, settings.split(",")):
            name, _, value = setting.partition("=")
            env[name] = value
        env.setdefault("TICTACTOE_MAX_POLLS_PER_ADDRESS", "0")  # every simulated client shares 127.0.0.1
        run_py = Path(checkout).resolve() / "run.py"
        args = [sys.executable, str(run_py), "--port", str(port), "--db", str(folder / "ab.db")]
    process = subprocess.Popen(args, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{side} exited with {process.returncode} before answering /healthz")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return url, process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{side} did not answer /healthz within 60 s")


def one_round(a: str, b: str, load: list[str], timeout: float, b_first: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """One round: both sides started and loaded together (`b_first`: B is started first)."""
    order = [1, 0] if b_first else [0, 1]
    with tempfile.TemporaryDirectory(prefix="ab-") as folder_a, tempfile.TemporaryDirectory(prefix="ab-") as folder_b:
        sides = [(a, Path(folder_a)), (b, Path(folder_b))]
        servers: dict[int, Server] = {}
        try:
            for i in order:
                servers[i] = start_server(*sides[i])
            loads = {i: _load(servers[i], load) for i in order}
            outputs = [loads[i].communicate(timeout=timeout)[0] for i in (0, 1)]
        finally:
            for _, process in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    result_a, result_b = (json.loads(output) for output in outputs)
    return result_a, result_b


def _load(server: Server, load: list[str]) -> subprocess.Popen[str]:
    url, process = server
    args = [sys.executable, str(BENCH / "loadgen.py"), f"--url={url}", f"--server-pid={process.pid}", *load]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="`reference` or a checkout's folder, optionally :NAME=VALUE,...")
    parser.add_argument("b", help="the same, for the side compared with `a`")
    parser.add_argument("--rounds", type=int, default=8, help="rounds (default 8)")
    parser.add_argument("--games", type=int, default=300, help="games per side (default 300)")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds measured per round (default 12)")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring (default 4)")
    parser.add_argument("--spectators", type=int, default=0, help="extra pollers per game (default 0)")
    parser.add_argument("--think", type=float, default=0.0, help="mean think time in seconds (default 0)")
    args = parser.parse_args(argv)
    load = [f"--games={args.games}", f"--duration={args.duration}", f"--warmup={args.warmup}"]
    load += [f"--spectators={args.spectators}", f"--think={args.think}"]
    ratios, tails = [], []
    for n in range(1, args.rounds + 1):
        result_a, result_b = one_round(args.a, args.b, load, args.warmup + args.duration + 120, b_first=n % 2 == 0)
        cpu_a, cpu_b = result_a["server"]["cpu_us_per_move"], result_b["server"]["cpu_us_per_move"]
        p99_a, p99_b = result_a["notify_ms"]["p99"], result_b["notify_ms"]["p99"]
        ratios.append(cpu_b / cpu_a)
        tails.append(p99_b / p99_a)
        print(
            f"round {n}: A {cpu_a:6.1f} us/move {result_a['moves_per_s']:7.1f} moves/s p99 {p99_a:6.1f} ms"
            f"   B {cpu_b:6.1f} us/move {result_b['moves_per_s']:7.1f} moves/s p99 {p99_b:6.1f} ms"
            f"   B/A {cpu_b / cpu_a:.3f}, p99 {p99_b / p99_a:.3f}",
            flush=True,
        )
    for name, values in (("CPU per move", ratios), ("notify p99", tails)):
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"{name}, B/A: median {statistics.median(values):.3f} (range {spread}, {len(values)} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
