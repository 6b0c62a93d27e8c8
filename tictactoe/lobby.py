"""Who is where: the queue of waiting games, the names in use, and which client plays in which
unfinished game. All of it is derived from the events of unfinished games and rebuilt at start.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from .bot import BOT_ACTOR
from .events import Event, GameEnded, GameStarted, PlayerJoined
from .rules import GameError, GameState


class NameTaken(GameError):
    """Another active player uses this name."""

    code = 104


class InvalidName(GameError):
    """The name is empty, too long, or holds characters that cannot be shown."""

    code = 104


@dataclass(frozen=True, slots=True)
class Membership:
    """An active client: its name and its unfinished game."""

    name: str
    game_id: str


def is_client(actor: str | None) -> bool:
    """Real clients' actors are SHA-256 digests; the bot's and imported stand-ins are not."""
    return actor is not None and actor != BOT_ACTOR and not actor.startswith("imported:")


def name_key(name: str) -> str:
    """Names are unique by this key, so that `Stan`, `stan` and its full-width form cannot all play."""
    return unicodedata.normalize("NFKC", name).casefold()


class Lobby:
    """Derived state for pairing; every method is synchronous, so each is atomic on the loop."""

    def __init__(self) -> None:
        self._waiting: dict[str, None] = {}  # public waiting games, oldest first
        self._names: dict[str, str] = {}  # name key -> actor
        self._members: dict[str, Membership] = {}  # actor -> membership

    # --- reading ---

    def membership(self, actor: str) -> Membership | None:
        return self._members.get(actor)

    def name_is_free(self, name: str, actor: str) -> bool:
        """True when `name` is unused, or used by `actor` itself."""
        return self._names.get(name_key(name), actor) == actor

    def holds_name(self, name: str, actor: str) -> bool:
        """True when `actor` already holds `name`."""
        return self._names.get(name_key(name)) == actor

    # --- pairing ---

    def reserve_name(self, name: str, actor: str) -> None:
        if not self.name_is_free(name, actor):
            raise NameTaken(f"the name {name!r} is taken by an active player")
        self._names[name_key(name)] = actor

    def release_name(self, name: str, actor: str) -> None:
        key = name_key(name)
        if self._names.get(key) == actor:
            del self._names[key]

    def guest_name(self) -> str:
        """A free `Guest` name; the number grows with the number of active names."""
        digits = 4 + len(str(len(self._names)))
        while True:
            name = f"Guest{secrets.randbelow(10**digits):0{digits}d}"
            if name_key(name) not in self._names:
                return name

    def claim_oldest_waiting(self) -> str | None:
        """Take the oldest waiting game out of the queue, so that no one else joins it."""
        for game_id in self._waiting:
            del self._waiting[game_id]
            return game_id
        return None

    def claim(self, game_id: str) -> bool:
        """Take a given waiting game out of the queue; False if it is not there."""
        return self._waiting.pop(game_id, False) is None

    def unclaim(self, game_id: str) -> None:
        """Put a claimed game back at the head of the queue (its join failed)."""
        self._waiting = {game_id: None, **self._waiting}

    # --- keeping up with the log ---

    def apply(self, state: GameState, events: Iterable[Event]) -> None:
        """Follow committed `events`, after which the game is `state`."""
        for event in events:
            match event:
                case PlayerJoined(actor=actor) if is_client(actor):
                    self._members[actor] = Membership(event.name, state.game_id)
                    self._names[name_key(event.name)] = actor
                    if len(state.seats) == 1 and state.phase == "waiting" and not state.private:
                        self._waiting[state.game_id] = None
                case GameStarted():
                    self._waiting.pop(state.game_id, None)
                case GameEnded():
                    self._waiting.pop(state.game_id, None)
                    for seat in state.seats:
                        if is_client(seat.actor) and self._members.get(seat.actor) == Membership(
                            seat.name, state.game_id
                        ):
                            del self._members[seat.actor]
                            self.release_name(seat.name, seat.actor)

    def restore(self, states: Iterable[GameState]) -> None:
        """Rebuild from the unfinished games, oldest first."""
        for state in sorted(states, key=lambda s: s.created_at or ""):
            if state.over:
                continue
            for seat in state.seats:
                if is_client(seat.actor) and not seat.left:
                    self._members[seat.actor] = Membership(seat.name, state.game_id)
                    self._names[name_key(seat.name)] = seat.actor
            if state.phase == "waiting" and state.seats and not state.private and is_client(state.seats[0].actor):
                self._waiting[state.game_id] = None

    def counts(self) -> dict[str, int]:
        return {"waiting": len(self._waiting), "names": len(self._names), "members": len(self._members)}
