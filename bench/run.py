"""Run the benchmark matrix against the reference server and ours, interleaved, and write
bench/results.md, bench/results.json and bench/results.png.

    python bench/run.py            # the full matrix, median of 3 runs (about 15 minutes)
    python bench/run.py --quick    # small loads, one run each: for development (about 2 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))  # bench/ is not a package: ab.py is found by its folder

from ab import free_port, one_round  # noqa: E402


@dataclass(frozen=True)
class Load:
    name: str
    games: int
    spectators: int = 0
    think: float = 0.0
    duration: float = 10.0
    warmup: float = 3.0
    workers: int = 1
    # CPU per move at saturation swings by +-15% from run to run on this shared machine: more runs
    # make its median, and the ratio of the two medians, steadier.
    min_runs: int = 0

    @property
    def pollers(self) -> int:
        return self.games * (2 + self.spectators)

    def label(self) -> str:
        think = f", {self.think:g} s think" if self.think else ", no think time"
        spectators = f" x {2 + self.spectators} pollers" if self.spectators else ", no spectators"
        return f"{self.games:,} games{spectators}{think} ({self.pollers:,} polls)"


FULL = {
    "saturated": Load("saturated", 500, duration=10, warmup=4, min_runs=5),
    "spectators": Load("spectators", 200, spectators=3, think=1.0, duration=15, warmup=4),
    # 18,000 pollers join at 350 a second: faster, and this machine's accept queue overflows.
    "many_polls": Load("many_polls", 4500, spectators=2, think=10.0, duration=15, warmup=70, workers=2),
}
FULL_SWEEP = [Load("sweep_500", 500, spectators=2, think=10.0, duration=10, warmup=8)]
QUICK = {
    "saturated": Load("saturated", 100, duration=4, warmup=2),
    "spectators": Load("spectators", 40, spectators=3, think=1.0, duration=5, warmup=2),
    "many_polls": Load("many_polls", 500, spectators=2, think=2.0, duration=6, warmup=4, workers=2),
}
QUICK_SWEEP = [Load("sweep_100", 100, spectators=2, think=2.0, duration=4, warmup=3)]
# The CPU per move once more, both servers and their load generators at the same time (as
# `ab.py`): run one after the other, the figure swings by +-15 % with the machine; side by side,
# both see the same weather, so the ratio is steady. 300 games each: the two cores are shared.
SIDE_BY_SIDE = Load("side_by_side", 300, duration=12, warmup=4, min_runs=5)  # min_runs: the rounds
QUICK_SIDE_BY_SIDE = Load("side_by_side", 40, duration=3, warmup=1, min_runs=1)


class ServerProcess:
    """One server (ours or the reference) on a free port, in a folder of its own."""

    def __init__(self, kind: str, folder: Path, db: Path | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        if kind == "server":
            db = db or folder / "bench.db"
            args = [sys.executable, str(ROOT / "run.py"), "--port", str(self.port), "--db", str(db)]
            env["TICTACTOE_MAX_POLLS_PER_ADDRESS"] = "0"  # every simulated client shares 127.0.0.1
        else:
            args = [sys.executable, str(BENCH / "reference_server.py"), "--port", str(self.port)]
        self.log_path = folder / f"{kind}.log"
        self.started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.ready_after = self.wait_healthy()

    def wait_healthy(self, limit: float = 60.0) -> float:
        """Seconds from the process's start to its first `/healthz` 200."""
        while time.monotonic() - self.started < limit:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic() - self.started
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"{self.kind} not healthy after {limit} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_load(kind: str, load: Load) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as folder:
        server = ServerProcess(kind, Path(folder))
        try:
            args = [
                sys.executable,
                str(BENCH / "loadgen.py"),
                f"--url={server.url}",
                f"--games={load.games}",
                f"--spectators={load.spectators}",
                f"--think={load.think}",
                f"--duration={load.duration}",
                f"--warmup={load.warmup}",
                f"--workers={load.workers}",
                f"--server-pid={server.process.pid}",
            ]
            done = subprocess.run(args, capture_output=True, text=True, timeout=load.warmup + load.duration + 120)
            if done.returncode != 0:
                raise RuntimeError(f"loadgen failed: {done.stderr[-2000:]}")
            result = json.loads(done.stdout)
        finally:
            server.stop()
    print(f"  {kind:9} {load.name:11} {summary_line(result)}", flush=True)
    return result


