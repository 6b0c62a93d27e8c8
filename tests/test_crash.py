"""Crash under load: many games played over the protocol while the real server is killed with
SIGKILL at random moments and restarted on the same database. Nothing acknowledged may be lost.

Every request and its answer (or the lack of one) is recorded. After each restart and at the end:
every move answered with a cursor is in the log at that cursor; every move in the log was asked
for by a request that was answered with its cursor or not answered at all (never one that was
refused); every game verifies; every client id still acts as its player; and each client's long
polls, resumed by cursor across the kills, saw its games' events exactly once and in order.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import CRASH_REPORT
from .processes import Server, tool

GAMES = 20  # games played at once: two clients each
KILLS = 6
POLL_TIMEOUT = "1"
NO_ANSWER = -1  # the status recorded for a request whose connection dropped (the kill)


@dataclass
class Exchange:
    """One request and what came back."""

    client: int
    kind: str  # play, resume, poll, move, or probe (a check that a client id still works)
    path: str
    params: dict[str, str]
    game: str | None = None  # for a move: the game its client was playing
    status: int = NO_ANSWER
    body: Any = None


@dataclass
class Player:
    index: int
    client_id: str = field(default_factory=lambda: secrets.token_hex(16))
    known: bool = False  # the server answered one of its `play` requests
    games: list[str] = field(default_factory=list)
    seen: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # game -> events, as polled
    out_of_order: list[str] = field(default_factory=list)
    resumed: set[str] = field(default_factory=set)  # games the resume checks answered
    joined: asyncio.Event = field(default_factory=asyncio.Event)  # its first game is known

    @property
    def name(self) -> str:
        return f"p{self.index}"


class Load:
    """The clients, the record of every exchange, and the server they talk to."""

    def __init__(self, server: Server, http: aiohttp.ClientSession, rng: random.Random) -> None:
        self.server = server
        self.http = http
        self.rng = rng
        self.players = [Player(i) for i in range(2 * GAMES)]
        self.exchanges: list[Exchange] = []
        self.stopping = False
        self.fresh_plays = 0  # `play` requests without resume under way: each may join a waiting game
        self.running = asyncio.Event()  # cleared while the log is checked: the checks get the machine
        self.running.set()

    @property
    def drained(self) -> bool:
        """Stopping, and no one can join a waiting game any more."""
        return self.stopping and self.fresh_plays == 0

    async def request(
        self, player: Player, kind: str, method: str, path: str, game: str | None = None, **params: str
    ) -> Exchange:
        if kind != "probe":
            await self.running.wait()
        exchange = Exchange(player.index, kind, path, params, game)
        self.exchanges.append(exchange)
        try:
            if method == "GET":
                response = self.http.get(self.server.url + path, params=params)
            else:
                response = self.http.post(self.server.url + path, data=params)
            async with response as answer:
                raw = await answer.read()
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.2)  # the server is down or was killed mid-answer: try again soon
            return exchange
        exchange.status = answer.status
        exchange.body = json.loads(raw) if raw else None  # not JSON would be a bug: let it fail the test
        return exchange

    async def join(self, player: Player) -> str | None:
        """A game for the player: its unfinished one if an unanswered `play` made one, else a new one."""
        resume = False
        while True:
            if resume:
                answer = await self.request(
                    player, "resume", "POST", "/api/play", client_id=player.client_id, resume="true"
                )
            elif self.stopping:
                return None
            else:
                self.fresh_plays += 1
                try:
                    answer = await self.request(
                        player, "play", "POST", "/api/play", client_id=player.client_id, name=player.name
                    )
                finally:
                    self.fresh_plays -= 1
            if answer.status == 200:
                player.known = True
                game = answer.body["game_id"]
                player.joined.set()
                if game not in player.games:
                    player.games.append(game)
                    player.seen[game] = []
                return game
            # After no answer (or a refusal) the play may have happened: ask for the game first.
            resume = answer.status != 409 or answer.body["error"]["code"] != 110

    async def play(self, player: Player) -> None:
        """Join games and play random legal moves (and some refused ones) until told to stop."""
        while (game := await self.join(player)) is not None:
            await self.play_game(player, game)

    async def play_game(self, player: Player, game: str) -> None:
        seen = player.seen[game]
        mark, board, turn, moved_at = None, "_" * 9, None, None
        while True:
            cursor = len(seen)
            answer = await self.request(player, "poll", "GET", f"/api/updates/{game}", cursor=str(cursor))
            if answer.status == 200:
                event = answer.body
                if event["cursor"] != cursor + 1:
                    player.out_of_order.append(f"{game}: asked after {cursor}, got {event['cursor']}")
                seen.append(event)
                if event["type"] == "status":
                    mark = "X" if event["playerX"] == player.name else "O"
                if event["type"] in ("status", "move"):
                    board, turn = event["board"], event.get("turn")
            elif answer.status == 410:
                return  # 113: the game is over and we have its last event
            elif answer.status == 204 and self.drained and turn is None:
                return  # caught up with a game that waits for an opponent no one will bring
            elif answer.status not in (204, NO_ANSWER):
                raise AssertionError(f"poll answered {answer.status} {answer.body}")
            if mark is None or turn != mark or (moved_at == len(seen) and answer.status != 204):
                continue
            # Our turn, and we have not moved at this cursor (or our move got no answer and has
            # not shown up within a poll timeout): move. Sometimes first try a taken cell.
            await asyncio.sleep(self.rng.uniform(0.02, 0.2))  # a player thinks (and the machine breathes)
            taken = [i for i, c in enumerate(board) if c != "_"]
            if taken and self.rng.random() < 0.3:
                refused = await self.move(player, game, self.rng.choice(taken))
                assert refused.status in (409, NO_ANSWER), refused
            await self.move(player, game, self.rng.choice([i for i, c in enumerate(board) if c == "_"]))
            moved_at = len(seen)

    async def move(self, player: Player, game: str, position: int) -> Exchange:
        return await self.request(
            player, "move", "POST", "/api/move", game, client_id=player.client_id, position=str(position)
        )

    def moves(self, status: int | None = None) -> list[Exchange]:
        return [e for e in self.exchanges if e.kind == "move" and (status is None or e.status == status)]


def export_log(folder: Path) -> dict[str, list[dict[str, Any]]]:
    result = tool(folder, "export", "--all", "--db", "games.db")
    assert result.returncode == 0, result.stderr
    games: dict[str, list[dict[str, Any]]] = {}
    for line in result.stdout.splitlines():
        event = json.loads(line)
        games.setdefault(event.pop("game_id"), []).append(event)
    return games


def lost_moves(acknowledged: list[Exchange], log: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Acknowledged moves that are not in the log at the cursor they were answered with."""
    lost = []
    marks = {}
    for exchange in acknowledged:
        game = exchange.game
        events = log.get(game, [])
        cursor = exchange.body["cursor"]
        event = events[cursor - 1] if 0 < cursor <= len(events) else None
        if event is None or event["type"] != "move" or event["position"] != int(exchange.params["position"]):
            lost.append(f"{game} cursor {cursor}: {event}")
            continue
        marks.setdefault((game, event["player"]), set()).add(exchange.client)
    # Each mark of a game is one client's: the answered moves agree on who is who.
    lost += [f"{key} moved by clients {clients}" for key, clients in marks.items() if len(clients) > 1]
    return lost


