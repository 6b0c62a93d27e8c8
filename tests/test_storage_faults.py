"""Storage errors against the real server process: a database locked by another process, one made
read-only under the server, and a full disk. Each refusal is 503 with code 130 and changes nothing;
what was acknowledged stays; and the server heals by itself once the storage is back."""

from __future__ import annotations

import contextlib
import errno
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from .processes import Server, tool


@contextlib.contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process (this one) holds the database's write lock."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def _chattr(flag: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chattr", flag, *map(str, files)], capture_output=True, text=True)


@contextlib.contextmanager
def read_only(db: Path) -> Iterator[None]:
    """The database and its WAL become immutable (we run as root: chmod would not stop a write).
    Not the -shm file: SQLite maps it, and a write to an immutable mapped page is a SIGBUS."""
    files = [db, db.with_name(db.name + "-wal")]
    done = _chattr("+i", *files)
    if done.returncode != 0:
        pytest.skip(f"chattr +i does not work here ({done.stderr.strip()}): cannot make the database read-only")
    try:
        yield
    finally:
        _chattr("-i", *files)


@contextlib.contextmanager
def full_disk(db: Path) -> Iterator[None]:
    """Fill the small filesystem the database lives on, then free it."""
    filler = db.parent / "filler"
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):  # unbuffered: close can't fail
        while True:
            out.write(b"\0" * 4096)
    try:
        yield
    finally:
        filler.unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted in the test's folder (root only; skipped where mount is refused)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}): no way to fill a disk safely")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def call(http: aiohttp.ClientSession, method: str, url: str, **data: str) -> tuple[int, object]:
    async with http.request(method, url, data=data or None) as response:
        return response.status, (await response.json() if response.status != 204 else None)


def is_storage_unavailable(answer: tuple[int, object]) -> bool:
    status, body = answer
    return status == 503 and isinstance(body, dict) and body["error"]["code"] == 130


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault", [locked, read_only, full_disk], ids=["locked", "read-only", "full-disk"])
async def test_a_storage_fault_answers_503_loses_nothing_and_heals_by_itself(fault, tmp_path, request):
    folder = request.getfixturevalue("small_disk") if fault is full_disk else tmp_path
    db = folder / "games.db"
    # A short busy timeout: a locked database is refused in half a second rather than five.
    server = Server(tmp_path, "--poll-timeout", "2", db=str(db), env={"TICTACTOE_SQLITE_BUSY_TIMEOUT": "0.5"})
    server.start()
    url = server.url
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            _, a = await call(http, "POST", f"{url}/api/play", name="alice")
            _, b = await call(http, "POST", f"{url}/api/play", name="bob")
            game = a["game_id"]
            _, status = await call(http, "GET", f"{url}/api/updates/{game}?cursor=2")
            x, o = (a, b) if status["playerX"] == "alice" else (b, a)
            assert await call(http, "POST", f"{url}/api/move", client_id=x["client_id"], position="4") == (
                200,
                {"cursor": 4},
            )

            with fault(db):
                refused = [
                    await call(http, "POST", f"{url}/api/move", client_id=o["client_id"], position="0"),
                    await call(http, "POST", f"{url}/api/chat", client_id=x["client_id"], message="hello?"),
                    await call(http, "POST", f"{url}/api/play", name="carol"),
                    await call(http, "POST", f"{url}/api/move", client_id=o["client_id"], position="0"),
                ]
                assert all(is_storage_unavailable(answer) for answer in refused), refused
                # What was acknowledged is still served while the storage is down.
                _, seen = await call(http, "GET", f"{url}/api/updates/{game}?cursor=3")
                assert seen["type"] == "move" and seen["position"] == 4

            # Back by itself: the same move now commits, at the cursor right after the last
            # acknowledged one (the refused attempts advanced neither the log nor the cache).
            assert await call(http, "POST", f"{url}/api/move", client_id=o["client_id"], position="0") == (
                200,
                {"cursor": 5},
            )
            assert await call(http, "POST", f"{url}/api/move", client_id=x["client_id"], position="1") == (
                200,
                {"cursor": 6},
            )
            assert (await call(http, "POST", f"{url}/api/play", name="carol"))[0] == 200
            _, cached = await call(http, "GET", f"{url}/api/games/{game}/events?after=0")
            _, logged = await call(http, "GET", f"{url}/api/games/{game}")
            assert cached == logged["events"]  # what the server holds in memory is its log
            assert [e["type"] for e in cached] == ["connect", "connect", "status", "move", "move", "move"]
        assert server.signal(signal.SIGTERM) == 0
    finally:
        server.stop()
    verified = tool(tmp_path, "verify", "--db", str(db))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert check.execute("SELECT count(*) FROM events WHERE type = 'chat'").fetchone()[0] == 0
        assert check.execute("SELECT count(DISTINCT game_id) FROM events").fetchone()[0] == 2  # and carol's
    assert "Traceback" not in server.log()


def test_the_full_disk_fault_really_fills_the_disk(small_disk):
    """The full-disk test proves something only if its disk is truly full while the fault holds."""
    db = small_disk / "games.db"
    db.write_bytes(b"")
    with full_disk(db), pytest.raises(OSError) as err, open(small_disk / "more", "wb", buffering=0) as more:
        more.write(b"\0" * 8192)
    assert err.value.errno == errno.ENOSPC
