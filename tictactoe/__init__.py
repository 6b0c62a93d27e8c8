"""tictactoe: a long-poll TicTacToe server whose games are event logs in SQLite."""

__version__ = "0.1.0"
