"""Checking a stored log against the rules, with the rules' own `decide`: every stored event must
be exactly what `decide` produces from the state before it. No second implementation of the
rules lives here, only the inverse question: which command would have made this event?
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from . import rules
from .events import (
    BadEvent,
    ChatSent,
    Event,
    GameEnded,
    GameStarted,
    MovePlayed,
    PlayerJoined,
    PlayerLeft,
    decode,
    parse_time,
)
from .rules import Command, GameState


@dataclass(frozen=True, slots=True)
class Problem:
    """Where a game's log breaks a rule, and which one."""

    game_id: str
    cursor: int
    rule: str

    def __str__(self) -> str:
        return f"game {self.game_id}, cursor {self.cursor}: {self.rule}"


def verify_stored(game_id: str, rows: Sequence[tuple[int, str, str, str | None]]) -> Problem | None:
    """Check a game as stored: each row `(cursor, type, data, actor)` must decode to an event that
    agrees with its columns, and the events must follow from the rules."""
    events = []
    for cursor, kind, data, actor in rows:
        try:
            event = decode(data, actor)
        except BadEvent as err:
            return Problem(game_id, cursor, f"unreadable event: {err}")
        if (event.cursor, event.type) != (cursor, kind):
            return Problem(
                game_id, cursor, f"the row says {kind} at cursor {cursor}, its JSON {event.type} at {event.cursor}"
            )
        events.append(event)
    return verify_game(game_id, events)


def verify_game(game_id: str, events: Sequence[Event]) -> Problem | None:
    """The first problem in a game's log, or None if the whole log follows from the rules."""
    state = GameState(game_id)
    i = 0
    ended = False
    previous_time = None
    for event in events:
        try:
            moment = parse_time(event.timestamp)
        except ValueError:
            return Problem(game_id, event.cursor, f"timestamp {event.timestamp!r} is not ISO 8601")
        if moment.utcoffset() is None or moment.utcoffset().total_seconds() != 0:
            return Problem(game_id, event.cursor, f"timestamp {event.timestamp!r} is not in UTC")
        if previous_time is not None and moment < previous_time:
            return Problem(game_id, event.cursor, "time goes backwards: this event is older than the one before")
        previous_time = moment
    while i < len(events):
        event = events[i]
        if ended:
            return Problem(game_id, event.cursor, f"a {event.type} event after the end of the game")
        if event.cursor != state.cursor + 1:
            return Problem(game_id, event.cursor, f"cursor gap: expected cursor {state.cursor + 1}")
        if i == 0 and not isinstance(event, PlayerJoined):
            return Problem(game_id, event.cursor, f"the first event must be connect, not {event.type}")
        command = _command_for(state, events, i)
        if isinstance(command, str):
            return Problem(game_id, event.cursor, command)
        try:
            expected = rules.decide(state, command)
        except rules.GameError as err:
            return Problem(game_id, event.cursor, f"illegal {event.type}: {err}")
        stored = tuple(events[i : i + len(expected)])
        if stored != expected:
            return Problem(game_id, *_difference(stored, expected))
        state = rules.evolve_all(state, expected)
        ended = state.over
        i += len(expected)
    return None


def _command_for(state: GameState, events: Sequence[Event], i: int) -> Command | str:
    """The command that would have produced `events[i]`, or why there is none."""
    event = events[i]
    following = events[i + 1] if i + 1 < len(events) else None
    match event:
        case PlayerJoined():
            joiner_is_x = isinstance(following, GameStarted) and following.player_x == event.name
            return rules.Join(event.actor, event.name, event.timestamp, joiner_is_x, private=event.private)
        case MovePlayed():
            actor = event.actor or _actor_of_mark(state, event.player)
            if actor is None:
                return "a move by a player who is not in the game"
            return rules.Move(actor, event.position, event.timestamp)
        case ChatSent():
            actor = event.actor or _actor_of_name(state, event.name)
            if actor is None:
                return f"a chat by {event.name!r}, who is not a player of this game"
            return rules.Chat(actor, event.message, event.timestamp)
        case PlayerLeft():
            if event.actor is None and state.phase == "waiting":
                return rules.Abandon(event.timestamp)
            actor = event.actor or _actor_of_name(state, event.name)
            if actor is None:
                return f"a disconnect of {event.name!r}, who is not a player of this game"
            return rules.Quit(actor, event.timestamp)
        case GameEnded():
            if event.result not in ("X", "O") or state.turn is None or state.turn_since is None:
                return f"an end with result {event.result!r} that no move, quit or timeout explains"
            return rules.TimeOut(state.turn, state.turn_since, event.timestamp)
        case GameStarted():
            return "a status event that does not follow the second connect"
    return f"an event of unknown type {event.type!r}"


def _actor_of_name(state: GameState, name: str | None) -> str | None:
    return next((seat.actor for seat in state.seats if seat.name == name), None)


def _actor_of_mark(state: GameState, mark: str) -> str | None:
    return _actor_of_name(state, state.player_x if mark == "X" else state.player_o)


def _difference(stored: tuple[Event, ...], expected: tuple[Event, ...]) -> tuple[int, str]:
    """The cursor where the stored events first differ from what the rules make, and how."""
    for got, want in zip(stored, expected, strict=False):
        if type(got) is not type(want):
            return got.cursor, f"the rules make a {want.type} event here, the log has {got.type}"
        for field in got.__dataclass_fields__:
            mine, theirs = getattr(got, field), getattr(want, field)
            if mine != theirs:
                if field == "board":
                    return got.cursor, f"the stored board {mine} differs from the replayed board {theirs}"
                if field == "actor":  # never print a hash: say whose act it should have been
                    return got.cursor, f"this {got.type} is recorded as made by the wrong client"
                return got.cursor, f"{got.type}.{field} is {mine!r} in the log, the rules make {theirs!r}"
    missing = expected[len(stored)]
    return missing.cursor, f"the rules make a {missing.type} event at cursor {missing.cursor}, the log has none"


def with_import_actors(game_id: str, events: Sequence[Event]) -> list[Event]:
    """Exports carry no actor hashes; give each imported player a stand-in actor, derived from the
    game and the name, so that the rules can tell the players apart. No client id maps to it."""
    stand_in: dict[str, str] = {}  # name -> actor
    marks: dict[str, str] = {}  # mark -> name
    out = []
    for i, event in enumerate(events):
        actor = None
        match event:
            case PlayerJoined():
                digest = hashlib.sha256(f"{game_id}\0{event.name}".encode()).hexdigest()
                actor = stand_in.setdefault(event.name, "imported:" + digest)
            case GameStarted():
                marks = {"X": event.player_x, "O": event.player_o}
            case MovePlayed():
                actor = stand_in.get(marks.get(event.player, ""))
            case ChatSent():
                actor = stand_in.get(event.name)
            case PlayerLeft():
                following = events[i + 1] if i + 1 < len(events) else None
                if isinstance(following, GameEnded) and following.reason == f"{event.name} quit the game":
                    actor = stand_in.get(event.name)  # a quit; a timer's disconnect has no actor
        out.append(replace(event, actor=actor))
    return out
