"""Per-game waiters for the long poll: `wait` parks a request until `notify` says its game moved."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# What a waiter's future holds when it wakes: the announced cursor and when it was announced,
# or None (timed out, or the server is stopping).
Wake = tuple[int, float] | None


class Hub:
    """Parks long-poll requests until their game moves, times out, or the server stops.

    Each parked request owns one future and one timer: `notify` resolves the futures of its game
    with the same value, and a request whose client hangs up cancels only its own future (no
    shield, no task per waiter: with thousands of parked polls, that is most of a poll's cost).
    """

    def __init__(self, on_wake: Callable[[float], None] | None = None) -> None:
        self._on_wake = on_wake  # told how long after `notify` each waiter woke
        self._waiters: dict[str, set[asyncio.Future[Wake]]] = {}
        self._closed = False

    async def wait(self, game_id: str, timeout: float) -> int | None:
        """The cursor that `notify` announced for the game, or None on timeout or shutdown."""
        if self._closed or timeout <= 0:
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Wake] = loop.create_future()
        waiters = self._waiters.get(game_id)
        if waiters is None:
            waiters = self._waiters[game_id] = set()
        waiters.add(waiter)
        timer = loop.call_later(timeout, _time_out, waiter)
        try:
            woken = await waiter
        finally:
            timer.cancel()
            self._forget(game_id, waiter)
        if woken is None:
            return None
        cursor, notified_at = woken
        if self._on_wake is not None:
            self._on_wake(loop.time() - notified_at)
        return cursor

    def _forget(self, game_id: str, waiter: asyncio.Future[Wake]) -> None:
        waiters = self._waiters.get(game_id)
        if waiters is not None:  # `notify` took the whole set: nothing to forget
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[game_id]

    def notify(self, game_id: str, cursor: int) -> None:
        """Wake every waiter of the game; call only after the events up to `cursor` committed."""
        waiters = self._waiters.pop(game_id, None)
        if waiters:
            woken = (cursor, asyncio.get_running_loop().time())
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(woken)

    def close(self) -> None:
        """Answer every waiter now (the server is stopping) and refuse new waits."""
        self._closed = True
        waiters, self._waiters = self._waiters, {}
        for game_waiters in waiters.values():
            for waiter in game_waiters:
                if not waiter.done():
                    waiter.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def waiting(self, game_id: str | None = None) -> int:
        """How many polls wait, on one game or on all."""
        if game_id is not None:
            return len(self._waiters.get(game_id, ()))
        return sum(len(waiters) for waiters in self._waiters.values())


def _time_out(waiter: asyncio.Future[Wake]) -> None:
    if not waiter.done():
        waiter.set_result(None)
