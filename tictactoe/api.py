"""HTTP handlers: parse and validate parameters, call the service, shape the JSON. Nothing else."""

from __future__ import annotations

import contextlib
import json
import re
import unicodedata
from collections.abc import Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_sse import EventSourceResponse, sse_response

from . import __version__
from .errors import BadRequest, BodyTooLarge, Handler
from .headers import API_JSON_HEADERS, SECURITY_HEADERS
from .keys import ADDRESSES, CONFIG, METRICS, POLLS, SERVICE
from .lobby import InvalidName
from .service import UnknownGame

routes = web.RouteTableDef()

# A query or form body with no escapes, no "+" and no ";": parse_qsl would return it as split.
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.=&-]*")
_DIGITS = re.compile(r"[0-9]{1,4000}")  # beyond that a "number" is an attack, not a cursor
_CURSOR_ONLY = re.compile(r"cursor=([0-9]{1,4000})")  # a long poll's whole query, as clients send it
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_GAME_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
_JSON = "application/json"
_OPENAPI = resources.files(__package__).joinpath("openapi.json").read_bytes()  # shipped with the package


# --- parameters --------------------------------------------------------------------------------


class Params:
    """The parameters of one request, strictly typed on access (PROTOCOL.md, section 0)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def text(self, name: str) -> str | None:
        if name not in self._values:
            return None
        value = self._values[name]
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
        return value

    def integer(self, name: str, default: int | None = None) -> int | None:
        if name not in self._values:
            return default
        value = self._values[name]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and _DIGITS.fullmatch(value):
            return int(value)
        raise BadRequest(f"{name} must be a non-negative integer written in digits")

    def boolean(self, name: str, default: bool = False) -> bool:
        if name not in self._values:
            return default
        value = self._values[name]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
        raise BadRequest(f"{name} must be true or false")

    def client_id(self, *, required: bool) -> str | None:
        value = self.text("client_id")
        if value is None:
            if required:
                raise BadRequest("client_id is required")
            return None
        if not _CLIENT_ID.fullmatch(value):
            # Never echo the value: a client id is a secret, even a malformed one.
            raise BadRequest("client_id must be 16-64 characters of A-Z a-z 0-9 _ -")
        return value


def _pairs_to_params(pairs: list[tuple[str, Any]]) -> Params:
    values: dict[str, Any] = {}
    for key, value in pairs:
        if key in values:
            raise BadRequest(f"parameter {key!r} is given more than once")
        values[key] = value
    return Params(values)


def _parse_query(query: str, where: str = "the query string") -> list[tuple[str, str]]:
    if _PLAIN_QUERY.fullmatch(query):  # nothing to decode (the long poll's "cursor=N"): split it
        return [(key, value) for key, _, value in (pair.partition("=") for pair in query.split("&") if pair)]
    try:
        return parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(f"{where} is not valid UTF-8") from None


def query_params(request: web.Request) -> Params:
    return _pairs_to_params(_parse_query(request.rel_url.raw_query_string))


def _cursor_param(request: web.Request) -> int:
    """`?cursor=N` (default 0) of a long poll or a stream; read at once when it is the whole query
    (two long polls a move), else strictly like any parameter (100 for a bad or repeated one)."""
    query = request.rel_url.raw_query_string
    if (only := _CURSOR_ONLY.fullmatch(query)) is not None:
        return int(only[1])
    cursor = query_params(request).integer("cursor", 0)
    assert cursor is not None
    return cursor


async def body_params(request: web.Request) -> Params:
    """The POST body as parameters: form, multipart or a JSON object, strictly."""
    kind = request.content_type
    try:
        if kind == _MULTIPART:
            return await _multipart_params(request)
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge("request body too large") from None
    except (HttpProcessingError, web.RequestPayloadError):  # e.g. a Content-Encoding that does not decode
        raise BadRequest("the body could not be decoded") from None
    if kind == _JSON and request.charset not in (None, "utf-8", "UTF-8"):
        raise BadRequest("a JSON body must be UTF-8")
    if not body and kind in {"application/octet-stream", "", _FORM, _JSON}:
        return Params({})  # a bare POST: every parameter left out
    if kind == _FORM:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the body is not valid UTF-8") from None
        return _pairs_to_params(_parse_query(text, "the body"))
    if kind == _JSON:
        return _json_params(body)
    raise BadRequest("the body must be form data, multipart form data, or a JSON object")


def _json_params(body: bytes) -> Params:
    try:
        pairs = json.loads(body.decode("utf-8"), object_pairs_hook=_JsonObject)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON in UTF-8") from None
    if not isinstance(pairs, _JsonObject):
        raise BadRequest("the JSON body must be an object")
    return _pairs_to_params(list(pairs))


class _JsonObject(list):  # type: ignore[type-arg]
    """A JSON object kept as its key/value pairs, so that a repeated key can be refused."""


async def _multipart_params(request: web.Request) -> Params:
    # aiohttp's parser enforces client_max_size and decodes text fields strictly.
    try:
        form = await request.post()
    except UnicodeDecodeError:
        raise BadRequest("a multipart field is not valid UTF-8") from None
    except web.HTTPRequestEntityTooLarge:
        raise
    except (
        ValueError,
        AssertionError,
        RuntimeError,
        KeyError,
        LookupError,
        HttpProcessingError,
        web.RequestPayloadError,
    ):
        raise BadRequest("the multipart body is malformed") from None
    pairs = [(key, value if isinstance(value, str) else _NotText()) for key, value in form.items()]
    return _pairs_to_params(pairs)


class _NotText:
    """A multipart field that was a file or binary: ill-typed for every parameter."""


def _unprintable(text: str, *, strict: bool) -> bool:
    """True if `text` holds control characters, bidi overrides or isolates, or surrogates;
    with `strict` (names), also line and paragraph separators."""
    banned = {"Cc", "Cs", "Zl", "Zp"} if strict else {"Cc", "Cs"}
    return any(ch in _BIDI_CONTROLS or unicodedata.category(ch) in banned for ch in text)


def _visible(text: str) -> bool:
    """True if some character of `text` shows: a letter, digit, mark, punctuation or symbol."""
    return any(unicodedata.category(ch)[0] in "LNMPS" for ch in text)


def _name(params: Params, limit: int) -> str | None:
    name = params.text("name")
    if name is None:
        return None
    if _unprintable(name, strict=True):
        raise InvalidName("name must not contain control characters or direction overrides")
    name = name.strip(" ")  # "stan " must not pass for "stan"
    if not name:
        raise InvalidName("name must not be empty")
    if len(name) > limit:
        raise InvalidName(f"name must be at most {limit} characters")
    if not _visible(name):
        raise InvalidName("name must contain at least one visible character")
    return name


def _message(params: Params, limit: int) -> str:
    message = params.text("message")
    if message is None or message == "":
        raise BadRequest("message is required")
    if len(message) > limit:
        raise BadRequest(f"message must be at most {limit} characters")
    if _unprintable(message, strict=False):
        raise BadRequest("message must not contain control characters or direction overrides")
    return message


def _game_id(request: web.Request) -> str:
    game_id = request.match_info["game_id"]
    if not _GAME_ID.fullmatch(game_id):
        raise UnknownGame("unknown game id")
    return game_id


def _json(data: Any) -> web.Response:
    return _event_response(json.dumps(data, ensure_ascii=False).encode())


def _open_poll(request: web.Request) -> contextlib.AbstractContextManager[None]:
    """Count this request as one open long poll or stream of its address (429/121 past the limit)."""
    polls = request.app[POLLS]
    if not polls.limit:
        return contextlib.nullcontext()  # the limit is off: not even the address is worked out
    forwarded = request.headers.getall("X-Forwarded-For", None)
    address = request.app[ADDRESSES].of(request.remote, ",".join(forwarded) if forwarded else None)
    return polls.hold(address)


def _event_response(raw: bytes) -> web.Response:
    """A JSON body that is bytes already (an event as stored)."""
    return web.Response(body=raw, headers=API_JSON_HEADERS)


# --- handlers ------------------------------------------------------------------------------------


@routes.post("/api/play")
async def play(request: web.Request) -> web.Response:
    params = await body_params(request)
    config = request.app[CONFIG]
    client_id = params.client_id(required=False)
    name = _name(params, config.max_name_length)
    resume = params.boolean("resume")
    opponent = params.text("opponent")
    if opponent not in (None, "bot"):
        raise BadRequest("opponent must be bot, or left out for a human opponent")
    private = params.boolean("private")
    game_id = params.text("game_id")
    if game_id is not None and not _GAME_ID.fullmatch(game_id):
        raise UnknownGame("unknown game id")
    if sum([opponent is not None, private, game_id is not None]) > 1:
        raise BadRequest("choose one of opponent=bot, private=true and game_id")
    joined = await request.app[SERVICE].play(
        client_id, name, resume=resume, against_bot=opponent == "bot", private=private, game_id=game_id
    )
    return _json({"client_id": joined.client_id, "name": joined.name, "game_id": joined.game_id})


@routes.post("/api/move")
async def move(request: web.Request) -> web.Response:
    params = await body_params(request)
    client_id = params.client_id(required=True)
    position = params.integer("position")
    if position is None:
        raise BadRequest("position is required: an integer from 0 to 8")
    assert client_id is not None
    cursor = await request.app[SERVICE].move(client_id, position)
    return _event_response(b'{"cursor":%d}' % cursor)  # what _json would make, without an encoder


@routes.post("/api/chat")
async def chat(request: web.Request) -> web.Response:
    params = await body_params(request)
    client_id = params.client_id(required=True)
    message = _message(params, request.app[CONFIG].max_chat_length)
    assert client_id is not None
    cursor = await request.app[SERVICE].chat(client_id, message)
    return _json({"cursor": cursor})


@routes.post("/api/quit")
async def quit_game(request: web.Request) -> web.Response:
    params = await body_params(request)
    client_id = params.client_id(required=True)
    assert client_id is not None
    await request.app[SERVICE].quit(client_id)
    return _json({})


@routes.get("/api/updates/{game_id}")
async def updates(request: web.Request) -> web.Response:
    game_id = _game_id(request)
    cursor = _cursor_param(request)
    with _open_poll(request):
        raw = await request.app[SERVICE].event_after(game_id, cursor)
    if raw is None:
        return web.Response(status=204)
    return _event_response(raw)


@routes.get("/api/games")
async def listing(request: web.Request) -> web.Response:
    params = query_params(request)
    state = params.text("state")
    if state not in (None, "waiting", "playing", "over"):
        raise BadRequest("state must be waiting, playing or over")
    limit = params.integer("limit", 20)
    assert limit is not None
    if not 1 <= limit <= 100:
        raise BadRequest("limit must be from 1 to 100")
    return _json(await request.app[SERVICE].list_games(state, limit))


@routes.get("/api/games/{game_id}/events")
async def events(request: web.Request) -> web.Response:
    game_id = _game_id(request)
    params = query_params(request)
    after = params.integer("after", 0)
    wait = params.integer("wait", 0)
    assert after is not None and wait is not None
    with _open_poll(request) if wait else contextlib.nullcontext():
        batch = await request.app[SERVICE].events_after(game_id, after, float(wait))
    return web.Response(body=b"[" + b",".join(batch) + b"]", content_type=_JSON, charset="utf-8")


@routes.get("/api/games/{game_id}/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    """The game's timeline as Server-Sent Events, from `Last-Event-ID` or `?cursor=N`."""
    game_id = _game_id(request)
    cursor = _cursor_param(request)
    last_seen = request.headers.get("Last-Event-ID")
    if last_seen is not None:
        if not _DIGITS.fullmatch(last_seen):
            raise BadRequest("Last-Event-ID must be the cursor of an event, in digits")
        cursor = int(last_seen)
    service = request.app[SERVICE]
    pending = await service.events_after(game_id, cursor)  # 102, 112 and 113 before the stream opens
    metrics = request.app[METRICS]
    with _open_poll(request):
        metrics.streams_open.inc()
        try:
            return await _send_events(request, game_id, cursor, pending)
        finally:
            metrics.streams_open.dec()


