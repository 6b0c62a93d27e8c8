"""The builds a self-hoster downloads: `make dist` (one executable, no Python needed) and
`make zipapp` (one file for a machine with Python). Each is built once per test session (make
skips the build when nothing that goes into it changed) and run from an empty folder."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tictactoe import __version__

from .processes import ROOT, call

BUILD_TIMEOUT = 900


def make(target: str) -> Path:
    result = subprocess.run(
        ["make", "-s", target, f"PYTHON={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return ROOT / "dist" / {"dist": "tictactoe", "zipapp": "tictactoe.pyz"}[target]


@pytest.fixture(scope="session")
def one_file() -> Path:
    return make("dist")


@pytest.fixture(scope="session")
def zipapp() -> Path:
    return make("zipapp")


def bare_env(home: Path) -> dict[str, str]:
    """No virtualenv, no PYTHONPATH: only what a fresh machine has."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


async def play_until_x_wins(http: aiohttp.ClientSession, url: str) -> str:
    """Two players, X takes the top row; returns the game id once the end event is seen."""
    _, a = await call(http, "POST", f"{url}/api/play", name="alice")
    _, b = await call(http, "POST", f"{url}/api/play", name="bob")
    game = a["game_id"]
    _, status = await call(http, "GET", f"{url}/api/updates/{game}?cursor=2")
    x, o = (a, b) if status["playerX"] == "alice" else (b, a)
    for player, position in [(x, 0), (o, 3), (x, 1), (o, 4), (x, 2)]:
        answer, _ = await call(http, "POST", f"{url}/api/move", client_id=player["client_id"], position=str(position))
        assert answer == 200
    _, end = await call(http, "GET", f"{url}/api/updates/{game}?cursor=8")
    assert end["type"] == "end" and end["result"] == "X"
    return game


def applied_migrations(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def shipped_migrations() -> list[str]:
    return sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))


@pytest.mark.timeout(BUILD_TIMEOUT + 120)
async def test_the_one_file_build_serves_a_whole_game_from_an_empty_folder_with_the_migrations_inside_it(
    one_file, tmp_path, server
):
    folder = tmp_path / "empty"
    folder.mkdir()
    running = server(folder=folder, command=[str(one_file), "serve"]).start(env=bare_env(tmp_path))
    async with aiohttp.ClientSession() as http:
        _, health = await call(http, "GET", f"{running.url}/healthz")
        assert health["version"] == __version__
        for path in ("/", "/static/js/main.js"):  # the browser client is inside the file too
            async with http.get(running.url + path) as page:
                assert page.status == 200 and len(await page.read()) > 500, path
        game = await play_until_x_wins(http, running.url)
    assert running.signal(signal.SIGTERM) == 0
    # The schema came from inside the file: nothing beside it but the database and the log.
    assert applied_migrations(folder / "games.db") == shipped_migrations()
    assert not (folder / "migrations").exists()
    assert {p.name for p in folder.iterdir()} <= {"games.db", "games.db-wal", "games.db-shm", "server.log"}
    log = running.log()
    assert f"tictactoe {__version__}: database {folder / 'games.db'} (schema {shipped_migrations()[-1]})" in log

    def tool(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(one_file), *args, "--db", "games.db"],
            cwd=folder,
            env=bare_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )

    replay = tool("replay", game)
    assert replay.returncode == 0 and "result X" in replay.stdout, replay.stderr
    verify = tool("verify")
    assert verify.returncode == 0 and "1 games checked, 0 bad" in verify.stdout, verify.stderr
    assert tool("backup", "copy.db").returncode == 0
    assert applied_migrations(folder / "copy.db") == shipped_migrations()
    version = subprocess.run([str(one_file), "--version"], capture_output=True, text=True, timeout=120)
    assert version.stdout.strip() == f"tictactoe {__version__}"


@pytest.mark.timeout(BUILD_TIMEOUT + 120)
async def test_the_zipapp_runs_on_a_bare_python_with_the_migrations_it_ships(zipapp, tmp_path, server):
    # The base interpreter with -S: no virtualenv, no site-packages, no source tree on the path,
    # so tictactoe and its migrations can only come from inside the zipapp (installed as a wheel).
    python = [getattr(sys, "_base_executable", sys.executable), "-S", str(zipapp)]
    env = {**bare_env(tmp_path), "SHIV_ROOT": str(tmp_path / "shiv")}
    folder = tmp_path / "empty"
    folder.mkdir()
    running = server(folder=folder, command=[*python, "serve"]).start(env=env)
    async with aiohttp.ClientSession() as http:
        _, health = await call(http, "GET", f"{running.url}/healthz")
        assert health["version"] == __version__
        await play_until_x_wins(http, running.url)
    assert running.signal(signal.SIGTERM) == 0
    assert applied_migrations(folder / "games.db") == shipped_migrations()
    assert not (folder / "migrations").exists()
