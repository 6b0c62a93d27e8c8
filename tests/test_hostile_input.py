"""Hostile input, endpoint by endpoint: each input gets its protocol error and changes nothing in
the log (the events and games tables, byte for byte). The count is printed at the end of the run."""

from __future__ import annotations

import json
import sqlite3
from typing import Any
from urllib.parse import urlencode

import pytest

from .conftest import HOSTILE_INPUTS_TRIED, start_game, timeline
from .test_errors import expect_error

FORM = "application/x-www-form-urlencoded"
BIG = 10 * 1024  # a 10 KB string: under the body limit, over every field's limit
OVER_LIMIT = 20000  # over max_body_size (16 KiB)
X_ID, O_ID, GAME, O_NAME = "{x}", "{o}", "{game}", "{o_name}"  # filled in with the started game's ids


def form(*pairs: tuple[str, str]) -> tuple[str, tuple[tuple[str, str], ...], str]:
    return ("body", pairs, FORM)  # encoded once the ids are filled in


def as_json(value: Any) -> tuple[str, bytes, str]:
    return ("body", json.dumps(value).encode(), "application/json")


def raw(body: bytes, content_type: str) -> tuple[str, bytes, str]:
    return ("body", body, content_type)


def query(text: str, headers: dict[str, str] | None = None) -> tuple[str, str, dict[str, str]]:
    return ("query", text, headers or {})


BAD_TEXT = {  # text that no name and no chat message may hold
    "NUL": "a\x00b",
    "ESC sequence": "\x1b[31mred",
    "bell": "ding\x07",
    "newline": "two\nlines",
    "DEL": "x\x7f",
    "right-to-left override": "abc\u202egnp.exe",
    "left-to-right override": "\u202dabc",
    "isolate": "\u2066abc\u2069",
}

