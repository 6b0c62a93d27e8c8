"""The event store's contract: durable appends, group commit, conflicts, migrations."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3

import pytest

from tictactoe.events import ChatSent, PlayerJoined, PlayerLeft, encode
from tictactoe.store import (
    _LAST_GAME_OF,
    _MAX_BATCH,
    MIGRATIONS_DIR,
    CursorConflict,
    EventStore,
    GameRow,
    SchemaTooNew,
    StorageUnavailable,
    migration_files,
)

T = "2026-01-01T00:00:00.000Z"


def row(game_id: str, cursor: int) -> GameRow:
    return GameRow(game_id, "waiting", "[]", False, None, None, 0, None, cursor, T, T)


def chat(cursor: int, text: str = "hi") -> ChatSent:
    return ChatSent(cursor, T, name="a", message=text, actor="h")


@pytest.fixture
async def store(tmp_path):
    store = await EventStore.open(tmp_path / "store.db")
    yield store
    await store.close()


async def test_appended_events_load_back_in_cursor_order_with_their_actor(store):
    await store.append([PlayerJoined(1, T, name="a", actor="h")], row("g", 1))
    stored = await store.append([chat(2), chat(3)], row("g", 3))
    loaded = await store.load("g")
    assert stored == [encode(e) for e in loaded[1:]]  # the bytes as stored, for every reader
    assert [e.cursor for e in loaded] == [1, 2, 3]
    assert loaded[0] == PlayerJoined(1, T, name="a", actor="h")
    assert await store.load("unknown") == []


async def test_concurrent_appends_to_many_games_share_transactions_and_all_commit_in_order(store):
    games = [f"g{i}" for i in range(50)]

    async def play(game_id: str) -> None:
        await store.append([PlayerJoined(1, T, name=game_id, actor=game_id)], row(game_id, 1))
        for cursor in range(2, 6):
            await store.append([chat(cursor, f"{game_id}-{cursor}")], row(game_id, cursor))

    before = store.transactions
    await asyncio.gather(*(play(g) for g in games))
    for game_id in games:
        assert [e.cursor for e in await store.load(game_id)] == [1, 2, 3, 4, 5]
    appends = len(games) * 5
    assert store.transactions - before < appends / 5  # grouped: far fewer commits than appends


async def test_an_append_to_an_idle_writer_commits_at_once_and_those_made_meanwhile_share_the_next_commit(store):
    before = store.transactions
    first = store.submit([chat(1)], row("g0", 1))
    assert store._committing is not None  # handed to the SQLite thread already, not on the next turn
    later = [store.submit([chat(1)], row(f"g{i}", 1)) for i in range(1, 30)]
    await asyncio.gather(first, *later)
    assert store.transactions - before == 2
    assert [[e.cursor for e in await store.load(f"g{i}")] for i in range(30)] == [[1]] * 30


async def test_appends_to_a_store_whose_connection_is_gone_fail_instead_of_hanging(tmp_path):
    store = await EventStore.open(tmp_path / "gone.db")
    try:
        await store._writer.close()  # as if the driver's thread had ended
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(store.append([chat(1)], row("g", 1)), timeout=5)
    finally:
        await store.close()


async def test_a_cursor_taken_twice_fails_only_the_late_caller(store):
    results = await asyncio.gather(
        store.append([chat(1, "first")], row("g", 1)),
        store.append([chat(1, "second")], row("g", 1)),
        store.append([chat(1, "other game")], row("h", 1)),
        return_exceptions=True,
    )
    assert isinstance(results[0], list) and isinstance(results[1], CursorConflict) and isinstance(results[2], list)
    assert [e.message for e in await store.load("g")] == ["first"]
    assert [e.message for e in await store.load("h")] == ["other game"]


async def test_a_failed_transaction_fails_exactly_its_callers_and_the_next_one_commits(store):
    await store.append([chat(1)], row("g", 1))
    pages = (await (await store._writer.execute("PRAGMA page_count")).fetchone())[0]
    await store._writer.execute(f"PRAGMA max_page_count={pages}")  # a full disk
    big = "x" * 20000
    results = await asyncio.gather(
        *(store.append([chat(2, big)], row(f"full{i}", 1)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, StorageUnavailable) for r in results)
    await store._writer.execute("PRAGMA max_page_count=1073741823")  # space again
    await store.append([chat(2)], row("g", 2))
    assert [e.cursor for e in await store.load("g")] == [1, 2]
    assert await store.load("full0") == []


async def test_close_commits_what_is_queued(tmp_path):
    store = await EventStore.open(tmp_path / "s.db")
    pending = [asyncio.create_task(store.append([chat(1)], row(f"g{i}", 1))) for i in range(20)]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*pending)
    reopened = await EventStore.open(tmp_path / "s.db")
    try:
        for i in range(20):
            assert [e.cursor for e in await reopened.load(f"g{i}")] == [1]
    finally:
        await reopened.close()


async def test_migrations_are_recorded_by_name_and_applied_once(tmp_path):
    for _ in range(2):
        store = await EventStore.open(tmp_path / "m.db")
        await store.close()
    with sqlite3.connect(tmp_path / "m.db") as db:
        names = [r[0] for r in db.execute("SELECT name FROM schema_migrations ORDER BY name")]
        assert names == [p.name for p in migration_files()]
        assert names[:2] == ["0001_events.sql", "0002_index_joins_only.sql"]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_database_from_a_newer_version_is_refused(tmp_path):
    store = await EventStore.open(tmp_path / "n.db")
    await store.close()
    with sqlite3.connect(tmp_path / "n.db") as db:
        db.execute("INSERT INTO schema_migrations VALUES ('9999_future.sql', 'later')")
    with pytest.raises(SchemaTooNew, match=r"9999_future\.sql"):
        await EventStore.open(tmp_path / "n.db")


async def test_the_log_rejects_a_duplicate_cursor_even_from_outside(tmp_path):
    store = await EventStore.open(tmp_path / "u.db")
    await store.append([chat(1)], row("g", 1))
    await store.close()
    with sqlite3.connect(tmp_path / "u.db") as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO events (game_id, cursor, type, data, created_at) VALUES ('g', 1, 'chat', '{}', 'now')")


async def test_a_storage_failure_fails_exactly_the_callers_of_its_transaction_and_not_the_next(store):
    # The first append finds the writer idle and commits alone; the others queue behind it, and
    # a batch takes at most _MAX_BATCH of them: the next _MAX_BATCH share one transaction, which
    # a poisoned row makes fail; the rest are the transaction after.
    await refuse_writes(store, "BEFORE INSERT ON events WHEN NEW.data LIKE '%poison%'")
    games = [f"g{i}" for i in range(1 + _MAX_BATCH + 40)]
    results = await asyncio.gather(
        *(store.append([chat(1, "poison" if i == 1 else "fine")], row(g, 1)) for i, g in enumerate(games)),
        return_exceptions=True,
    )
    failed = range(1, 1 + _MAX_BATCH)
    assert all(isinstance(r, StorageUnavailable) for i, r in enumerate(results) if i in failed)
    assert not any(isinstance(r, BaseException) for i, r in enumerate(results) if i not in failed)
    assert [len(await store.load(g)) for g in games] == [1] + [0] * _MAX_BATCH + [1] * 40
    assert {g.game_id for g in await store.list_games(limit=1000)} == {
        g for i, g in enumerate(games) if i not in failed
    }


def joined(cursor: int, actor: str) -> PlayerJoined:
    return PlayerJoined(cursor, T, name=actor, actor=actor)


async def play_games(store: EventStore) -> None:
    """ann plays g1 with bob, quits it and joins g2 (with cid, who chats last); dan only waits."""
    await store.append([joined(1, "ann")], row("g1", 1))
    await store.append([joined(2, "bob")], row("g1", 2))
    await store.append([joined(1, "dan")], row("g3", 1))
    await store.append([chat(3)], row("g1", 3))
    await store.append([PlayerLeft(4, T, name="ann", actor="ann")], row("g1", 4))
    await store.append([joined(1, "cid")], row("g2", 1))
    await store.append([joined(2, "ann")], row("g2", 2))
    await store.append([ChatSent(3, T, name="cid", message="hi", actor="cid")], row("g2", 3))
    await store.append([ChatSent(5, T, name="bob", message="still here", actor="bob")], row("g1", 5))


async def expect_last_games(store: EventStore) -> None:
    found = {actor: await store.last_game_of(actor) for actor in ("ann", "bob", "cid", "dan", "eve")}
    assert found == {"ann": "g2", "bob": "g1", "cid": "g2", "dan": "g3", "eve": None}


async def test_a_clients_last_game_is_the_game_of_its_last_join(store):
    await play_games(store)
    await expect_last_games(store)


async def test_the_last_game_of_a_client_is_found_through_the_joins_index_without_a_scan_or_a_sort(store):
    await play_games(store)
    with sqlite3.connect(store.path) as db:
        plan = " / ".join(r[-1] for r in db.execute(f"EXPLAIN QUERY PLAN {_LAST_GAME_OF}", ("ann",)))
        indexes = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'events'")]
    assert plan.startswith("SEARCH events USING INDEX events_joins_by_actor (actor=?)"), plan
    assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
    assert "events_by_actor" not in indexes


async def test_a_database_made_before_the_joins_index_migrates_and_still_finds_last_games(tmp_path):
    only_first = tmp_path / "migrations"
    only_first.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_events.sql", only_first)
    old = await EventStore.open(tmp_path / "old.db", migrations=only_first)
    await play_games(old)
    await old.close()
    with sqlite3.connect(tmp_path / "old.db") as db:
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events_by_actor'").fetchone()

    store = await EventStore.open(tmp_path / "old.db")
    try:
        assert store.schema == [p.name for p in migration_files()]
        await expect_last_games(store)
        await store.append([joined(1, "eve")], row("g4", 1))  # the new index takes new joins
        assert await store.last_game_of("eve") == "g4"
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "old.db") as db:
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "events_joins_by_actor" in indexes and "events_by_actor" not in indexes


async def test_the_games_row_follows_every_append_whether_it_is_updated_or_rewritten(store, tmp_path):
    def at(cursor: int, state: str, moves: int, result: str | None = None) -> GameRow:
        return GameRow("g", state, '["a","b"]', False, "a", "b", moves, result, cursor, T, f"t{cursor}")

    await store.append([chat(1)], at(1, "playing", 0))
    await store.append([chat(2)], at(2, "playing", 1))  # only the progress columns change
    assert await store.list_games() == [at(2, "playing", 1)]
    # A row gone behind the store's back (another process rebuilding the read model) comes back whole.
    with sqlite3.connect(tmp_path / "store.db") as outside:
        outside.execute("DELETE FROM games")
    await store.append([chat(3)], at(3, "playing", 2))
    assert await store.list_games() == [at(3, "playing", 2)]
    await store.append([chat(4)], at(4, "over", 3, "X"))
    assert await store.list_games() == [at(4, "over", 3, "X")]


async def test_a_commit_hook_runs_at_the_commit_before_its_caller_resumes_and_a_failing_hook_harms_no_one(
    store, caplog
):
    seen: list[object] = []

    def fail(_: list[bytes]) -> None:
        raise RuntimeError("the hook broke")

    first = store.submit([chat(1)], row("g", 1), on_commit=lambda stored: seen.append(stored))
    second = store.submit([chat(1)], row("h", 1), on_commit=fail)
    first.add_done_callback(lambda _: seen.append("g answered"))
    stored = await first
    assert seen == [stored, "g answered"]  # published before its caller could resume
    assert await second == [encode(chat(1))]  # a broken hook is logged; its caller is answered
    assert "commit hook" in caplog.text and [e.cursor for e in await store.load("h")] == [1]


async def test_a_transaction_whose_games_row_fails_keeps_none_of_its_events(store):
    # The events go in before the games rows, in the same transaction: a refused row must take
    # the batch's events with it, or the log would hold events that no caller was told of.
    await refuse_writes(store, "BEFORE INSERT ON games WHEN NEW.game_id = 'doomed'")
    with pytest.raises(StorageUnavailable):
        await store.append([chat(1)], row("doomed", 1))
    await store.append([chat(1)], row("g", 1))  # the next transaction commits, and only its own events
    assert await store.load("doomed") == []
    assert [e.cursor for e in await store.load("g")] == [1]
    assert [g.game_id for g in await store.list_games(limit=10)] == ["g"]


async def refuse_writes(store: EventStore, when: str) -> None:
    """Make the writer's statements fail as a broken disk would, for the rows that `when` picks."""

    def refuse(_: object) -> None:
        raise OSError("the disk is on fire")

    await store._writer.create_function("refuse", 1, refuse)
    await store._writer.execute(f"CREATE TEMP TRIGGER refused {when} BEGIN SELECT refuse(1); END")
