"""The browser client's files over HTTP: served at / and /static/, with the security headers."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from tictactoe.app import CONTENT_SECURITY_POLICY

WEB = Path(__file__).resolve().parent.parent / "tictactoe" / "web"


async def test_the_page_is_served_at_the_root_with_a_policy_that_forbids_inline_script(client):
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = response.headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["default-src"] == "'self'"
    assert directives["style-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert '<script type="module" src="/static/js/main.js">' in await response.text()


async def test_the_scripts_and_styles_are_served_with_their_types_and_nosniff(client):
    for path, kind in [
        ("/static/js/main.js", "javascript"),
        ("/static/js/api.js", "javascript"),
        ("/static/js/timeline.js", "javascript"),
        ("/static/style.css", "text/css"),
        ("/static/icon.svg", "image/svg+xml"),
    ]:
        response = await client.get(path)
        assert response.status == 200, path
        assert kind in response.headers["Content-Type"], path
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_api_answers_and_errors_carry_nosniff_too(client):
    listing = await client.get("/api/games")
    missing = await client.get("/static/nothing-here.js")
    for response in (listing, missing):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == 100


async def test_the_static_route_does_not_list_folders_or_leave_its_folder(client):
    assert (await client.get("/static/")).status in (403, 404)
    assert (await client.get("/static/js/")).status in (403, 404)
    escape = await client.get("/static/..%2f..%2fpyproject.toml")
    assert escape.status in (403, 404)
    assert "setuptools" not in await escape.text()


class _Inline(HTMLParser):
    """Collects what a strict policy would block: inline scripts, style attributes, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.blocked.append("inline <script>")
        if tag == "style":
            self.blocked.append("<style> element")
        self.blocked += [f"{tag} {name}=" for name in names if name == "style" or name.startswith("on")]


def test_the_page_has_no_inline_script_style_or_event_handler_attributes():
    parser = _Inline()
    parser.feed((WEB / "index.html").read_text())
    assert parser.blocked == []


def test_the_client_never_writes_html_from_strings():
    for script in (WEB / "js").glob("*.js"):
        code = script.read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", code), script.name
