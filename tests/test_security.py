"""The client id is a bearer secret: it never leaves the server once issued, the database holds
only its hash, game ids cannot be guessed, and a client acts only in its own game."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time

import aiohttp

from tictactoe.service import actor_of, new_client_id, new_game_id

from .conftest import play_moves, post, start_game, timeline


class Recorder:
    """An HTTP client that keeps every byte the server sends: status line, headers and body."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.received = bytearray()
        self.issued: list[dict] = []  # answers to play: the one place a client id is handed out

    def _keep(self, response: aiohttp.ClientResponse, body: bytes) -> None:
        self.received += f"{response.status} {response.reason}\r\n".encode()
        for name, value in response.raw_headers:
            self.received += name + b": " + value + b"\r\n"
        self.received += b"\r\n" + body

    async def call(self, method: str, path: str, **kwargs) -> tuple[int, bytes]:
        async with self.http.request(method, self.url + path, **kwargs) as response:
            body = await response.read()
            if path == "/api/play" and response.status == 200:
                self.issued.append(json.loads(body))
            else:
                self._keep(response, body)
            return response.status, body

    async def json(self, method: str, path: str, **kwargs):
        return json.loads((await self.call(method, path, **kwargs))[1])


async def test_no_client_id_in_any_byte_sent_or_any_log_line_and_only_hashes_in_the_database(server, tmp_path):
    (tmp_path / "config.toml").write_text('log_level = "debug"\npoll_timeout = 1\n')
    running = server().start()
    async with aiohttp.ClientSession() as http:
        r = Recorder(http, running.url)
        alice = await r.json("POST", "/api/play", data={"name": "alice"})
        game = alice["game_id"]
        watcher = asyncio.create_task(r.call("GET", f"/api/games/{game}/stream"))
        bob = await r.json("POST", "/api/play", json={"name": "bob"})
        status = await r.json("GET", f"/api/updates/{game}?cursor=2")
        x, o = (alice, bob) if status["playerX"] == "alice" else (bob, alice)
        xid, oid = x["client_id"], o["client_id"]
        await r.call("POST", "/api/move", data={"client_id": oid, "position": "4"})  # not your turn
        await r.call("POST", "/api/move", data={"client_id": xid + "!", "position": "4"})  # malformed: never echoed
        await r.call("POST", "/api/move", data={"client_id": xid[::-1], "position": "4"})  # unknown
        await r.call("POST", "/api/play", data={"client_id": oid, "name": x["name"]})  # name taken
        await r.call("POST", "/api/play", data={"client_id": xid, "resume": "true"})
        for i in range(6):  # the sixth is over the chat limit
            await r.call("POST", "/api/chat", data={"client_id": oid, "message": f"hello {i}"})
        await r.call("POST", "/api/chat", data={"client_id": xid, "message": "\x07"})
        for player, position in [(xid, 0), (oid, 3), (xid, 1), (oid, 4), (xid, 2)]:
            await r.call("POST", "/api/move", data={"client_id": player, "position": str(position)})
        await r.call("POST", "/api/move", data={"client_id": oid, "position": "8"})  # the game is over
        cursor = 0
        while (answer := await r.call("GET", f"/api/updates/{game}?cursor={cursor}"))[0] == 200:
            cursor += 1
        assert answer[0] == 410
        await asyncio.wait_for(watcher, 30)
        # The rematch: both ask again and are paired in a new game; then one quits.
        again = [await r.json("POST", "/api/play", data={"client_id": cid}) for cid in (xid, oid)]
        assert again[0]["game_id"] == again[1]["game_id"] != game
        await r.call("POST", "/api/chat", json={"client_id": xid, "message": "again?"})
        await r.call("POST", "/api/quit", data={"client_id": oid})
        await r.call("POST", "/api/quit", data={"client_id": oid})
        for path in (
            f"/api/games/{game}",
            f"/api/games/{game}?at=4",
            f"/api/games/{game}/events?after=0",
            f"/api/games/{again[0]['game_id']}/events?after=0",
            "/api/games",
            "/api/games?state=over",
            "/api/openapi.json",
            "/metrics",
            "/healthz",
            "/api/nowhere",
        ):
            await r.call("GET", path)
        database = b"".join(p.read_bytes() for p in tmp_path.glob("games.db*"))  # the file, its -wal and -shm
    running.signal(signal.SIGTERM)
    log = running.log()
    database += b"".join(p.read_bytes() for p in tmp_path.glob("games.db*"))
    assert " DEBUG " in log and "POST /api/move" in log  # the log was at its most talkative
    for client_id in (xid, oid):
        assert client_id.encode() not in r.received
        assert client_id not in log
        assert client_id.encode() not in database
        assert actor_of(client_id).encode() in database  # what is stored instead
        assert actor_of(client_id).encode() not in r.received  # and never sent
        assert actor_of(client_id) not in log
    assert len(r.received) > 20000 and b"event: end" in r.received and b"tictactoe_errors_total" in r.received
    # Each answer to play hands out only the asker's own id.
    assert all(set(answer) == {"client_id", "name", "game_id"} for answer in r.issued)
    assert sorted(a["client_id"] for a in r.issued) == sorted([xid, oid, xid, xid, oid])  # with the resume


def test_game_ids_carry_64_random_bits_after_their_second_and_client_ids_128():
    before = int(time.time())
    game_ids = [new_game_id() for _ in range(2000)]
    assert all(re.fullmatch("[0-9a-f]{24}", i) for i in game_ids)
    assert all(before <= int(i[:8], 16) <= time.time() for i in game_ids)  # made together, sorted together
    for ids, bits in (([i[8:] for i in game_ids], 64), ([new_client_id() for _ in range(2000)], 128)):
        assert all(re.fullmatch(f"[0-9a-f]{{{bits // 4}}}", i) for i in ids)
        assert len(set(ids)) == len(ids)
        values = [int(i, 16) for i in ids]
        for bit in range(bits):  # every bit varies: none is fixed, as a counter's or a clock's would be
            ones = sum(v >> bit & 1 for v in values)
            assert 700 < ones < 1300, (bits, bit, ones)  # about 1000: 13 standard deviations of room


async def test_game_ids_handed_out_over_http_are_24_hex_digits_and_all_different(client):
    games = {(await post(client, "/api/play", opponent="bot"))["game_id"] for _ in range(30)}
    assert len(games) == 30 and all(re.fullmatch(r"[0-9a-f]{24}", g) for g in games)


async def test_a_client_acts_only_in_its_own_game_whatever_game_it_names(client):
    first = await start_game(client, "alice", "bob")
    second = await start_game(client, "carol", "dave")
    before = await timeline(client, first.game_id)
    # carol names alice's game in every way she can: each request acts in her own game or is refused.
    await post(client, "/api/chat", client_id=second.x, message="hi", game_id=first.game_id)
    response = await client.post("/api/move", data={"client_id": second.x, "position": "0", "game_id": first.game_id})
    assert response.status == 200
    await post(client, "/api/play", expect=409, client_id=second.o, game_id=first.game_id, resume="false")
    response = await client.post(f"/api/move?game_id={first.game_id}", data={"client_id": second.o, "position": "1"})
    assert response.status == 200
    await post(client, "/api/quit", client_id=second.x, game_id=first.game_id)
    assert await timeline(client, first.game_id) == before
    moves = [e for e in await timeline(client, second.game_id) if e["type"] in ("move", "chat", "end")]
    assert [e["type"] for e in moves] == ["chat", "move", "move", "end"]
    await play_moves(client, first, [4])  # alice's game goes on untouched
