"""The use cases: play, move, chat, quit, and reading a game's timeline.

Every change follows one path: take the game's lock, `decide` against the cached state, fold
the new events in (`evolve`), append them (committed), then publish the new state and wake
the game's waiters. The cache is only ever the replay of what was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import random
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from . import bot, rules
from .bot import BOT_ACTOR, BOT_NAME
from .events import Event, encode, parse_time, to_public, utc_now
from .hub import Hub
from .lobby import InvalidName, Lobby, Membership, name_key
from .rules import Command, GameError, GameState
from .store import CursorConflict, EventStore, GameRow
from .store import StorageUnavailable as StoreUnavailable

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

_FINISHED_CACHE_SIZE = 2048
_CONFLICT_RETRIES = 3


# --- the service's own refusals ------------------------------------------------------------


class UnknownClient(GameError):
    """No player has this client id."""

    code = 101


class UnknownGame(GameError):
    """No game has this id."""

    code = 102


class NothingToResume(GameError):
    """The client has no unfinished game."""

    code = 110


class CursorAhead(GameError):
    """The cursor is past the game's last event."""

    code = 112


class NothingMoreToCome(GameError):
    """The game is over and the cursor is at its last event."""

    code = 113


class ChatTooFast(GameError):
    """The client sent as many chat messages as the limit allows in the window."""

    code = 121

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds until the next message would be taken


class StorageUnavailable(GameError):
    """The database cannot be used right now; nothing was changed."""

    code = 130


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    client_id: str
    name: str
    game_id: str


@dataclass(frozen=True, slots=True)
class Pairing:
    """How a client wants to be paired."""

    against_bot: bool = False
    private: bool = False
    game_id: str | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    poll_timeout: float = 30.0
    pending_timeout: float = 60.0
    turn_timeout: float = 600.0
    chat_messages: int = 5  # per client in any `chat_seconds`; 0: no limit
    chat_seconds: float = 10.0


class ChatRate:
    """At most `messages` chat messages per client in any `seconds` (a sliding window)."""

    def __init__(self, messages: int, seconds: float, clock: Callable[[], float]) -> None:
        self._messages, self._seconds, self._clock = messages, seconds, clock
        self._sent: dict[str, deque[float]] = {}  # actor -> times of its recent messages, oldest first
        self._sweep_at = 1024

    def take(self, actor: str) -> float | None:
        """Count one message of `actor` now; ChatTooFast if its window is full. Returns the slot."""
        if not self._messages:
            return None
        now = self._clock()
        sent = self._sent.setdefault(actor, deque())
        while sent and sent[0] <= now - self._seconds:
            sent.popleft()
        if len(sent) >= self._messages:
            wait = sent[0] + self._seconds - now
            raise ChatTooFast(f"too many chat messages: at most {self._messages} in {self._seconds:g} s", wait)
        sent.append(now)
        if len(self._sent) > self._sweep_at:
            self._sweep(now)
        return now

    def give_back(self, actor: str, slot: float | None) -> None:
        """Forget a message that was refused: only messages that were sent count."""
        sent = self._sent.get(actor)
        if slot is not None and sent is not None and slot in sent:
            sent.remove(slot)

    def _sweep(self, now: float) -> None:
        # Clients that stopped chatting cost nothing for long: amortised, as the limit doubles.
        self._sent = {actor: sent for actor, sent in self._sent.items() if sent and sent[-1] > now - self._seconds}
        self._sweep_at = max(1024, 2 * len(self._sent))


@dataclass(slots=True)
class GameRecord:
    """One game in memory: its replayed state and its events encoded once for every reader."""

    state: GameState
    encoded: list[bytes] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    polls_open: int = 0
    last_poll: float = field(default_factory=time.monotonic)  # for the pending timeout
    turn_deadline: float | None = None  # wall-clock time at which the player to move loses