async def _send_events(request: web.Request, game_id: str, cursor: int, pending: list[bytes]) -> web.StreamResponse:
    service = request.app[SERVICE]
    async with sse_response(request, response_cls=_NoStoreEventSource) as events:
        while not service.stopping:
            for raw in pending:
                public = json.loads(raw)
                await events.send(raw.decode(), id=str(public["cursor"]), event=public["type"])
                cursor = public["cursor"]
                if public["type"] == "end":
                    return events  # every game's last event: nothing more will come
            pending = await service.events_after(game_id, cursor, wait=request.app[CONFIG].poll_timeout)
    return events


class _NoStoreEventSource(EventSourceResponse):
    """An event stream that, like every /api answer, says `Cache-Control: no-store` (aiohttp-sse
    would say `no-cache`, which lets a cache store the timeline)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.headers.update(SECURITY_HEADERS)  # sent before the middleware sees the response
        self.headers["Cache-Control"] = "no-store"


@routes.get("/api/games/{game_id}")
async def game_state(request: web.Request) -> web.Response:
    game_id = _game_id(request)
    at = query_params(request).integer("at")
    return _json(await request.app[SERVICE].state_at(game_id, at))


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API (tictactoe/openapi.json)."""
    return web.Response(body=_OPENAPI, content_type=_JSON, charset="utf-8")


