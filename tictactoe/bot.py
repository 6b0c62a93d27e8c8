"""The perfect opponent: minimax over the whole game tree, memoized (there are only 5,478
reachable boards, so after the first game every answer is a dictionary lookup)."""

from __future__ import annotations

from functools import cache

from .events import Mark
from .rules import other, outcome

BOT_NAME = "Bot"
BOT_ACTOR = "bot"  # not a SHA-256, so no client id can ever hash to it


def best_move(board: str, mark: Mark) -> int:
    """The cell where `mark` plays best on `board`: never losing, winning soonest when it can."""
    return _best(board, mark)[1]


@cache
def _best(board: str, mark: Mark) -> tuple[int, int]:
    """(score, position) for `mark` to move; the score is positive for a win, larger when sooner."""
    best_score, best_position = -100, -1
    for position in range(9):
        if board[position] != "_":
            continue
        after = board[:position] + mark + board[position + 1 :]
        result = outcome(after)
        if result == mark:
            score = 1 + after.count("_")  # an earlier win (more empty cells left) scores higher
        elif result == "D":
            score = 0
        else:
            score = -_best(after, other(mark))[0]
        if score > best_score:
            best_score, best_position = score, position
    return best_score, best_position
