"""One middleware turns every refusal into the protocol's error body (PROTOCOL.md, section 0), and
gives every answer its fixed headers."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from .headers import SECURITY_HEADERS
from .keys import METRICS
from .rules import GameError

log = logging.getLogger(__name__)

# Protocol code -> HTTP status.
HTTP_STATUS = {
    100: 400,
    101: 401,
    102: 404,
    103: 409,
    104: 409,
    109: 409,
    110: 409,
    112: 400,
    113: 410,
    120: 413,
    121: 429,
    130: 503,
    150: 500,
}


class BadRequest(GameError):
    """A request the server cannot parse: missing or ill-typed parameter, bad body."""

    code = 100


class BodyTooLarge(GameError):
    """The request body is over the configured limit."""

    code = 120


def error_response(code: int, message: str, status: int | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    response = web.json_response(body, status=status or HTTP_STATUS[code])
    response.protocol_code = code  # type: ignore[attr-defined]  # for the errors-by-code metric
    return response


# aiohttp's own refusals (no such route, wrong method, body too large) in the protocol's words.
_HTTP_ERRORS = {
    404: (100, "no such endpoint"),
    405: (100, "method not allowed here"),
    413: (120, "request body too large"),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def protocol_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rule and request errors to status + `{"error": ...}`; anything unexpected to a 500, logged.
    Then the headers every answer carries (a middleware, not `on_response_prepare`: no signal per
    request)."""
    try:
        response = await handler(request)
    except GameError as err:
        response = error_response(err.code, str(err))
        if (retry_after := getattr(err, "retry_after", None)) is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code, message = _HTTP_ERRORS.get(err.status, (100, err.reason))
        response = error_response(code, message, err.status)
        if err.status == 405:
            response.headers["Allow"] = err.headers.get("Allow", "")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        response = error_response(150, "internal server error")
    if response.status >= 400 and (metrics := request.app.get(METRICS)) is not None:
        code = getattr(response, "protocol_code", None)
        if code is not None:
            metrics.error_answered(code)
    headers = response.headers
    # Not for a stream (sent already, with its own headers), nor for the API's JSON answers (built with them).
    if not response.prepared and "Content-Security-Policy" not in headers:
        headers.update(SECURITY_HEADERS)  # every answer, API included: no response type is left out
        path = request.path
        if path.startswith("/api/"):
            headers["Cache-Control"] = "no-store"
        elif path == "/" or path.startswith("/static/"):
            headers.setdefault("Cache-Control", "no-cache")  # revalidate: a new version shows at once
    return response
