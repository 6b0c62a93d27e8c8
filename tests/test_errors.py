"""Every error of the protocol's table, with its HTTP status and body, and bad input that
changes nothing in the log."""

from __future__ import annotations

import pytest

from .conftest import play_moves, post, start_game, timeline

ERROR_KEYS = {"code", "message"}


async def expect_error(response, status: int, code: int) -> str:
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/api/move", {"position": "1"}),  # client_id missing
        ("/api/move", {"client_id": "short", "position": "1"}),  # malformed client id
        ("/api/play", {"client_id": "x" * 65}),
        ("/api/play", {"client_id": "has spaces in it!!"}),
        ("/api/play", {"resume": "maybe"}),
        ("/api/chat", {"client_id": "a" * 32}),  # message missing
    ],
)
async def test_missing_or_ill_typed_parameters_are_error_100(client, path, data):
    await expect_error(await client.post(path, data=data), 400, 100)


@pytest.mark.parametrize("position", ["", "x", "-1", "+1", " 1", "1.0", "1e0", "٣", "0x1"])
async def test_a_position_that_is_not_ascii_digits_is_error_100(client, position):
    game = await start_game(client)
    await expect_error(await client.post("/api/move", data={"client_id": game.x, "position": position}), 400, 100)
    assert len(await timeline(client, game.game_id)) == 3


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"{", b'{"a":1,"a":2}', b'{"position": 1.5}', b"\xff"])
async def test_bad_json_bodies_are_error_100(client, body):
    game = await start_game(client)
    payload = body.replace(b'"position": 1.5', b'"position": 1.5, "client_id": "%s"' % game.x.encode())
    response = await client.post("/api/move", data=payload, headers={"Content-Type": "application/json"})
    await expect_error(response, 400, 100)


async def test_a_json_position_may_be_an_integer_or_a_digit_string_but_not_a_boolean(client):
    game = await start_game(client)
    response = await client.post("/api/move", json={"client_id": game.x, "position": True})
    await expect_error(response, 400, 100)
    response = await client.post("/api/move", json={"client_id": game.x, "position": -1})
    await expect_error(response, 400, 100)


async def test_a_parameter_given_twice_is_error_100(client):
    game = await start_game(client)
    response = await client.post(
        "/api/move",
        data=f"client_id={game.x}&position=1&position=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await expect_error(response, 400, 100)
    await expect_error(await client.get(f"/api/updates/{game.game_id}?cursor=1&cursor=2"), 400, 100)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"name=x"),
        ("application/x-www-form-urlencoded", b"name=\xff"),
        ("application/x-www-form-urlencoded", b"name=%FF"),
    ],
)
async def test_other_content_types_and_invalid_utf8_are_error_100(client, content_type, body):
    await expect_error(await client.post("/api/play", data=body, headers={"Content-Type": content_type}), 400, 100)


async def test_an_unknown_client_id_is_error_101(client):
    await start_game(client)
    response = await client.post("/api/move", data={"client_id": "f" * 32, "position": "0"})
    message = await expect_error(response, 401, 101)
    assert "f" * 32 not in message
    await expect_error(await client.post("/api/quit", data={"client_id": "f" * 32}), 401, 101)
    await expect_error(await client.post("/api/chat", data={"client_id": "f" * 32, "message": "hi"}), 401, 101)


@pytest.mark.parametrize("path", ["/api/updates/{}", "/api/games/{}", "/api/games/{}/events"])
async def test_an_unknown_game_id_is_error_102(client, path):
    await expect_error(await client.get(path.format("0123456789abcdef")), 404, 102)
    await expect_error(await client.get(path.format("bad%20id")), 404, 102)


@pytest.mark.parametrize(
    ("moves", "mover", "position", "expected"),
    [
        ([], "o", 0, "not your turn"),
        ([4], "x", 0, "not your turn"),
        ([4], "o", 4, "cell 4 is taken"),
        ([], "x", 9, "position must be an integer from 0 to 8"),
        ([], "x", 123456789012345678901234567890, "position must be an integer from 0 to 8"),
        ([0, 3, 1, 4, 2], "o", 5, "your game is over: play again to start a new one"),
    ],
)
async def test_invalid_moves_are_error_103_with_their_reason(client, moves, mover, position, expected):
    game = await start_game(client)
    await play_moves(client, game, moves)
    before = await timeline(client, game.game_id)
    response = await client.post("/api/move", data={"client_id": getattr(game, mover), "position": str(position)})
    assert await expect_error(response, 409, 103) == expected
    assert await timeline(client, game.game_id) == before


