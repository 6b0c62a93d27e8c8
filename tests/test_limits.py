"""Limits: open long polls and streams per address, chat rate per client, and CORS only when asked."""

from __future__ import annotations

import asyncio

import pytest

from tictactoe.addresses import ClientAddresses, OpenPolls, TooManyPolls
from tictactoe.config import load_config
from tictactoe.keys import SERVICE
from tictactoe.service import ChatRate, ChatTooFast

from .conftest import post, start_game, timeline
from .test_errors import expect_error


async def parked(client, game_id: str, count: int) -> None:
    """Wait until `count` polls are parked on the game (bounded: the test's timeout)."""
    while client.app[SERVICE].waiting_polls(game_id) < count:
        await asyncio.sleep(0.01)


def poll_in_background(client, game_id: str, cursor: int, headers: dict[str, str] | None = None) -> asyncio.Task:
    return asyncio.create_task(client.get(f"/api/updates/{game_id}?cursor={cursor}", headers=headers or {}))


async def test_past_max_polls_per_address_a_poll_gets_429_code_121_until_one_is_answered(make_client, config):
    client = await make_client(config, max_polls_per_address=2, poll_timeout=30)
    game = await start_game(client)
    waiting = [poll_in_background(client, game.game_id, 3) for _ in range(2)]
    await parked(client, game.game_id, 2)
    await expect_error(await client.get(f"/api/updates/{game.game_id}?cursor=3"), 429, 121)
    await expect_error(await client.get(f"/api/games/{game.game_id}/events?after=3&wait=5"), 429, 121)
    await expect_error(await client.get(f"/api/games/{game.game_id}/stream?cursor=3"), 429, 121)
    # A catch-up read that does not wait is not a long poll: it is never refused.
    assert (await client.get(f"/api/games/{game.game_id}/events?after=0")).status == 200
    await post(client, "/api/move", client_id=game.x, position=4)
    assert [r.status for r in await asyncio.gather(*waiting)] == [200, 200]
    assert (await client.get(f"/api/updates/{game.game_id}?cursor=3")).status == 200


async def test_an_open_stream_counts_against_the_address_until_it_closes(make_client, config):
    client = await make_client(config, max_polls_per_address=1, poll_timeout=30)
    game = await start_game(client)
    stream = await client.get(f"/api/games/{game.game_id}/stream?cursor=3")
    assert stream.status == 200
    await parked(client, game.game_id, 1)
    await expect_error(await client.get(f"/api/updates/{game.game_id}?cursor=3"), 429, 121)
    stream.close()  # the browser went away
    while client.app[SERVICE].waiting_polls(game.game_id):
        await asyncio.sleep(0.01)
    await post(client, "/api/move", client_id=game.x, position=4)
    assert (await client.get(f"/api/updates/{game.game_id}?cursor=3")).status == 200


async def test_max_polls_per_address_0_turns_the_limit_off(make_client, config):
    client = await make_client(config, max_polls_per_address=0, poll_timeout=30)
    game = await start_game(client)
    waiting = [poll_in_background(client, game.game_id, 3) for _ in range(20)]
    await parked(client, game.game_id, 20)
    await post(client, "/api/move", client_id=game.x, position=4)
    assert {r.status for r in await asyncio.gather(*waiting)} == {200}


async def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(make_client, config):
    client = await make_client(config, max_polls_per_address=1, poll_timeout=30, trusted_proxies=("127.0.0.0/8",))
    game = await start_game(client)
    first = poll_in_background(client, game.game_id, 3, {"X-Forwarded-For": "203.0.113.7"})
    second = poll_in_background(client, game.game_id, 3, {"X-Forwarded-For": "198.51.100.1, 203.0.113.8"})
    await parked(client, game.game_id, 2)  # two clients behind the proxy: one poll each
    # A forged left part does not make a new client: the right-most untrusted hop is the client.
    forged = {"X-Forwarded-For": "192.0.2.1, 203.0.113.7"}
    await expect_error(await client.get(f"/api/updates/{game.game_id}?cursor=3", headers=forged), 429, 121)
    await post(client, "/api/move", client_id=game.x, position=4)
    assert [r.status for r in await asyncio.gather(first, second)] == [200, 200]


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(make_client, config):
    client = await make_client(config, max_polls_per_address=1, poll_timeout=30)
    game = await start_game(client)
    first = poll_in_background(client, game.game_id, 3, {"X-Forwarded-For": "203.0.113.7"})
    await parked(client, game.game_id, 1)
    spoofed = {"X-Forwarded-For": "203.0.113.99"}
    await expect_error(await client.get(f"/api/updates/{game.game_id}?cursor=3", headers=spoofed), 429, 121)
    await post(client, "/api/move", client_id=game.x, position=4)
    assert (await first).status == 200


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("10.0.0.1", None, "10.0.0.1"),  # a trusted proxy that says nothing is the client
        ("10.0.0.1", "203.0.113.5", "203.0.113.5"),
        ("10.0.0.1", "1.2.3.4, 203.0.113.5, 10.0.0.2", "203.0.113.5"),  # through two of our proxies
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all ours: the first one asked
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", "2001:db8::0001", "2001:db8::1"),  # one spelling per address
        ("10.0.0.1", "1.2.3.4, not-an-ip", "not-an-ip"),
        ("192.0.2.9", "203.0.113.5", "192.0.2.9"),  # not our proxy: its header is anyone's word
        ("::1", "203.0.113.5", "203.0.113.5"),
    ],
)
def test_the_client_address_is_the_right_most_untrusted_hop(peer, forwarded_for, expected):
    addresses = ClientAddresses(["10.0.0.0/8", "::1"])
    assert addresses.of(peer, forwarded_for) == expected