def actor_of(client_id: str) -> str:
    """The only form in which a client id is ever stored: its SHA-256."""
    # Ids are only ever compared as this hash (dict keys, SQL lookups): timing can leak at most a
    # prefix of a hash, which brings no one closer to an id, so no hmac.compare_digest is needed.
    return hashlib.sha256(client_id.encode()).hexdigest()


def new_client_id() -> str:
    return secrets.token_hex(16)


def new_game_id() -> str:
    """The creation second (8 hex digits) then 64 random bits (16): games made together sort
    together, so that the log's index on (game_id, cursor) grows at a few hot pages instead of a
    random page per event (the SQLite thread's largest cost per move)."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


@functools.lru_cache(maxsize=4096)
def _names_json(names: tuple[str, ...]) -> str:
    return json.dumps(list(names), ensure_ascii=False)


def game_row(state: GameState) -> GameRow:
    """The `games` read-model row of a state."""
    assert state.created_at is not None and state.updated_at is not None
    return GameRow(
        state.game_id,
        state.phase,
        # Every append writes this row; the names change only when a player joins.
        _names_json(tuple(seat.name for seat in state.seats)),
        state.private,
        state.player_x,
        state.player_o,
        state.moves,
        state.result,
        state.cursor,
        state.created_at,
        state.updated_at,
    )


class KeyedLocks:
    """One lock per key, existing only while someone holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str):  # type: ignore[no-untyped-def]
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class GameService:
    """The game server's behaviour, independent of HTTP."""

    def __init__(
        self,
        store: EventStore,
        hub: Hub,
        limits: Limits,
        *,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._hub = hub
        self._limits = limits
        self._rng = rng or random.SystemRandom()
        self._chat_rate = ChatRate(limits.chat_messages, limits.chat_seconds, clock)
        self._lobby = Lobby()
        self._active: dict[str, GameRecord] = {}
        self._finished: OrderedDict[str, GameRecord] = OrderedDict()
        # Public games whose first join is still committing, oldest first: a player who arrives
        # meanwhile joins one of them (waiting on its lock) rather than waiting alone in a new game.
        self._opening: dict[str, GameRecord] = {}
        self._client_locks = KeyedLocks()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._timer_task: asyncio.Task[None] | None = None

    # --- life cycle ---

    async def start(self) -> int:
        """Replay the unfinished games into memory and start the timers; returns how many."""
        games = await self._store.load_unfinished()
        for game_id, events in games.items():
            record = self._record_from(rules.replay(game_id, events), events)
            self._active[game_id] = record
        self._lobby.restore(record.state for record in self._active.values())
        for record in self._active.values():
            if _bot_to_move(record.state):  # the server stopped before the bot answered
                self._spawn(self._bot_move(record))
        self._timer_task = asyncio.create_task(self._run_timers(), name="game-timers")
        return len(games)

    def stop_waiting(self) -> None:
        """Answer every parked poll with 'nothing yet' (204): the server is stopping."""
        self._hub.close()

    async def close(self) -> None:
        """Stop the timers and let the changes already under way commit."""
        self._hub.close()
        if self._timer_task is not None:
            self._timer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_task
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=10)

    # --- commands ---

    async def play(
        self,
        client_id: str | None,
        name: str | None,
        *,
        resume: bool = False,
        against_bot: bool = False,
        private: bool = False,
        game_id: str | None = None,
    ) -> Joined:
        """Pair the client with an opponent: the oldest waiting game or a new one; or the bot; or a
        new private game; or the game `game_id` (a friend's). `resume` gives back its game."""
        if name is not None and name_key(name) == name_key(BOT_NAME):
            raise InvalidName(f"the name {BOT_NAME} is kept for the computer player")
        how = Pairing(against_bot, private, game_id)
        return await self._shielded(self._play(client_id, name, resume, how))

    async def move(self, client_id: str, position: int) -> int:
        """Play the client's mark at `position`; returns the move's cursor."""
        actor = actor_of(client_id)
        membership = self._lobby.membership(actor)  # no coroutine for the usual case: one per move
        game_id = membership.game_id if membership is not None else await self._game_of(actor)
        # Not `_shielded`: a move is one `_execute`, whose commit is safe from cancellation itself.
        events = await self._execute(game_id, lambda _: rules.Move(actor, position, utc_now()))
        return events[0].cursor

    async def chat(self, client_id: str, message: str) -> int:
        """Say something in the client's game; returns the chat event's cursor. ChatTooFast past
        the rate limit, before anything is appended."""
        actor = actor_of(client_id)
        game_id = await self._game_of(actor)
        slot = self._chat_rate.take(actor)
        try:
            events = await self._shielded(self._execute(game_id, lambda _: rules.Chat(actor, message, utc_now())))
        except GameError:
            self._chat_rate.give_back(actor, slot)
            raise
        return events[0].cursor

    async def quit(self, client_id: str) -> None:
        """End the client's unfinished game, if it has one, and free its name."""
        await self._shielded(self._quit(actor_of(client_id)))

    async def _quit(self, actor: str) -> None:
        async with self._client_locks.hold(actor):
            membership = self._lobby.membership(actor)
            if membership is None:
                if await self._store_call(self._store.last_game_of(actor)) is None:
                    raise UnknownClient("unknown client id")
                return  # its last game is already over: nothing to end
            await self._quit_game(actor, membership.game_id)

    async def _quit_game(self, actor: str, game_id: str) -> None:
        # A game that ended meanwhile (a win, the opponent's quit, a timer) is as good as quit.
        with contextlib.suppress(rules.GameOver):
            await self._execute(game_id, lambda _: rules.Quit(actor, utc_now()))

    async def _play(self, client_id: str | None, name: str | None, resume: bool, how: Pairing) -> Joined:
        fresh = client_id is None
        client_id = client_id or new_client_id()
        actor = actor_of(client_id)
        async with self._client_locks.hold(actor):
            membership = self._lobby.membership(actor)
            if resume:
                if membership is None:
                    raise NothingToResume("you have no unfinished game to resume")
                return Joined(client_id, membership.name, membership.game_id)
            # Hold the requested name before quitting the old game: a refusal must change nothing,
            # and no one may take the name while the quit commits.
            held = name if name is not None and not self._lobby.holds_name(name, actor) else None
            if name is not None:
                self._lobby.reserve_name(name, actor)  # NameTaken
            try:
                if how.game_id is not None:  # 102 or 109 before the old game is quit: a refusal changes nothing
                    await self._check_joinable(how.game_id, actor)
                previous = membership.name if membership else (None if fresh else await self._last_name(actor))
                if membership is not None:
                    await self._quit_game(actor, membership.game_id)
            except BaseException:
                if held is not None:
                    self._lobby.release_name(held, actor)
                raise
            chosen = name or (previous if previous and self._lobby.name_is_free(previous, actor) else None)
            chosen = chosen or self._lobby.guest_name()
            self._lobby.reserve_name(chosen, actor)  # again: quitting released the old game's name
            try:
                game_id = await self._pair(actor, chosen, how)
            except BaseException:
                self._lobby.release_name(chosen, actor)
                raise
            return Joined(client_id, chosen, game_id)

    async def _pair(self, actor: str, name: str, how: Pairing) -> str:
        if how.game_id is not None:
            return await self._join_given(actor, name, how.game_id)
        if how.against_bot or how.private:
            return await self._open_game(actor, name, private=how.private, against_bot=how.against_bot)
        return await self._join_any(actor, name)

    async def _check_joinable(self, game_id: str, actor: str) -> None:
        """Refuse at once a game that does not exist, is over or has both players."""
        state = (await self._record(game_id)).state
        if state.over:
            raise rules.GameFull("game is full: it is over")
        if state.seat_of(actor) is not None:
            raise rules.AlreadyJoined("you already play in this game: ask with resume=true")
        if len(state.seats) >= 2:
            raise rules.GameFull("game is full")

    async def _join_given(self, actor: str, name: str, game_id: str) -> str:
        """Join the game a friend opened (private or not); it must still wait for a player."""
        record = await self._record(game_id)
        if record.state.over:
            raise rules.GameFull("game is full: it is over")
        claimed = self._lobby.claim(game_id)  # a public waiting game leaves the queue first
        try:
            await self._execute(game_id, lambda _: rules.Join(actor, name, utc_now(), self._coin()))
        except rules.GameOver:
            raise rules.GameFull("game is full: it is over") from None
        except BaseException:
            if claimed and record.state.phase == "waiting":
                self._lobby.unclaim(game_id)
            raise
        return game_id

    async def _join_any(self, actor: str, name: str) -> str:
        """Join the oldest waiting game that still takes a player (or one being opened), or open one."""
        while (game_id := self._lobby.claim_oldest_waiting() or self._claim_opening()) is not None:
            try:
                await self._execute(game_id, lambda _: rules.Join(actor, name, utc_now(), self._coin()))
                return game_id
            except (rules.GameFull, rules.GameOver, rules.AlreadyJoined, UnknownGame):
                continue  # the game went away while we claimed it: try the next
            except BaseException:
                if (record := self._active.get(game_id)) and record.state.phase == "waiting":
                    self._lobby.unclaim(game_id)
                raise
        return await self._open_game(actor, name)

    def _claim_opening(self) -> str | None:
        for game_id in self._opening:
            del self._opening[game_id]
            return game_id
        return None

    async def _open_game(self, actor: str, name: str, *, private: bool = False, against_bot: bool = False) -> str:
        game_id = new_game_id()
        record = self._active[game_id] = GameRecord(GameState(game_id))  # one record, even for early polls
        public = not (private or against_bot)
        if public:
            self._opening[game_id] = record

        def commands(_: GameState) -> Command | tuple[Command, ...]:
            first = rules.Join(actor, name, utc_now(), private=private)
            if not against_bot:
                return first
            return first, rules.Join(BOT_ACTOR, BOT_NAME, first.at, joiner_is_x=self._coin())

        try:
            await self._execute_on(record, commands)
        except BaseException:
            if self._opening.pop(game_id, None) is None and public:
                # A joiner claimed it and waits on its lock: its join opens the game instead.
                raise
            if record.state.cursor == 0:
                del self._active[game_id]
            raise
        if public and self._opening.pop(game_id, None) is None:
            self._lobby.claim(game_id)  # a joiner claimed it while it opened: not in the queue
        return game_id

    def _coin(self) -> bool:
        return self._rng.random() < 0.5

    # --- reading the timeline ---

    async def event_after(self, game_id: str, cursor: int, timeout: float | None = None) -> bytes | None:
        """Event `cursor + 1` of the game, waiting for it up to `timeout`; None if none came."""
        # A live game's record without a coroutine: this runs for every long poll.
        record = self._active.get(game_id) or await self._record(game_id)
        self._check_cursor(record, cursor)
        if cursor >= record.state.cursor and not await self._wait_past(game_id, record, cursor, self._timeout(timeout)):
            return None
        return record.encoded[cursor]

    async def events_after(self, game_id: str, after: int, wait: float = 0.0, limit: int = 100) -> list[bytes]:
        """All events after cursor `after` (at most `limit`), waiting up to `wait` for the first."""
        record = await self._record(game_id)
        self._check_cursor(record, after)
        if after >= record.state.cursor and not await self._wait_past(game_id, record, after, self._timeout(wait)):
            return []
        return record.encoded[after : after + limit]

    async def state_at(self, game_id: str, at: int | None = None) -> dict[str, Any]:
        """The game rebuilt by replaying its stored log up to cursor `at` (default: all of it)."""
        record = await self._record(game_id)
        if at is not None and at > record.state.cursor:
            raise CursorAhead(f"cursor {at} is ahead of the game's last event ({record.state.cursor})")
        # Read from the log itself, not from the cache: this is the debugging view of the log.
        events = await self._store_call(self._store.load(game_id))
        events = events if at is None else events[:at]
        public = rules.public_state(rules.replay(game_id, events))
        public["events"] = [to_public(event) for event in events]
        return public

    def _timeout(self, requested: float | None) -> float:
        limit = self._limits.poll_timeout
        return limit if requested is None else max(0.0, min(requested, limit))

    @staticmethod
    def _check_cursor(record: GameRecord, cursor: int) -> None:
        last = record.state.cursor
        if cursor > last:
            raise CursorAhead(f"cursor {cursor} is ahead of the game's last event ({last})")
        if cursor == last and record.state.over:
            raise NothingMoreToCome("the game is over and you have its last event")

    async def _wait_past(self, game_id: str, record: GameRecord, cursor: int, timeout: float) -> bool:
        """Park until the game has an event after `cursor`; False on timeout or shutdown."""
        record.polls_open += 1
        record.last_poll = time.monotonic()
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while cursor >= record.state.cursor:
                remaining = deadline - asyncio.get_running_loop().time()
                if await self._hub.wait(game_id, remaining) is None:
                    return False
            return True
        finally:
            record.polls_open -= 1
            record.last_poll = time.monotonic()

    # --- the one path of every change ---

    # Commands are passed as factories so that their timestamp is taken under the game's lock:
    # the timestamps of a game's events then never go backwards.
    def _execute(self, game_id: str, command: Callable[[GameState], Command]) -> Awaitable[tuple[Event, ...]]:
        # Not a coroutine itself: one coroutine less on the path of every move.
        record = self._active.get(game_id)
        return self._execute_on(record, command) if record is not None else self._refuse_ended(game_id)

    async def _refuse_ended(self, game_id: str) -> tuple[Event, ...]:
        await self._record(game_id)  # 102 if the game does not exist at all
        raise rules.GameOver("the game is over")

    async def _execute_on(
        self, record: GameRecord, command: Command | Callable[[GameState], Command | tuple[Command, ...]]
    ) -> tuple[Event, ...]:
        """Decide, append, evolve, publish, notify: under the game's lock, with conflict retries."""
        # acquire/release, not `async with`: one coroutine less on the path of every move.
        await record.lock.acquire()
        try:
            for _ in range(_CONFLICT_RETRIES):
                state = record.state
                cmd = command(state) if callable(command) else command
                events = rules.decide_all(state, cmd) if isinstance(cmd, tuple) else rules.decide(state, cmd)
                new_state = rules.evolve_all(state, events)
                started = time.perf_counter()
                # Published at the commit itself: the game's waiters wake without waiting for this
                # coroutine's turn (a cancelled caller's change is published all the same).
                publish = functools.partial(self._publish, record, new_state, events)
                try:
                    _, hung_up = await _committed(self._store.submit(events, game_row(new_state), publish))
                except CursorConflict:
                    # Another writer (another process) got there first: catch up and decide again.
                    await self._reload(record)
                    continue
                if self._metrics is not None:
                    self._metrics.append_seconds.observe(time.perf_counter() - started)
                    for event in events:
                        self._metrics.event_appended(event.type)
                if log.isEnabledFor(logging.DEBUG):  # the event types only: an actor is a client's secret's hash
                    types = [event.type for event in events]
                    log.debug("game %s: %s up to cursor %d", new_state.game_id, types, new_state.cursor)
                if hung_up:
                    raise asyncio.CancelledError  # the change is published: now the cancellation goes on
                return events
        finally:
            record.lock.release()
        raise StorageUnavailable("the game changed too often while this request was decided; try again")

    def _publish(self, record: GameRecord, state: GameState, events: tuple[Event, ...], encoded: list[bytes]) -> None:
        record.state = state
        record.encoded.extend(encoded)  # the very bytes stored: encoded once, sent to every reader
        record.turn_deadline = self._turn_deadline(state)
        game_id = state.game_id
        if state.over:
            self._active.pop(game_id, None)
            self._remember_finished(record)
        else:
            self._active[game_id] = record
        self._lobby.apply(state, events)
        self._hub.notify(game_id, state.cursor)
        if _bot_to_move(state):
            self._spawn(self._bot_move(record))

    async def _bot_move(self, record: GameRecord) -> None:
        """The bot answers through the same path as any player, after the move it answers committed."""

        def command(state: GameState) -> Command:
            if not _bot_to_move(state):
                raise rules.StaleTimer("it is no longer the bot's turn")
            assert state.turn is not None
            return rules.Move(BOT_ACTOR, bot.best_move(state.board, state.turn), utc_now())

        delay = 0.1
        while True:
            try:
                await self._execute_on(record, command)
                return
            except StorageUnavailable:
                # The database is locked or full for now: answer once it is back, unless we stop.
                if self._hub.closed:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except GameError:
                return

    async def _reload(self, record: GameRecord) -> None:
        events = await self._store_call(self._store.load(record.state.game_id))
        fresh = self._record_from(rules.replay(record.state.game_id, events), events)
        record.state, record.encoded, record.turn_deadline = fresh.state, fresh.encoded, fresh.turn_deadline

    def _record_from(self, state: GameState, events: list[Event]) -> GameRecord:
        record = GameRecord(state, [encode(event) for event in events])
        record.turn_deadline = self._turn_deadline(state)
        return record

    def _turn_deadline(self, state: GameState) -> float | None:
        if state.phase != "playing" or state.turn_since is None:
            return None
        return parse_time(state.turn_since).timestamp() + self._limits.turn_timeout

    # --- finding games and clients ---

    async def _record(self, game_id: str) -> GameRecord:
        record = self._active.get(game_id) or self._finished.get(game_id)
        if record is not None:
            if game_id in self._finished:
                self._finished.move_to_end(game_id)
            return record
        events = await self._store_call(self._store.load(game_id))
        if not events:
            raise UnknownGame("unknown game id")
        state = rules.replay(game_id, events)
        record = self._record_from(state, events)
        if state.over:
            self._remember_finished(record)
        else:  # written by another process since we started: adopt it
            self._active.setdefault(game_id, record)
            record = self._active[game_id]
        return record

    def _remember_finished(self, record: GameRecord) -> None:
        self._finished[record.state.game_id] = record
        self._finished.move_to_end(record.state.game_id)
        while len(self._finished) > _FINISHED_CACHE_SIZE:
            self._finished.popitem(last=False)

    async def _game_of(self, actor: str) -> str:
        """The client's unfinished game; 103 if its last game is over, 101 if it never played."""
        membership: Membership | None = self._lobby.membership(actor)
        if membership is not None:
            return membership.game_id
        last = await self._store_call(self._store.last_game_of(actor))
        if last is None:
            raise UnknownClient("unknown client id")
        raise rules.GameOver("your game is over: play again to start a new one")

    async def _last_name(self, actor: str) -> str | None:
        """The name a returning client had in its last game."""
        game_id = await self._store_call(self._store.last_game_of(actor))
        if game_id is None:
            return None
        seat = (await self._record(game_id)).state.seat_of(actor)
        return seat.name if seat else None

    # --- timers: abandoned waiting games and turns that ran out ---

    async def _run_timers(self) -> None:
        interval = max(0.05, min(1.0, self._limits.pending_timeout / 4, self._limits.turn_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_games()
            except Exception:  # a timer must never die: log and go on
                log.exception("game timers failed")

    async def expire_games(self) -> int:
        """End the waiting games nobody polls and the turns that ran out; returns how many."""
        now, clock = time.time(), time.monotonic()
        endings: list[Awaitable[tuple[Event, ...]]] = []
        for game_id, record in list(self._active.items()):
            state = record.state
            if state.phase == "waiting":
                idle = record.polls_open == 0 and clock - record.last_poll >= self._limits.pending_timeout
                if idle and self._lobby.claim(game_id):
                    endings.append(self._abandon(record))
            elif record.turn_deadline is not None and now >= record.turn_deadline:
                assert state.turn is not None and state.turn_since is not None
                endings.append(self._execute_on(record, rules.TimeOut(state.turn, state.turn_since, utc_now())))
        results = await asyncio.gather(*(self._shielded(e) for e in endings), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, rules.StaleTimer):
                log.warning("could not end an expired game: %s", result)
        return sum(1 for r in results if not isinstance(r, BaseException))

    async def _abandon(self, record: GameRecord) -> tuple[Event, ...]:
        try:
            return await self._execute_on(record, lambda _: rules.Abandon(utc_now()))
        except BaseException:
            if record.state.phase == "waiting":
                self._lobby.unclaim(record.state.game_id)
            raise

    # --- plumbing ---

    def _spawn(self, work: Awaitable[Any]) -> None:
        """Run a change in the background, tracked so that shutdown waits for it."""
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._in_flight.discard)

    async def _shielded(self, work: Awaitable[T]) -> T:
        """Run a change to its end even if the client hangs up: an answered or unanswered
        request must never leave the cache behind the log."""
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(task)

    @staticmethod
    async def _store_call(work: Awaitable[T]) -> T:
        try:
            return await work
        except StoreUnavailable as err:
            raise _unavailable() from err

    # --- introspection for health checks, tests and metrics ---

    async def check_health(self) -> None:
        await self._store_call(self._store.ping())

    async def list_games(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        """Public games for spectators, newest first: ids, names, state, moves, result, last cursor."""
        rows = await self._store_call(self._store.list_games(state, limit, include_private=False))
        return [
            {
                "game_id": row.game_id,
                "state": row.state,
                "players": json.loads(row.players),
                "playerX": row.player_x,
                "playerO": row.player_o,
                "moves": row.moves,
                "result": row.result,
                "cursor": row.last_cursor,
                "created_at": row.created_at,
                "updated_at": row.updated_at,
            }
            for row in rows
        ]

    @property
    def stopping(self) -> bool:
        """True once the server has begun to stop: streams should end."""
        return self._hub.closed

    def cached_state(self, game_id: str) -> GameState | None:
        """The in-memory state of a game, if it is cached (what the log must replay to)."""
        record = self._active.get(game_id) or self._finished.get(game_id)
        return record.state if record else None

    def waiting_polls(self, game_id: str | None = None) -> int:
        return self._hub.waiting(game_id)

    def games_by_state(self) -> dict[str, int]:
        """Games in memory by state (finished games live in the log, not here)."""
        counts = {"waiting": 0, "playing": 0}
        for record in self._active.values():
            if record.state.seats:
                counts[record.state.phase] = counts.get(record.state.phase, 0) + 1
        return counts

    def counts(self) -> dict[str, int]:
        return {"active_games": len(self._active), "cached_finished": len(self._finished), **self._lobby.counts()}


async def _committed(append: asyncio.Future[T]) -> tuple[T, bool]:
    """The outcome of a submitted append, and whether the caller was cancelled (its client hung up)
    while it committed. A cancelled caller still waits for the outcome, holding the game's lock
    until the change is committed and published (the store publishes it at the commit): the cache
    never falls behind the log, and no task per change is needed for that."""
    hung_up = False
    while True:
        try:
            return await asyncio.shield(append), hung_up
        except asyncio.CancelledError:
            if append.cancelled():
                raise
            hung_up = True
        except StoreUnavailable as err:
            raise _unavailable() from err


def _unavailable() -> StorageUnavailable:
    return StorageUnavailable("storage unavailable: try again shortly")


def _settled(task: asyncio.Task[Any]) -> None:
    """Mark a change's outcome as seen: a refusal nobody waited for (the client hung up) is
    not an error worth a traceback in the log."""
    if not task.cancelled():
        error = task.exception()
        if error is not None and not isinstance(error, GameError):
            log.error("a change failed after its client left: %r", error)


def _bot_to_move(state: GameState) -> bool:
    seat = state.seat_of(BOT_ACTOR)
    return seat is not None and state.phase == "playing" and state.mark_of(seat.name) == state.turn
