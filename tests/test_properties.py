"""Property tests: for any sequence of commands, the rules accept only legal moves, and the
stored log replays to exactly the live state."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import tempfile
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tictactoe import audit, rules
from tictactoe.app import create_app
from tictactoe.config import Config
from tictactoe.events import GameEnded, MovePlayed, decode, encode, to_public
from tictactoe.keys import SERVICE, STORE
from tictactoe.rules import GameError, GameState, decide, evolve_all, replay
from tictactoe.service import actor_of

T = "2026-01-01T00:00:00.000Z"
ACTORS = ("a", "b", "c")

commands = st.one_of(
    st.builds(rules.Join, st.sampled_from(ACTORS), st.sampled_from(["ann", "bea", "cid"]), st.just(T), st.booleans()),
    st.builds(rules.Move, st.sampled_from(ACTORS), st.integers(-1, 9), st.just(T)),
    st.builds(rules.Chat, st.sampled_from(ACTORS), st.just("hi"), st.just(T)),
    st.builds(rules.Quit, st.sampled_from(ACTORS), st.just(T)),
    st.builds(rules.Abandon, st.just(T)),
    st.builds(rules.TimeOut, st.sampled_from(["X", "O"]), st.just(T), st.just(T)),
)


def independent_winner(board: str) -> str | None:
    """A second, deliberately naive implementation to check the rules against."""
    rows = [board[i : i + 3] for i in (0, 3, 6)]
    cols = [board[i::3] for i in range(3)]
    diagonals = [board[0] + board[4] + board[8], board[2] + board[4] + board[6]]
    for line in rows + cols + diagonals:
        if line in ("XXX", "OOO"):
            return line[0]
    return "D" if "_" not in board else None


@settings(max_examples=400, deadline=None)
@given(st.lists(commands, max_size=40))
def test_the_rules_accept_only_legal_moves_and_replay_gives_the_live_state(sequence):
    live = GameState("g")
    log = []
    for command in sequence:
        try:
            events = decide(live, command)
        except GameError:
            continue
        before = live
        live = evolve_all(live, events)
        log.extend(events)
        for event in events:
            if isinstance(event, MovePlayed):
                seat = before.seat_of(command.actor)
                assert before.phase == "playing" and seat is not None
                assert before.mark_of(seat.name) == before.turn == event.player
                assert 0 <= event.position <= 8 and before.board[event.position] == "_"
                changed = [i for i in range(9) if before.board[i] != event.board[i]]
                assert changed == [event.position] and event.board[event.position] == event.player
                assert event.winner == independent_winner(event.board)
        assert live.board.count("X") - live.board.count("O") in (0, 1)
    assert [e.cursor for e in log] == list(range(1, len(log) + 1))
    ends = [i for i, e in enumerate(log) if isinstance(e, GameEnded)]
    assert ends in ([], [len(log) - 1])
    assert replay("g", log) == live
    assert audit.verify_game("g", log) is None  # whatever the rules make, verify accepts


# --- the same invariant end to end: HTTP in, SQLite log out -------------------------------

steps = st.lists(
    st.tuples(
        st.sampled_from(["play", "move", "chat", "quit"]),
        st.integers(0, 3),  # which of four clients acts
        st.integers(0, 9),  # a position (9 is out of range)
    ),
    max_size=30,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_for_any_requests_the_stored_log_replays_to_the_live_state(sequence):
    asyncio.run(_check_log_matches_live_state(sequence))


async def _check_log_matches_live_state(sequence: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(db=str(Path(tmp) / "p.db"), poll_timeout=1.0)
        client = TestClient(TestServer(create_app(config)))
        await client.start_server()
        try:
            client_ids = [f"property-client-{i:04d}" for i in range(4)]
            game_ids: set[str] = set()
            for action, who, position in sequence:
                data = {"client_id": client_ids[who]}
                if action == "move":
                    data["position"] = str(position)
                if action == "chat":
                    data["message"] = f"from {who}"
                response = await client.post(f"/api/{action}", data=data)
                assert response.status < 500, await response.text()
                body = await response.json()
                if action == "play" and response.status == 200:
                    game_ids.add(body["game_id"])
            service, store = client.app[SERVICE], client.app[STORE]
            for game_id in game_ids:
                stored = replay(game_id, await store.load(game_id))
                live = service.cached_state(game_id)
                assert stored == live
                shown = await (await client.get(f"/api/games/{game_id}")).json()
                assert (shown["board"], shown["cursor"], shown["over"]) == (stored.board, stored.cursor, stored.over)
            # The store finds a client's last game by its last join: always the game it last acted in.
            with sqlite3.connect(config.db) as db:
                for client_id in client_ids:
                    actor = actor_of(client_id)
                    acted = db.execute(
                        "SELECT game_id FROM events WHERE actor = ? ORDER BY id DESC LIMIT 1", (actor,)
                    ).fetchone()
                    assert await store.last_game_of(actor) == (acted[0] if acted else None)
        finally:
            await client.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(commands, min_size=1, max_size=40), st.data())
def test_verify_catches_any_dropped_event_and_any_altered_board(sequence, data):
    live, log = GameState("g"), []
    for command in sequence:
        try:
            events = decide(live, command)
        except GameError:
            continue
        live = evolve_all(live, events)
        log.extend(events)
    if len(log) >= 2:
        dropped = data.draw(st.integers(0, len(log) - 2))
        assert audit.verify_game("g", log[:dropped] + log[dropped + 1 :]) is not None
    moves = [i for i, e in enumerate(log) if isinstance(e, MovePlayed)]
    if moves:
        i = data.draw(st.sampled_from(moves))
        board = data.draw(st.text(alphabet="XO_", min_size=9, max_size=9).filter(lambda b: b != log[i].board))
        altered = [*log[:i], dataclasses.replace(log[i], board=board), *log[i + 1 :]]
        problem = audit.verify_game("g", altered)
        assert problem is not None and problem.cursor == log[i].cursor


moves = st.builds(
    MovePlayed,
    st.integers(min_value=1, max_value=10**30),
    st.text(),
    board=st.text(),
    player=st.sampled_from(["X", "O"]),
    position=st.integers(min_value=0, max_value=10**30),
    turn=st.none() | st.sampled_from(["X", "O"]),
    winner=st.none() | st.sampled_from(["X", "O", "D"]),
)


@settings(max_examples=500, deadline=None)
@given(moves)
def test_a_move_is_encoded_to_the_very_bytes_of_its_public_json(move):
    # A move is written out field by field (the hot path): it must be what the generic encoder makes.
    generic = json.dumps(to_public(move), ensure_ascii=False, separators=(",", ":")).encode()
    assert encode(move) == generic
    assert decode(encode(move)) == dataclasses.replace(move, actor=None)
