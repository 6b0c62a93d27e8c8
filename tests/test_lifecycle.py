"""Restarts, abandoned games and turn timeouts: state that must survive the process."""

from __future__ import annotations

import asyncio

import pytest

from tictactoe.keys import SERVICE

from .conftest import play_moves, poll, post, start_game, timeline


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_restart_mid_game_keeps_ids_board_and_cursors_and_the_game_finishes(make_client, config):
    first = await make_client(config)
    game = await start_game(first)
    await play_moves(first, game, [0, 3, 1])
    await post(first, "/api/chat", client_id=game.o, message="wait for it")
    before = await timeline(first, game.game_id)
    await first.close()

    second = await make_client(config)
    assert await timeline(second, game.game_id) == before
    state = await (await second.get(f"/api/games/{game.game_id}")).json()
    assert state["board"] == "XX_O_____" and state["turn"] == "O" and state["cursor"] == 7
    resumed = await post(second, "/api/play", client_id=game.o, resume="true")
    assert resumed == {"client_id": game.o, "name": game.names["O"], "game_id": game.game_id}
    assert await post(second, "/api/move", client_id=game.o, position=4) == {"cursor": 8}
    assert await post(second, "/api/move", client_id=game.x, position=2) == {"cursor": 9}
    end = await poll(second, game.game_id, 9)
    assert end["type"] == "end" and end["result"] == "X"


async def test_the_lobby_is_rebuilt_from_the_log_after_a_restart(make_client, config):
    first = await make_client(config)
    waiting = await post(first, "/api/play", name="early")
    await first.close()

    second = await make_client(config)
    taken = await second.post("/api/play", data={"name": "early"})
    assert taken.status == 409  # the waiting player's name is still in use
    joined = await post(second, "/api/play", name="late")
    assert joined["game_id"] == waiting["game_id"]
    status = await poll(second, waiting["game_id"], 2)
    assert status["type"] == "status" and {status["playerX"], status["playerO"]} == {"early", "late"}


async def test_finished_games_load_on_demand_after_a_restart(make_client, config):
    first = await make_client(config)
    game = await start_game(first)
    await play_moves(first, game, [0, 3, 1, 4, 2])
    await first.close()

    second = await make_client(config)
    assert second.app[SERVICE].counts()["active_games"] == 0  # only unfinished games were replayed
    assert (await poll(second, game.game_id, 8))["type"] == "end"
    late = await second.post("/api/move", data={"client_id": game.x, "position": "8"})
    assert late.status == 409 and (await late.json())["error"]["code"] == 103


async def test_a_waiting_game_nobody_polls_is_abandoned_and_never_matched(make_client, config):
    client = await make_client(config, pending_timeout=0.3)
    lonely = await post(client, "/api/play", name="lonely")

    async def abandoned() -> bool:
        events = await timeline(client, lonely["game_id"])
        return events[-1]["type"] == "end"

    await wait_until(abandoned)
    _, left, end = await timeline(client, lonely["game_id"])
    assert left["type"] == "disconnect" and left["name"] == "lonely"
    assert end["result"] == "abandoned"
    newcomer = await post(client, "/api/play", name="newcomer")
    assert newcomer["game_id"] != lonely["game_id"]
    again = await post(client, "/api/play", name="lonely")  # the name is free again
    assert again["game_id"] == newcomer["game_id"]


async def test_a_waiting_player_who_keeps_polling_is_not_abandoned(make_client, config):
    client = await make_client(config, pending_timeout=0.3, poll_timeout=1.0)
    patient = await post(client, "/api/play", name="patient")
    for _ in range(2):  # two polls of 1 s each, longer than the pending timeout
        await poll(client, patient["game_id"], 1, expect=204)
    joined = await post(client, "/api/play", name="finally")
    assert joined["game_id"] == patient["game_id"]


async def test_a_turn_that_runs_out_ends_the_game_and_the_player_to_move_loses(make_client, config):
    client = await make_client(config, turn_timeout=0.3)
    game = await start_game(client)
    await play_moves(client, game, [4])  # O to move, and O never does

    async def ended() -> bool:
        return (await timeline(client, game.game_id))[-1]["type"] == "end"

    await wait_until(ended)
    end = (await timeline(client, game.game_id))[-1]
    assert end["result"] == "X"
    assert game.names["O"] in end["reason"] and "ran out of time" in end["reason"]


async def test_turn_timers_survive_a_restart_because_they_come_from_event_timestamps(make_client, config):
    first = await make_client(config)
    game = await start_game(first)
    await first.close()
    await asyncio.sleep(0.5)

    second = await make_client(config, turn_timeout=0.4)  # the turn began before the restart

    async def ended() -> bool:
        return (await timeline(second, game.game_id))[-1]["type"] == "end"

    await wait_until(ended, timeout=2.0)
    assert (await timeline(second, game.game_id))[-1]["result"] == "O"  # X never moved


async def test_client_ids_of_finished_games_still_work_after_a_restart(make_client, config):
    first = await make_client(config)
    game = await start_game(first)
    await play_moves(first, game, [0, 3, 1, 4, 2])
    await first.close()

    second = await make_client(config)
    again = await post(second, "/api/play", client_id=game.x)
    assert again["client_id"] == game.x and again["name"] == game.names["X"]


async def test_a_move_whose_client_hangs_up_while_it_commits_is_still_published(client):
    game = await start_game(client)
    service = client.server.app[SERVICE]
    waiting = asyncio.create_task(poll(client, game.game_id, 3))
    while service.waiting_polls(game.game_id) == 0:  # the watcher is parked on the game
        await asyncio.sleep(0.01)
    moving = asyncio.create_task(service.move(game.x, 4))
    await asyncio.sleep(0)  # the move is decided and submitted: it now waits for its commit
    assert not moving.done()
    moving.cancel()  # what aiohttp does to the handler of a client that hung up
    with pytest.raises(asyncio.CancelledError):
        await moving
    # Committed, so published: the cache, the log and the waiting poll all have the move.
    assert service.cached_state(game.game_id).cursor == 4
    assert (await waiting)["position"] == 4
    assert [event["cursor"] for event in await timeline(client, game.game_id)] == [1, 2, 3, 4]
