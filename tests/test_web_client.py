"""The browser client's files over HTTP: served at / and /static/, with the security headers."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from tictactoe.headers import CONTENT_SECURITY_POLICY

from .conftest import start_game

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


async def test_every_kind_of_answer_carries_the_security_headers(client):
    game = await start_game(client)
    answers = {
        "listing": await client.get("/api/games"),
        "missing file": await client.get("/static/nothing-here.js"),
        "event": await client.get(f"/api/updates/{game.game_id}", params={"cursor": "0"}),
        "poll timeout": await client.get(f"/api/updates/{game.game_id}", params={"cursor": "3"}),
        "move": await client.post("/api/move", data={"client_id": game.x, "position": "4"}),
        "refused move": await client.post("/api/move", data={"client_id": game.x, "position": "4"}),
        "wrong method": await client.put("/api/move"),
        "health": await client.get("/healthz"),
        "metrics": await client.get("/metrics"),
        "page": await client.get("/"),
    }
    async with client.get(f"/api/games/{game.game_id}/stream") as stream:  # sent before any middleware sees it
        answers["stream"] = stream
    for what, response in answers.items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", what
        assert response.headers["Referrer-Policy"] == "no-referrer", what
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, what
    assert [answers[what].status for what in ("missing file", "poll timeout", "refused move", "wrong method")] == [
        404,
        204,
        409,
        405,
    ]
    assert (await answers["missing file"].json())["error"]["code"] == 100
    assert answers["stream"].headers["Cache-Control"] == "no-store"


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
