"""Load generator for the long-poll TicTacToe protocol (public endpoints only).

    python bench/loadgen.py --url http://127.0.0.1:8080 --games 500 --duration 20 [--server-pid PID]

Each simulated game is two players who join with POST /api/play and keep a long poll open in a
cursor loop (GET /api/updates/{game}?cursor=N). The player whose turn it is moves (a random free
cell) as soon as it sees its turn, after an optional think time; when a game ends, its players
join again. Optional spectators poll a game without playing. Prints one JSON object.

Notify latency is measured from just before a move is sent to the moment each poller of the
game holds that move's event (every poller, the mover included). Clocks are comparable across
worker processes: CLOCK_MONOTONIC is one clock for the whole machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

SAMPLE_INTERVAL = 0.5
RAMP_RATE = 350


@dataclass
class Plan:
    url: str
    games: int  # games of this worker
    spectators: int
    think: float
    start: float  # monotonic time at which the players begin
    ramp: float  # seconds over which the players join
    measure_from: float
    measure_to: float
    worker: int


@dataclass
class WorkerResult:
    moves: int = 0  # move answers received in the window
    games_finished: int = 0
    poll_timeouts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    sent: dict[tuple[str, int], float] = field(default_factory=dict)  # (game, cursor) -> when sent
    received: list[tuple[str, int, float]] = field(default_factory=list)  # (game, cursor, when held)
    polls_in_flight: list[int] = field(default_factory=list)  # one per sample tick in the window
    pollers_alive: list[int] = field(default_factory=list)
    cpu_seconds: float = 0.0


class GameOverSignal(Exception):
    """The poller's game is over (its end event, or 113)."""


class Worker:
    def __init__(self, plan: Plan, session: aiohttp.ClientSession) -> None:
        self.plan = plan
        self.session = session
        self.result = WorkerResult()
        self.in_flight = 0
        self.alive = 0
        self.rng = random.Random(os.getpid())
        self.updates_url = f"{plan.url}/api/updates/"

    def measuring(self, now: float) -> bool:
        return self.plan.measure_from <= now < self.plan.measure_to

    def error(self, kind: str) -> None:
        if time.monotonic() >= self.plan.start + self.plan.ramp:  # ramp-up hiccups are reported apart
            self.result.errors[kind] += 1
        else:
            self.result.errors[f"ramp:{kind}"] += 1

    async def post(self, path: str, data: dict[str, str]) -> dict[str, Any] | None:
        try:
            async with self.session.post(self.plan.url + path, data=data) as response:
                body = await response.read()
                if response.status != 200:
                    self.error(f"{path} {response.status} {_code(body)}")
                    return None
                return json.loads(body)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            self.error(f"{path} {_why(err)}")
            return None

    async def poll(self, game_id: str, cursor: int) -> dict[str, Any] | None:
        """The event after `cursor`; None on 204 (poll again); GameOverSignal at 113."""
        self.in_flight += 1
        try:
            async with self.session.get(f"{self.updates_url}{game_id}?cursor={cursor}") as response:
                body = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            self.error(f"poll {_why(err)}")
            await asyncio.sleep(0.5)
            return None
        finally:
            self.in_flight -= 1
        if status == 200:
            event = json.loads(body)
            if event["type"] == "move":
                self.result.received.append((game_id, event["cursor"], time.monotonic()))
            return event
        if status == 204:
            self.result.poll_timeouts += 1
            return None
        if status == 410:
            raise GameOverSignal
        self.error(f"poll {status} {_code(body)}")
        await asyncio.sleep(0.5)
        return None

    async def player(self, index: int, spectate: list[asyncio.Queue[str]]) -> None:
        await asyncio.sleep(self.plan.start + self.plan.ramp * index / max(1, 2 * self.plan.games) - time.monotonic())
        self.alive += 1
        try:
            while True:
                joined = await self.post("/api/play", {})
                if joined is None:
                    await asyncio.sleep(0.5)
                    continue
                for queue in spectate:
                    queue.put_nowait(joined["game_id"])
                await self.play_game(joined["client_id"], joined["name"], joined["game_id"])
        finally:
            self.alive -= 1

    async def play_game(self, client_id: str, name: str, game_id: str) -> None:
        cursor, mark, moving = 0, None, None
        sending: set[asyncio.Future[None]] = set()  # moves whose request is out: they finish
        try:
            while True:
                event = await self.poll(game_id, cursor)
                if event is None:
                    continue
                cursor = event["cursor"]
                kind = event["type"]
                if kind == "status":
                    mark = "X" if event["playerX"] == name else "O"
                if kind == "end" or event.get("winner"):
                    self.result.games_finished += 1
                    return
                if mark is not None and event.get("turn") == mark and "board" in event:
                    moving = asyncio.ensure_future(self.move(client_id, game_id, cursor, event["board"], sending))
        except GameOverSignal:
            return
        finally:
            # A move still thinking is dropped; one sent is left to its answer: a server may wake
            # the pollers with the winning move before it answers the move itself.
            if moving is not None and not moving.done() and moving not in sending:
                moving.cancel()

    async def move(
        self, client_id: str, game_id: str, cursor: int, board: str, sending: set[asyncio.Future[None]]
    ) -> None:
        if self.plan.think:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.plan.think)
        position = self.rng.choice([i for i, cell in enumerate(board) if cell == "_"])
        this = asyncio.current_task()
        assert this is not None
        sending.add(this)
        sent = time.monotonic()
        self.result.sent[(game_id, cursor + 1)] = sent
        answer = await self.post("/api/move", {"client_id": client_id, "position": str(position)})
        if answer is not None and self.measuring(time.monotonic()):
            self.result.moves += 1

    async def spectator(self, games: asyncio.Queue[str]) -> None:
        self.alive += 1
        try:
            game_id = await games.get()
            while True:
                while not games.empty():  # the host moved on: follow it
                    game_id = games.get_nowait()
                await self.watch(game_id, games)
                game_id = await games.get()
        finally:
            self.alive -= 1

    async def watch(self, game_id: str, games: asyncio.Queue[str]) -> None:
        cursor = 0
        with contextlib.suppress(GameOverSignal):
            while games.empty():
                event = await self.poll(game_id, cursor)
                if event is None:
                    continue
                cursor = event["cursor"]
                if event["type"] == "end":
                    return

    async def sample(self) -> None:
        tick = self.plan.measure_from
        while tick < self.plan.measure_to:
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            self.result.polls_in_flight.append(self.in_flight)
            self.result.pollers_alive.append(self.alive)
            tick += SAMPLE_INTERVAL

    async def run(self) -> WorkerResult:
        tasks = []
        for game in range(self.plan.games):
            queues: list[asyncio.Queue[str]] = [asyncio.Queue() for _ in range(self.plan.spectators)]
            tasks.append(asyncio.ensure_future(self.player(2 * game, queues)))
            tasks.append(asyncio.ensure_future(self.player(2 * game + 1, [])))
            tasks.extend(asyncio.ensure_future(self.spectator(q)) for q in queues)
        sampler = asyncio.ensure_future(self.sample())
        gc.collect()
        gc.freeze()  # everything built so far lives for the whole run: never scan it again
        await asyncio.sleep(max(0.0, self.plan.measure_from - time.monotonic()))
        cpu_start = _own_cpu()
        await asyncio.sleep(max(0.0, self.plan.measure_to - time.monotonic()))
        self.result.cpu_seconds = _own_cpu() - cpu_start
        await sampler
        return self.result