@routes.get("/metrics")
async def metrics_page(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    await service.check_health()
    return _json({"status": "ok", "version": __version__, "polls_waiting": service.waiting_polls(), **service.counts()})


# --- CORS: only when `cors_origins` is configured ------------------------------------------------

_CORS_METHODS = "GET, POST"
_CORS_HEADERS = "Content-Type, Last-Event-ID"


def _allowed_origin(request: web.BaseRequest, origins: Iterable[str]) -> str | None:
    origin = request.headers.get("Origin")
    if origin is None or not request.path.startswith("/api/"):
        return None
    return origin if origin in origins or "*" in origins else None


def cors_preflight(origins: tuple[str, ...]) -> Any:
    """A middleware that answers browsers' CORS preflight (OPTIONS) for the allowed origins."""

    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        preflighting = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        if preflighting and _allowed_origin(request, origins) is not None:
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Methods": _CORS_METHODS,
                    "Access-Control-Allow-Headers": _CORS_HEADERS,
                    "Access-Control-Max-Age": "600",
                },
            )
        return await handler(request)

    return preflight


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every /api answer to an allowed origin (streams and errors included): let it read it."""
    origin = _allowed_origin(request, request.app[CONFIG].cors_origins)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    if request.path.startswith("/api/"):
        response.headers.add("Vary", "Origin")
