"""The real program as a user runs it: started as a process, killed, stopped, restarted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from .processes import ROOT, call


async def test_kill_9_mid_game_then_restart_and_finish_with_the_same_ids_and_cursors(server, tmp_path):
    first = server().start()
    async with aiohttp.ClientSession() as http:
        _, a = await call(http, "POST", f"{first.url}/api/play", name="alice")
        _, b = await call(http, "POST", f"{first.url}/api/play", name="bob")
        game = a["game_id"]
        _, status = await call(http, "GET", f"{first.url}/api/updates/{game}?cursor=2")
        x, o = (a, b) if status["playerX"] == "alice" else (b, a)
        assert await call(http, "POST", f"{first.url}/api/move", client_id=x["client_id"], position="0") == (
            200,
            {"cursor": 4},
        )
        first.signal(signal.SIGKILL)

        second = server().start()
        _, resumed = await call(http, "POST", f"{second.url}/api/play", client_id=o["client_id"], resume="true")
        assert resumed["game_id"] == game
        _, seen = await call(http, "GET", f"{second.url}/api/updates/{game}?cursor=3")
        assert seen["type"] == "move" and seen["position"] == 0  # the acknowledged move survived
        moves = [(o, 3), (x, 1), (o, 4), (x, 2)]
        cursors = [
            (await call(http, "POST", f"{second.url}/api/move", client_id=p["client_id"], position=str(pos)))[1]
            for p, pos in moves
        ]
        assert cursors == [{"cursor": 5}, {"cursor": 6}, {"cursor": 7}, {"cursor": 8}]
        _, end = await call(http, "GET", f"{second.url}/api/updates/{game}?cursor=8")
        assert end["type"] == "end" and end["result"] == "X"
        second.signal(signal.SIGTERM)


async def test_the_real_program_forgets_a_long_poll_whose_client_hung_up(server):
    running = server("--poll-timeout", "60").start()
    async with aiohttp.ClientSession() as http:
        _, a = await call(http, "POST", f"{running.url}/api/play", name="alice")
        polls = [
            asyncio.create_task(call(http, "GET", f"{running.url}/api/updates/{a['game_id']}?cursor=1"))
            for _ in range(3)
        ]
        await asyncio.sleep(0.3)
        _, health = await call(http, "GET", f"{running.url}/healthz")
        assert health["polls_waiting"] == 3
        for task in polls:
            task.cancel()  # the clients hang up
        await asyncio.gather(*polls, return_exceptions=True)
        await asyncio.sleep(0.3)
        _, health = await call(http, "GET", f"{running.url}/healthz")
        assert health["polls_waiting"] == 0


async def play_fast(http: aiohttp.ClientSession, url: str, index: int, answers: list) -> None:
    """Two clients play one game as fast as they can; every move and its answer (None if the
    connection dropped) goes into `answers` as (game, position, answer)."""
    _, a = await call(http, "POST", f"{url}/api/play", name=f"fast{index}a", private="true")
    game = a["game_id"]
    _, b = await call(http, "POST", f"{url}/api/play", name=f"fast{index}b", game_id=game)
    _, status = await call(http, "GET", f"{url}/api/updates/{game}?cursor=2")
    players = [a, b] if status["playerX"] == a["name"] else [b, a]
    free = list(range(9))
    turn = 0
    while free:
        position = free.pop(index * 7 % len(free))
        try:
            answer = await call(
                http, "POST", f"{url}/api/move", client_id=players[turn]["client_id"], position=str(position)
            )
        except aiohttp.ClientError:
            answers.append((game, position, None))
            return
        answers.append((game, position, answer))
        if answer[0] != 200:
            return  # refused: the game is over, or the server is stopping
        turn = 1 - turn


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_answers_polls_204_commits_or_leaves_unanswered_each_move_and_restarts_clean(
    server, tmp_path, sig
):
    running = server("--poll-timeout", "60").start()
    answers: list = []
    async with aiohttp.ClientSession() as http:
        _, a = await call(http, "POST", f"{running.url}/api/play", name="alice")
        await call(http, "POST", f"{running.url}/api/play", name="bob")
        polls = [
            asyncio.create_task(call(http, "GET", f"{running.url}/api/updates/{a['game_id']}?cursor=3"))
            for _ in range(5)
        ]
        players = [asyncio.create_task(play_fast(http, running.url, i, answers)) for i in range(8)]
        while len([1 for *_, answer in answers if answer and answer[0] == 200]) < 8:  # moves are under way
            assert not all(p.done() for p in players), [p.result() for p in players]
            await asyncio.sleep(0.01)
        assert running.process is not None
        running.process.send_signal(sig)
        statuses = await asyncio.wait_for(asyncio.gather(*polls), 30)
        assert all(status == 204 for status, _ in statuses)
        await asyncio.wait_for(asyncio.gather(*players, return_exceptions=True), 30)
        assert await asyncio.to_thread(running.process.wait, 15) == 0
    assert "database closed cleanly" in running.log()
    assert not (tmp_path / "games.db-wal").exists() or os.path.getsize(tmp_path / "games.db-wal") == 0
    with sqlite3.connect(tmp_path / "games.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        moves = {
            (game, cursor): json.loads(data)["position"]
            for game, cursor, data in db.execute("SELECT game_id, cursor, data FROM events WHERE type = 'move'")
        }
    answered = [
        (game, position, answer[1]["cursor"]) for game, position, answer in answers if answer and answer[0] == 200
    ]
    assert answered and all(moves.get((game, cursor)) == position for game, position, cursor in answered)
    for game, position, answer in answers:  # refused (the game was over, or the store closing): not stored
        if answer is not None and answer[0] != 200:
            assert answer[0] in (409, 503), answer
            assert position not in [p for (g, _), p in moves.items() if g == game], answer
    # Each move is stored at most once (the rules forbid a cell twice) and the log verifies.
    verified = subprocess.run(
        [sys.executable, "-m", "tictactoe", "verify", "--db", "games.db"], cwd=tmp_path, capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout
    # The next start is clean: no recovery, no warning, and the games go on where they were.
    log_before = len(running.log())
    again = server("--poll-timeout", "60").start()
    async with aiohttp.ClientSession() as http:
        _, health = await call(http, "GET", f"{again.url}/healthz")
        assert health["status"] == "ok"
    again.signal(signal.SIGTERM)
    second_run = again.log()[log_before:]
    assert " WARNING " not in second_run and " ERROR " not in second_run, second_run


def test_bad_configuration_is_a_one_line_error_not_a_traceback(tmp_path):
    (tmp_path / "config.toml").write_text("port = 'eighty'\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py")], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "port" in result.stderr and "eighty" in result.stderr


def test_the_console_script_and_python_m_serve_and_report_the_version(tmp_path):
    for command in (["tictactoe"], [sys.executable, "-m", "tictactoe"]):
        exe = Path(sys.executable).parent / "tictactoe" if command == ["tictactoe"] else None
        args = [str(exe)] if exe else command
        result = subprocess.run([*args, "--version"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and result.stdout.startswith("tictactoe ")
        help_text = subprocess.run([*args, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
        for flag in ("--config", "--host", "--port", "--db", "--poll-timeout", "--pending-timeout", "--turn-timeout"):
            assert flag in help_text
    # run.py (and the one-file build made from it) serves when given no command, but --help lists them.
    commands = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--help"], capture_output=True, text=True, timeout=30
    )
    assert commands.returncode == 0 and all(name in commands.stdout for name in ("serve", "replay", "backup"))
