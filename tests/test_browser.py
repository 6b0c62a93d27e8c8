"""The browser client in a real browser (Chromium through Playwright) against the real server.

Each test starts `run.py` on a free port with its own database, and drives pages the way people
do: clicks, taps, keys, reloads. Locally without Chromium these tests skip; in CI they must run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .processes import Server

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium's own connections are refused on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
HOSTILE_NAME = "<img src=x onerror=alert(1)>"

expect.set_options(timeout=15_000)  # a restart and the client's backoff can take a few seconds


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium): the browser tests cannot run"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    # Short polls: a stopped server answers its parked polls at once anyway; this keeps restarts quick.
    running = Server(tmp_path, "--poll-timeout", "5").start()
    yield running
    if running.process and running.process.poll() is None:
        running.process.kill()
        running.process.wait()


class Person:
    """One person with a browser of their own (a context: own localStorage), on one page."""

    def __init__(self, browser, server: Server, path: str = "/", viewport: dict | None = None) -> None:
        self.server = server
        self.context = browser.new_context(viewport=viewport or PHONE)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.goto(server.url + path)

    def start(self, button: str, name: str | None = None) -> Person:
        if name is not None:
            self.page.locator("#name").fill(name)
        self.page.get_by_role("button", name=button).click()
        expect(self.page.locator("#game")).to_be_visible()
        return self

    @property
    def game_id(self) -> str:
        match = re.search(r"#/game/([0-9a-f]+)$", self.page.url)
        assert match, self.page.url
        return match.group(1)

    def mark(self) -> str:
        expect(self.page.locator("#game")).to_have_attribute("data-mark", re.compile("^[XO]$"))
        return self.page.locator("#game").get_attribute("data-mark")

    def cell(self, position: int):
        return self.page.locator(f'.cell[data-position="{position}"]')

    def board(self) -> str:
        return "".join(text.strip() or "_" for text in self.page.locator(".cell").all_inner_texts())

    def highlighted(self) -> list[int]:
        """The cells drawn as the winning line."""
        return [p for p in range(9) if "win" in (self.cell(p).get_attribute("class") or "").split()]

    def play(self, position: int) -> None:
        """Wait for our turn (the opponent's move came by long poll), then tap the cell."""
        expect(self.page.locator("#status")).to_have_text("Your turn")
        self.cell(position).click()
        expect(self.cell(position)).to_have_text(self.mark())

    def status(self):
        return self.page.locator("#status")

    def assert_no_console_errors(self) -> None:
        assert self.errors == []
        assert self.dialogs == []


def pair(browser, server: Server, names: tuple[str, str] = ("alice", "bob")) -> tuple[Person, Person]:
    """Two people press Play someone; returns them as (X, O)."""
    first = Person(browser, server)
    first.page.locator("#name").fill(names[0])
    first.page.locator("#name").press("Enter")  # the same as Play someone
    expect(first.status()).to_have_text("Waiting for an opponent…")
    second = Person(browser, server).start("Play someone", names[1])
    assert first.game_id == second.game_id
    return (first, second) if first.mark() == "X" else (second, first)


def server_state(server: Server, game_id: str, at: int | None = None) -> dict:
    query = "" if at is None else f"?at={at}"
    with urllib.request.urlopen(f"{server.url}/api/games/{game_id}{query}") as response:
        return json.load(response)


def test_two_browsers_play_a_game_to_a_win_chat_and_press_play_again_for_a_rematch(browser, server, tmp_path):
    x, o = pair(browser, server)
    # Waits: the first page learns its opponent by long poll, a moment after the second joins.
    expect(x.page.locator("#players")).to_have_text(re.compile(r"^You \(X\) vs "))
    expect(o.page.locator("#players")).to_have_text(re.compile(r" vs You \(O\)$"))
    for person, position in [(x, 0), (o, 3), (x, 1), (o, 4)]:
        person.play(position)
    assert x.board() == o.board() == "XX_OO____"  # each saw the other's moves through the long poll

    o.page.locator("#message").fill("good luck <b>friend</b>")
    o.page.locator("#message").press("Enter")
    expect(x.page.locator("#log li.chat")).to_have_text(re.compile(r"good luck <b>friend</b>$"))

    x.play(2)
    expect(x.status()).to_have_text("You won!")
    expect(o.status()).to_have_text(re.compile(r" won$"))
    for person in (x, o):
        assert person.highlighted() == [0, 1, 2]
    assert server_state(server, x.game_id)["winning_line"] == [0, 1, 2]

    shot = tmp_path / "finished-game.png"
    x.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 15_000

    finished = x.game_id
    x.page.get_by_role("button", name="Play again").click()
    expect(x.status()).to_have_text("Waiting for an opponent…")
    o.page.get_by_role("button", name="Play again").click()
    for person in (x, o):
        person.page.wait_for_url(lambda url: finished not in url)
        expect(person.status()).to_have_text(re.compile(r"^(Your turn|.+'s turn)$"))
    assert x.game_id == o.game_id != finished
    assert {x.mark(), o.mark()} == {"X", "O"}
    x.assert_no_console_errors()
    o.assert_no_console_errors()


def test_a_game_against_the_bot_runs_to_its_end_played_with_the_keyboard(browser, server):
    me = Person(browser, server).start("Play the bot", "kim")
    me.mark()
    game = me.page.locator("#game")
    while game.get_attribute("data-over") != "true":
        playable = me.page.locator('.cell[aria-disabled="false"]')
        expect(playable.first.or_(me.page.locator('#game[data-over="true"]'))).to_be_visible()
        if game.get_attribute("data-over") == "true":
            break
        target = int(playable.first.get_attribute("data-position"))
        # Walk there from the focused cell with the arrow keys, then press Enter.
        focused = me.page.locator('.cell[tabindex="0"]')
        at = int(focused.get_attribute("data-position"))
        focused.focus()
        keys = ["ArrowDown"] * max(0, target // 3 - at // 3) + ["ArrowUp"] * max(0, at // 3 - target // 3)
        keys += ["ArrowRight"] * max(0, target % 3 - at % 3) + ["ArrowLeft"] * max(0, at % 3 - target % 3)
        for key in keys:
            me.page.keyboard.press(key)
        expect(me.cell(target)).to_be_focused()
        me.page.keyboard.press("Enter")
        expect(me.cell(target)).to_have_text(me.mark())
    expect(me.status()).to_have_text(re.compile(r"^(Draw|Bot won)$"))  # the bot never loses
    assert server_state(server, me.game_id)["over"] is True
    me.assert_no_console_errors()


def test_a_reload_in_mid_game_resumes_the_same_game_at_the_same_board(browser, server):
    x, o = pair(browser, server)
    x.play(4)
    o.play(0)
    game, mark = x.game_id, x.mark()
    x.page.reload()
    expect(x.cell(0)).to_have_text("O")
    assert x.game_id == game and x.mark() == mark and x.board() == "O___X____"
    expect(x.status()).to_have_text("Your turn")
    x.page.goto(x.server.url + "/")  # even the bare address leads back to the unfinished game
    expect(x.cell(4)).to_have_text("X")
    assert x.game_id == game
    x.play(2)
    o.play(6)
    x.play(3)
    o.play(5)
    x.play(1)
    o.play(7)
    x.play(8)
    expect(o.status()).to_have_text("Draw")
    x.assert_no_console_errors()
    o.assert_no_console_errors()


def test_the_server_stopped_and_started_again_in_mid_game_both_pages_recover_and_finish(browser, server):
    x, o = pair(browser, server)
    x.play(0)
    server.signal(signal.SIGTERM)
    for person in (x, o):
        expect(person.page.locator("#connection")).to_be_visible()
        expect(person.page.locator("#connection")).to_have_text("Reconnecting…")
    server.start()  # same port, same database
    for person in (x, o):
        expect(person.page.locator("#connection")).to_be_hidden()
    o.play(3)
    x.play(1)
    o.play(4)
    x.play(2)
    expect(o.status()).to_have_text(re.compile(r" won$"))
    states = [e["type"] for e in server_state(server, x.game_id)["events"]]
    assert states == ["connect", "connect", "status", *["move"] * 5, "end"]  # nothing missed, nothing twice
    for person in (x, o):
        # Refused connections while the server was down are logged by Chromium; nothing else may be.
        assert [e for e in person.errors if "ERR_CONNECTION_REFUSED" not in e] == []


def test_a_spectator_opens_a_live_game_from_the_listing_and_follows_it(browser, server):
    x, o = pair(browser, server)
    x.play(4)
    watcher = Person(browser, server, viewport=DESKTOP)
    live = watcher.page.locator("#live a")
    expect(live).to_have_count(1)
    live.click()
    assert watcher.game_id == x.game_id
    expect(watcher.cell(4)).to_have_text("X")
    expect(watcher.page.locator("#game")).to_have_attribute("data-role", "watcher")
    expect(watcher.page.locator("#chat-form")).to_be_hidden()
    o.play(0)
    expect(watcher.cell(0)).to_have_text("O")
    x.play(8)
    expect(watcher.cell(8)).to_have_text("X")
    watcher.cell(1).dispatch_event("click")  # a watcher's tap does nothing
    assert watcher.page.locator('.cell[aria-disabled="false"]').count() == 0
    o.page.get_by_role("button", name="Leave game").click()
    expect(watcher.page.locator("#log")).to_contain_text("left the game")
    expect(x.status()).to_contain_text("quit the game")
    assert server_state(server, x.game_id)["board"] == "O___X___X"
    for person in (x, o, watcher):
        person.assert_no_console_errors()


def test_the_replay_slider_rebuilds_the_board_at_every_step_of_a_finished_game(browser, server):
    x, o = pair(browser, server)
    for person, position in [(x, 4), (o, 0), (x, 2), (o, 6), (x, 3), (o, 1), (x, 5)]:  # X wins 3-4-5
        person.play(position)
    game = x.game_id
    viewer = Person(browser, server, f"/#/game/{game}")
    expect(viewer.page.locator("#replay")).to_have_class(re.compile(r"\breplaying\b"))
    total = server_state(server, game)["cursor"]
    slider = viewer.page.locator("#step")
    expect(slider).to_have_attribute("max", str(total))
    expected = {at: server_state(server, game, at)["board"] for at in range(total + 1)}
    for at in range(total, -1, -1):  # step back with the previous button, one event at a time
        assert viewer.board() == expected[at], at
        assert slider.input_value() == str(at)
        if at:
            viewer.page.get_by_role("button", name="Previous step").click()
    for at in (5, 0, total, 7):  # and jump with the slider itself
        slider.fill(str(at))
        expect(viewer.page.locator("#step-label")).to_contain_text(f"Step {at} of" if at else "Before the first")
        assert viewer.board() == expected[at], at
    viewer.page.get_by_role("button", name="Next step").click()
    assert viewer.board() == expected[8]
    assert expected[total] == "OOXXXXO__" and expected[3] == "_" * 9
    viewer.assert_no_console_errors()


def test_a_hostile_name_and_chat_render_as_plain_text(browser, server):
    me = Person(browser, server).start("Invite a friend", HOSTILE_NAME)
    link = me.page.locator("#invite-link")
    expect(link).to_have_value(re.compile(r"/#/join/[0-9a-f]+$"))
    friend = Person(browser, server, link.input_value().removeprefix(server.url))
    expect(friend.page.locator("#inviter")).to_have_text(HOSTILE_NAME)
    friend.page.locator("#name").fill("pat")
    friend.page.get_by_role("button", name="Join the game").click()
    expect(friend.page.locator("#players")).to_contain_text(HOSTILE_NAME)
    assert friend.game_id == me.game_id
    me.page.locator("#message").fill("<script>alert(2)</script>")
    me.page.get_by_role("button", name="Send").click()
    expect(friend.page.locator("#log li.chat")).to_have_text(HOSTILE_NAME + " <script>alert(2)</script>")
    for person in (me, friend):
        assert person.page.locator("main img, main script, main b").count() == 0
        person.assert_no_console_errors()


def test_a_page_that_loses_the_network_shows_reconnecting_then_catches_up_without_gaps_or_repeats(browser, server):
    x, o = pair(browser, server)
    x.play(4)
    o.context.set_offline(True)
    expect(o.page.locator("#connection")).to_be_visible()  # its next poll (within poll_timeout) fails
    o.context.set_offline(False)
    o.play(0)
    x.context.set_offline(True)
    expect(x.page.locator("#connection")).to_be_visible()
    for message in ("one", "two", "three"):  # while x is away, o chats
        o.page.locator("#message").fill(message)
        o.page.locator("#message").press("Enter")
        expect(o.page.locator("#log li.chat").last).to_have_text(re.compile(f" {message}$"))
    x.context.set_offline(False)
    expect(x.page.locator("#connection")).to_be_hidden()
    expect(x.page.locator("#log li.chat")).to_have_count(3)
    chats = x.page.locator("#log li.chat").all_text_contents()
    assert [line.split(" ", 1)[1] for line in chats] == ["one", "two", "three"]
    assert x.board() == "O___X____"
    x.play(8)
    expect(o.cell(8)).to_have_text("X")