async def test_a_move_before_the_game_starts_is_error_103(client):
    alone = await post(client, "/api/play", name="alone")
    response = await client.post("/api/move", data={"client_id": alone["client_id"], "position": "0"})
    assert "not started" in await expect_error(response, 409, 103)


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 33, "bad\x00name", "esc\x1b[31m", "tab\tname", "rtl\u202egnp", "iso\u2066late", "line\u2028sep"],
)
async def test_invalid_names_are_error_104(client, name):
    await expect_error(await client.post("/api/play", data={"name": name}), 409, 104)


async def test_a_name_taken_by_an_active_player_is_error_104_and_keeps_the_old_game(client):
    game = await start_game(client)
    response = await client.post("/api/play", data={"client_id": game.x, "name": game.names["O"]})
    await expect_error(response, 409, 104)
    assert [e["type"] for e in await timeline(client, game.game_id)] == ["connect", "connect", "status"]


async def test_resume_without_an_unfinished_game_is_error_110(client):
    await expect_error(await client.post("/api/play", data={"resume": "true"}), 409, 110)
    await expect_error(await client.post("/api/play", data={"resume": "true", "client_id": "n" * 20}), 409, 110)


async def test_a_cursor_ahead_of_the_game_is_error_112(client):
    game = await start_game(client)
    await expect_error(await client.get(f"/api/updates/{game.game_id}?cursor=4"), 400, 112)
    await expect_error(await client.get(f"/api/updates/{game.game_id}?cursor={10**40}"), 400, 112)
    await expect_error(await client.get(f"/api/games/{game.game_id}?at=4"), 400, 112)


@pytest.mark.parametrize("cursor", ["-1", "x", "1.5", ""])
async def test_a_negative_or_non_integer_cursor_is_error_100(client, cursor):
    game = await start_game(client)
    await expect_error(await client.get(f"/api/updates/{game.game_id}?cursor={cursor}"), 400, 100)


async def test_polling_past_the_end_of_a_finished_game_is_error_113_at_once(client):
    game = await start_game(client)
    await play_moves(client, game, [0, 3, 1, 4, 2])
    await expect_error(await client.get(f"/api/updates/{game.game_id}?cursor=9"), 410, 113)
    await expect_error(await client.get(f"/api/games/{game.game_id}/events?after=9&wait=5"), 410, 113)


async def test_a_body_over_the_limit_is_error_120(client):
    response = await client.post("/api/chat", data={"client_id": "a" * 32, "message": "m" * 20000})
    await expect_error(response, 413, 120)


async def test_bad_chat_messages_are_error_100_and_change_nothing(client):
    game = await start_game(client)
    for message in ["", "x" * 501, "bell\x07", "rtl\u202e"]:
        response = await client.post("/api/chat", data={"client_id": game.x, "message": message})
        await expect_error(response, 400, 100)
    assert len(await timeline(client, game.game_id)) == 3


async def test_a_json_string_with_a_lone_surrogate_is_refused(client):
    body = b'{"name": "\\ud800x"}'
    response = await client.post("/api/play", data=body, headers={"Content-Type": "application/json"})
    await expect_error(response, 409, 104)


async def test_unknown_routes_and_methods_answer_in_the_error_shape(client):
    await expect_error(await client.get("/api/nothing"), 404, 100)
    await expect_error(await client.get("/api/play"), 405, 100)


async def test_a_body_whose_content_encoding_does_not_decode_is_error_100(client):
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/x-www-form-urlencoded"}
    await expect_error(await client.post("/api/play", data=b"name=zz", headers=headers), 400, 100)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"client_id": null, "position": 1}', "application/json"),
        ('{"position": 1}'.encode("utf-16"), "application/json; charset=utf-16"),
    ],
)
async def test_json_null_and_non_utf8_json_are_error_100(client, body, content_type):
    await expect_error(await client.post("/api/move", data=body, headers={"Content-Type": content_type}), 400, 100)


@pytest.mark.parametrize("name", ["\x1fbobby\x1c", "\u200b", "\u200b\u200d"])
async def test_names_with_control_characters_at_the_ends_or_nothing_visible_are_error_104(client, name):
    await expect_error(await client.post("/api/play", data={"name": name}), 409, 104)


async def test_quit_after_the_game_ended_answers_an_empty_object(client):
    game = await start_game(client)
    await play_moves(client, game, [0, 3, 1, 4, 2])
    assert await post(client, "/api/quit", client_id=game.o) == {}


async def test_asking_to_join_a_full_or_own_game_by_id_is_109_and_keeps_the_old_game(client):
    game = await start_game(client)
    mine = await post(client, "/api/play", name="carol")
    await post(client, "/api/play", expect=409, client_id=mine["client_id"], game_id=game.game_id)
    await post(client, "/api/play", expect=409, client_id=mine["client_id"], game_id=mine["game_id"])
    assert [e["type"] for e in await timeline(client, mine["game_id"])] == ["connect"]
