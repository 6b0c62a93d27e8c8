"""The events of a game, in the past tense, and their public JSON (PROTOCOL.md, "Events").

Events depend on nothing: they are the vocabulary that the rules, the store and the
clients share. Each has a stable `type` name, the protocol's, never a class path.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, ClassVar, Literal

Mark = Literal["X", "O"]
Outcome = Literal["X", "O", "D"]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a game, at `cursor` in its timeline."""

    type: ClassVar[str]
    cursor: int
    timestamp: str
    # Hash of the acting client's id, kept in the store's `actor` column, never in the JSON.
    actor: str | None = field(default=None, kw_only=True, compare=True)


@dataclass(frozen=True, slots=True)
class PlayerJoined(Event):
    type: ClassVar[str] = "connect"
    name: str
    player: bool = True
    private: bool = False  # on a game's first event: matchmaking never offers this game


@dataclass(frozen=True, slots=True)
class GameStarted(Event):
    type: ClassVar[str] = "status"
    board: str
    turn: Mark
    player_x: str
    player_o: str


@dataclass(frozen=True, slots=True)
class MovePlayed(Event):
    type: ClassVar[str] = "move"
    board: str
    player: Mark
    position: int
    turn: Mark | None = None
    winner: Outcome | None = None


@dataclass(frozen=True, slots=True)
class ChatSent(Event):
    type: ClassVar[str] = "chat"
    name: str
    message: str


@dataclass(frozen=True, slots=True)
class PlayerLeft(Event):
    type: ClassVar[str] = "disconnect"
    name: str
    player: bool = True


@dataclass(frozen=True, slots=True)
class GameEnded(Event):
    type: ClassVar[str] = "end"
    reason: str
    result: Literal["X", "O", "D", "abandoned"]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (PlayerJoined, GameStarted, MovePlayed, ChatSent, PlayerLeft, GameEnded)
}

# Python field name -> protocol field name, where they differ.
_WIRE_NAMES = {"player_x": "playerX", "player_o": "playerO"}
_PYTHON_NAMES = {wire: py for py, wire in _WIRE_NAMES.items()}


def to_public(event: Event) -> dict[str, Any]:
    """The event as the protocol's JSON object: `type`, `cursor`, `timestamp`, then its fields."""
    public: dict[str, Any] = {"type": event.type}
    for name in event.__dataclass_fields__:
        if name == "actor":
            continue
        value = getattr(event, name)
        # A move carries `turn` or `winner`, never a null one of the two.
        if value is None and isinstance(event, MovePlayed):
            continue
        if name == "private" and not value:  # only a private game's first connect says so
            continue
        public[_WIRE_NAMES.get(name, name)] = value
    return public


# json.dumps with options builds an encoder per call; this one is built once (it holds no state).
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_json_string = encode_basestring  # a str as the encoder above writes it (ensure_ascii=False)


def encode(event: Event) -> bytes:
    """The event's public JSON as UTF-8 bytes, made once and sent to every reader."""
    if type(event) is MovePlayed:
        return _encode_move(event)
    return _COMPACT_JSON.encode(to_public(event)).encode()


def _encode_move(move: MovePlayed) -> bytes:
    # Nearly every event is a move: written out field by field, the very bytes that `to_public`
    # and the encoder make (a property test holds them equal), in a third of the time.
    text = (
        f'{{"type":"move","cursor":{move.cursor:d},"timestamp":{_json_string(move.timestamp)},'
        f'"board":{_json_string(move.board)},"player":{_json_string(move.player)},"position":{move.position:d}'
    )
    if move.turn is not None:
        text += f',"turn":{_json_string(move.turn)}'
    if move.winner is not None:
        text += f',"winner":{_json_string(move.winner)}'
    return (text + "}").encode()


class BadEvent(ValueError):
    """Stored or imported JSON that is not an event of the protocol."""


_MARKS = ("X", "O")
# What each field annotation admits, so that a damaged row cannot pass for an event.
_ADMITS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "Mark": lambda v: v in _MARKS,
    "Mark | None": lambda v: v is None or v in _MARKS,
    "Outcome | None": lambda v: v is None or v in ("X", "O", "D"),
    'Literal["X", "O", "D", "abandoned"]': lambda v: v in ("X", "O", "D", "abandoned"),
}


def decode(data: str | bytes, actor: str | None = None) -> Event:
    """Rebuild an event from its public JSON (as stored) and its actor hash; `BadEvent` if the
    JSON is not exactly an event of the protocol."""
    try:
        public = json.loads(data)
    except ValueError as err:
        raise BadEvent(f"not JSON: {err}") from None
    if not isinstance(public, dict) or public.get("type") not in EVENT_TYPES:
        raise BadEvent("not an event of a known type")
    cls = EVENT_TYPES[public.pop("type")]
    kwargs = {_PYTHON_NAMES.get(key, key): value for key, value in public.items()}
    fields = {name: f for name, f in cls.__dataclass_fields__.items() if name != "actor"}
    for name, value in kwargs.items():
        if name not in fields:
            raise BadEvent(f"a {cls.type} event has no field {name!r}")
        if not _ADMITS[str(fields[name].type).replace("'", '"')](value):
            raise BadEvent(f"{cls.type}.{name} cannot be {value!r}")
    try:
        event = cls(**kwargs, actor=actor)
    except TypeError as err:
        raise BadEvent(f"a {cls.type} event lacks a field: {err}") from None
    if event.cursor < 1:
        raise BadEvent("cursors start at 1")
    return event


def utc_now() -> str:
    """The current time as the protocol writes it: ISO 8601, UTC, milliseconds."""
    now = time.time()
    second = int(now)
    return f"{_utc_second(second)}.{int((now - second) * 1000):03d}Z"


@functools.lru_cache(maxsize=1)
def _utc_second(second: int) -> str:
    # Every event of a move takes the time: its date and time of day change once a second.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as every event timestamp."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(timestamp: str) -> datetime:
    """The inverse of `format_time`."""
    return datetime.fromisoformat(timestamp)
