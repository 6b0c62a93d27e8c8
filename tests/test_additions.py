"""PROTOCOL.md Part 2 additions: the bot, private games, the spectator listing, the rebuild."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys

import pytest

from tictactoe.bot import best_move

from .conftest import poll, post, timeline


async def bot_game(client, name: str = "human"):
    """A game against the bot; returns (client id, game id, the human's mark)."""
    joined = await post(client, "/api/play", name=name, opponent="bot")
    status = await poll(client, joined["game_id"], 2)
    assert status["type"] == "status" and "Bot" in (status["playerX"], status["playerO"])
    mark = "X" if status["playerX"] == name else "O"
    return joined["client_id"], joined["game_id"], mark


async def play_against_bot(client, choose) -> dict:
    """Play a whole bot game, the human choosing with `choose(board, mark)`; returns the `end`."""
    client_id, game_id, mark = await bot_game(client)
    cursor = 2  # from the status on: X (human or bot) moves first
    while True:
        event = await poll(client, game_id, cursor)
        cursor = event["cursor"]
        if event["type"] == "end":
            return {**event, "human": mark}
        board = event.get("board", "_" * 9)
        human_turn = (event["type"] == "status" and mark == "X") or (
            event["type"] == "move" and event.get("turn") == mark
        )
        if human_turn:
            await post(client, "/api/move", client_id=client_id, position=choose(board, mark))


async def test_a_bot_game_starts_at_once_and_the_bot_opens_when_it_is_x(client):
    for _ in range(12):  # the marks are drawn at random: see both cases
        client_id, game_id, mark = await bot_game(client)
        events = await timeline(client, game_id)
        assert [e["type"] for e in events[:3]] == ["connect", "connect", "status"]
        if mark == "O":
            fourth = await poll(client, game_id, 3)
            assert fourth["type"] == "move" and fourth["player"] == "X"
        else:
            assert len(events) == 3
        await post(client, "/api/quit", client_id=client_id)


async def test_the_bots_move_arrives_by_long_poll_like_any_other(client):
    while True:
        client_id, game_id, mark = await bot_game(client)
        if mark == "X":
            break
        await post(client, "/api/quit", client_id=client_id)
    await post(client, "/api/move", client_id=client_id, position=4)
    answer = await poll(client, game_id, 4)  # there at once, or the poll waits for it
    assert answer["type"] == "move" and answer["player"] == "O" and answer["cursor"] == 5


async def test_the_bot_never_loses_to_random_play(client):
    rng = random.Random(7)
    results = []
    for _ in range(25):
        end = await play_against_bot(
            client, lambda board, mark: rng.choice([i for i, c in enumerate(board) if c == "_"])
        )
        results.append(end)
    assert all(end["result"] != end["human"] for end in results)
    assert any(end["result"] not in ("D",) for end in results)  # and it wins some


async def test_a_perfect_human_against_the_bot_always_draws(client):
    for _ in range(6):
        end = await play_against_bot(client, best_move)
        assert end["result"] == "D"


def test_best_move_never_loses_from_any_reachable_position():
    from tictactoe.rules import other, outcome

    def worst_for_bot(board: str, to_move: str, bot: str) -> str:
        result = outcome(board)
        if result is not None:
            return result
        if to_move == bot:
            position = best_move(board, bot)
            return worst_for_bot(board[:position] + bot + board[position + 1 :], other(bot), bot)
        results = {
            worst_for_bot(board[:i] + to_move + board[i + 1 :], bot, bot) for i, c in enumerate(board) if c == "_"
        }
        return other(bot) if other(bot) in results else ("D" if "D" in results else bot)

    assert worst_for_bot("_" * 9, "X", "X") != "O"
    assert worst_for_bot("_" * 9, "X", "O") != "X"


async def test_the_name_bot_is_kept_for_the_computer_player(client):
    response = await client.post("/api/play", data={"name": "bot"})
    assert response.status == 409 and (await response.json())["error"]["code"] == 104


async def test_a_private_game_is_never_matched_and_a_friend_joins_by_its_id(client):
    host = await post(client, "/api/play", name="host", private="true")
    stranger = await post(client, "/api/play", name="stranger")
    assert stranger["game_id"] != host["game_id"]
    first = (await timeline(client, host["game_id"]))[0]
    assert first["private"] is True
    friend = await post(client, "/api/play", name="friend", game_id=host["game_id"])
    assert friend["game_id"] == host["game_id"]
    status = await poll(client, host["game_id"], 2)
    assert {status["playerX"], status["playerO"]} == {"host", "friend"}


async def test_joining_a_started_finished_or_unknown_game_is_a_clear_error(client):
    host = await post(client, "/api/play", name="host", private="true")
    await post(client, "/api/play", name="friend", game_id=host["game_id"])
    late = await post(client, "/api/play", name="late", game_id=host["game_id"], expect=409)
    assert late["error"] == {"code": 109, "message": "game is full"}
    await post(client, "/api/quit", client_id=host["client_id"])
    over = await post(client, "/api/play", name="later", game_id=host["game_id"], expect=409)
    assert over["error"]["code"] == 109
    unknown = await post(client, "/api/play", name="lost", game_id="0123456789abcdef", expect=404)
    assert unknown["error"]["code"] == 102
    both = await post(client, "/api/play", name="greedy", game_id=host["game_id"], opponent="bot", expect=400)
    assert both["error"]["code"] == 100
    odd = await post(client, "/api/play", name="odd", opponent="alien", expect=400)
    assert odd["error"]["code"] == 100


async def listing(client, **params) -> list:
    response = await client.get("/api/games", params={k: str(v) for k, v in params.items()})
    assert response.status == 200
    return await response.json()


async def test_the_listing_follows_each_state_change_newest_first_and_hides_private_games(client):
    hidden = await post(client, "/api/play", name="hidden", private="true")
    a = await post(client, "/api/play", name="ann")
    [waiting] = await listing(client, state="waiting")
    assert waiting["game_id"] == a["game_id"] and waiting["players"] == ["ann"] and waiting["cursor"] == 1
    b = await post(client, "/api/play", name="ben")
    assert await listing(client, state="waiting") == []
    [playing] = await listing(client, state="playing")
    assert playing["moves"] == 0 and {playing["playerX"], playing["playerO"]} == {"ann", "ben"}
    x = a if playing["playerX"] == "ann" else b
    await post(client, "/api/move", client_id=x["client_id"], position=4)
    [playing] = await listing(client, state="playing")  # a move's progress shows at once
    assert playing["moves"] == 1 and playing["cursor"] == 4 and playing["updated_at"] >= playing["created_at"]
    await post(client, "/api/quit", client_id=b["client_id"])
    [over] = await listing(client, state="over")
    assert over["result"] == "abandoned" and over["cursor"] == 6 and over["moves"] == 1
    newer = await post(client, "/api/play", name="cat", opponent="bot")
    everything = await listing(client, limit=10)
    assert [g["game_id"] for g in everything][:2] == [newer["game_id"], a["game_id"]]
    assert hidden["game_id"] not in [g["game_id"] for g in everything]
    for g in everything:
        assert set(g) == {
            "game_id",
            "state",
            "players",
            "playerX",
            "playerO",
            "moves",
            "result",
            "cursor",
            "created_at",
            "updated_at",
        }


@pytest.mark.parametrize("query", ["state=lost", "limit=0", "limit=101", "limit=x", "state=over&state=waiting"])
async def test_bad_listing_parameters_are_error_100(client, query):
    response = await client.get(f"/api/games?{query}")
    assert response.status == 400 and (await response.json())["error"]["code"] == 100


async def test_rebuild_makes_the_same_read_model_from_the_log(make_client, config):
    client = await make_client(config)
    await bot_game(client, "one")
    await post(client, "/api/play", name="two")
    await post(client, "/api/play", name="three", private="true")
    quitter = await post(client, "/api/play", name="four")
    await post(client, "/api/quit", client_id=quitter["client_id"])
    await asyncio.sleep(0.2)  # let a bot opening commit
    await client.close()
    with sqlite3.connect(config.db) as db:
        before = db.execute("SELECT * FROM games ORDER BY game_id").fetchall()
        db.execute("UPDATE games SET state = 'over', moves = 99")
        db.execute("DELETE FROM games WHERE rowid IN (SELECT rowid FROM games LIMIT 1)")
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tictactoe", "rebuild", "--db", config.db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(config.db) as db:
        assert db.execute("SELECT * FROM games ORDER BY game_id").fetchall() == before
    assert len(before) == 3  # the bot game, the private game, and the game "four" joined and quit


def parse_sse(text: str) -> list[dict]:
    """The messages of an SSE body: id, event and the decoded data of each."""
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            messages.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return messages


async def test_the_stream_sends_every_event_as_sse_and_ends_after_the_end(client):
    from .conftest import play_moves, start_game

    game = await start_game(client)
    await play_moves(client, game, [0, 3, 1, 4, 2])
    response = await client.get(f"/api/games/{game.game_id}/stream")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    messages = parse_sse(await response.text())  # the body ends: the stream closed after `end`
    assert [m["id"] for m in messages] == list(range(1, 10))
    assert [m["event"] for m in messages][-2:] == ["move", "end"]
    assert all(m["data"]["cursor"] == m["id"] and m["data"]["type"] == m["event"] for m in messages)


async def test_the_stream_resumes_from_last_event_id_with_exactly_the_missed_events(client):
    from .conftest import play_moves, start_game

    game = await start_game(client)
    await play_moves(client, game, [4, 0])
    first = await client.get(f"/api/games/{game.game_id}/stream")
    seen = []
    async for line in first.content:  # read until the dropped stream has cursor 5, then hang up
        if line.startswith(b"id: "):
            seen.append(int(line[4:]))
            if seen[-1] == 5:
                break
    first.close()
    await play_moves(client, game, [8, 2])  # missed while disconnected... (X at 8, then O at 2)
    await post(client, "/api/quit", client_id=game.x)
    again = await client.get(f"/api/games/{game.game_id}/stream", headers={"Last-Event-ID": "5"})
    messages = parse_sse(await again.text())
    assert seen == [1, 2, 3, 4, 5]
    assert [m["id"] for m in messages] == [6, 7, 8, 9]
    by_query = parse_sse(await (await client.get(f"/api/games/{game.game_id}/stream?cursor=7")).text())
    assert [m["id"] for m in by_query] == [8, 9]


async def test_the_bots_move_arrives_by_sse(client):
    client_id, game_id, mark = await bot_game(client)
    response = await client.get(f"/api/games/{game_id}/stream", params={"cursor": "3"})
    if mark == "X":
        await post(client, "/api/move", client_id=client_id, position=4)
    seen = []
    async for line in response.content:
        if line.startswith(b"data: "):
            event = json.loads(line[6:])
            seen.append(event)
            if event.get("player") not in (None, mark) and event["type"] == "move":
                break
    response.close()
    assert seen[-1]["type"] == "move" and seen[-1]["player"] != mark


@pytest.mark.parametrize(
    ("suffix", "headers", "status", "code"),
    [("?cursor=99", {}, 400, 112), ("", {"Last-Event-ID": "x"}, 400, 100), ("?cursor=-1", {}, 400, 100)],
)
async def test_bad_stream_requests_get_protocol_errors(client, suffix, headers, status, code):
    joined = await post(client, "/api/play", name="solo")
    response = await client.get(f"/api/games/{joined['game_id']}/stream{suffix}", headers=headers)
    assert response.status == status and (await response.json())["error"]["code"] == code
    unknown = await client.get("/api/games/0123456789abcdef/stream")
    assert unknown.status == 404


async def test_metrics_parse_and_their_counters_move_when_a_game_is_played(client):
    from prometheus_client.parser import text_string_to_metric_families

    from .conftest import play_moves, start_game

    async def scrape() -> dict:
        response = await client.get("/metrics")
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
        samples = {}
        for family in text_string_to_metric_families(await response.text()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    before = await scrape()
    game = await start_game(client)
    waiting = asyncio.create_task(poll(client, game.game_id, 3))
    await asyncio.sleep(0.1)
    during = await scrape()
    assert during[("tictactoe_long_polls_open", ())] == 1
    assert during[("tictactoe_games", (("state", "playing"),))] == 1
    await play_moves(client, game, [0, 3, 1, 4, 2])
    await waiting
    await client.post("/api/move", data={"client_id": game.x, "position": "8"})  # 103: the game is over
    after = await scrape()
    assert after[("tictactoe_events_appended_total", (("type", "move"),))] == 5
    assert after[("tictactoe_events_appended_total", (("type", "end"),))] == 1
    assert after[("tictactoe_append_seconds_count", ())] > before.get(("tictactoe_append_seconds_count", ()), 0)
    assert after[("tictactoe_notify_seconds_count", ())] >= 1
    assert after[("tictactoe_errors_total", (("code", "103"),))] == 1
    assert after[("tictactoe_sqlite_write_transactions", ())] >= 6
    assert after[("tictactoe_long_polls_open", ())] == 0
