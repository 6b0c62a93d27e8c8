"""The SQLite event store: migrations, group-committed appends, loads. It only stores.

Appends are group-committed: an append that finds the writer idle starts a transaction at once;
appends that arrive while one is being committed wait and go into the next one together (one
transaction, one fsync for the batch), and each caller awaits its own result. Reads use a second
connection (WAL lets them run while the writer commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import aiosqlite

from .events import Event, decode, encode, utc_now

log = logging.getLogger(__name__)


def _migrations_dir() -> Path:
    """The migrations shipped with this code: inside the package when installed from a wheel or
    frozen by PyInstaller (its modules live under sys._MEIPASS/tictactoe), else the source tree's."""
    package = Path(__file__).resolve().parent
    shipped = package / "migrations"
    return shipped if shipped.is_dir() else package.parent / "migrations"


MIGRATIONS_DIR = _migrations_dir()
_MIGRATION_NAME = re.compile(r"[0-9]{4}_[a-z0-9_]+\.sql")
_MAX_BATCH = 512

_GAME_COLUMNS = (
    "game_id, state, players, private, player_x, player_o, moves, result, last_cursor, created_at, updated_at"
)
_INSERT_EVENT = "INSERT INTO events (game_id, cursor, type, data, actor, created_at) VALUES (?, ?, ?, ?, ?, ?)"
# The literal 'connect' (not a parameter) lets SQLite use the partial index on joins; the index
# holds each actor's joins in `id` order, so the last one is found without sorting.
_LAST_GAME_OF = "SELECT game_id FROM events WHERE actor = ? AND type = 'connect' ORDER BY id DESC LIMIT 1"
_UPSERT_GAME = f"""
INSERT INTO games ({_GAME_COLUMNS})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (game_id) DO UPDATE SET
    state = excluded.state, players = excluded.players, player_x = excluded.player_x, player_o = excluded.player_o,
    moves = excluded.moves, result = excluded.result, last_cursor = excluded.last_cursor,
    updated_at = excluded.updated_at
"""
# A move changes only these columns: an UPDATE that leaves `state` alone leaves the games
# indexes alone too (SQLite rewrites an index entry whenever an UPDATE sets one of its columns).
_UPDATE_GAME_PROGRESS = "UPDATE games SET moves = ?, last_cursor = ?, updated_at = ? WHERE game_id = ?"


class StoreError(Exception):
    """Base of the store's own errors: the driver's never leave this module."""


class CursorConflict(StoreError):
    """Another append took one of these cursors first."""


class StorageUnavailable(StoreError):
    """The database cannot be written or read right now."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer version of tictactoe."""


class GameRow(NamedTuple):
    """The `games` read model's row for one game, as the caller derived it from its events."""

    game_id: str
    state: str
    players: str  # JSON array of names
    private: bool
    player_x: str | None
    player_o: str | None
    moves: int
    result: str | None
    last_cursor: int
    created_at: str
    updated_at: str


