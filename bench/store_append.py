"""CPU per appended event of the event store alone, under batches like the saturated load's.

    python bench/store_append.py                 # 3 runs, median; about 30 s
    python bench/store_append.py --runs 1 --appends 9000

`--games` games are live at once; each round, `--batch` of them (distinct: a game has one append
in flight at a time) each append their next change together, so that group commit puts the
round in one transaction, as under the saturated load (~90 moves per transaction over 500
games). Games are real games (the rules' own events and read-model rows: two joins, random
moves to the end); a game that ends is replaced by a new one. Everything is decided before the
clock starts: what is measured is `EventStore.append` on a real file with `synchronous=FULL`,
after `--prefill` finished games (the indexes' size matters to what an insert costs).

Prints CPU µs per event: of the threads other than the main one (the aiosqlite threads: the
SQLite work), of the main thread (the event loop: the store's Python side and the benchmark's
own tasks), and of both; as one JSON object with `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tictactoe import rules
from tictactoe.events import Event, utc_now
from tictactoe.service import game_row
from tictactoe.store import EventStore, GameRow

Append = tuple[tuple[Event, ...], GameRow]


class Game:
    """One simulated game: each `step()` is the events of one append and the row after it."""

    def __init__(self, n: int, rng: random.Random, made_at: float | None = None) -> None:
        self.rng = rng
        self.actors = [hashlib.sha256(f"{n}-{seat}".encode()).hexdigest() for seat in (0, 1)]
        # Ids as the server makes them (`new_game_id`): the second the game was made, then 64 random bits.
        made_at = time.time() if made_at is None else made_at
        self.state = rules.GameState(f"{int(made_at):08x}{rng.getrandbits(64):016x}")

    def step(self) -> Append:
        state, now = self.state, utc_now()
        if len(state.seats) < 2:
            seat = len(state.seats)
            command: rules.Command = rules.Join(self.actors[seat], f"p{seat}", now, self.rng.random() < 0.5)
        else:
            mark = state.turn
            assert mark is not None
            name = state.name_of(mark)
            actor = next(seat.actor for seat in state.seats if seat.name == name)
            free = [i for i, cell in enumerate(state.board) if cell == "_"]
            command = rules.Move(actor, self.rng.choice(free), now)  # type: ignore[arg-type]
        events = rules.decide(state, command)
        self.state = rules.evolve_all(state, events)
        return events, game_row(self.state)


def rounds(count: int, games: int, batch: int, rng: random.Random, first: int = 0) -> list[list[Append]]:
    live = [Game(first + n, rng) for n in range(games)]
    made = first + games
    out = []
    for _ in range(count):
        chosen = rng.sample(range(games), batch)
        out.append([live[i].step() for i in chosen])
        for i in chosen:
            if live[i].state.over:
                live[i] = Game(made, rng)
                made += 1
    return out


def whole_games(count: int, rng: random.Random) -> list[tuple[list[Event], GameRow]]:
    out = []
    for n in range(count):
        game, events = Game(10**9 + n, rng, made_at=time.time() - 86400 + n / 100), []  # older games
        while not game.state.over:
            events.extend(game.step()[0])
        out.append((events, game_row(game.state)))
    return out


def _thread_times() -> dict[int, float]:
    """CPU seconds of each live thread of this process, by thread id."""
    return {
        t.ident: time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        for t in threading.enumerate()
        if t.ident is not None
    }


async def one_run(path: Path, args: argparse.Namespace, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    main_ident = threading.get_ident()
    warmup = rounds(args.warmup, args.games, args.batch, rng)
    measured = rounds(args.appends // args.batch, args.games, args.batch, rng, first=10**6)
    prefill = whole_games(args.prefill, rng)
    store = await EventStore.open(path, synchronous=args.synchronous)
    try:
        for start in range(0, len(prefill), 2000):
            await store.insert_games(prefill[start : start + 2000])
        for batch in warmup:
            await asyncio.gather(*(store.append(events, row) for events, row in batch))
        events = sum(len(e) for batch in measured for e, _ in batch)
        appends = sum(len(batch) for batch in measured)
        transactions = store.transactions
        threads = _thread_times()
        wall, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
        for batch in measured:
            await asyncio.gather(*(store.append(events, row) for events, row in batch))
        main = time.thread_time() - main
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        busiest = max(t - threads.get(ident, 0.0) for ident, t in _thread_times().items() if ident != main_ident)
        transactions = store.transactions - transactions
    finally:
        await store.close()
    return {
        "sqlite_threads_us_per_event": (cpu - main) / events * 1e6,
        "writer_thread_us_per_event": busiest / events * 1e6,
        "main_thread_us_per_event": main / events * 1e6,
        "process_us_per_event": cpu / events * 1e6,
        "events_per_append": events / appends,
        "appends_per_transaction": appends / transactions,
        "wall_s": wall,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            runs.append(await one_run(Path(folder) / "bench.db", args, seed=run))
    return {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]} | {"runs": args.runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=500, help="live games (default 500)")
    parser.add_argument("--batch", type=int, default=90, help="appends per round = per transaction (default 90)")
    parser.add_argument("--appends", type=int, default=27000, help="appends measured per run (default 27,000)")
    parser.add_argument("--warmup", type=int, default=50, help="rounds before measuring (default 50)")
    parser.add_argument("--prefill", type=int, default=20000, help="finished games written first (default 20,000)")
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="folder for the database files (default: the temp folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(main_async(args))
    except ImportError:
        result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"CPU per appended event: {result['sqlite_threads_us_per_event']:.1f} µs SQLite thread,"
            f" {result['main_thread_us_per_event']:.1f} µs main thread,"
            f" {result['process_us_per_event']:.1f} µs whole process"
            f" ({result['events_per_append']:.2f} events per append,"
            f" {result['appends_per_transaction']:.0f} appends per transaction,"
            f" median of {result['runs']} runs)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
