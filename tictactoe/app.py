"""`create_app(config)`: the one place where the server is wired together."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import __version__, api
from .config import Config
from .errors import protocol_errors
from .hub import Hub
from .keys import CONFIG, HUB, METRICS, SERVICE, STARTUP, STORE
from .metrics import Metrics
from .service import GameService, Limits
from .store import EventStore

log = logging.getLogger("tictactoe")


def create_app(config: Config) -> web.Application:
    """The application for `config`; resources open on start-up and close on clean-up."""
    app = web.Application(client_max_size=config.max_body_size, middlewares=[protocol_errors])
    app[CONFIG] = config
    app[STARTUP] = {}
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_event_store)
    app.cleanup_ctx.append(_game_service)
    app.on_shutdown.append(_answer_waiting_polls)
    app.add_routes(api.routes)
    return app


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
    limits = Limits(config.poll_timeout, config.pending_timeout, config.turn_timeout)
    service = GameService(app[STORE], hub, limits, metrics=metrics)
    store = app[STORE]
    metrics.follow(polls=hub.waiting, games=service.games_by_state, transactions=lambda: store.transactions)
    started = time.perf_counter()
    restored = await service.start()
    elapsed = time.perf_counter() - started
    app[HUB], app[SERVICE] = hub, service
    app[STARTUP].update(restored=restored, seconds=elapsed)
    log.info(
        "tictactoe %s: database %s (schema %s), %d unfinished games restored in %.3f s",
        __version__,
        config.db,
        app[STORE].schema[-1] if app[STORE].schema else "none",
        restored,
        elapsed,
    )
    yield
    await service.close()


async def _answer_waiting_polls(app: web.Application) -> None:
    # Runs before aiohttp waits for in-flight handlers: parked polls answer 204 at once.
    app[SERVICE].stop_waiting()


class AccessLogger(AbstractAccessLogger):
    """One line per request: address, method, path (no query: nothing secret can leak), status,
    size and time taken (for a long poll, how long it waited)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
        )
