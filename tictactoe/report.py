"""How the operator commands show a game: lines of rich markup, built from events and replayed
states only (printing them, with or without colour, is the caller's job)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rich.markup import escape

from .events import ChatSent, Event, GameEnded, GameStarted, MovePlayed, PlayerJoined, PlayerLeft
from .rules import GameState, evolve

MARK_STYLE = {"X": "bold cyan", "O": "bold magenta"}


def mark(symbol: str) -> str:
    style = MARK_STYLE.get(symbol)
    return f"[{style}]{symbol}[/]" if style else "[dim]·[/]" if symbol == "_" else escape(symbol)


def board_lines(board: str, indent: str = "      ") -> list[str]:
    """The board as a 3x3 grid: `X | O | ·` rows with a rule between them."""
    rows = [" | ".join(mark(cell) for cell in board[r : r + 3]) for r in (0, 3, 6)]
    return [indent + rows[0], indent + "--+---+--", indent + rows[1], indent + "--+---+--", indent + rows[2]]


def _who_and_what(event: Event, before: GameState) -> tuple[str, str]:
    match event:
        case PlayerJoined():
            return escape(event.name), "joined"
        case GameStarted():
            return "", f"game started: {mark('X')} {escape(event.player_x)}, {mark('O')} {escape(event.player_o)}"
        case MovePlayed():
            name = before.name_of(event.player) or "?"
            return f"{mark(event.player)} {escape(name)}", f"played cell {event.position}"
        case ChatSent():
            return escape(event.name), f"said {escape(repr(event.message))}"
        case PlayerLeft():
            return escape(event.name), "left"
        case GameEnded():
            return "", f"[bold]game over[/]: {escape(event.reason)} (result {escape(event.result)})"
    return "", escape(event.type)


def replay_lines(game_id: str, events: Sequence[Event]) -> Iterator[str]:
    """Every event in order (cursor, time, type, who, what), the board after each move, then the
    state reached. Stops with a red line at the first event the rules cannot fold."""
    state = GameState(game_id)
    yield f"[bold]game {escape(game_id)}[/]"
    for event in events:
        who, what = _who_and_what(event, state)
        yield f"{event.cursor:>4}  {event.timestamp}  {event.type:<10} {who:<{_pad(who)}}  {what}"
        try:
            state = evolve(state, event)
        except ValueError as err:
            yield f"[bold red]      the log is broken here: {escape(str(err))}[/]"
            return
        if isinstance(event, MovePlayed):
            yield from board_lines(state.board)
    yield from summary_lines(state)


def _pad(who: str) -> int:
    # Markup takes room in the string but not on screen: pad by the visible width.
    from rich.text import Text

    return 16 + len(who) - len(Text.from_markup(who).plain) if who else 16


def summary_lines(state: GameState) -> list[str]:
    if state.over:
        outcome = f"over: {escape(state.reason or '')} (result {escape(state.result or '')})"
    elif state.winner is not None:
        outcome = f"the last move decided it ({escape(state.winner)}); the end event comes next"
    elif state.phase == "playing":
        outcome = f"playing, {mark(state.turn or '_')} to move"
    else:
        outcome = "waiting for a second player"
    return [f"[bold]at cursor {state.cursor}[/]: {outcome}", *board_lines(state.board)]
