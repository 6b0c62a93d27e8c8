"""Pure unit tests of the rules: no fixtures, no I/O."""

import pytest

from tictactoe import rules
from tictactoe.events import GameEnded, GameStarted, MovePlayed, PlayerJoined, PlayerLeft, decode, encode, to_public
from tictactoe.rules import GameState, Join, Move, decide, evolve_all, replay

T = "2026-01-01T00:00:00.000Z"


def started(joiner_is_x: bool = False) -> GameState:
    state = GameState("g1")
    state = evolve_all(state, decide(state, Join("a", "alice", T)))
    return evolve_all(state, decide(state, Join("b", "bob", T, joiner_is_x)))


def play(state: GameState, *positions: int) -> GameState:
    for position in positions:
        actor = "a" if state.turn == "X" else "b"
        state = evolve_all(state, decide(state, Move(actor, position, T)))
    return state


def test_the_first_join_waits_and_the_second_starts_the_game_with_x_to_move():
    state = GameState("g1")
    first = decide(state, Join("a", "alice", T))
    assert [type(e) for e in first] == [PlayerJoined]
    state = evolve_all(state, first)
    assert state.phase == "waiting"
    second = decide(state, Join("b", "bob", T, joiner_is_x=True))
    assert [type(e) for e in second] == [PlayerJoined, GameStarted]
    status = second[1]
    assert (status.player_x, status.player_o, status.turn, status.cursor) == ("bob", "alice", "X", 3)


def test_the_coin_decides_who_plays_x():
    assert started(joiner_is_x=False).player_x == "alice"
    assert started(joiner_is_x=True).player_x == "bob"


@pytest.mark.parametrize("line", rules.LINES)
def test_every_one_of_the_eight_lines_wins(line):
    board = "".join("X" if i in line else "_" for i in range(9))
    assert rules.outcome(board) == "X"
    assert rules.winning_line(board) == line


def test_a_full_board_without_a_line_is_a_draw():
    assert rules.outcome("XOXXOOOXX") == "D"
    assert rules.outcome("XOXXOOOX_") is None


def test_a_winning_move_is_followed_at_once_by_the_end():
    state = started()  # alice is X ("a")
    state = play(state, 0, 3, 1, 4)
    events = decide(state, Move("a", 2, T))
    move, end = events
    assert isinstance(move, MovePlayed) and move.winner == "X" and move.turn is None
    assert isinstance(end, GameEnded) and end.result == "X" and end.reason == "player X won"
    assert end.cursor == move.cursor + 1


def test_a_drawing_move_ends_the_game_with_d():
    state = play(started(), 0, 1, 2, 4, 3, 5, 7, 6)
    move, end = decide(state, Move("a", 8, T))
    assert move.winner == "D" and end.result == "D" and end.reason == "draw"


@pytest.mark.parametrize(
    ("setup", "actor", "position", "error"),
    [
        ((), "b", 0, rules.NotYourTurn),
        ((4,), "b", 4, rules.CellTaken),
        ((), "a", 9, rules.PositionOutOfRange),
        ((), "z", 0, rules.NotAPlayer),
        ((0, 3, 1, 4, 2), "b", 5, rules.GameOver),
    ],
)
def test_illegal_moves_are_refused_with_their_reason(setup, actor, position, error):
    state = play(started(), *setup)
    with pytest.raises(error):
        decide(state, Move(actor, position, T))


def test_a_move_before_the_second_player_is_refused():
    state = evolve_all(GameState("g"), decide(GameState("g"), Join("a", "alice", T)))
    with pytest.raises(rules.GameNotStarted):
        decide(state, Move("a", 0, T))


def test_a_full_game_refuses_a_third_player():
    with pytest.raises(rules.GameFull):
        decide(started(), Join("c", "carol", T))


def test_quitting_disconnects_then_ends_abandoned():
    left, end = decide(started(), rules.Quit("b", T))
    assert isinstance(left, PlayerLeft) and left.name == "bob"
    assert end.result == "abandoned" and end.reason == "bob quit the game"


def test_a_turn_timeout_makes_the_player_to_move_lose():
    state = play(started(), 4)  # O (bob) to move
    (end,) = decide(state, rules.TimeOut("O", state.turn_since, T))
    assert end.result == "X" and "bob" in end.reason and "O" in end.reason


def test_a_stale_turn_timer_is_refused():
    state = play(started(), 4)
    since = state.turn_since
    with pytest.raises(rules.StaleTimer):
        decide(state, rules.TimeOut("X", since, T))
    moved = play(state, 0)
    with pytest.raises(rules.StaleTimer):
        decide(moved, rules.TimeOut("O", since, "2026-01-01T00:00:01.000Z"))


def test_only_a_waiting_game_can_be_abandoned():
    with pytest.raises(rules.StaleTimer):
        decide(started(), rules.Abandon(T))


def test_evolve_refuses_an_event_that_does_not_follow():
    state = started()
    with pytest.raises(rules.BrokenLog):
        evolve_all(state, [MovePlayed(9, T, board="X________", player="X", position=0, turn="O")])


def test_replay_of_the_events_gives_the_live_state():
    live = GameState("g1")
    log = []
    for command in [Join("a", "alice", T), Join("b", "bob", T), Move("a", 4, T), Move("b", 0, T)]:
        events = decide(live, command)
        log.extend(events)
        live = evolve_all(live, events)
    assert replay("g1", log) == live


def test_events_round_trip_through_their_public_json_keeping_the_actor_out():
    event = PlayerJoined(1, T, name="alice", actor="hash")
    assert b"hash" not in encode(event)
    assert to_public(event) == {"type": "connect", "cursor": 1, "timestamp": T, "name": "alice", "player": True}
    assert decode(encode(event), "hash") == event
    status = GameStarted(3, T, board="_" * 9, turn="X", player_x="a", player_o="b")
    assert to_public(status)["playerX"] == "a"
    assert decode(encode(status)) == status


def test_a_move_carries_turn_or_winner_never_a_null_one():
    move = MovePlayed(4, T, board="X________", player="X", position=0, turn="O")
    assert "winner" not in to_public(move)
    won = MovePlayed(8, T, board="XXX_OO___", player="X", position=2, winner="X")
    assert "turn" not in to_public(won)
