"""The command line: `tictactoe serve` (and `python run.py`, `python -m tictactoe`)."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
from collections.abc import Sequence

from aiohttp import web

from . import __version__
from .app import AccessLogger, create_app
from .config import Config, ConfigError, load_config
from .store import SchemaTooNew, StorageUnavailable

log = logging.getLogger("tictactoe")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tictactoe", description="A long-poll TicTacToe game server.")
    parser.add_argument("--version", action="version", version=f"tictactoe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the game over HTTP")
    serve.add_argument("--config", metavar="PATH", help="config file (default: ./config.toml if present)")
    serve.add_argument("--host", metavar="H")
    serve.add_argument("--port", metavar="P")
    serve.add_argument("--db", metavar="PATH", help="SQLite database file")
    serve.add_argument("--poll-timeout", metavar="S", help="seconds a long poll waits before 204")
    serve.add_argument("--pending-timeout", metavar="S", help="seconds a waiting game lives with no poll")
    serve.add_argument("--turn-timeout", metavar="S", help="seconds a player has for a move")
    return parser


def main(argv: Sequence[str] | None = None, *, default_command: str | None = None) -> int:
    """Run a command; returns the exit status. Errors are one line on stderr, never a traceback."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if default_command and (not args_list or args_list[0].startswith("-")) and "--version" not in args_list:
        args_list.insert(0, default_command)
    args = _parser().parse_args(args_list)
    try:
        if args.command == "serve":
            return serve(_config_from(args))
    except (ConfigError, SchemaTooNew, StorageUnavailable) as err:
        print(f"tictactoe: {err}", file=sys.stderr)
        return 2
    return 1


def _config_from(args: argparse.Namespace) -> Config:
    overrides = {
        knob: getattr(args, knob, None)
        for knob in ("host", "port", "db", "poll_timeout", "pending_timeout", "turn_timeout")
    }
    return load_config(args.config, os.environ, overrides)


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit: every parked poll is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as err:
            log.warning("could not raise the open-file limit: %s", err)
    return soft


def serve(config: Config) -> int:
    """Serve until SIGINT or SIGTERM; parked polls get 204 and the database closes cleanly."""
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit = raise_open_file_limit()
    log.info("open-file limit %d", limit)
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        handler_cancellation=True,  # a client that hangs up mid-poll is forgotten at once
        shutdown_timeout=config.shutdown_timeout,
        access_log_class=AccessLogger,
        print=lambda message: log.info(message.strip().splitlines()[0]) if message.strip() else None,
    )
    return 0
