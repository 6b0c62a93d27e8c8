"""The benchmark's own tools keep working: the load generator drives the reference server and
the real program, and the long log that run.py builds is a sound one. No figure is checked."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tictactoe import cli

from .processes import ROOT, free_port


def _bench_run():  # bench/run.py by its path: `run` alone would be the server's run.py
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = sys.modules["bench_run"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


KEYS = {
    "moves_per_s",
    "notify_ms",
    "errors",
    "error_count",
    "polls_open",
    "pollers_alive",
    "client_cpu",
    "server",
}


def start(args: list[str], port: int, folder: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(args, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            assert process.poll() is None, "the server exited"
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the server did not answer /healthz")


def loadgen(port: int, pid: int) -> dict:
    args = [sys.executable, str(ROOT / "bench" / "loadgen.py"), f"--url=http://127.0.0.1:{port}"]
    args += ["--games=4", "--spectators=1", "--think=0.05", "--duration=1.5", "--warmup=0.5", f"--server-pid={pid}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("kind", ["reference", "server"])
def test_the_load_generator_plays_games_against_a_server_and_prints_its_figures(tmp_path, kind):
    port = free_port()
    if kind == "reference":
        args = [sys.executable, str(ROOT / "bench" / "reference_server.py"), f"--port={port}"]
    else:
        args = [sys.executable, str(ROOT / "run.py"), f"--port={port}", "--db=games.db"]
    server = start(args, port, tmp_path)
    try:
        result = loadgen(port, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert result.keys() >= KEYS
    assert result["moves"] > 0 and result["error_count"] == 0, result
    assert result["notify_ms"]["samples"] > 0 and result["server"]["cpu_us_per_move"] > 0
    assert ("sqlite" in result) == (kind == "server")


def test_the_long_log_of_the_start_up_benchmark_is_sound_and_has_its_unfinished_games(tmp_path, capsys):
    db = tmp_path / "log.db"
    _bench_run().build_log(db, events=500, unfinished=7)
    assert cli.main(["verify", "--db", str(db)]) == 0
    assert cli.main(["games", "--db", str(db), "--state", "playing", "--limit", "100"]) == 0
    assert capsys.readouterr().out.count(" playing ") == 7


def test_the_a_b_tool_runs_both_sides_at_once_and_prints_their_ratios(tmp_path):
    args = [sys.executable, str(ROOT / "bench" / "ab.py"), "reference", f"{ROOT}:TICTACTOE_LOG_LEVEL=warning"]
    args += ["--rounds=1", "--games=4", "--duration=1.5", "--warmup=0.5"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path)
    assert "round 1: A " in done.stdout and "CPU per move, B/A: median " in done.stdout, done.stdout
    assert "notify p99, B/A: median " in done.stdout, done.stdout


def test_the_full_run_measures_the_cpu_ratio_side_by_side_and_reports_it_under_the_table():
    bench_run = _bench_run()
    load = bench_run.Load("side_by_side", 4, duration=1.5, warmup=0.5, min_runs=2)
    rounds = bench_run.side_by_side(load)
    assert len(rounds) == 2
    assert all(r["reference"] > 0 and r["server"] > 0 for r in rounds), rounds
    line = bench_run.side_by_side_line(load, rounds)
    assert "side by side" in line and "4 games each" in line and "2 round(s)" in line, line


async def test_a_move_sent_before_its_player_sees_the_game_end_is_still_awaited_and_counted(aiohttp_server):
    # A server may wake the pollers with the winning move before it answers that move itself;
    # the load generator must not drop the move's request (nor leave it uncounted) when its
    # poller sees the end first.
    from aiohttp import ClientSession, web

    spec = importlib.util.spec_from_file_location("bench_loadgen", ROOT / "bench" / "loadgen.py")
    loadgen_module = sys.modules["bench_loadgen"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loadgen_module)
    moved = asyncio.Event()
    status = {"type": "status", "cursor": 1, "board": "XX_OO____", "turn": "X", "playerX": "me", "playerO": "you"}
    win = {"type": "move", "cursor": 2, "board": "XXXOO____", "player": "X", "position": 2, "winner": "X"}

    async def updates(request: web.Request) -> web.Response:
        if request.query["cursor"] == "0":
            return web.json_response(status)
        await moved.wait()  # the winning move, as soon as it was played...
        return web.json_response(win)

    async def move(request: web.Request) -> web.Response:
        moved.set()
        await asyncio.sleep(0.3)  # ...and its own answer well after
        return web.json_response({"cursor": 2})

    app = web.Application()
    app.router.add_get("/api/updates/{game_id}", updates)
    app.router.add_post("/api/move", move)
    server = await aiohttp_server(app)
    now = time.monotonic()
    plan = loadgen_module.Plan(str(server.make_url("")).rstrip("/"), 1, 0, 0.0, now, 0.0, now, now + 60, 0)
    async with ClientSession() as session:
        worker = loadgen_module.Worker(plan, session)
        await worker.play_game("c" * 32, "me", "g")
        assert worker.result.games_finished == 1 and worker.result.moves == 0  # the end came first
        await asyncio.sleep(0.5)
    assert worker.result.moves == 1 and not worker.result.errors
