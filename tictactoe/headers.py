"""The headers that every response carries, the API's included (set once per response by the
middleware in errors.py, by the event stream, which is sent before the middleware sees it, and
by the API's JSON answers, built with all their headers at once)."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

# No inline script or style anywhere in the client: a name or a chat line can never become code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS = CIMultiDictProxy(
    CIMultiDict(
        {
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        }
    )
)

# Every JSON answer of the API: copied whole into each response (one C-level copy, where setting
# them one by one costs a few µs an answer, several answers a move).
API_JSON_HEADERS = CIMultiDictProxy(
    CIMultiDict(
        {
            "Content-Type": "application/json; charset=utf-8",
            "Cache-Control": "no-store",
            **SECURITY_HEADERS,
        }
    )
)