def test_open_polls_count_per_address_and_forget_an_address_when_its_polls_close():
    polls = OpenPolls(2)
    with polls.hold("a"), polls.hold("a"), polls.hold("b"):
        assert (polls.open_at("a"), polls.open_at("b")) == (2, 1)
        with pytest.raises(TooManyPolls), polls.hold("a"):
            pass
    assert (polls.open_at("a"), polls.open_at("b")) == (0, 0)


async def test_the_sixth_chat_in_ten_seconds_is_429_code_121_and_appends_nothing(client):
    game = await start_game(client)
    for i in range(5):
        await post(client, "/api/chat", client_id=game.x, message=f"message {i}")
    before = await timeline(client, game.game_id)
    response = await client.post("/api/chat", data={"client_id": game.x, "message": "one too many"})
    await expect_error(response, 429, 121)
    assert 1 <= int(response.headers["Retry-After"]) <= 10
    assert await timeline(client, game.game_id) == before
    await post(client, "/api/chat", client_id=game.o, message="the limit is per client")
    await post(client, "/api/move", client_id=game.x, position=4)  # moves are not limited


async def test_chat_limit_messages_0_turns_the_chat_limit_off(make_client, config):
    client = await make_client(config, chat_limit_messages=0)
    game = await start_game(client)
    for i in range(12):
        await post(client, "/api/chat", client_id=game.x, message=f"message {i}")


def test_the_chat_window_slides_with_the_clock_and_refused_messages_do_not_count():
    now = [1000.0]
    rate = ChatRate(5, 10.0, clock=lambda: now[0])
    for _ in range(4):
        rate.take("alice")
        now[0] += 1
    rate.give_back("alice", rate.take("bob"))  # someone else's slot, refused: changes nothing for alice
    refused = rate.take("alice")
    rate.give_back("alice", refused)  # its game had ended: the message was not sent
    rate.take("alice")  # the fifth sent message
    with pytest.raises(ChatTooFast) as err:
        rate.take("alice")
    assert err.value.retry_after == pytest.approx(6.0)  # the first message leaves the window at 1010
    now[0] = 1010.0
    rate.take("alice")
    with pytest.raises(ChatTooFast):
        rate.take("alice")


def test_clients_that_stopped_chatting_are_swept_from_memory():
    now = [0.0]
    rate = ChatRate(5, 10.0, clock=lambda: now[0])
    for i in range(2000):
        rate.take(f"client-{i}")
    now[0] = 100.0
    for i in range(1100):
        rate.take(f"later-{i}")
    assert len(rate._sent) <= 1100 + 1


async def test_without_cors_origins_there_are_no_cors_headers_and_no_preflight(client):
    response = await client.get("/api/games", headers={"Origin": "https://evil.example"})
    assert response.status == 200 and "Access-Control-Allow-Origin" not in response.headers
    preflight = await client.options(
        "/api/move", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 405 and "Access-Control-Allow-Origin" not in preflight.headers


async def test_cors_answers_the_configured_origins_only_on_answers_errors_streams_and_preflight(make_client, config):
    client = await make_client(config, cors_origins=("https://play.example",))
    ours, theirs = {"Origin": "https://play.example"}, {"Origin": "https://evil.example"}
    response = await client.get("/api/games", headers=ours)
    assert response.headers["Access-Control-Allow-Origin"] == "https://play.example"
    assert "Origin" in response.headers.getall("Vary")
    error = await client.post("/api/move", data={"position": "1"}, headers=ours)
    assert error.status == 400 and error.headers["Access-Control-Allow-Origin"] == "https://play.example"
    assert "Access-Control-Allow-Origin" not in (await client.get("/api/games", headers=theirs)).headers
    preflight = await client.options("/api/move", headers={**ours, "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://play.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    refused = await client.options("/api/move", headers={**theirs, "Access-Control-Request-Method": "POST"})
    assert refused.status == 405 and "Access-Control-Allow-Origin" not in refused.headers
    game = await start_game(client)
    await post(client, "/api/quit", client_id=game.x)
    stream = await client.get(f"/api/games/{game.game_id}/stream", headers=ours)
    assert stream.headers["Access-Control-Allow-Origin"] == "https://play.example"
    await stream.read()


async def test_cors_star_allows_any_origin(make_client, config):
    client = await make_client(config, cors_origins=("*",))
    response = await client.get("/api/games", headers={"Origin": "https://anyone.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://anyone.example"


def test_list_settings_come_from_toml_lists_or_comma_separated_environment(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text('trusted_proxies = ["10.0.0.0/8"]\ncors_origins = ["https://a.example"]\n')
    config = load_config(file, {"TICTACTOE_CORS_ORIGINS": "https://b.example, http://c.example:8080"})
    assert config.trusted_proxies == ("10.0.0.0/8",)
    assert config.cors_origins == ("https://b.example", "http://c.example:8080")
    env = {"TICTACTOE_MAX_POLLS_PER_ADDRESS": "0", "TICTACTOE_CHAT_LIMIT_SECONDS": "2.5"}
    env["TICTACTOE_TRUSTED_PROXIES"] = ""
    config = load_config(file, env)
    assert (config.max_polls_per_address, config.chat_limit_seconds, config.trusted_proxies) == (0, 2.5, ())
