"""`create_app(config)`: the one place where the server is wired together."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import __version__, api, logs
from .addresses import ClientAddresses, OpenPolls
from .config import Config
from .errors import protocol_errors
from .hub import Hub
from .keys import ADDRESSES, CONFIG, HUB, METRICS, POLLS, SERVICE, STARTUP, STORE
from .metrics import Metrics
from .service import GameService, Limits
from .store import EventStore

log = logging.getLogger("tictactoe")

WEB_CLIENT = Path(__file__).parent / "web"


def create_app(config: Config) -> web.Application:
    """The application for `config`; resources open on start-up and close on clean-up."""
    # CORS is outermost, so that error answers carry its headers too; absent unless configured.
    middlewares = [protocol_errors]
    if config.cors_origins:
        middlewares.insert(0, api.cors_preflight(config.cors_origins))
    app = web.Application(client_max_size=config.max_body_size, middlewares=middlewares)
    app[CONFIG] = config
    app[ADDRESSES] = ClientAddresses(config.trusted_proxies)
    app[POLLS] = OpenPolls(config.max_polls_per_address)
    if config.cors_origins:
        app.on_response_prepare.append(api.cors_headers)
    app[STARTUP] = {}
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_event_store)
    app.cleanup_ctx.append(_game_service)
    app.on_shutdown.append(_answer_waiting_polls)
    app.add_routes(api.routes)
    app.router.add_get("/", _web_client)
    app.router.add_get("/static/{path:.+}", _web_client_file)
    return app


async def _web_client(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_CLIENT / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})


async def _web_client_file(request: web.Request) -> web.FileResponse:
    # Not add_static: its 404 is an empty body, and every error here is the protocol's JSON.
    path = (WEB_CLIENT / request.match_info["path"]).resolve()
    if not path.is_relative_to(WEB_CLIENT.resolve()) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


async def _event_store(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await EventStore.open(
        config.db, synchronous=config.sqlite_synchronous, busy_timeout=config.sqlite_busy_timeout
    )
    app[STORE] = store
    yield
    await store.close()
    log.info("database closed cleanly")


async def _game_service(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    metrics = app[METRICS]
    hub = Hub(on_wake=metrics.notify_seconds.observe)
    limits = Limits(
        config.poll_timeout,
        config.pending_timeout,
        config.turn_timeout,
        chat_messages=config.chat_limit_messages,
        chat_seconds=config.chat_limit_seconds,
    )
    service = GameService(app[STORE], hub, limits, metrics=metrics)
    store = app[STORE]
    metrics.follow(polls=hub.waiting, games=service.games_by_state, transactions=lambda: store.transactions)
    started = time.perf_counter()
    restored = await service.start()
    elapsed = time.perf_counter() - started
    app[HUB], app[SERVICE] = hub, service
    app[STARTUP].update(restored=restored, seconds=elapsed)
    schema = store.schema[-1] if store.schema else "none"
    db = str(Path(config.db).resolve())
    log.info(
        "tictactoe %s: database %s (schema %s), %d unfinished games restored in %.3f s",
        __version__,
        db,
        schema,
        restored,
        elapsed,
        extra={
            "fields": {
                "version": __version__,
                "db": db,
                "schema": schema,
                "restored": restored,
                "seconds": round(elapsed, 6),
            }
        },
    )
    yield
    await service.close()


async def _answer_waiting_polls(app: web.Application) -> None:
    # Runs before aiohttp waits for in-flight handlers: parked polls answer 204 at once.
    app[SERVICE].stop_waiting()


class AccessLogger(AbstractAccessLogger):
    """One line per request in the common log format, then the seconds it took (for a long poll,
    how long it waited). The path goes without its query: nothing secret can leak. aiohttp makes
    one per connection; the lines go to the log's handler, which writes them in batches."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._access = logs.handler_of(logger).access

    @property
    def enabled(self) -> bool:
        # aiohttp asks once per connection; at `warning` it then neither times requests nor calls `log`.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self._access(
            request.remote, request.method, request.path, request.version, response.status, response.body_length, time
        )
