"""The operator tools on a real database made by playing real games through the HTTP API."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import play_moves, post, start_game


def tictactoe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tictactoe", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


async def run(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(tictactoe, *args)


@pytest.fixture
async def played(make_client, config):
    """A database with a won game, a drawn game, a game in progress and a waiting game."""
    client = await make_client(config)
    won = await start_game(client, "alice", "bob")
    await play_moves(client, won, [0, 3, 1, 4, 2])
    drawn = await start_game(client, "carol", "dave")
    await play_moves(client, drawn, [0, 1, 2, 4, 3, 5, 7, 6, 8])
    live = await start_game(client, "erin", "frank")
    await play_moves(client, live, [4, 0])
    await post(client, "/api/chat", client_id=live.o, message="<b>hi</b>")
    waiting = await post(client, "/api/play", name="gus")
    at = {}
    for game in (won, live):
        at[game.game_id] = await (await client.get(f"/api/games/{game.game_id}", params={"at": "5"})).json()
    await client.close()
    return {"db": config.db, "won": won, "drawn": drawn, "live": live, "waiting": waiting["game_id"], "at": at}


async def test_replay_shows_every_event_the_board_after_each_move_and_the_result(played):
    won = played["won"]
    result = await run("replay", won.game_id, "--db", played["db"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b[" not in out  # a pipe gets plain text
    for cursor, kind in [(1, "connect"), (3, "status"), (4, "move"), (8, "move"), (9, "end")]:
        assert any(line.split()[:1] == [str(cursor)] and kind in line for line in out.splitlines())
    assert "X | X | X" in out  # the winning board, drawn as a grid
    assert out.count("--+---+--") == 2 * 5 + 2  # five moves and the final state
    assert "player X won (result X)" in out


async def test_replay_at_stops_at_that_cursor_and_prints_the_state_there(played):
    won = played["won"]
    out = (await run("replay", won.game_id, "--at", "5", "--db", played["db"])).stdout
    assert "at cursor 5" in out and "X to move" in out and "player X won" not in out
    assert "X | · | ·" in out and "O | · | ·" in out


async def test_replay_json_prints_states_as_json_lines_the_same_view_as_http(played):
    for game in (played["won"], played["live"]):
        result = await run("replay", game.game_id, "--at", "5", "--json", "--db", played["db"])
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [line["cursor"] for line in lines] == [1, 2, 3, 4, 5]
        assert lines[-1]["event"]["cursor"] == 5
        over_http = {k: v for k, v in played["at"][game.game_id].items() if k != "events"}
        assert {k: v for k, v in lines[-1].items() if k != "event"} == over_http


async def test_games_lists_each_game_with_players_state_moves_and_result(played):
    out = (await run("games", "--db", played["db"])).stdout
    assert played["won"].game_id in out and played["waiting"] in out
    over = (await run("games", "--state", "over", "--db", played["db"])).stdout
    assert played["won"].game_id in over and played["drawn"].game_id in over
    assert played["live"].game_id not in over
    assert "alice (X) v bob (O)" in over or "bob (X) v alice (O)" in over
    waiting = (await run("games", "--state", "waiting", "--limit", "5", "--db", played["db"])).stdout
    assert "gus" in waiting and "waiting" in waiting


async def test_verify_passes_on_a_sound_log(played):
    result = await run("verify", "--db", played["db"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 games checked, 0 bad" in result.stdout
    assert (await run("verify", played["won"].game_id, "--db", played["db"])).returncode == 0


async def test_verify_passes_on_private_and_bot_games(make_client, config):
    client = await make_client(config)
    private = await post(client, "/api/play", name="hana", private="true")
    await post(client, "/api/play", name="ivan", game_id=private["game_id"])
    await post(client, "/api/play", name="jo", private="true")  # still waiting for a friend
    await post(client, "/api/play", name="kim", opponent="bot")
    await client.close()
    result = await run("verify", "--db", config.db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 games checked, 0 bad" in result.stdout


def _tamper(db: str, sql: str, *params: object) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)


@pytest.mark.parametrize(
    ("damage", "cursor", "rule"),
    [
        ("illegal", 7, "illegal move: cell 4 is taken"),
        ("gap", 8, "cursor gap: expected cursor 7"),
        ("after_end", 10, "after the end of the game"),
        ("board", 5, "the stored board"),
        ("out_of_turn", 7, "not your turn"),
    ],
)
async def test_verify_names_the_game_the_cursor_and_the_broken_rule(played, damage, cursor, rule):
    db, live, won = played["db"], played["live"], played["won"]
    ts = "2030-01-01T00:00:00.000Z"  # later than every real event: time must not go backwards
    o_actor = f"(SELECT actor FROM events WHERE game_id = '{live.game_id}' AND cursor = 5)"
    x_actor = f"(SELECT actor FROM events WHERE game_id = '{live.game_id}' AND cursor = 4)"
    target = won.game_id if damage == "after_end" else live.game_id
    if damage == "illegal":  # X plays the centre again
        data = json.dumps(
            {
                "type": "move",
                "cursor": 7,
                "timestamp": ts,
                "board": "O___X____",
                "player": "X",
                "position": 4,
                "turn": "O",
            }
        )
        _tamper(
            db,
            f"INSERT INTO events (game_id, cursor, type, data, actor, created_at) "
            f"VALUES (?, 7, 'move', ?, {x_actor}, ?)",
            live.game_id,
            data,
            ts,
        )
    elif damage == "gap":
        data = json.dumps({"type": "chat", "cursor": 8, "timestamp": ts, "name": "erin", "message": "x"})
        _tamper(
            db,
            "INSERT INTO events (game_id, cursor, type, data, created_at) VALUES (?, 8, 'chat', ?, ?)",
            live.game_id,
            data,
            ts,
        )
    elif damage == "after_end":
        data = json.dumps({"type": "chat", "cursor": 10, "timestamp": ts, "name": "alice", "message": "late"})
        _tamper(
            db,
            "INSERT INTO events (game_id, cursor, type, data, created_at) VALUES (?, 10, 'chat', ?, ?)",
            won.game_id,
            data,
            ts,
        )
    elif damage == "board":
        _tamper(
            db,
            'UPDATE events SET data = replace(data, \'"board":"O___X____"\', \'"board":"OO__X____"\') '
            "WHERE game_id = ? AND cursor = 5",
            live.game_id,
        )
    elif damage == "out_of_turn":  # O moves again, though X is to move
        data = json.dumps(
            {
                "type": "move",
                "cursor": 7,
                "timestamp": ts,
                "board": "O_O_X____",
                "player": "O",
                "position": 2,
                "turn": "X",
            }
        )
        _tamper(
            db,
            f"INSERT INTO events (game_id, cursor, type, data, actor, created_at) "
            f"VALUES (?, 7, 'move', ?, {o_actor}, ?)",
            live.game_id,
            data,
            ts,
        )
    result = await run("verify", "--db", db)
    assert result.returncode == 1
    bad = [line for line in result.stdout.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1, result.stdout
    assert f"game {target}, cursor {cursor}:" in bad[0] and rule in bad[0]
    assert "1 bad" in result.stdout


async def test_export_then_import_into_a_fresh_database_gives_identical_replays(played, tmp_path):
    exported = await run("export", "--all", "--db", played["db"])
    assert exported.returncode == 0
    assert "actor" not in exported.stdout
    dump = tmp_path / "games.jsonl"
    dump.write_text(exported.stdout)
    fresh = str(tmp_path / "fresh.db")
    imported = await run("import", str(dump), "--db", fresh)
    assert imported.returncode == 0, imported.stderr
    assert "imported 4 games" in imported.stdout
    for game_id in (played["won"].game_id, played["drawn"].game_id, played["live"].game_id, played["waiting"]):
        original = await run("replay", game_id, "--json", "--db", played["db"])
        copy = await run("replay", game_id, "--json", "--db", fresh)
        assert original.stdout == copy.stdout and original.stdout
    assert (await run("verify", "--db", fresh)).returncode == 0
    again = await run("import", str(dump), "--db", fresh)
    assert again.returncode == 1 and "already in the database" in again.stderr


async def test_a_bad_export_file_is_refused_whole_with_the_reason(played, tmp_path):
    lines = (await run("export", played["won"].game_id, played["live"].game_id, "--db", played["db"])).stdout
    events = [json.loads(line) for line in lines.splitlines()]
    last_move = [e for e in events if e["type"] == "move"][-1]  # the live game's last move
    last_move["board"] = "XXXXXXXXX"
    dump = tmp_path / "bad.jsonl"
    dump.write_text("\n".join(json.dumps(e) for e in events))
    fresh = str(tmp_path / "fresh.db")
    result = await run("import", str(dump), "--db", fresh)
    assert result.returncode == 1 and "refused" in result.stderr and played["live"].game_id in result.stderr
    assert "Traceback" not in result.stderr
    assert not Path(fresh).exists()  # refused before anything was written, even the sound game
    (tmp_path / "junk.jsonl").write_text("not json\n")
    junk = await run("import", str(tmp_path / "junk.jsonl"), "--db", fresh)
    assert junk.returncode == 1 and "line 1" in junk.stderr


async def test_backup_during_a_running_game_is_a_valid_database_that_verifies(make_client, config, tmp_path):
    client = await make_client(config)
    game = await start_game(client)
    await play_moves(client, game, [4, 0])
    copy = tmp_path / "backup.db"
    result = await run("backup", str(copy), "--db", config.db)  # while the server holds the database
    assert result.returncode == 0, result.stderr
    await play_moves(client, game, [8])  # the game goes on meanwhile
    await client.close()
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 5
    assert (await run("verify", "--db", str(copy))).returncode == 0
    refused = await run("backup", str(copy), "--db", config.db)
    assert refused.returncode == 1 and "exists" in refused.stderr


@pytest.mark.parametrize(
    ("args", "fragment", "status"),
    [
        (["replay", "0123456789abcdef"], "unknown game id", 1),
        (["replay", "x", "--db", "/nonexistent/none.db"], "no database at", 2),
        (["verify", "--db", "/nonexistent/none.db"], "no database at", 2),
        (["export"], "name the games to export, or give --all", 1),
    ],
)
async def test_tool_errors_are_one_line_and_a_non_zero_exit(played, args, fragment, status):
    if "--db" not in args:
        args = [*args, "--db", played["db"]]
    result = await run(*args)
    assert result.returncode == status
    assert fragment in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


async def test_a_database_newer_than_the_code_is_refused_in_one_line(played):
    _tamper(played["db"], "INSERT INTO schema_migrations VALUES ('9999_future.sql', 'later')")
    result = await run("games", "--db", played["db"])
    assert result.returncode == 2 and "upgrade tictactoe" in result.stderr and "Traceback" not in result.stderr


async def test_a_file_that_is_not_a_tictactoe_database_is_refused(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    result = await run("verify", "--db", str(other))
    assert result.returncode == 2 and "not a tictactoe database" in result.stderr


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        (
            'UPDATE events SET data = replace(data, \'"timestamp":"\', \'"timestamp":"garbage\') WHERE cursor = 3',
            "is not ISO 8601",
        ),
        (
            'UPDATE events SET data = replace(data, \'"type":"move"\', \'"type":"warp"\') WHERE cursor = 4',
            "unreadable event",
        ),
        (
            'UPDATE events SET data = replace(data, \'"position":4\', \'"position":"4"\') WHERE cursor = 4',
            "unreadable event: move.position cannot be '4'",
        ),
        ("DELETE FROM games", "the games read model has no row for it"),
        ("UPDATE games SET moves = 7", "the games read model says moves 7"),
    ],
)
async def test_verify_catches_unreadable_rows_bad_times_and_a_read_model_that_disagrees(played, sql, rule):
    live = played["live"]
    _tamper(
        played["db"],
        sql.replace("WHERE", f"WHERE game_id = '{live.game_id}' AND")
        if "WHERE" in sql
        else sql + f" WHERE game_id = '{live.game_id}'",
    )
    result = await run("verify", "--db", played["db"])
    assert result.returncode == 1, result.stdout
    bad = [line for line in result.stdout.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1 and live.game_id in bad[0] and rule in bad[0], result.stdout
    assert "Traceback" not in result.stderr
