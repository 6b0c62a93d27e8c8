"""The server's log as an operator reads it: start-up facts, one line per request with its wait,
text for people or JSON for shippers, and never a client id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from tictactoe import __version__, logs
from tictactoe.app import AccessLogger
from tictactoe.store import migration_files

from .processes import call

LATEST_MIGRATION = migration_files()[-1].name

COMMON_LOG_LINE = re.compile(
    r'^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "(?P<method>[A-Z]+) (?P<path>\S+) '
    r'HTTP/1\.1" (?P<status>\d{3}) (?P<bytes>\d+|-) (?P<seconds>\d+\.\d{3})$'
)
# What a log shipper gets for a request, field for field.
ACCESS_FIELDS = ["time", "level", "logger", "message", "remote", "method", "path", "status", "bytes", "duration"]


async def test_json_logs_are_one_object_per_line_with_startup_facts_and_each_request_with_its_wait(server, tmp_path):
    running = server("--log-format", "json", "--poll-timeout", "1").start()
    async with aiohttp.ClientSession() as http:
        _, alice = await call(http, "POST", f"{running.url}/api/play", name="alice")
        game, secret = alice["game_id"], alice["client_id"]
        # A client id in a query string or a body must stay out of the log.
        assert (await call(http, "GET", f"{running.url}/api/updates/{game}?cursor=1&client_id={secret}"))[0] == 204
        await call(http, "POST", f"{running.url}/api/move", client_id=secret, position="4")
    assert running.signal(signal.SIGTERM) == 0
    log = running.log()
    assert secret not in log
    lines = [json.loads(line) for line in log.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    start = next(line for line in lines if "restored" in line)
    assert start["version"] == __version__ and start["db"] == str(tmp_path / "games.db")
    assert (start["schema"], start["restored"]) == (LATEST_MIGRATION, 0) and start["seconds"] >= 0
    access = [line for line in lines if line["logger"] == "tictactoe.access"]
    assert all(list(a) == ACCESS_FIELDS for a in access)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["time"]) for a in access)
    assert {(a["level"], a["remote"]) for a in access} == {("info", "127.0.0.1")}
    assert all(type(a["bytes"]) is int and type(a["duration"]) is float for a in access)
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("POST", "/api/play", 200),
        ("GET", f"/api/updates/{game}", 204),
        ("POST", "/api/move", 409),
    ]
    assert access[1]["duration"] >= 0.9  # the poll waited its timeout, and the line says so
    assert all(COMMON_LOG_LINE.match(a["message"]) for a in access)


async def test_text_logs_give_startup_facts_and_a_common_log_line_per_request(server, tmp_path):
    first = server().start()
    async with aiohttp.ClientSession() as http:
        _, alice = await call(http, "POST", f"{first.url}/api/play", name="alice")
    assert first.signal(signal.SIGTERM) == 0
    second = server("--poll-timeout", "1").start()  # same database: alice's waiting game comes back
    async with aiohttp.ClientSession() as http:
        await call(http, "GET", f"{second.url}/healthz")
        # A client id in the query string stays out of the log.
        await call(http, "GET", f"{second.url}/api/updates/{alice['game_id']}?cursor=1&client_id={alice['client_id']}")
    assert second.signal(signal.SIGTERM) == 0
    log = second.log()
    assert alice["client_id"] not in log
    assert f"tictactoe {__version__}: database {tmp_path / 'games.db'} (schema {LATEST_MIGRATION})" in log
    assert "1 unfinished games restored in" in log
    requests = [m for line in log.splitlines() if (m := COMMON_LOG_LINE.match(line))]
    assert [(m["method"], m["path"], m["status"]) for m in requests] == [
        ("POST", "/api/play", "200"),
        ("GET", "/healthz", "200"),
        ("GET", f"/api/updates/{alice['game_id']}", "204"),
    ]
    assert float(requests[2]["seconds"]) >= 0.9  # the poll waited its timeout, and the line says so


async def test_log_level_from_the_config_file_silences_request_lines(server, tmp_path):
    (tmp_path / "config.toml").write_text('log_level = "warning"\n')
    running = server().start()
    async with aiohttp.ClientSession() as http:
        await call(http, "GET", f"{running.url}/healthz")
    assert running.signal(signal.SIGTERM) == 0
    assert "GET /healthz" not in running.log() and "restored" not in running.log()


async def test_request_lines_appear_soon_and_a_clean_stop_writes_every_one_before_the_last_words(server):
    running = server("--poll-timeout", "60").start()
    async with aiohttp.ClientSession() as http:
        _, alice = await call(http, "POST", f"{running.url}/api/play", name="alice")
        deadline = time.monotonic() + 5  # written within a fraction of a second while the server runs
        while "POST /api/play" not in running.log():
            assert time.monotonic() < deadline, running.log()
            await asyncio.sleep(0.05)
        poll = asyncio.ensure_future(call(http, "GET", f"{running.url}/api/updates/{alice['game_id']}?cursor=1"))
        while (await call(http, "GET", f"{running.url}/healthz"))[1]["polls_waiting"] == 0:
            await asyncio.sleep(0.05)
        for _ in range(50):
            await call(http, "GET", f"{running.url}/healthz")
        # Stopped at once: the last lines, and the parked poll's 204, are still waiting to be written.
        assert await asyncio.to_thread(running.signal, signal.SIGTERM) == 0
        assert (await poll)[0] == 204
    lines = running.log().splitlines()
    requests = [(m["method"], m["path"], m["status"]) for line in lines if (m := COMMON_LOG_LINE.match(line))]
    assert requests.count(("GET", "/healthz", "200")) >= 51
    assert requests[-1] == ("GET", f"/api/updates/{alice['game_id']}", "204")
    # The poll answered while stopping is written before what the server said after it.
    last_request = max(i for i, line in enumerate(lines) if COMMON_LOG_LINE.match(line))
    assert last_request < next(i for i, line in enumerate(lines) if line.endswith("database closed cleanly"))


@pytest.fixture
def text_log():
    """The root logger writing text at info to a string, as it was again afterwards."""
    out, root = io.StringIO(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("info", "text", out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_a_request_line_is_written_before_any_later_record_and_not_at_all_below_info(text_log):
    access = AccessLogger(logging.getLogger(logs.ACCESS_LOGGER), "")
    assert access.enabled
    access.log(make_mocked_request("GET", "/api/updates/g1?cursor=3&client_id=SECRET"), web.Response(status=204), 1)
    assert text_log.getvalue() == ""  # held in memory, for a moment
    logging.getLogger("tictactoe").warning("a later warning")
    written = text_log.getvalue()
    logs.configure("warning", "text", io.StringIO())
    assert not AccessLogger(logging.getLogger(logs.ACCESS_LOGGER), "").enabled  # aiohttp will not call it
    request, warning = written.splitlines()
    assert re.fullmatch(r'- - - \[.+\] "GET /api/updates/g1 HTTP/1\.1" 204 - 1\.000', request)
    assert warning.endswith(" WARNING tictactoe: a later warning")


async def test_a_path_with_a_decoded_line_break_cannot_forge_a_log_line(text_log):
    access = AccessLogger(logging.getLogger(logs.ACCESS_LOGGER), "")
    forged = '/x%0A127.0.0.1 - - [01/Jan/2026:00:00:00 +0000] "POST /api/move HTTP/1.1" 200 13 0.001'
    access.log(make_mocked_request("GET", forged), web.Response(status=404), 0)
    logging.getLogger().handlers[0].flush()
    (line,) = text_log.getvalue().splitlines()
    assert '"GET /x\\n127.0.0.1 - - [01/Jan/2026' in line and line.endswith(" 404 - 0.000")


def test_a_traceback_in_json_is_one_line_with_an_exception_field():
    out, root = io.StringIO(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("info", "json", out)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("tictactoe.errors").exception("unexpected error in %s %s", "GET", "/x")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)  # through setLevel: it clears the loggers' cached levels
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "unexpected error in GET /x" and record["level"] == "error"
    assert "RuntimeError: boom" in record["exception"]