CASES: list[tuple[str, str, str, tuple, int, int]] = [
    # --- POST /api/move ---
    ("move: client_id missing", "POST", "/api/move", form(("position", "0")), 400, 100),
    ("move: position missing", "POST", "/api/move", form(("client_id", X_ID)), 400, 100),
    ("move: nothing at all", "POST", "/api/move", raw(b"", FORM), 400, 100),
    ("move: client_id empty", "POST", "/api/move", form(("client_id", ""), ("position", "0")), 400, 100),
    ("move: position empty", "POST", "/api/move", form(("client_id", X_ID), ("position", "")), 400, 100),
    (
        "move: client_id twice",
        "POST",
        "/api/move",
        form(("client_id", X_ID), ("client_id", X_ID), ("position", "0")),
        400,
        100,
    ),
    (
        "move: position twice",
        "POST",
        "/api/move",
        form(("client_id", X_ID), ("position", "0"), ("position", "1")),
        400,
        100,
    ),
    ("move: client_id oversized", "POST", "/api/move", form(("client_id", "a" * 65), ("position", "0")), 400, 100),
    ("move: client_id 10 KB", "POST", "/api/move", form(("client_id", "a" * BIG), ("position", "0")), 400, 100),
    ("move: position 5000 digits", "POST", "/api/move", form(("client_id", X_ID), ("position", "1" * 5000)), 400, 100),
    ("move: position word", "POST", "/api/move", form(("client_id", X_ID), ("position", "four")), 400, 100),
    ("move: position negative", "POST", "/api/move", form(("client_id", X_ID), ("position", "-1")), 400, 100),
    ("move: position float", "POST", "/api/move", form(("client_id", X_ID), ("position", "1.0")), 400, 100),
    ("move: position exponent", "POST", "/api/move", form(("client_id", X_ID), ("position", "1e0")), 400, 100),
    ("move: position hex", "POST", "/api/move", form(("client_id", X_ID), ("position", "0x1")), 400, 100),
    ("move: position plus", "POST", "/api/move", form(("client_id", X_ID), ("position", "+1")), 400, 100),
    ("move: position space", "POST", "/api/move", form(("client_id", X_ID), ("position", " 1")), 400, 100),
    ("move: position arabic digit", "POST", "/api/move", form(("client_id", X_ID), ("position", "\u0663")), 400, 100),
    ("move: position 9", "POST", "/api/move", form(("client_id", X_ID), ("position", "9")), 409, 103),
    ("move: position huge", "POST", "/api/move", form(("client_id", X_ID), ("position", "9" * 30)), 409, 103),
    ("move: json position float", "POST", "/api/move", as_json({"client_id": X_ID, "position": 1.5}), 400, 100),
    ("move: json position negative", "POST", "/api/move", as_json({"client_id": X_ID, "position": -1}), 400, 100),
    ("move: json position true", "POST", "/api/move", as_json({"client_id": X_ID, "position": True}), 400, 100),
    ("move: json position null", "POST", "/api/move", as_json({"client_id": X_ID, "position": None}), 400, 100),
    ("move: json position list", "POST", "/api/move", as_json({"client_id": X_ID, "position": [1]}), 400, 100),
    ("move: json position huge", "POST", "/api/move", as_json({"client_id": X_ID, "position": 10**30}), 409, 103),
    (
        "move: json position 1e3",
        "POST",
        "/api/move",
        raw(b'{"client_id": "{x}", "position": 1e3}', "application/json"),
        400,
        100,
    ),
    (
        "move: json client_id number",
        "POST",
        "/api/move",
        as_json({"client_id": 12345678901234567, "position": 0}),
        400,
        100,
    ),
    ("move: json array", "POST", "/api/move", as_json([X_ID, 0]), 400, 100),
    ("move: json string", "POST", "/api/move", as_json("client_id"), 400, 100),
    ("move: json number", "POST", "/api/move", as_json(4), 400, 100),
    ("move: json null", "POST", "/api/move", as_json(None), 400, 100),
    ("move: json truncated", "POST", "/api/move", raw(b'{"client_id": "{x}", "posi', "application/json"), 400, 100),
    (
        "move: json repeated key",
        "POST",
        "/api/move",
        raw(b'{"client_id": "{x}", "position": 0, "position": 1}', "application/json"),
        400,
        100,
    ),
    ("move: json deeply nested", "POST", "/api/move", raw(b"[" * 5000 + b"]" * 5000, "application/json"), 400, 100),
    ("move: invalid utf-8", "POST", "/api/move", raw(b"client_id={x}&position=0&x=\xff\xfe", FORM), 400, 100),
    ("move: invalid utf-8 escaped", "POST", "/api/move", raw(b"client_id={x}&position=%C3%28", FORM), 400, 100),
    (
        "move: json invalid utf-8",
        "POST",
        "/api/move",
        raw(b'{"client_id": "{x}", "position": "\xc3\x28"}', "application/json"),
        400,
        100,
    ),
    ("move: text/plain", "POST", "/api/move", raw(b"client_id={x}&position=0", "text/plain"), 400, 100),
    ("move: xml", "POST", "/api/move", raw(b"<move position='0'/>", "application/xml"), 400, 100),
    (
        "move: body over the limit",
        "POST",
        "/api/move",
        form(("client_id", X_ID), ("position", "0"), ("pad", "p" * OVER_LIMIT)),
        413,
        120,
    ),
    ("move: unknown client id", "POST", "/api/move", form(("client_id", "f" * 32), ("position", "0")), 401, 101),
    (
        "move: malformed client id",
        "POST",
        "/api/move",
        form(("client_id", "not a client id!"), ("position", "0")),
        400,
        100,
    ),
    ("move: client id too short", "POST", "/api/move", form(("client_id", "a" * 15), ("position", "0")), 400, 100),
    ("move: client id non-ascii", "POST", "/api/move", form(("client_id", "\u00e9" * 20), ("position", "0")), 400, 100),
    ("move: the other player's turn", "POST", "/api/move", form(("client_id", O_ID), ("position", "0")), 409, 103),
    # --- POST /api/chat ---
    ("chat: message missing", "POST", "/api/chat", form(("client_id", X_ID)), 400, 100),
    ("chat: client_id missing", "POST", "/api/chat", form(("message", "hi")), 400, 100),
    ("chat: message empty", "POST", "/api/chat", form(("client_id", X_ID), ("message", "")), 400, 100),
    (
        "chat: message twice",
        "POST",
        "/api/chat",
        form(("client_id", X_ID), ("message", "a"), ("message", "b")),
        400,
        100,
    ),
    ("chat: message 501 characters", "POST", "/api/chat", form(("client_id", X_ID), ("message", "m" * 501)), 400, 100),
    ("chat: message 10 KB", "POST", "/api/chat", form(("client_id", X_ID), ("message", "m" * BIG)), 400, 100),
    (
        "chat: message over the body limit",
        "POST",
        "/api/chat",
        form(("client_id", X_ID), ("message", "m" * OVER_LIMIT)),
        413,
        120,
    ),
    *[
        (f"chat: message with {what}", "POST", "/api/chat", form(("client_id", X_ID), ("message", text)), 400, 100)
        for what, text in BAD_TEXT.items()
    ],
    (
        "chat: json lone surrogate",
        "POST",
        "/api/chat",
        raw(b'{"client_id": "{x}", "message": "\\ud800"}', "application/json"),
        400,
        100,
    ),
    ("chat: json message number", "POST", "/api/chat", as_json({"client_id": X_ID, "message": 5}), 400, 100),
    (
        "chat: json message object",
        "POST",
        "/api/chat",
        as_json({"client_id": X_ID, "message": {"html": "<b>"}}),
        400,
        100,
    ),
    ("chat: unknown client id", "POST", "/api/chat", form(("client_id", "u" * 40), ("message", "hi")), 401, 101),
    ("chat: malformed client id", "POST", "/api/chat", form(("client_id", "<script>"), ("message", "hi")), 400, 100),
    # --- POST /api/play ---
    ("play: name empty", "POST", "/api/play", form(("name", "")), 409, 104),
    ("play: name of spaces", "POST", "/api/play", form(("name", "    ")), 409, 104),
    ("play: name 33 characters", "POST", "/api/play", form(("name", "n" * 33)), 409, 104),
    ("play: name 10 KB", "POST", "/api/play", form(("name", "n" * BIG)), 409, 104),
    ("play: name of zero-width spaces", "POST", "/api/play", form(("name", "\u200b\u200b")), 409, 104),
    ("play: name with a line separator", "POST", "/api/play", form(("name", "a\u2028b")), 409, 104),
    *[
        (f"play: name with {what}", "POST", "/api/play", form(("name", text)), 409, 104)
        for what, text in BAD_TEXT.items()
    ],
    ("play: name taken", "POST", "/api/play", form(("name", "alice")), 409, 104),
    ("play: name taken in another case", "POST", "/api/play", form(("name", "ALICE")), 409, 104),
    ("play: name taken in full width", "POST", "/api/play", form(("name", "\uff41lice")), 409, 104),
    ("play: name Bot", "POST", "/api/play", form(("name", "bot")), 409, 104),
    ("play: name taken, own game kept", "POST", "/api/play", form(("client_id", X_ID), ("name", O_NAME)), 409, 104),
    ("play: name twice", "POST", "/api/play", form(("name", "a"), ("name", "b")), 400, 100),
    ("play: json name number", "POST", "/api/play", as_json({"name": 7}), 400, 100),
    ("play: json name null", "POST", "/api/play", as_json({"name": None}), 400, 100),
    ("play: json lone surrogate", "POST", "/api/play", raw(b'{"name": "\\udfff"}', "application/json"), 409, 104),
    ("play: json array", "POST", "/api/play", as_json([]), 400, 100),
    ("play: client id malformed", "POST", "/api/play", form(("client_id", "x" * 65)), 400, 100),
    ("play: client id with spaces", "POST", "/api/play", form(("client_id", "a b c d e f g h i j")), 400, 100),
    ("play: resume maybe", "POST", "/api/play", form(("resume", "maybe")), 400, 100),
    ("play: resume 1", "POST", "/api/play", form(("resume", "1")), 400, 100),
    ("play: resume twice", "POST", "/api/play", form(("resume", "true"), ("resume", "false")), 400, 100),
    ("play: resume with nothing to resume", "POST", "/api/play", form(("resume", "true")), 409, 110),
    ("play: json resume number", "POST", "/api/play", as_json({"resume": 1}), 400, 100),
    ("play: opponent human", "POST", "/api/play", form(("opponent", "human")), 400, 100),
    ("play: private yes", "POST", "/api/play", form(("private", "yes")), 400, 100),
    ("play: opponent and private", "POST", "/api/play", form(("opponent", "bot"), ("private", "true")), 400, 100),
    ("play: opponent and game_id", "POST", "/api/play", form(("opponent", "bot"), ("game_id", GAME)), 400, 100),
    ("play: game_id unknown", "POST", "/api/play", form(("game_id", "0123456789abcdef")), 404, 102),
    ("play: game_id malformed", "POST", "/api/play", form(("game_id", "../../etc/passwd")), 404, 102),
    ("play: game_id 10 KB", "POST", "/api/play", form(("game_id", "g" * BIG)), 404, 102),
    ("play: game_id of a started game", "POST", "/api/play", form(("game_id", GAME)), 409, 109),
    ("play: own started game by id", "POST", "/api/play", form(("client_id", X_ID), ("game_id", GAME)), 409, 109),
    ("play: invalid utf-8", "POST", "/api/play", raw(b"name=\xc0\xaf", FORM), 400, 100),
    (
        "play: multipart file as name",
        "POST",
        "/api/play",
        raw(
            b'--b\r\nContent-Disposition: form-data; name="name"; filename="n.txt"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\nbob\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        400,
        100,
    ),
    (
        "play: multipart truncated",
        "POST",
        "/api/play",
        raw(b"--b\r\nContent-Disposition: form-da", "multipart/form-data; boundary=b"),
        400,
        100,
    ),
    ("play: body over the limit", "POST", "/api/play", form(("name", "n" * OVER_LIMIT)), 413, 120),
    # --- POST /api/quit ---
    ("quit: client_id missing", "POST", "/api/quit", form(), 400, 100),
    ("quit: client_id empty", "POST", "/api/quit", form(("client_id", "")), 400, 100),
    ("quit: client_id twice", "POST", "/api/quit", form(("client_id", X_ID), ("client_id", O_ID)), 400, 100),
    ("quit: client_id 10 KB", "POST", "/api/quit", form(("client_id", "q" * BIG)), 400, 100),
    ("quit: unknown client id", "POST", "/api/quit", form(("client_id", "0" * 64)), 401, 101),
    ("quit: json not an object", "POST", "/api/quit", as_json([X_ID]), 400, 100),
    ("quit: json client_id list", "POST", "/api/quit", as_json({"client_id": [X_ID]}), 400, 100),
    (
        "quit: gzip that is not gzip",
        "POST",
        "/api/quit",
        ("body", b"client_id={x}", FORM, {"Content-Encoding": "gzip"}),
        400,
        100,
    ),
    # --- GET /api/updates/{game_id} ---
    *[
        (f"updates: cursor {label}", "GET", f"/api/updates/{GAME}", query(f"cursor={value}"), 400, 100)
        for label, value in [
            ("empty", ""),
            ("word", "x"),
            ("negative", "-1"),
            ("float", "1.5"),
            ("exponent", "1e2"),
            ("plus", "%2B1"),
            ("space", "%201"),
            ("arabic digit", "%D9%A3"),
            ("5000 digits", "1" * 5000),
        ]
    ],
    ("updates: cursor twice", "GET", f"/api/updates/{GAME}", query("cursor=1&cursor=2"), 400, 100),
    ("updates: cursor huge", "GET", f"/api/updates/{GAME}", query("cursor=" + "9" * 40), 400, 112),
    ("updates: cursor ahead", "GET", f"/api/updates/{GAME}", query("cursor=4"), 400, 112),
    ("updates: query invalid utf-8", "GET", f"/api/updates/{GAME}", query("cursor=0&x=%FF"), 400, 100),
    ("updates: unknown game", "GET", "/api/updates/0123456789abcdef", query("cursor=0"), 404, 102),
    ("updates: game id 65 characters", "GET", "/api/updates/" + "g" * 65, query("cursor=0"), 404, 102),
    ("updates: game id with NUL", "GET", "/api/updates/a%00b", query("cursor=0"), 404, 102),
    ("updates: game id html", "GET", "/api/updates/%3Cscript%3E", query("cursor=0"), 404, 102),
    # --- GET /api/games/{game_id}/events ---
    ("events: after negative", "GET", f"/api/games/{GAME}/events", query("after=-1"), 400, 100),
    ("events: after float", "GET", f"/api/games/{GAME}/events", query("after=0.5"), 400, 100),
    ("events: after twice", "GET", f"/api/games/{GAME}/events", query("after=0&after=1"), 400, 100),
    ("events: after huge", "GET", f"/api/games/{GAME}/events", query("after=" + "9" * 40), 400, 112),
    ("events: wait negative", "GET", f"/api/games/{GAME}/events", query("after=0&wait=-1"), 400, 100),
    ("events: wait float", "GET", f"/api/games/{GAME}/events", query("after=0&wait=0.5"), 400, 100),
    ("events: wait empty", "GET", f"/api/games/{GAME}/events", query("wait="), 400, 100),
    ("events: unknown game", "GET", "/api/games/ffffffffffffffff/events", query(""), 404, 102),
    # --- GET /api/games/{game_id} ---
    ("state: at negative", "GET", f"/api/games/{GAME}", query("at=-1"), 400, 100),
    ("state: at word", "GET", f"/api/games/{GAME}", query("at=last"), 400, 100),
    ("state: at empty", "GET", f"/api/games/{GAME}", query("at="), 400, 100),
    ("state: at huge", "GET", f"/api/games/{GAME}", query("at=" + "9" * 40), 400, 112),
    ("state: unknown game", "GET", "/api/games/ffffffffffffffff", query(""), 404, 102),
    # --- GET /api/games ---
    ("listing: limit 0", "GET", "/api/games", query("limit=0"), 400, 100),
    ("listing: limit 101", "GET", "/api/games", query("limit=101"), 400, 100),
    ("listing: limit huge", "GET", "/api/games", query("limit=" + "9" * 40), 400, 100),
    ("listing: limit negative", "GET", "/api/games", query("limit=-5"), 400, 100),
    ("listing: limit float", "GET", "/api/games", query("limit=2.5"), 400, 100),
    ("listing: state unknown", "GET", "/api/games", query("state=finished"), 400, 100),
    ("listing: state empty", "GET", "/api/games", query("state="), 400, 100),
    ("listing: state twice", "GET", "/api/games", query("state=over&state=waiting"), 400, 100),
    ("listing: state html", "GET", "/api/games", query("state=%3Cscript%3E"), 400, 100),
    # --- GET /api/games/{game_id}/stream ---
    ("stream: cursor negative", "GET", f"/api/games/{GAME}/stream", query("cursor=-1"), 400, 100),
    ("stream: cursor huge", "GET", f"/api/games/{GAME}/stream", query("cursor=" + "9" * 40), 400, 112),
    ("stream: Last-Event-ID word", "GET", f"/api/games/{GAME}/stream", query("", {"Last-Event-ID": "abc"}), 400, 100),
    (
        "stream: Last-Event-ID negative",
        "GET",
        f"/api/games/{GAME}/stream",
        query("", {"Last-Event-ID": "-1"}),
        400,
        100,
    ),
    ("stream: Last-Event-ID ahead", "GET", f"/api/games/{GAME}/stream", query("", {"Last-Event-ID": "99"}), 400, 112),
    ("stream: unknown game", "GET", "/api/games/ffffffffffffffff/stream", query(""), 404, 102),
]

# Accepted as text: the server stores and sends exactly what was written; escaping is the client's job.
ACCEPTED_TEXT = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "' OR 1=1; DROP TABLE events; --",
    "{{7*7}} ${7*7} %s %n",
    "\u0645\u0631\u062d\u0628\u0627",  # right-to-left script without overrides is just text
    "\U0001f600 e\u0301",
]


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, tuple):  # form pairs
        return urlencode([(key, fill(text, ids)) for key, text in value]).encode()
    if isinstance(value, str):
        for key, real in ids.items():
            value = value.replace(key, real)
        return value
    if isinstance(value, bytes):
        for key, real in ids.items():
            value = value.replace(key.encode(), real.encode())
        return value
    return value


