"""Black-box tests of PROTOCOL.md Part 1 over real HTTP against a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp

from tictactoe.keys import SERVICE

from .conftest import play_moves, poll, post, start_game, timeline


async def test_a_full_game_to_a_win_seen_by_both_players_through_long_polls(client):
    game = await start_game(client)
    seen = {"X": [], "O": []}

    async def follow(mark: str) -> None:
        cursor = 3
        while True:
            response = await client.get(f"/api/updates/{game.game_id}", params={"cursor": str(cursor)})
            if response.status == 410:
                return
            if response.status == 204:
                continue
            event = await response.json()
            seen[mark].append(event)
            cursor = event["cursor"]

    followers = [asyncio.create_task(follow(m)) for m in "XO"]
    await asyncio.sleep(0.05)
    cursors = await play_moves(client, game, [0, 3, 1, 4, 2])  # X takes the top row
    await asyncio.wait_for(asyncio.gather(*followers), 5)
    assert cursors == [4, 5, 6, 7, 8]
    for events in seen.values():
        assert [e["type"] for e in events] == ["move"] * 5 + ["end"]
        assert [e["cursor"] for e in events] == [4, 5, 6, 7, 8, 9]
        assert events[-2]["winner"] == "X" and events[-2]["board"] == "XXXOO____"
        assert events[-1] == {**events[-1], "result": "X", "reason": "player X won"}
    state = await (await client.get(f"/api/games/{game.game_id}")).json()
    assert state["over"] and state["winner"] == "X" and state["winning_line"] == [0, 1, 2]


async def test_a_full_game_to_a_draw_ends_with_d(client):
    game = await start_game(client)
    await play_moves(client, game, [0, 1, 2, 4, 3, 5, 7, 6, 8])
    events = await timeline(client, game.game_id)
    assert events[-2]["winner"] == "D" and events[-2]["board"] == "XOXXOOOXX"
    assert events[-1]["type"] == "end" and events[-1]["result"] == "D" and events[-1]["reason"] == "draw"


async def test_a_fresh_game_reads_connect_connect_status_with_x_to_move(client):
    game = await start_game(client)
    first, second, status = await timeline(client, game.game_id)
    assert (first["type"], first["name"], first["player"]) == ("connect", "alice", True)
    assert (second["type"], second["name"]) == ("connect", "bob")
    assert status["type"] == "status" and status["turn"] == "X" and status["board"] == "_" * 9
    assert {status["playerX"], status["playerO"]} == {"alice", "bob"}
    for event in (first, second, status):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])


async def test_play_without_parameters_generates_a_client_id_and_a_guest_name(client):
    body = await post(client, "/api/play")
    assert re.fullmatch(r"[0-9a-f]{32}", body["client_id"])
    assert re.fullmatch(r"Guest\d+", body["name"])
    assert re.fullmatch(r"[0-9a-f]{24}", body["game_id"])


async def test_an_unknown_well_formed_client_id_is_adopted(client):
    body = await post(client, "/api/play", client_id="my-own-client_id-123", name="own")
    assert body["client_id"] == "my-own-client_id-123"
    cursor = await post(client, "/api/chat", client_id="my-own-client_id-123", message="hi")
    assert cursor == {"cursor": 2}


async def test_pairing_joins_the_oldest_waiting_game(client):
    a = await post(client, "/api/play", name="a")
    b = await post(client, "/api/play", name="b")
    c = await post(client, "/api/play", name="c")
    d = await post(client, "/api/play", name="d")
    assert a["game_id"] == b["game_id"] != c["game_id"] == d["game_id"]


async def test_names_are_unique_among_active_players_and_free_again_after_quit(client):
    first = await post(client, "/api/play", name="stan")
    refused = await post(client, "/api/play", name="STAN", expect=409)
    assert refused["error"]["code"] == 104
    await post(client, "/api/quit", client_id=first["client_id"])
    again = await post(client, "/api/play", name="STAN")
    assert again["name"] == "STAN"


async def test_resume_gives_back_the_unfinished_game(client):
    game = await start_game(client)
    body = await post(client, "/api/play", client_id=game.x, resume="true")
    assert body["game_id"] == game.game_id and body["name"] == game.names["X"]


async def test_play_again_without_resume_quits_the_old_game(client):
    game = await start_game(client)
    again = await post(client, "/api/play", client_id=game.x)
    assert again["game_id"] != game.game_id and again["name"] == game.names["X"]
    events = await timeline(client, game.game_id)
    assert [e["type"] for e in events[-2:]] == ["disconnect", "end"]
    assert events[-2]["name"] == game.names["X"] and events[-1]["result"] == "abandoned"
    assert events[-1]["reason"] == f"{game.names['X']} quit the game"


async def test_a_long_poll_waits_and_is_woken_by_a_move(client):
    game = await start_game(client)
    waiting = asyncio.create_task(poll(client, game.game_id, 3))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    assert client.app[SERVICE].waiting_polls(game.game_id) == 1
    await post(client, "/api/move", client_id=game.x, position=4)
    event = await asyncio.wait_for(waiting, 2)
    assert event["type"] == "move" and event["position"] == 4 and event["turn"] == "O"


async def test_a_client_resumes_by_cursor_after_missing_events(client):
    game = await start_game(client)
    await play_moves(client, game, [4, 0, 8])
    await post(client, "/api/chat", client_id=game.o, message="nice")
    got = []
    cursor = 3  # the client saw the status, then went away
    for _ in range(4):
        event = await poll(client, game.game_id, cursor)
        got.append(event)
        cursor = event["cursor"]
    assert [(e["type"], e["cursor"]) for e in got] == [("move", 4), ("move", 5), ("move", 6), ("chat", 7)]
    assert got[-1]["name"] == game.names["O"] and got[-1]["message"] == "nice"


async def test_a_poll_with_no_event_in_the_timeout_gets_204(make_client, config):
    client = await make_client(config, poll_timeout=0.3)
    game = await start_game(client)
    response = await client.get(f"/api/updates/{game.game_id}", params={"cursor": "3"})
    assert response.status == 204 and await response.read() == b""
    assert response.headers["Cache-Control"] == "no-store"


async def test_a_dropped_long_poll_client_leaves_no_waiter_behind(client):
    game = await start_game(client)
    url = client.make_url(f"/api/updates/{game.game_id}?cursor=3")
    async with aiohttp.ClientSession() as other:
        request = asyncio.create_task(other.get(url))
        for _ in range(100):
            if client.app[SERVICE].waiting_polls(game.game_id):
                break
            await asyncio.sleep(0.01)
        assert client.app[SERVICE].waiting_polls(game.game_id) == 1
        request.cancel()  # the client hangs up
        await asyncio.gather(request, return_exceptions=True)
    for _ in range(100):
        if client.app[SERVICE].waiting_polls() == 0:
            break
        await asyncio.sleep(0.01)
    assert client.app[SERVICE].waiting_polls() == 0
    # The game goes on and a new poll is answered normally.
    await post(client, "/api/move", client_id=game.x, position=0)
    assert (await poll(client, game.game_id, 3))["position"] == 0


async def test_two_concurrent_moves_at_the_same_cursor_exactly_one_is_accepted(client):
    game = await start_game(client)
    responses = await asyncio.gather(
        client.post("/api/move", data={"client_id": game.x, "position": "0"}),
        client.post("/api/move", data={"client_id": game.x, "position": "1"}),
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 409]
    events = await timeline(client, game.game_id)
    assert [e["type"] for e in events].count("move") == 1


async def test_chat_is_stored_and_sent_as_written(client):
    game = await start_game(client)
    text = '<b>gg</b> & 🎉 "quotes"'
    body = await post(client, "/api/chat", client_id=game.x, message=text)
    event = await poll(client, game.game_id, body["cursor"] - 1)
    assert event == {**event, "type": "chat", "name": game.names["X"], "message": text}


async def test_quit_ends_the_game_for_the_opponent(client):
    game = await start_game(client)
    assert await post(client, "/api/quit", client_id=game.o) == {}
    left, end = (await timeline(client, game.game_id))[-2:]
    assert left == {**left, "type": "disconnect", "name": game.names["O"], "player": True}
    assert end["result"] == "abandoned"
    refused = await post(client, "/api/move", client_id=game.x, position=0, expect=409)
    assert refused["error"]["code"] == 103


async def test_json_and_multipart_bodies_work_like_forms(client):
    response = await client.post("/api/play", json={"name": "jay"})
    jay = await response.json()
    form = aiohttp.FormData()
    form.add_field("name", "maud")
    form._is_multipart = True
    response = await client.post("/api/play", data=form)
    assert response.status == 200, await response.text()
    maud = await response.json()
    assert jay["game_id"] == maud["game_id"]
    status = await poll(client, jay["game_id"], 2)
    x = jay if status["playerX"] == "jay" else maud
    response = await client.post("/api/move", json={"client_id": x["client_id"], "position": 4})
    assert await response.json() == {"cursor": 4}
    response = await client.post("/api/move", json={"client_id": x["client_id"], "position": "5"})
    assert (await response.json())["error"]["code"] == 103  # not X's turn any more: the string parsed


async def test_every_api_response_carries_cache_control_no_store_and_json_utf8(client):
    ok = await client.post("/api/play")
    bad = await client.post("/api/move")
    for response in (ok, bad):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_the_events_endpoint_returns_every_event_after_a_cursor(client):
    game = await start_game(client)
    await play_moves(client, game, [0, 1])
    response = await client.get(f"/api/games/{game.game_id}/events", params={"after": "2"})
    events = await response.json()
    assert [e["cursor"] for e in events] == [3, 4, 5]


async def test_the_events_endpoint_waits_then_answers_an_empty_list(client):
    game = await start_game(client)
    response = await client.get(f"/api/games/{game.game_id}/events", params={"after": "3", "wait": "0"})
    assert await response.json() == []
    waiting = asyncio.create_task(client.get(f"/api/games/{game.game_id}/events?after=3&wait=2"))
    await asyncio.sleep(0.1)
    await post(client, "/api/move", client_id=game.x, position=8)
    events = await (await waiting).json()
    assert [e["position"] for e in events] == [8]


async def test_the_state_endpoint_rebuilds_the_game_at_any_cursor(client):
    game = await start_game(client)
    await play_moves(client, game, [4, 0, 8])
    at4 = await (await client.get(f"/api/games/{game.game_id}", params={"at": "4"})).json()
    assert at4["board"] == "____X____" and at4["turn"] == "O" and at4["cursor"] == 4
    assert len(at4["events"]) == 4 and at4["playerX"] == game.names["X"]
    now = await (await client.get(f"/api/games/{game.game_id}")).json()
    assert now["board"] == "O___X___X" and now["cursor"] == 6 and not now["over"]
    at0 = await (await client.get(f"/api/games/{game.game_id}?at=0")).json()
    assert at0["board"] == "_" * 9 and at0["events"] == [] and at0["playerX"] is None


async def test_healthz_answers_when_the_database_does(client):
    response = await client.get("/healthz")
    assert response.status == 200 and (await response.json())["status"] == "ok"


async def test_no_response_ever_contains_a_client_id(client):
    game = await start_game(client)
    await play_moves(client, game, [0, 3, 1, 4, 2])
    bodies = [json.dumps(await timeline(client, game.game_id))]
    bodies.append(await (await client.get(f"/api/games/{game.game_id}")).text())
    bodies.append(await (await client.post("/api/move", data={"client_id": game.x, "position": "5"})).text())
    for body in bodies:
        assert game.x not in body and game.o not in body


async def test_play_again_while_the_old_game_ends_at_the_same_moment_still_pairs(client):
    for _ in range(5):
        game = await start_game(client, "ann", "ben")
        quit_response, play_response = await asyncio.gather(
            client.post("/api/quit", data={"client_id": game.o}),
            client.post("/api/play", data={"client_id": game.x}),
        )
        assert quit_response.status == 200 and play_response.status == 200, await play_response.text()
        await post(client, "/api/quit", client_id=game.x)


async def test_a_name_asked_for_by_two_clients_at_once_costs_the_loser_nothing(client):
    game = await start_game(client)
    mine, theirs = await asyncio.gather(
        client.post("/api/play", data={"client_id": game.x, "name": "zed"}),
        client.post("/api/play", data={"name": "zed"}),
    )
    assert sorted([mine.status, theirs.status]) == [200, 409]
    events = await timeline(client, game.game_id)
    if mine.status == 409:  # refused: the old game goes on untouched
        assert [e["type"] for e in events] == ["connect", "connect", "status"]
        resumed = await post(client, "/api/play", client_id=game.x, resume="true")
        assert resumed["game_id"] == game.game_id
    else:
        assert events[-1]["type"] == "end"


async def test_players_who_ask_for_a_game_at_the_same_moment_are_paired_with_each_other(client):
    # Arriving together, none of them finds a waiting game yet: they must still pair up, not
    # each wait alone in a game of their own.
    joined = await asyncio.gather(*(post(client, "/api/play") for _ in range(10)))
    games = [j["game_id"] for j in joined]
    assert sorted(games.count(g) for g in set(games)) == [2] * 5
    for game_id in set(games):
        assert (await poll(client, game_id, 2))["type"] == "status"
