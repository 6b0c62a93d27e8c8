"""Shared fixtures: a real app on a real SQLite file, driven over real HTTP."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tictactoe.app import create_app
from tictactoe.config import Config

from .processes import Server

Client = TestClient  # type alias for readability in tests


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(db=str(tmp_path / "games.db"), poll_timeout=2.0, pending_timeout=60.0, turn_timeout=600.0)


@pytest.fixture
async def make_client(aiohttp_client: Any) -> Callable[..., Awaitable[TestClient]]:
    """Start a real server for a config; each call is a new server (same file = a restart)."""

    async def make(config: Config, **changes: Any) -> TestClient:
        return await aiohttp_client(create_app(dataclasses.replace(config, **changes)))

    return make


@pytest.fixture
async def client(make_client: Any, config: Config) -> TestClient:
    return await make_client(config)


async def post(client: TestClient, path: str, expect: int = 200, **params: Any) -> Any:
    """POST form parameters (as the original clients do) and return the JSON body."""
    response = await client.post(path, data={k: str(v) for k, v in params.items()})
    body = await response.json()
    assert response.status == expect, body
    return body


async def poll(client: TestClient, game_id: str, cursor: int = 0, expect: int = 200) -> Any:
    response = await client.get(f"/api/updates/{game_id}", params={"cursor": str(cursor)})
    assert response.status == expect, await response.text()
    return None if expect == 204 else await response.json()


async def timeline(client: TestClient, game_id: str) -> list[dict[str, Any]]:
    """Every event of the game so far, read by the long poll, cursor by cursor."""
    response = await client.get(f"/api/games/{game_id}/events", params={"after": "0"})
    assert response.status == 200
    return await response.json()


@dataclasses.dataclass
class Game:
    game_id: str
    x: str  # client id of the player with X
    o: str
    names: dict[str, str]  # mark -> name

    def player(self, mark: str) -> str:
        return self.x if mark == "X" else self.o


async def start_game(client: TestClient, first: str = "alice", second: str = "bob") -> Game:
    """Two players paired into one started game; returns who plays which mark."""
    a = await post(client, "/api/play", name=first)
    b = await post(client, "/api/play", name=second)
    assert a["game_id"] == b["game_id"]
    status = await poll(client, a["game_id"], 2)
    assert status["type"] == "status"
    by_name = {a["name"]: a["client_id"], b["name"]: b["client_id"]}
    return Game(
        a["game_id"],
        x=by_name[status["playerX"]],
        o=by_name[status["playerO"]],
        names={"X": status["playerX"], "O": status["playerO"]},
    )


async def play_moves(client: TestClient, game: Game, positions: list[int]) -> list[int]:
    """Alternate X and O on `positions`; returns the cursors answered."""
    cursors = []
    for i, position in enumerate(positions):
        body = await post(client, "/api/move", client_id=game.player("XO"[i % 2]), position=position)
        cursors.append(body["cursor"])
    return cursors


HOSTILE_INPUTS_TRIED = pytest.StashKey[int]()  # counted by test_hostile_input, printed at the end


# Lines a test wants in CI's output (pytest captures print): the crash test's figures.
CRASH_REPORT = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    tried = config.stash.get(HOSTILE_INPUTS_TRIED, 0)
    if tried:
        terminalreporter.write_line(
            f"hostile inputs tried: {tried} (every refusal its protocol error, the log unchanged)"
        )
    lines = config.stash.get(CRASH_REPORT, [])
    if lines:
        terminalreporter.section("crash under load")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    """Make real server processes (in `tmp_path` unless told); any left running are killed."""
    servers: list[Server] = []

    def make(*extra: str, folder: Path | None = None, **options: Any) -> Server:
        servers.append(Server(folder or tmp_path, *extra, **options))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()
