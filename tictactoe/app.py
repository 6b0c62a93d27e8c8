"""`create_app(config)`: the one place where the server is wired together."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

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

WEB_CLIENT = Path(__file__).parent / "web"

# No inline script or style anywhere in the client: a name or a chat line can never become code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(config: Config) -> web.Application:
    """The application for `config`; resources open on start-up and close on clean-up."""
    app = web.Application(client_max_size=config.max_body_size, middlewares=[protocol_errors])
    app[CONFIG] = config
    app[STARTUP] = {}
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_event_store)
    app.cleanup_ctx.append(_game_service)
    app.on_shutdown.append(_answer_waiting_polls)
    app.on_response_prepare.append(_security_headers)
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


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # Every response, API included: cheap, and no response type is left out by mistake.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if request.path == "/" or request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")  # revalidate: a new version shows at once


async def _event_store(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await EventStore.open(config.db, synchronous=config.sqlite_synchronous)
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
