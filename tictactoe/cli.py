"""The command line: `tictactoe serve` (also `python run.py`, `python -m tictactoe`) and the
operator tools built on the event log: replay, games, verify, export, import, backup."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import re
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from . import __version__, audit, logs, report, rules
from .app import AccessLogger, create_app
from .config import Config, ConfigError, load_config
from .events import BadEvent, decode, to_public
from .service import game_row
from .store import EventStore, StoreError

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
    serve.add_argument("--log-level", metavar="L", help="debug, info, warning, error or critical")
    serve.add_argument("--log-format", metavar="F", help="text (for people) or json (one object per line)")

    def tool(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--db", metavar="PATH", help="SQLite database file (default: from the config)")
        sub.add_argument("--config", metavar="PATH", help="config file (default: ./config.toml if present)")
        return sub

    replay = tool("replay", "show every event of a game, the board after each move, and the result")
    replay.add_argument("game_id")
    replay.add_argument("--at", type=_cursor, metavar="N", help="stop at cursor N and show the state there")
    replay.add_argument("--json", action="store_true", help="the state after each event, as JSON Lines")
    games = tool("games", "list games, most recently active first")
    games.add_argument("--state", choices=["waiting", "playing", "over"])
    games.add_argument("--limit", type=_cursor, default=50, metavar="L")
    verify = tool("verify", "check that every game's log follows from the rules (exit 1 if not)")
    verify.add_argument("game_id", nargs="?")
    export = tool("export", "print the stored events of games as JSON Lines (no actor hashes)")
    export.add_argument("game_ids", nargs="*", metavar="GAME_ID")
    export.add_argument("--all", action="store_true", help="every game")
    load = tool("import", "load an export into a database, verifying each game first")
    load.add_argument("file", type=Path)
    tool("rebuild", "recompute the games read model (the listing) from the event log alone")
    backup = tool("backup", "write a consistent copy of the live database to PATH")
    backup.add_argument("path", type=Path)
    return parser


def _cursor(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, not {text!r}")
    return int(text)


class CommandError(Exception):
    """A refusal of an operator command: one line, exit status 1."""


def main(argv: Sequence[str] | None = None, *, default_command: str | None = None) -> int:
    """Run a command; returns the exit status. Errors are one line on stderr, never a traceback."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `tictactoe` alone serves (the one-file build, run as downloaded); --help still lists the commands.
    top_level = {"--version", "-h", "--help"}
    if default_command and (not args_list or args_list[0].startswith("-")) and not top_level & set(args_list):
        args_list.insert(0, default_command)
    args = _parser().parse_args(args_list)
    try:
        if args.command == "serve":
            return serve(_config_from(args))
        db = args.db or load_config(args.config, os.environ).db
        # A pipe gets plain text, never cut to 80 columns.
        width = None if sys.stdout.isatty() else 1000
        return asyncio.run(TOOLS[args.command](args, db, Console(highlight=False, soft_wrap=True, width=width)))
    except (ConfigError, StoreError) as err:
        print(f"tictactoe: {err}", file=sys.stderr)
        return 2
    except CommandError as err:
        print(f"tictactoe: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `tictactoe export --all | head`
        return 0
    except KeyboardInterrupt:
        print("tictactoe: interrupted", file=sys.stderr)
        return 130


def _config_from(args: argparse.Namespace) -> Config:
    overrides = {
        knob: getattr(args, knob, None)
        for knob in ("host", "port", "db", "poll_timeout", "pending_timeout", "turn_timeout", "log_level", "log_format")
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


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """The event loop the `event_loop` setting asks for: "auto" takes uvloop when it is installed."""
    choice = choice.lower()
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("event_loop is uvloop, but uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


# Thousands of parked polls are long-lived objects: scanning them in every collection costs more
# than the requests themselves, so young collections are rarer and start-up's objects are frozen.
_GC_THRESHOLDS = (50_000, 20, 100)
# Thousands of pollers reconnect at once after a restart or a network blip; aiohttp's default
# accept queue of 128 drops their connections, and each dropped SYN waits a second or more.
_LISTEN_BACKLOG = 4096


async def _freeze_startup_objects(app: web.Application) -> None:
    gc.collect()
    gc.freeze()


def _skip_unused_log_record_fields() -> None:
    """The log format names no caller, thread or process: the logging HOWTO's "Optimization"
    switches spare every record from looking them up (access lines are not records: logs.LogHandler)."""
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def serve(config: Config) -> int:
    """Serve until SIGINT or SIGTERM; parked polls get 204 and the database closes cleanly."""
    log_handler = logs.configure(config.log_level, config.log_format)
    # aiosqlite's debug lines hold every SQL parameter (actor hashes, chat text): never that verbose.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    _skip_unused_log_record_fields()
    limit = raise_open_file_limit()
    loop = new_event_loop(config.event_loop)
    loop_name = type(loop).__module__.split(".")[0]
    log.info(
        "open-file limit %d, event loop %s",
        limit,
        loop_name,
        extra={"fields": {"open_file_limit": limit, "event_loop": loop_name}},
    )
    gc.set_threshold(*_GC_THRESHOLDS)
    app = create_app(config)
    app.on_startup.append(_freeze_startup_objects)  # after the resources: the replayed games are frozen too

    async def write_access_lines(app: web.Application) -> None:  # the last ones, answered while stopping
        log_handler.flush()

    app.on_cleanup.append(write_access_lines)
    web.run_app(
        app,
        loop=loop,
        host=config.host,
        port=config.port,
        handler_cancellation=True,  # a client that hangs up mid-poll is forgotten at once
        backlog=_LISTEN_BACKLOG,
        shutdown_timeout=config.shutdown_timeout,
        # aiohttp (3.14.4+) closes a connection that has not sent a whole request this long after it
        # opened or after its last answer: a client sending headers byte by byte is cut off.
        keepalive_timeout=config.header_timeout,
        access_log_class=AccessLogger,
        access_log=logging.getLogger(logs.ACCESS_LOGGER),
        print=_log_listening,
    )
    return 0


def _log_listening(message: str) -> None:
    # aiohttp prints "======== Running on http://H:P ========\n(Press CTRL+C to quit)".
    lines = message.strip().splitlines()
    if lines:
        log.info(lines[0].strip("= "))


# --- operator tools: all read-only but `import`, all safe beside a running server ---------------


async def _load_game(store: EventStore, game_id: str) -> list:
    try:
        events = await store.load(game_id)
    except BadEvent as err:
        raise CommandError(f"game {game_id} has an unreadable event ({err}): run tictactoe verify") from None
    if not events:
        raise CommandError(f"unknown game id {game_id!r} in {store.path}")
    return events


async def replay_command(args: argparse.Namespace, db: str, console: Console) -> int:
    store = await EventStore.open_readonly(db)
    try:
        events = await _load_game(store, args.game_id)
    finally:
        await store.close()
    if args.at is not None:
        if args.at > events[-1].cursor:
            raise CommandError(f"cursor {args.at} is ahead of the game's last event ({events[-1].cursor})")
        events = events[: args.at]
    if args.json:
        state = rules.GameState(args.game_id)
        for event in events:
            try:
                state = rules.evolve(state, event)
            except rules.BrokenLog as err:
                raise CommandError(
                    f"the log of game {args.game_id} is broken at cursor {event.cursor}: {err}"
                ) from None
            # The same view as GET /api/games/{id}?at=N, with the event that led to it.
            print(json.dumps({**rules.public_state(state), "event": to_public(event)}, ensure_ascii=False))
        return 0
    for line in report.replay_lines(args.game_id, events):
        console.print(line)
    return 0


async def games_command(args: argparse.Namespace, db: str, console: Console) -> int:
    store = await EventStore.open_readonly(db)
    try:
        rows = await store.list_games(args.state, args.limit)
    finally:
        await store.close()
    table = Table("game", "players", "state", "moves", "result", "started", "last activity", box=None)
    for row in rows:
        names = json.loads(row.players)
        players = f"{row.player_x} (X) v {row.player_o} (O)" if row.player_x else ", ".join(names)
        table.add_row(
            row.game_id, escape(players), row.state, str(row.moves), row.result or "", row.created_at, row.updated_at
        )
    console.print(table)
    return 0


async def verify_command(args: argparse.Namespace, db: str, console: Console) -> int:
    store = await EventStore.open_readonly(db)
    try:
        async with store.snapshot():  # the read model and the events of one moment
            problems, checked = await _verify_all(args, store, console)
    finally:
        await store.close()
    if args.game_id and problems:
        console.print(f"[bold red]BAD[/] {escape(str(problems[0]))}")
    verdict = "[bold red]broken[/]" if problems else "[green]sound[/]"
    console.print(f"{checked} games checked, {len(problems)} bad: the log is {verdict}")
    return 1 if problems else 0


async def _verify_all(args: argparse.Namespace, store: EventStore, console: Console) -> tuple[list, int]:
    """The problems found and the number of games checked."""
    problems, checked = [], 0
    read_model = await store.read_model()
    if args.game_id:
        rows = await store.game_rows(args.game_id)
        if not rows:
            raise CommandError(f"unknown game id {args.game_id!r} in {store.path}")
        problem = _check_game(args.game_id, rows, read_model)
        problems, checked = [problem] if problem else [], 1
    else:
        total = await store.count_games()
        errors = Console(stderr=True)
        with Progress(console=errors, transient=True, disable=not errors.is_terminal or total < 1000) as bar:
            task = bar.add_task("verifying", total=total)
            async for game_id, rows in store.all_game_rows():
                if problem := _check_game(game_id, rows, read_model):
                    problems.append(problem)
                    console.print(f"[bold red]BAD[/] {escape(str(problem))}")
                read_model.pop(game_id, None)
                checked += 1
                bar.advance(task)
        for game_id in read_model:  # rows of the read model that no event backs
            problem = audit.Problem(
                game_id, 0, "the games read model lists a game with no events: run tictactoe rebuild"
            )
            problems.append(problem)
            console.print(f"[bold red]BAD[/] {escape(str(problem))}")
    return problems, checked


def _check_game(game_id: str, rows: list, read_model: dict) -> audit.Problem | None:
    """The log must follow from the rules, and the read model must be its replay."""
    if problem := audit.verify_stored(game_id, rows):
        return problem
    expected = game_row(rules.replay(game_id, [decode(data, actor) for _, _, data, actor in rows]))
    stored = read_model.get(game_id)
    if stored is None:
        return audit.Problem(game_id, rows[-1][0], "the games read model has no row for it: run tictactoe rebuild")
    for field, want in expected._asdict().items():
        got = getattr(stored, field)
        if (bool(got) if field == "private" else got) != want:
            rule = f"the games read model says {field} {got!r}, the log says {want!r}: run tictactoe rebuild"
            return audit.Problem(game_id, rows[-1][0], rule)
    return None


async def export_command(args: argparse.Namespace, db: str, console: Console) -> int:
    if bool(args.all) == bool(args.game_ids):
        raise CommandError("name the games to export, or give --all")
    store = await EventStore.open_readonly(db)
    out = sys.stdout
    try:
        if args.all:
            async for game_id, events in store.all_games():
                for event in events:
                    out.write(json.dumps({"game_id": game_id, **to_public(event)}, ensure_ascii=False) + "\n")
        else:
            games = [await _load_game(store, game_id) for game_id in args.game_ids]  # all known, or none out
            for game_id, events in zip(args.game_ids, games, strict=True):
                for event in events:
                    out.write(json.dumps({"game_id": game_id, **to_public(event)}, ensure_ascii=False) + "\n")
        out.flush()
    finally:
        await store.close()
    return 0


def read_export(path: Path) -> dict[str, list]:
    """The games of an export file, each checked by the rules; any problem refuses the whole file."""
    games: dict[str, list] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CommandError(f"cannot read {path}: {err}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            public = json.loads(line)
            game_id = public.pop("game_id")
            if not isinstance(game_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", game_id):
                raise ValueError("game_id must be 1-64 characters of A-Z a-z 0-9 _ -")
            games.setdefault(game_id, []).append(decode(json.dumps(public)))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CommandError(f"refused {path}: line {number} is not an exported event ({err})") from None
    if not games:
        raise CommandError(f"refused {path}: it holds no events")
    checked = {}
    for game_id, events in games.items():
        events = audit.with_import_actors(game_id, events)
        if problem := audit.verify_game(game_id, events):
            raise CommandError(f"refused {path}: {problem}")
        checked[game_id] = events
    return checked


async def import_command(args: argparse.Namespace, db: str, console: Console) -> int:
    games = read_export(args.file)
    store = await EventStore.open(db)
    try:
        await store.insert_games([(events, game_row(rules.replay(gid, events))) for gid, events in games.items()])
    except StoreError as err:
        raise CommandError(f"refused {args.file}: {err}") from None
    finally:
        await store.close()
    console.print(f"imported {len(games)} games ({sum(map(len, games.values()))} events) into {escape(db)}")
    return 0


async def backup_command(args: argparse.Namespace, db: str, console: Console) -> int:
    if args.path.exists():
        raise CommandError(f"{args.path} exists: back up to a new file")
    store = await EventStore.open_readonly(db)
    try:
        await store.backup(args.path)
    finally:
        await store.close()
    console.print(f"backed up {escape(db)} to {escape(str(args.path))}")
    return 0


async def rebuild_command(args: argparse.Namespace, db: str, console: Console) -> int:
    store = await EventStore.open(db)
    try:
        count = await store.rebuild_read_model(lambda game_id, events: game_row(rules.replay(game_id, events)))
    finally:
        await store.close()
    console.print(f"rebuilt the games read model of {escape(db)} from the log: {count} games")
    return 0


TOOLS = {
    "rebuild": rebuild_command,
    "replay": replay_command,
    "games": games_command,
    "verify": verify_command,
    "export": export_command,
    "import": import_command,
    "backup": backup_command,
}
