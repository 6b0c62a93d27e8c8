"""Serve tictactoe with `config.toml`: `python run.py [--port P ...]` (see `tictactoe serve --help`)."""

import sys

from tictactoe.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], default_command="serve"))