def unexplained_moves(load: Load, log: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Moves in the log that no answered-with-a-cursor or unanswered request asked for (so a
    refused request, or nothing, put them there)."""
    answered = {(e.game, e.body["cursor"]) for e in load.moves(200)}
    unanswered = {(e.game, int(e.params["position"])) for e in load.moves(NO_ANSWER)}
    problems = []
    for game, events in log.items():
        for event in events:
            if event["type"] != "move" or (game, event["cursor"]) in answered:
                continue
            if (game, event["position"]) not in unanswered:
                problems.append(f"{game} cursor {event['cursor']}: move at {event['position']} nobody got in")
    return problems


async def check_clients(load: Load) -> list[str]:
    """Every client the server ever answered still acts as its player: never 101."""
    problems: list[str] = []

    async def check(player: Player) -> None:
        probe = await load.request(player, "probe", "POST", "/api/move", client_id=player.client_id, position="99")
        if probe.status != 409 or probe.body["error"]["code"] != 103:
            problems.append(f"{player.name}: a move probe answered {probe.status} {probe.body}")
        resumed = await load.request(player, "probe", "POST", "/api/play", client_id=player.client_id, resume="true")
        if resumed.status == 200:
            player.resumed.add(resumed.body["game_id"])  # its game (checked at the end: it may not know it yet)
        elif resumed.status != 409 or resumed.body["error"]["code"] != 110:
            problems.append(f"{player.name}: resume answered {resumed.status} {resumed.body}")

    await asyncio.gather(*(check(player) for player in load.players if player.known))
    return problems


async def check_log(folder: Path, load: Load, when: str) -> dict[str, list[dict[str, Any]]]:
    """`tictactoe verify` passes and every acknowledged move so far is in `tictactoe export`."""
    acknowledged = load.moves(200)  # before the export: requests under way may still be answered
    verified, log = await asyncio.gather(
        asyncio.to_thread(tool, folder, "verify", "--db", "games.db"), asyncio.to_thread(export_log, folder)
    )
    assert verified.returncode == 0, f"{when}: {verified.stdout}{verified.stderr}"
    assert lost_moves(acknowledged, log) == [], when
    return log


@pytest.mark.timeout(240)
async def test_sigkill_under_load_loses_no_acknowledged_move(tmp_path, request):
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    server = Server(tmp_path, "--poll-timeout", POLL_TIMEOUT, "--pending-timeout", "3600").start()
    started = time.monotonic()
    players: list[asyncio.Task[None]] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=float(POLL_TIMEOUT) + 10)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            load = Load(server, http, rng)
            for player in load.players:  # one by one, so that they pair up rather than all open games
                players.append(asyncio.create_task(load.play(player)))
                await player.joined.wait()
            for kill in range(1, KILLS + 1):
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                await asyncio.to_thread(server.signal, signal.SIGKILL)
                await asyncio.to_thread(server.start)
                load.running.clear()  # the clients wait while the log is checked
                await check_log(tmp_path, load, f"after kill {kill} (seed {seed})")
                assert await check_clients(load) == [], f"after kill {kill} (seed {seed})"
                load.running.set()
                for task in players:
                    if task.done():
                        task.result()  # a client that failed: show why
            load.stopping = True
            await asyncio.wait_for(asyncio.gather(*players), 60)
            assert await asyncio.to_thread(server.signal, signal.SIGTERM) == 0
    finally:
        for task in players:
            task.cancel()
        await asyncio.gather(*players, return_exceptions=True)
        server.stop()
        (tmp_path / "exchanges.json").write_text(json.dumps([e.__dict__ for e in load.exchanges]))

    log = await check_log(tmp_path, load, f"at the end (seed {seed})")
    lost = lost_moves(load.moves(200), log)
    assert unexplained_moves(load, log) == [], f"seed {seed}"
    for player in load.players:
        assert player.out_of_order == [], player.name
        assert player.resumed <= set(player.games), player.name
        for game in player.games:
            events = log[game]
            seen = player.seen[game]
            # Exactly once, in order: what the polls collected is the log itself, from cursor 1.
            assert seen == events[: len(seen)], f"{player.name} in {game} (seed {seed})"
            if events[-1]["type"] == "end":
                assert len(seen) == len(events), f"{player.name} stopped before the end of {game}"
    acknowledged = len(load.moves(200))
    line = (
        f"acknowledged moves: {acknowledged}, lost: {len(lost)}; kills survived: {KILLS}; "
        f"refused moves: {len(load.moves(409))}, unanswered moves: {len(load.moves(NO_ANSWER))}; "
        f"games: {len(log)}; requests: {len(load.exchanges)}; {time.monotonic() - started:.1f} s (seed {seed})"
    )
    request.config.stash.setdefault(CRASH_REPORT, []).append(line)
    assert lost == []
    assert acknowledged > 100  # the load really ran
