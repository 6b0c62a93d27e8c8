"""Slow and dead clients against the real server process: a long poll whose client never reads
the answer, and a client that sends its headers byte by byte (slowloris). Neither holds a waiter or
a connection beyond the configured limits (`poll_timeout`, `header_timeout`)."""

from __future__ import annotations

import asyncio
import select
import socket
import time

import aiohttp
import pytest

from .processes import Server

HEADER_TIMEOUT = "2"


@pytest.fixture
def server(tmp_path):
    # A poll timeout long enough for /healthz to see the parked polls even on a busy machine.
    running = Server(tmp_path, "--poll-timeout", "4", env={"TICTACTOE_HEADER_TIMEOUT": HEADER_TIMEOUT})
    yield running.start()
    running.stop()


async def health(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        assert response.status == 200
        return await response.json()


async def until(condition, url: str, limit: float = 30.0) -> dict:
    """Ask /healthz until `condition` holds (bounded, so a broken server fails instead of hanging)."""
    deadline = time.monotonic() + limit
    while True:
        state = await health(url)
        if condition(state) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.1)


def closed_by_server(sock: socket.socket, limit: float) -> bool:
    """True once the server has closed the connection (everything it sent is read and thrown away)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            try:
                if sock.recv(65536) == b"":
                    return True
            except ConnectionResetError:
                return True
    return False


async def test_a_poll_whose_client_never_reads_lets_go_of_its_waiter_and_then_its_connection(server):
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/api/play", data={"name": "alice"}) as r:
        game = (await r.json())["game_id"]
    sockets = []
    for _ in range(5):  # they ask, then never read a byte
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"GET /api/updates/{game}?cursor=1 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        sockets.append(sock)
    try:
        assert (await until(lambda h: h["polls_waiting"] == 5, server.url))["polls_waiting"] == 5
        # After the poll timeout each is answered 204 (into its socket buffer) and its waiter is gone...
        assert (await until(lambda h: h["polls_waiting"] == 0, server.url))["polls_waiting"] == 0
        # ...and after the header timeout with no next request, the server closes the connection.
        for sock in sockets:
            assert await asyncio.to_thread(closed_by_server, sock, 30)
    finally:
        for sock in sockets:
            sock.close()


def send_slowly(port: int, header: bytes, pause: float, limit: float) -> int:
    """Send `header` a byte at a time; returns how many bytes went out before the server hung up,
    or -1 if it never did."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        deadline = time.monotonic() + limit
        for sent, byte in enumerate(header):
            if time.monotonic() > deadline:
                return -1
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return sent
            readable, _, _ = select.select([sock], [], [], pause)
            if readable:
                try:
                    if sock.recv(65536) == b"":
                        return sent + 1
                except ConnectionResetError:
                    return sent + 1
        return -1


async def test_a_client_sending_headers_byte_by_byte_is_cut_off_after_the_header_timeout(server):
    header = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Padding: " + b"a" * 2000 + b"\r\n\r\n"
    pause = 0.05
    slow = [asyncio.to_thread(send_slowly, server.port, header, pause, 60) for _ in range(20)]
    # While they trickle, everyone else is served as usual.
    assert (await health(server.url))["status"] == "ok"
    sent = await asyncio.gather(*slow)
    assert all(0 < n < len(header) for n in sent), sent  # every one was cut off before its headers ended
    assert (await health(server.url))["status"] == "ok"