@dataclass(slots=True)
class _Append:
    rows: list[tuple[object, ...]]
    game_row: GameRow
    encoded: list[bytes]  # the result: each event's JSON as stored
    on_commit: Callable[[list[bytes]], None] | None = None
    done: asyncio.Future[list[bytes]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class EventStore:
    """Appends and loads events; open with `EventStore.open(path)`."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: str) -> None:
        self._writer = writer
        self._reader = reader
        self.path = path
        self._pending: list[_Append] = []  # appends waiting for the next transaction
        self._committing: list[_Append] | None = None  # the batch in the writer's thread now
        self._idle: asyncio.Future[None] | None = None  # what `close` awaits while a batch commits
        self._closing = False
        self._closed = False
        self.transactions = 0  # committed write transactions, for /metrics and the benchmark
        # Per unfinished game, the columns of its games row that only a join, a start or an end
        # changes, as last committed: an append that keeps them needs only `_UPDATE_GAME_PROGRESS`.
        self._settled_columns: dict[str, tuple[object, ...]] = {}
        self.schema: list[str] = []

    @classmethod
    async def open_readonly(cls, path: str | Path, *, migrations: Path = MIGRATIONS_DIR) -> EventStore:
        """Open an existing database for reading only (safe beside a running server: WAL readers)."""
        path = str(path)
        if not Path(path).is_file():
            raise StorageUnavailable(f"no database at {path}")
        try:
            reader = await aiosqlite.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as err:
            raise StorageUnavailable(f"cannot open database {path}: {err}") from err
        try:
            applied = await _check_schema(reader, migrations, path)
        except BaseException:
            await reader.close()
            raise
        store = cls(reader, reader, path)
        store.schema = applied
        store._closing = True  # nothing may be appended through a read-only store
        return store

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        migrations: Path = MIGRATIONS_DIR,
    ) -> EventStore:
        """Open (creating if needed) the database, apply pending migrations, start the writer.

        `busy_timeout` bounds how long a write (or read) waits for a lock another process holds:
        past it the operation fails with `StorageUnavailable` instead of hanging."""
        path = str(path)
        busy_ms = int(busy_timeout * 1000)
        opened: list[aiosqlite.Connection] = []
        try:
            writer = await aiosqlite.connect(path, isolation_level="IMMEDIATE")
            opened.append(writer)
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute(f"PRAGMA synchronous={_checked_synchronous(synchronous)}")
            await writer.execute(f"PRAGMA busy_timeout={busy_ms}")
            applied = await _migrate(writer, migrations)
            reader = await aiosqlite.connect(path)
            opened.append(reader)
            await reader.execute(f"PRAGMA busy_timeout={busy_ms}")
        except BaseException as err:
            # An open connection is a live thread: leaving one behind keeps the process alive.
            for conn in opened:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await conn.close()
            if isinstance(err, sqlite3.Error):
                raise StorageUnavailable(f"cannot open database {path}: {err}") from err
            raise
        store = cls(writer, reader, path)
        store.schema = applied
        return store

    # --- writing ---

    async def append(self, events: Sequence[Event], game_row: GameRow) -> list[bytes]:
        """Commit `events` of one game (and its read-model row) durably, or raise; returns each
        event's public JSON as stored, so that the caller need not encode it a second time."""
        return await self.submit(events, game_row)

    def submit(
        self, events: Sequence[Event], game_row: GameRow, on_commit: Callable[[list[bytes]], None] | None = None
    ) -> asyncio.Future[list[bytes]]:
        """Queue an append for the next transaction; the future holds what `append` returns. It
        commits whether or not anyone still awaits it: a caller that may be cancelled shields it.
        `on_commit` is called with the same bytes as soon as the transaction has committed, before
        the future's awaiter resumes (which takes the event loop one more turn)."""
        if self._closing:
            raise StorageUnavailable("the store is closing")
        encoded = [encode(e) for e in events]
        rows = [
            (game_row.game_id, e.cursor, e.type, data.decode(), e.actor, e.timestamp)
            for e, data in zip(events, encoded, strict=True)
        ]
        item = _Append(rows, game_row, encoded, on_commit)
        self._pending.append(item)
        if self._committing is None:
            self._start_transaction()
        return item.done

    def _start_transaction(self) -> None:
        """Hand the pending appends to the writer connection's thread as one transaction.

        The thread reports back by scheduling `_transaction_done` itself, so the callers are
        published to on the event loop's very next turn (no task in between), and an append
        that finds the writer idle is not kept waiting for one either. aiosqlite has no public
        call for running a function in its thread without awaiting it; its queue is what
        `Connection._execute` uses, with `None` for a future nobody awaits."""
        batch = self._pending[:_MAX_BATCH]
        del self._pending[:_MAX_BATCH]
        self._committing = batch
        settled = self._settled_columns
        writes = [
            (item, (row.moves, row.last_cursor, row.updated_at, row.game_id))
            if settled.get((row := item.game_row).game_id) == _settled_columns_of(row)
            else (item, None)
            for item in batch
        ]
        loop = asyncio.get_running_loop()
        writer = self._writer

        def commit_in_thread() -> None:
            try:
                outcome: _Outcome | BaseException = _commit_batch(writer._conn, writes)
            except BaseException as err:  # whatever happens, the callers must hear of it
                outcome = err
            loop.call_soon_threadsafe(self._transaction_done, batch, outcome)

        if not writer._running:
            self._transaction_done(batch, StorageUnavailable("storage unavailable: the connection is closed"))
            return
        writer._tx.put_nowait((None, commit_in_thread))

    def _transaction_done(self, batch: list[_Append], outcome: _Outcome | BaseException) -> None:
        """On the event loop: publish and answer the batch's appends, then start the next batch."""
        try:
            self._answer(batch, outcome)
        finally:  # whatever went wrong with this batch, the next one must not wait forever
            if self._pending:
                self._start_transaction()
            else:
                self._committing = None
                if self._idle is not None and not self._idle.done():
                    self._idle.set_result(None)

    def _answer(self, batch: list[_Append], outcome: _Outcome | BaseException) -> None:
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, StoreError):
                log.error("append failed unexpectedly", exc_info=outcome)
                outcome = StorageUnavailable(f"storage unavailable: {outcome!r}")
            _fail(batch, outcome)
            return
        commits, errors = outcome
        self.transactions += commits
        settled = self._settled_columns
        for item, error in zip(batch, errors or [None] * len(batch), strict=True):
            if error is not None:
                _fail([item], error)
                continue
            row = item.game_row
            if row.state == "over":
                settled.pop(row.game_id, None)
            else:
                settled[row.game_id] = _settled_columns_of(row)
            if item.on_commit is not None:
                try:
                    item.on_commit(item.encoded)
                except Exception:  # one caller's bookkeeping must not keep the others' answers
                    log.exception("the commit hook of an append failed")
            if not item.done.done():
                item.done.set_result(item.encoded)

    async def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error, ValueError):
            await self._writer.rollback()

    # --- reading ---

    async def load(self, game_id: str) -> list[Event]:
        """Every event of a game in cursor order; empty if the game is unknown."""
        rows = await self._read("SELECT data, actor FROM events WHERE game_id = ? ORDER BY cursor", (game_id,))
        return [decode(data, actor) for data, actor in rows]

    async def load_unfinished(self) -> dict[str, list[Event]]:
        """The events of every game that has not ended, oldest game first."""
        rows = await self._read(
            "SELECT e.game_id, e.data, e.actor FROM games AS g JOIN events AS e USING (game_id)"
            " WHERE g.state != 'over' ORDER BY g.created_at, e.game_id, e.cursor",
            (),
        )
        games: dict[str, list[Event]] = {}
        for game_id, data, actor in rows:
            games.setdefault(game_id, []).append(decode(data, actor))
        return games

    async def last_game_of(self, actor: str) -> str | None:
        """The game in which `actor` last acted, if it ever did: the game of its last join.

        The two are the same game, and only joins are indexed by actor (so that a move costs no
        index entry). A client acts only in a game it has a seat in (the rules refuse a move, a
        chat or a quit from anyone else), it takes a seat only by a join, and it joins a new game
        only once its old one is over: `GameService._play`, under the client's lock, quits the
        unfinished game first (committed) and only then pairs it again; nothing else writes an
        event with a client's actor. So all its events after its last join are in that join's
        game, and all its events of earlier games come before that join in the log."""
        rows = await self._read(_LAST_GAME_OF, (actor,))
        return rows[0][0] if rows else None

    async def list_games(
        self, state: str | None = None, limit: int = 50, *, include_private: bool = True
    ) -> list[GameRow]:
        """Rows of the `games` read model, newest first."""
        conditions, params = [], []
        if state:
            conditions.append("state = ?")
            params.append(state)
        if not include_private:
            conditions.append("private = 0")
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = await self._read(
            f"SELECT {_GAME_COLUMNS} FROM games {where} ORDER BY created_at DESC, game_id LIMIT ?",
            (*params, limit),
        )
        return [GameRow(*row) for row in rows]  # type: ignore[arg-type]

    async def rebuild_read_model(self, row_of: Callable[[str, list[Event]], GameRow]) -> int:
        """Recompute the `games` table from the events alone, in one transaction that holds off
        every other writer; returns the number of games."""
        db = self._writer
        try:
            await db.execute("DELETE FROM games")  # opens the IMMEDIATE transaction
            rows, game_id, events = [], None, []
            async with db.execute("SELECT game_id, data, actor FROM events ORDER BY game_id, cursor") as cursor:
                async for row_game, data, actor in cursor:
                    if row_game != game_id and game_id is not None:
                        rows.append(row_of(game_id, events))
                        events = []
                    game_id = row_game
                    events.append(decode(data, actor))
            if game_id is not None:
                rows.append(row_of(game_id, events))
            await db.executemany(_UPSERT_GAME, rows)
            await db.commit()
            return len(rows)
        except (sqlite3.Error, ValueError) as err:
            await self._rollback()
            raise StorageUnavailable(f"storage unavailable: {err}") from err
        except BaseException:
            await self._rollback()
            raise

    async def count_games(self) -> int:
        rows = await self._read("SELECT count(DISTINCT game_id) FROM events", ())
        return int(rows[0][0])  # type: ignore[call-overload]

    async def all_games(self) -> AsyncIterator[tuple[str, list[Event]]]:
        """Every game of the log with its events, one game at a time (streamed, not loaded whole)."""
        async for game_id, rows in self.all_game_rows():
            yield game_id, [decode(data, actor) for _, _, data, actor in rows]

    async def all_game_rows(self) -> AsyncIterator[tuple[str, list[tuple[int, str, str, str | None]]]]:
        """Every game's rows as stored, `(cursor, type, data, actor)`, not yet decoded: for `verify`."""
        try:
            async with self._reader.execute(
                "SELECT game_id, cursor, type, data, actor FROM events ORDER BY game_id, cursor"
            ) as cursor:
                game_id, rows = None, []
                async for row_game, *row in cursor:
                    if row_game != game_id:
                        if game_id is not None:
                            yield game_id, rows
                        game_id, rows = row_game, []
                    rows.append(tuple(row))
                if game_id is not None:
                    yield game_id, rows
        except sqlite3.Error as err:
            raise StorageUnavailable(f"storage unavailable: {err}") from err

    async def game_rows(self, game_id: str) -> list[tuple[int, str, str, str | None]]:
        """One game's rows as stored, not yet decoded."""
        return await self._read(  # type: ignore[return-value]
            "SELECT cursor, type, data, actor FROM events WHERE game_id = ? ORDER BY cursor", (game_id,)
        )

    async def read_model(self) -> dict[str, GameRow]:
        """The whole `games` table, by game id: for checking it against the log."""
        rows = await self._read(
            f"SELECT {_GAME_COLUMNS} FROM games",
            (),
        )
        return {row[0]: GameRow(*row) for row in rows}  # type: ignore[arg-type]

    async def insert_games(self, games: Sequence[tuple[Sequence[Event], GameRow]]) -> None:
        """Write whole games in one transaction; refuses all if any of them already exists."""
        if not games:
            return
        event_rows = [
            (row.game_id, e.cursor, e.type, encode(e).decode(), e.actor, e.timestamp)
            for events, row in games
            for e in events
        ]
        try:
            ids = [row.game_id for _, row in games]
            for start in range(0, len(ids), 500):  # SQLite caps the number of parameters
                chunk = ids[start : start + 500]
                known = await self._writer.execute_fetchall(
                    f"SELECT game_id FROM games WHERE game_id IN ({','.join('?' * len(chunk))})"
                    f" UNION SELECT game_id FROM events WHERE game_id IN ({','.join('?' * len(chunk))})",
                    chunk * 2,
                )
                if known:
                    raise CursorConflict(f"game {next(iter(known))[0]} is already in the database")
            await self._writer.executemany(_INSERT_EVENT, event_rows)
            await self._writer.executemany(_UPSERT_GAME, [row for _, row in games])
            await self._writer.commit()
        except sqlite3.IntegrityError as err:
            await self._rollback()
            raise CursorConflict(f"a game is already in the database: {err}") from err
        except (sqlite3.Error, ValueError) as err:
            await self._rollback()
            raise StorageUnavailable(f"storage unavailable: {err}") from err

    async def backup(self, target: str | Path) -> None:
        """A consistent copy of the database at `target` (SQLite's online backup API)."""
        try:
            destination = sqlite3.connect(str(target))
            try:
                await self._reader.backup(destination)
            finally:
                destination.close()
        except (sqlite3.Error, ValueError) as err:
            raise StorageUnavailable(f"backup failed: {err}") from err

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Reads inside see one moment of the log, however many queries they take: a live server
        may commit between two of them (WAL keeps the snapshot for this read transaction)."""
        try:
            await self._reader.execute("BEGIN")
        except (sqlite3.Error, ValueError) as err:
            raise StorageUnavailable(f"storage unavailable: {err}") from err
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await self._reader.execute("COMMIT")

    async def ping(self) -> None:
        """Raise `StorageUnavailable` unless the database answers a query."""
        await self._read("SELECT count(*) FROM schema_migrations", ())

    async def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except (sqlite3.Error, ValueError) as err:
            raise StorageUnavailable(f"storage unavailable: {err}") from err

    # --- closing ---

    async def close(self) -> None:
        """Commit what is queued, then close both connections."""
        if self._closed:
            return
        self._closing = self._closed = True
        while self._committing is not None:  # the batches queued before now still commit
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle
        for conn in {id(c): c for c in (self._writer, self._reader)}.values():
            with contextlib.suppress(sqlite3.Error, ValueError):
                await conn.close()


# What the writer's thread reports of a batch: the transactions committed, and each append's
# error in batch order (None when all of them committed).
_Outcome = tuple[int, list["StoreError | None"] | None]
_Write = tuple[_Append, "tuple[object, ...] | None"]  # an append, and its games row's progress if only that changed


def _commit_batch(conn: sqlite3.Connection, writes: list[_Write]) -> _Outcome:
    """In the writer's thread: the batch as one transaction; if a cursor conflict spoils it, each
    append in its own, so that only the conflicting ones fail."""
    try:
        _write_transaction(conn, writes)
        return 1, None
    except sqlite3.IntegrityError:
        if len(writes) == 1:
            return 0, [CursorConflict("another event took this cursor first")]
    except (sqlite3.Error, ValueError) as err:  # ValueError: the connection is gone
        log.error("append failed for %d games: %s", len(writes), err)
        return 0, [StorageUnavailable(f"storage unavailable: {err}")] * len(writes)
    commits, errors = 0, []
    for write in writes:
        commits_one, errors_one = _commit_batch(conn, [write])
        commits += commits_one
        errors.append(errors_one[0] if errors_one else None)
    return commits, errors


def _write_transaction(conn: sqlite3.Connection, writes: list[_Write]) -> None:
    """One transaction: the events, the games rows, the commit; all or nothing (rolled back
    before the error goes up)."""
    events = [row for item, _ in writes for row in item.rows]
    progressed = [progress for _, progress in writes if progress is not None]
    changed = [item.game_row for item, progress in writes if progress is None]
    try:
        conn.executemany(_INSERT_EVENT, events)
        if progressed and conn.executemany(_UPDATE_GAME_PROGRESS, progressed).rowcount != len(progressed):
            changed = [item.game_row for item, _ in writes]  # a row went missing (another process?): write them whole
        if changed:
            conn.executemany(_UPSERT_GAME, changed)
        conn.commit()
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        raise


def _settled_columns_of(row: GameRow) -> tuple[object, ...]:
    return (row.state, row.players, row.private, row.player_x, row.player_o, row.result, row.created_at)


def _fail(batch: list[_Append], error: StoreError) -> None:
    for item in batch:
        if not item.done.done():
            item.done.set_exception(error)


def _checked_synchronous(value: str) -> str:
    value = value.upper()
    if value not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {value!r}")
    return value


def migration_files(migrations: Path = MIGRATIONS_DIR) -> list[Path]:
    """The migrations this code knows, in the order they apply."""
    files = sorted(p for p in migrations.glob("*.sql") if _MIGRATION_NAME.fullmatch(p.name))
    if not files:  # a build that left them out must not create an empty database
        raise StorageUnavailable(f"no migrations in {migrations}: this copy of tictactoe is incomplete")
    return files


async def _check_schema(db: aiosqlite.Connection, migrations: Path, path: str) -> list[str]:
    """The migrations a database has; refuses one that is not ours, not migrated, or newer."""
    try:
        rows = await db.execute_fetchall("SELECT name FROM schema_migrations ORDER BY name")
    except sqlite3.Error as err:
        if "no such table" in str(err) or "not a database" in str(err):
            raise StorageUnavailable(f"{path} is not a tictactoe database") from None
        raise StorageUnavailable(f"cannot read {path}: {err} (can its folder be written? SQLite needs that)") from None
    applied = [row[0] for row in rows]
    known = [p.name for p in migration_files(migrations)]
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise SchemaTooNew(
            f"the database has migration {unknown[-1]}, which this version of tictactoe does not know:"
            " upgrade tictactoe"
        )
    missing = [name for name in known if name not in applied]
    if missing:
        raise StorageUnavailable(f"{path} lacks migration {missing[0]}: start the server once to apply it")
    return applied


async def _migrate(db: aiosqlite.Connection, migrations: Path) -> list[str]:
    """Apply the migrations not yet recorded; refuse a database migrated by newer code."""
    await db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    await db.commit()
    applied = [row[0] for row in await db.execute_fetchall("SELECT name FROM schema_migrations ORDER BY name")]
    files = migration_files(migrations)
    known = {p.name for p in files}
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise SchemaTooNew(
            f"the database has migration {unknown[-1]}, which this version of tictactoe does not know:"
            " upgrade tictactoe"
        )
    for migration in files:
        if migration.name in applied:
            continue
        sql = migration.read_text(encoding="utf-8")
        # The name matched _MIGRATION_NAME, so it is safe inside the script.
        await db.executescript(
            f"BEGIN IMMEDIATE;\n{sql}\n;INSERT INTO schema_migrations (name, applied_at)"
            f" VALUES ('{migration.name}', '{utc_now()}');\nCOMMIT;"
        )
        log.info("applied migration %s", migration.name)
        applied.append(migration.name)
    return applied