def snapshot(db: str) -> tuple[list[tuple], list[tuple]]:
    """The whole log and read model, as stored."""
    with sqlite3.connect(db) as conn:
        events = conn.execute("SELECT * FROM events ORDER BY id").fetchall()
        games = conn.execute("SELECT * FROM games ORDER BY game_id").fetchall()
    return events, games


def count_tried(request, inputs: int = 1) -> None:
    stash = request.config.stash
    stash[HOSTILE_INPUTS_TRIED] = stash.get(HOSTILE_INPUTS_TRIED, 0) + inputs


@pytest.mark.parametrize(("label", "method", "path", "payload", "status", "code"), CASES, ids=[c[0] for c in CASES])
async def test_hostile_input_gets_its_protocol_error_and_changes_nothing(
    request, client, config, label, method, path, payload, status, code
):
    game = await start_game(client)
    ids = {X_ID: game.x, O_ID: game.o, GAME: game.game_id, O_NAME: game.names["O"]}
    before = snapshot(config.db)
    if payload[0] == "body":
        _, body, content_type, *extra = payload
        headers = {"Content-Type": content_type, **(extra[0] if extra else {})}
        response = await client.request(method, path.replace(GAME, game.game_id), data=fill(body, ids), headers=headers)
    else:
        _, text, headers = payload
        url = path.replace(GAME, game.game_id) + ("?" + text if text else "")
        response = await client.request(method, url, headers=headers)
    message = await expect_error(response, status, code)
    assert game.x not in message and game.o not in message
    assert snapshot(config.db) == before
    count_tried(request)


@pytest.mark.parametrize("text", ACCEPTED_TEXT)
async def test_markup_and_other_scripts_are_accepted_as_text_and_stored_exactly(request, client, text):
    game = await start_game(client)
    response = await client.post("/api/chat", json={"client_id": game.x, "message": text})
    assert response.status == 200
    player = await client.post("/api/play", json={"name": text[:32]})
    assert player.status == 200, await player.text()
    events = await timeline(client, game.game_id)
    assert events[-1]["type"] == "chat" and events[-1]["message"] == text
    assert (await player.json())["name"] == text[:32].strip(" ")
    count_tried(request, 2)
