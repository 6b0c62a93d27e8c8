"""schemathesis against the real program: whatever it sends, no 5xx, and every answer (status,
content type, headers, body) is what tictactoe/openapi.json describes."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .processes import Server

ROOT = Path(__file__).resolve().parent.parent
schema = schemathesis.openapi.from_path(ROOT / "tictactoe" / "openapi.json")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class Live:
    url: str
    unfinished_games: list[str]  # a waiting and a playing game: long polls on them wait
    finished_game: str  # streams on it end by themselves
    client_ids: list[str]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The real program with short polls, and a few real games and clients for cases to hit."""
    folder = tmp_path_factory.mktemp("schemathesis")
    (folder / "config.toml").write_text("poll_timeout = 0.3\n")
    server = Server(folder).start()
    try:
        url = server.url
        players = [requests.post(f"{url}/api/play", data={"name": n}, timeout=10).json() for n in ("ann", "ben")]
        waiting = requests.post(f"{url}/api/play", data={"name": "cat"}, timeout=10).json()
        left = [requests.post(f"{url}/api/play", data={"name": n}, timeout=10).json() for n in ("dan", "eve")]
        requests.post(f"{url}/api/quit", data={"client_id": left[0]["client_id"]}, timeout=10).raise_for_status()
        ids = [p["client_id"] for p in (*players, waiting, *left)]
        yield Live(url, [players[0]["game_id"], waiting["game_id"]], left[0]["game_id"], ids)
    finally:
        assert server.process is not None
        server.process.terminate()
        server.process.wait(timeout=15)
    assert "Traceback" not in server.log(), server.log()


def _pick(value: object, choices: list[str]) -> str | None:
    """Deterministically, for about two cases in three, a real id instead of a generated one."""
    slot = zlib.crc32(repr(value).encode()) % (len(choices) + 1)
    return choices[slot] if slot < len(choices) else None


def aim_at_real_games(case, live: Live) -> None:
    """Random ids only ever find nothing: point many cases at real games and real clients."""
    path = case.path_parameters or {}
    if "game_id" in path:
        # A stream on an unfinished game stays open until the game ends: only the finished one.
        games = [live.finished_game] if case.path.endswith("/stream") else [*live.unfinished_games, live.finished_game]
        path["game_id"] = _pick(path["game_id"], games) or path["game_id"]
    if isinstance(case.body, dict) and "client_id" in case.body:
        case.body["client_id"] = _pick(case.body["client_id"], live.client_ids) or case.body["client_id"]
    if isinstance(case.body, dict) and isinstance(case.body.get("game_id"), str):
        case.body["game_id"] = _pick(case.body["game_id"], live.unfinished_games) or case.body["game_id"]


@pytest.mark.timeout(300)
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_live_server_answers_every_generated_request_as_described(case, live):
    aim_at_real_games(case, live)
    case.call_and_validate(base_url=live.url, checks=CHECKS, timeout=15)