def _why(err: BaseException) -> str:
    errno = getattr(err, "errno", None) or getattr(getattr(err, "os_error", None), "errno", None)
    return f"{type(err).__name__}" + (f" errno {errno}" if errno else "")


def _code(body: bytes) -> str:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(json.loads(body)["error"]["code"])
    return "-"


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _worker_main(plan: Plan, pipe: Any) -> None:
    # Each worker connects from an address of its own (127.0.0.2, .3, ...): one source address
    # has only ~28,000 ephemeral ports towards the server, too few with TIME_WAIT around.
    local = (f"127.0.0.{2 + plan.worker}", 0) if plan.url.startswith("http://127.0.0.1:") else None
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, local_addr=local)
    timeout = aiohttp.ClientTimeout(total=None, connect=60, sock_read=120)
    session = aiohttp.ClientSession(connector=connector, timeout=timeout, skip_auto_headers=["User-Agent"])
    pipe.send(await Worker(plan, session).run())
    pipe.close()
    # Thousands of requests may still be stuck in connect: closing them one by one can take
    # minutes on a loaded machine, and the operating system closes every socket at once.
    os._exit(0)


def _run_worker(plan: Plan, pipe: Any) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Thousands of long-lived connection objects: collect young objects rarely, never the old.
    gc.set_threshold(100_000, 50, 1000)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    pipe.send("ready")  # imports done: the clock may start (a loaded machine takes seconds to get here)
    plan.start, plan.measure_from, plan.measure_to = pipe.recv()
    runner(_worker_main(plan, pipe))


# --- the server, seen from outside -----------------------------------------------------------


def _proc_cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)


