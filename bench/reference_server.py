"""The framework's ceiling: the smallest honest aiohttp server that speaks the same protocol
(play, move, the long poll) entirely in memory. No database, no log, no metrics.

    python bench/reference_server.py --port 8081 [--event-loop auto|uvloop|asyncio]

It gets the same treatment as the real server (uvloop if present, GC tuned and frozen after
start-up, handler cancellation), so that a ratio to it measures our code, not our settings.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import resource
import secrets
from collections import deque
from datetime import UTC, datetime

from aiohttp import web

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
POLL_TIMEOUT = 30.0
FINISHED_KEPT = 2048


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class Game:
    __slots__ = ("board", "events", "future", "game_id", "marks", "names", "over", "turn")

    def __init__(self, game_id: str) -> None:
        self.game_id = game_id
        self.events: list[bytes] = []  # each event encoded once, sent to every waiter
        self.future: asyncio.Future[None] | None = None
        self.board = ["_"] * 9
        self.marks: dict[str, str] = {}  # client id -> "X" / "O"
        self.names: list[str] = []
        self.turn = "X"
        self.over = False

    def add(self, **event: object) -> int:
        cursor = len(self.events) + 1
        public = {"type": event.pop("type"), "cursor": cursor, "timestamp": now(), **event}
        self.events.append(json.dumps(public).encode())
        if self.future is not None:
            self.future.set_result(None)
            self.future = None
        return cursor


class Server:
    def __init__(self) -> None:
        self.games: dict[str, Game] = {}
        self.client_game: dict[str, Game] = {}
        self.waiting: deque[Game] = deque()
        self.finished: deque[str] = deque()

    async def play(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id = str(form.get("client_id") or secrets.token_hex(16))
        name = str(form.get("name") or f"Guest{secrets.randbelow(10**6)}")
        while self.waiting and self.waiting[0].over:
            self.waiting.popleft()
        if self.waiting:
            game = self.waiting.popleft()
            game.names.append(name)
            game.add(type="connect", name=name, player=True)
            first = next(iter(game.marks))
            x, o = (first, client_id) if random.random() < 0.5 else (client_id, first)
            game.marks = {x: "X", o: "O"}
            names = dict(zip((first, client_id), game.names, strict=True))
            game.add(type="status", board="_" * 9, turn="X", playerX=names[x], playerO=names[o])
        else:
            game = Game(secrets.token_hex(8))
            self.games[game.game_id] = game
            game.marks[client_id] = "?"
            game.names.append(name)
            game.add(type="connect", name=name, player=True)
            self.waiting.append(game)
        self.client_game[client_id] = game
        return web.json_response({"client_id": client_id, "name": name, "game_id": game.game_id})

    async def move(self, request: web.Request) -> web.Response:
        form = await request.post()
        game = self.client_game.get(str(form.get("client_id", "")))
        if game is None:
            return error(401, 101, "unknown client id")
        position = str(form.get("position", ""))
        if not (position.isascii() and position.isdigit()):
            return error(400, 100, "position must be an integer from 0 to 8")
        cell = int(position)
        mark = game.marks.get(str(form["client_id"]))
        if game.over or len(game.marks) < 2 or mark != game.turn:
            return error(409, 103, "not your turn")
        if cell > 8 or game.board[cell] != "_":
            return error(409, 103, f"cell {cell} is taken")
        game.board[cell] = mark
        board = "".join(game.board)
        won = any(all(game.board[i] == mark for i in line) for line in LINES)
        outcome = mark if won else ("D" if "_" not in board else None)
        if outcome is None:
            game.turn = "O" if mark == "X" else "X"
            cursor = game.add(type="move", board=board, player=mark, position=cell, turn=game.turn)
        else:
            cursor = game.add(type="move", board=board, player=mark, position=cell, winner=outcome)
            game.over = True
            game.add(type="end", reason="draw" if outcome == "D" else f"player {outcome} won", result=outcome)
            for client in game.marks:
                self.client_game.pop(client, None)
            self.finished.append(game.game_id)  # a finished game stays readable a while, as in the server
            if len(self.finished) > FINISHED_KEPT:
                self.games.pop(self.finished.popleft(), None)
        return web.json_response({"cursor": cursor})

    async def updates(self, request: web.Request) -> web.Response:
        game = self.games.get(request.match_info["game_id"])
        text = request.query.get("cursor", "0")
        if not (text.isascii() and text.isdigit()):
            return error(400, 100, "cursor must be a non-negative integer")
        cursor = int(text)
        if game is None:
            return error(404, 102, "unknown game id")
        if cursor > len(game.events):
            return error(400, 112, "cursor is ahead of the game's last event")
        if cursor == len(game.events):
            if game.over:
                return error(410, 113, "the game is over and you have its last event")
            if game.future is None:
                game.future = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(POLL_TIMEOUT):
                    await asyncio.shield(game.future)
            except TimeoutError:
                return web.Response(status=204)
        return web.Response(
            body=game.events[cursor], content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


async def _freeze_gc(app: web.Application) -> None:
    gc.collect()
    gc.freeze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gc.set_threshold(50_000, 20, 100)
    server = Server()
    app = web.Application()
    app.add_routes(
        [
            web.post("/api/play", server.play),
            web.post("/api/move", server.move),
            web.get("/api/updates/{game_id}", server.updates),
            web.get("/healthz", server.healthz),
        ]
    )
    app.on_startup.append(_freeze_gc)
    loop_factory = None
    if args.event_loop != "asyncio":
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            if args.event_loop == "uvloop":
                raise SystemExit("uvloop is not installed") from None
    loop = loop_factory() if loop_factory else asyncio.new_event_loop()
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        handler_cancellation=True,
        access_log=None,
        print=None,
        loop=loop,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