def summary_line(r: dict[str, Any]) -> str:
    s = r.get("server", {})
    return (
        f"{r['moves_per_s']:7.1f} moves/s  p50 {r['notify_ms']['p50']} ms  p99 {r['notify_ms']['p99']} ms  "
        f"cpu/move {s.get('cpu_us_per_move')} us  rss {s.get('rss_max_mb')} MB  errors {r['error_count']}  "
        f"polls {r['polls_open']['min']}-{r['polls_open']['max']}  client {r['client_cpu']['cores']} cores"
        + (f"  tx/move {r['sqlite']['write_transactions_per_move']}" if "sqlite" in r else "")
    )


# --- start-up on a long log --------------------------------------------------------------------


def build_log(path: Path, events: int, unfinished: int) -> None:
    """A database of `events` events: finished games of 9 events each, plus `unfinished` games
    in play, written straight through SQL (the store's schema, the rules' own events)."""
    import asyncio
    import hashlib

    from tictactoe import rules
    from tictactoe.events import GameEnded, GameStarted, MovePlayed, PlayerJoined, encode, utc_now
    from tictactoe.service import game_row
    from tictactoe.store import EventStore

    async def create() -> None:
        store = await EventStore.open(path)
        await store.close()

    asyncio.run(create())
    now = utc_now()

    def script(a: str, b: str, finished: bool) -> list[Any]:
        evs: list[Any] = [
            PlayerJoined(1, now, name="ann", actor=a),
            PlayerJoined(2, now, name="bob", actor=b),
            GameStarted(3, now, board="_________", turn="X", player_x="ann", player_o="bob"),
        ]
        board = list("_________")
        for i, (cell, mark, actor) in enumerate([(0, "X", a), (3, "O", b), (1, "X", a), (4, "O", b), (2, "X", a)]):
            board[cell] = mark
            last = finished and i == 4
            turn = None if last else ("O" if mark == "X" else "X")
            evs.append(
                MovePlayed(
                    4 + i,
                    now,
                    board="".join(board),
                    player=mark,
                    position=cell,
                    turn=turn,
                    winner="X" if last else None,
                    actor=actor,
                )
            )
            if not finished and i == 1:
                break
        if finished:
            evs.append(GameEnded(9, now, reason="player X won", result="X"))
        return evs

    finished_games = max(0, (events - unfinished * 5) // 9)
    # One template per kind of game; only the ids and the actors change from game to game.
    templates = {}
    for finished in (True, False):
        evs = script("a", "b", finished)
        templates[finished] = (
            [(e.cursor, e.type, encode(e).decode(), e.actor) for e in evs],
            game_row(rules.replay("t", evs)),
        )
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")  # 256 MB: the actor index is random inserts
    insert_event = "INSERT INTO events (game_id, cursor, type, data, actor, created_at) VALUES (?, ?, ?, ?, ?, ?)"
    insert_game = "INSERT INTO games VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    total = finished_games + unfinished
    for first in range(0, total, 20000):
        event_rows, game_rows = [], []
        for n in range(first, min(total, first + 20000)):
            game_id = f"{n:016x}"
            rows, row = templates[n < finished_games]
            actors = {
                "a": hashlib.sha256(f"a{n}".encode()).hexdigest(),
                "b": hashlib.sha256(f"b{n}".encode()).hexdigest(),
                None: None,
            }
            event_rows.extend((game_id, cursor, kind, data, actors[actor], now) for cursor, kind, data, actor in rows)
            game_rows.append((game_id, *row[1:]))
        db.executemany(insert_event, event_rows)
        db.executemany(insert_game, game_rows)
        db.commit()
    db.close()


def measure_startup(events: int, unfinished: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        db = Path(folder) / "log.db"
        began = time.monotonic()
        build_log(db, events, unfinished)
        built = time.monotonic() - began
        times, restored = [], []
        for _ in range(runs):
            server = ServerProcess("server", Path(folder), db=db)
            times.append(server.ready_after)
            server.stop()
            found = re.findall(r"(\d+) unfinished games restored in ([0-9.]+) s", server.log_path.read_text())
            restored.append(float(found[-1][1]) if found else None)
    result = {
        "events": events,
        "unfinished": unfinished,
        "build_seconds": round(built, 1),
        "healthz_seconds": [round(t, 3) for t in times],
        "healthz_median": round(statistics.median(times), 3),
        "replay_seconds": restored,
    }
    print(f"  start-up on {events:,} events: /healthz 200 after {result['healthz_seconds']} s", flush=True)
    return result


def side_by_side(load: Load) -> list[dict[str, float]]:
    """`load.min_runs` rounds of the reference and our server loaded at the same time; per round,
    each one's CPU µs per move (the side started first alternates)."""
    args = [f"--games={load.games}", f"--duration={load.duration}", f"--warmup={load.warmup}"]
    rounds = []
    for n in range(load.min_runs):
        ours_first = n % 2 == 1
        reference, server = one_round("reference", str(ROOT), args, load.warmup + load.duration + 120, ours_first)
        rounds.append({"reference": cpu_per_move(reference), "server": cpu_per_move(server)})
        print(f"  side by side, round {n + 1}: {rounds[-1]}", flush=True)
    return rounds


# --- the matrix --------------------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]], pick: Callable[[dict[str, Any]], float | None]) -> float | None:
    values = [v for v in (pick(r) for r in runs) if v is not None]
    return statistics.median(values) if values else None


def spread(runs: list[dict[str, Any]], pick: Callable[[dict[str, Any]], float | None]) -> str:
    values = [v for v in (pick(r) for r in runs) if v is not None]
    return f"{min(values):g}-{max(values):g}" if len(values) > 1 else ""


def p99(r: dict[str, Any]) -> float | None:
    return r["notify_ms"]["p99"]


def p50(r: dict[str, Any]) -> float | None:
    return r["notify_ms"]["p50"]


def moves(r: dict[str, Any]) -> float:
    return r["moves_per_s"]


def cpu_per_move(r: dict[str, Any]) -> float | None:
    return r["server"]["cpu_us_per_move"]


def rss(r: dict[str, Any]) -> float:
    return r["server"]["rss_max_mb"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small loads, one run each")
    parser.add_argument(
        "--runs", type=int, help="runs of each load per server (default 3, the saturated load 5; 1 with --quick)"
    )
    parser.add_argument("--out", type=Path, default=BENCH, help="folder for results.md/json/png")
    args = parser.parse_args(argv)
    loads, sweep = (QUICK, QUICK_SWEEP) if args.quick else (FULL, FULL_SWEEP)
    runs = args.runs or (1 if args.quick else 3)
    began = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for load in [*loads.values(), *sweep]:
        print(f"{load.label()}", flush=True)
        results[load.name] = {"reference": [], "server": []}
        for _ in range(1 if load in sweep else max(runs, 1 if args.quick else load.min_runs)):
            for kind in ("reference", "server"):  # interleaved: noise hits both alike
                results[load.name][kind].append(run_load(kind, load))
                (args.out / "results.partial.json").write_text(json.dumps(results))  # if the run is cut short
    together = QUICK_SIDE_BY_SIDE if args.quick else SIDE_BY_SIDE
    print(f"{together.games} games each, no think time, both servers at the same time", flush=True)
    paired = side_by_side(together)
    print("start-up time on a long log", flush=True)
    small, large = (20_000, 100_000) if args.quick else (100_000, 1_000_000)
    # A process start here varies by +-0.15 s (imports): 5 starts each, so that the median compares the logs.
    startup_runs = runs if args.quick else max(runs, 5)
    startup = [measure_startup(n, 200, startup_runs) for n in (small, large)]
    elapsed = time.monotonic() - began
    (args.out / "results.partial.json").unlink(missing_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "loads": {k: v.__dict__ for k, v in {**loads, **{s.name: s for s in sweep}}.items()},
                "results": results,
                "startup": startup,
                "side_by_side": {"load": together.__dict__, "rounds": paired},
                "seconds": elapsed,
            },
            indent=1,
        )
    )
    (args.out / "results.md").write_text(report(loads, results, startup, runs, elapsed, args.quick, (together, paired)))
    plot(loads, sweep, results, args.out / "results.png")
    print((args.out / "results.md").read_text())
    return 0


def report(
    loads: dict[str, Load],
    results: dict[str, dict[str, list[dict[str, Any]]]],
    startup: list[dict[str, Any]],
    runs: int,
    elapsed: float,
    quick: bool,
    paired: tuple[Load, list[dict[str, float]]],
) -> str:
    rows: list[tuple[str, ...]] = []

    def ratio_row(load: Load, figure: str, pick: Callable, unit: str, target: float, higher: bool) -> None:
        ref = median_of(results[load.name]["reference"], pick)
        ours = median_of(results[load.name]["server"], pick)
        ratio = ours / ref if ref and ours is not None else None
        met = ratio is not None and (ratio >= target if higher else ratio <= target)
        word = "at least" if higher else "at most"
        rows.append(
            (
                load.label(),
                figure,
                f"{_g(ref)} {unit}" + _range(results[load.name]["reference"], pick),
                f"{_g(ours)} {unit}" + _range(results[load.name]["server"], pick),
                f"{ratio:.2f}x" if ratio is not None else "-",
                f"{word} {target:g}x",
                "yes" if met else "**no**",
            )
        )

    sat, spe, many = loads["saturated"], loads["spectators"], loads["many_polls"]
    ratio_row(sat, "moves/s", moves, "", 0.8, True)
    ratio_row(sat, "server CPU per move", cpu_per_move, "us", 1.25, False)
    ratio_row(sat, "notify latency p99", p99, "ms", 1.5, False)
    ratio_row(spe, "notify latency p99", p99, "ms", 1.5, False)

    def held(r: dict[str, Any]) -> str:
        return f"{r['error_count']} errors, {r['pollers_alive']['min']:,} pollers, {r['polls_open']['min']:,} open min"

    def holds(r: dict[str, Any]) -> bool:
        return (
            r["error_count"] == 0
            and r["pollers_alive"]["min"] == many.pollers
            and r["polls_open"]["min"] >= 0.98 * many.pollers
        )

    ref_runs, our_runs = results[many.name]["reference"], results[many.name]["server"]
    rows.append(
        (
            many.label(),
            "errors / polls held",
            "; ".join(held(r) for r in ref_runs),
            "; ".join(held(r) for r in our_runs),
            "-",
            f"0 errors, all {many.pollers:,} held",
            "yes" if all(holds(r) for r in our_runs) else "**no**",
        )
    )
    ratio_row(many, "server RSS", rss, "MB", 1.2, False)
    small, large = startup
    grow = large["healthz_median"] / small["healthz_median"]
    rows.append(
        (
            f"a log of {large['events']:,} events, {large['unfinished']} unfinished games",
            "start to /healthz 200",
            "-",
            f"{large['healthz_median']:g} s ({small['events']:,} events: {small['healthz_median']:g} s)",
            f"{grow:.2f}x of the shorter log",
            "under 2 s, not growing (at most 1.25x)",
            "yes" if large["healthz_median"] < 2 and grow <= 1.25 else "**no**",
        )
    )
    info = []
    for load in (sat, spe, many):
        for kind in ("reference", "server"):
            rs = results[load.name][kind]
            tx = median_of(rs, lambda r: r.get("sqlite", {}).get("write_transactions_per_move"))
            figures = [
                median_of(rs, pick)
                for pick in (
                    moves,
                    p50,
                    p99,
                    lambda r: r["notify_ms"]["max"],
                    cpu_per_move,
                    rss,
                    lambda r: r["client_cpu"]["cores"],
                    lambda r: r["server"]["cpu_cores"],
                )
            ]
            info.append(f"| {load.name} | {kind} | " + " | ".join(_g(v) for v in [*figures, tx]) + " |")
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    lines = [
        "# Benchmark results",
        "",
        f"{'QUICK run (small loads, 1 run): not the targets. ' if quick else ''}"
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {loop}; client and servers share the machine. Median of {runs} run(s) per server"
        f" ({len(results[sat.name]['server'])} for the saturated load), interleaved;"
        f" ranges are min-max over the runs. The whole run took {elapsed / 60:.1f} minutes."
        " Written by `python bench/run.py`; raw figures in `results.json`.",
        "",
        "| load | figure | reference | server | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        side_by_side_line(*paired),
        "",
        "## Every figure (medians)",
        "",
        "| load | server | moves/s | notify p50 ms | p99 ms | max ms | server CPU us/move | server RSS MB"
        " | client cores | server cores | SQLite write transactions per move |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *info,
        "",
        f"Start-up: {json.dumps(startup)}",
        "",
        "![latency and moves/s against open polls](results.png)",
        "",
    ]
    return "\n".join(lines)


def side_by_side_line(load: Load, rounds: list[dict[str, float]]) -> str:
    """The side-by-side CPU ratio as a sentence under the table (a check on its steadiness, not a target)."""
    ratios = [r["server"] / r["reference"] for r in rounds if r["server"] and r["reference"]]
    if not ratios:
        return "Side by side: no figures."
    return (
        f"Server CPU per move **side by side** (both servers and their load generators at the same time,"
        f" {load.games} games each, no think time, {len(ratios)} round(s)): {statistics.median(ratios):.2f}x the"
        f" reference's (rounds {min(ratios):.2f}-{max(ratios):.2f}). Run one after the other, as in the table,"
        " this ratio swings with whatever else the machine does; side by side both servers see the same"
        " conditions."
    )


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _range(runs: list[dict[str, Any]], pick: Callable) -> str:
    text = spread(runs, pick)
    return f" ({text})" if text else ""


def plot(loads: dict[str, Load], sweep: list[Load], results: dict[str, Any], path: Path) -> None:
    """Latency and moves/s against the number of open polls (think time, 4 pollers a game)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return
    series = sorted([*sweep, loads["many_polls"]], key=lambda load: load.pollers)
    figure, (latency, rate) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, colour in (("reference", "tab:gray"), ("server", "tab:blue")):
        xs = [load.pollers for load in series]
        runs = [results[load.name][kind] for load in series]
        latency.plot(xs, [median_of(r, p99) for r in runs], "o-", color=colour, label=f"{kind} p99")
        latency.plot(xs, [median_of(r, p50) for r in runs], "o--", color=colour, label=f"{kind} p50", alpha=0.6)
        rate.plot(xs, [median_of(r, moves) for r in runs], "o-", color=colour, label=kind)
    latency.set(xlabel="open long polls", ylabel="notify latency (ms)", title="move sent -> every poller holds it")
    think = series[-1].think
    rate.set(xlabel="open long polls", ylabel="moves/s", title=f"moves per second ({think:g} s think, 4 pollers/game)")
    for axes in (latency, rate):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