def _proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _sqlite_transactions(url: str) -> float | None:
    """The server's committed write transactions from /metrics, if it has that page."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("tictactoe_sqlite_write_transactions"):
                    return float(line.split()[-1])
    except OSError:
        return None
    return None


def _percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def run(args: argparse.Namespace) -> dict[str, Any]:
    workers = max(1, min(args.workers, args.games))
    # Pollers join at about RAMP_RATE a second: faster, and a loaded server's accept queue
    # overflows and dropped connections wait seconds to retry (make the warm-up long enough).
    ramp = min(args.warmup * 0.75, max(0.5, args.games * (2 + args.spectators) / RAMP_RATE))
    context = multiprocessing.get_context("spawn")
    processes, pipes = [], []
    for index in range(workers):
        games = args.games // workers + (1 if index < args.games % workers else 0)
        plan = Plan(args.url, games, args.spectators, args.think, 0.0, ramp, 0.0, 0.0, index)
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_run_worker, args=(plan, child_end), daemon=True)
        process.start()
        processes.append(process)
        pipes.append(parent_end)
    for pipe in pipes:
        pipe.recv()  # "ready"
    start = time.monotonic() + 0.2
    measure_from = start + args.warmup
    measure_to = measure_from + args.duration
    for pipe in pipes:
        pipe.send((start, measure_from, measure_to))
    server: dict[str, Any] = {}
    pid = args.server_pid
    time.sleep(max(0.0, measure_from - time.monotonic()))
    ticks0 = _proc_cpu_ticks(pid) if pid else 0
    transactions0 = _sqlite_transactions(args.url)
    rss_max = fds_max = 0
    while time.monotonic() < measure_to:
        if pid:
            rss_max = max(rss_max, _proc_status_kb(pid, "VmRSS"))
            fds_max = max(fds_max, len(os.listdir(f"/proc/{pid}/fd")))
        time.sleep(min(SAMPLE_INTERVAL, max(0.0, measure_to - time.monotonic())))
    if pid:
        server["cpu_seconds"] = (_proc_cpu_ticks(pid) - ticks0) / os.sysconf("SC_CLK_TCK")
        server["rss_max_mb"] = round(max(rss_max, _proc_status_kb(pid, "VmRSS")) / 1024, 1)
        server["rss_peak_mb"] = round(_proc_status_kb(pid, "VmHWM") / 1024, 1)
        server["open_files_max"] = fds_max
    transactions1 = _sqlite_transactions(args.url)
    results: list[WorkerResult] = [pipe.recv() for pipe in pipes]
    for process in processes:
        process.join(timeout=30)
    return summarise(args, results, server, transactions0, transactions1, measure_from, measure_to)


def summarise(
    args: argparse.Namespace,
    results: list[WorkerResult],
    server: dict[str, Any],
    transactions0: float | None,
    transactions1: float | None,
    measure_from: float,
    measure_to: float,
) -> dict[str, Any]:
    sent: dict[tuple[str, int], float] = {}
    for r in results:
        sent.update(r.sent)
    latencies = sorted(
        held - sent[(game, cursor)]
        for r in results
        for game, cursor, held in r.received
        if (game, cursor) in sent and measure_from <= sent[(game, cursor)] < measure_to
    )
    moves = sum(r.moves for r in results)
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r.errors)
    ticks = min(len(r.polls_in_flight) for r in results)
    in_flight = [sum(r.polls_in_flight[i] for r in results) for i in range(ticks)]
    alive = [sum(r.pollers_alive[i] for r in results) for i in range(ticks)]
    seconds = measure_to - measure_from
    ms = [None if v is None else round(v * 1000, 3) for v in (_percentile(latencies, p) for p in (50, 95, 99, 100))]
    out: dict[str, Any] = {
        "url": args.url,
        "games": args.games,
        "spectators": args.spectators,
        "think": args.think,
        "workers": len(results),
        "duration": seconds,
        "moves": moves,
        "moves_per_s": round(moves / seconds, 1),
        "games_finished": sum(r.games_finished for r in results),
        "notify_ms": {"p50": ms[0], "p95": ms[1], "p99": ms[2], "max": ms[3], "samples": len(latencies)},
        "errors": dict(errors),
        "error_count": sum(n for kind, n in errors.items() if not kind.startswith("ramp:")),
        "poll_timeouts": sum(r.poll_timeouts for r in results),
        "pollers": 2 * args.games + args.games * args.spectators,
        "polls_open": {"min": min(in_flight, default=0), "max": max(in_flight, default=0)},
        "pollers_alive": {"min": min(alive, default=0), "max": max(alive, default=0)},
        "client_cpu": {
            "seconds": round(sum(r.cpu_seconds for r in results), 2),
            "cores": round(sum(r.cpu_seconds for r in results) / seconds, 2),
        },
    }
    if server:
        server["cpu_us_per_move"] = round(server["cpu_seconds"] * 1e6 / moves, 1) if moves else None
        server["cpu_cores"] = round(server["cpu_seconds"] / seconds, 2)
        out["server"] = server
    if transactions0 is not None and transactions1 is not None:
        committed = transactions1 - transactions0
        out["sqlite"] = {
            "write_transactions": committed,
            "write_transactions_per_move": round(committed / moves, 3) if moves else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load generator for the long-poll TicTacToe protocol.")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--games", type=int, default=100, help="simultaneous games (two players each)")
    parser.add_argument("--spectators", type=int, default=0, help="extra pollers per game")
    parser.add_argument("--think", type=float, default=0.0, help="mean seconds a player thinks before moving")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (players join)")
    parser.add_argument("--workers", type=int, default=1, help="client processes (each holds < 20,000 sockets)")
    parser.add_argument("--server-pid", type=int, help="read the server's CPU and memory from /proc")
    args = parser.parse_args(argv)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
