"""Per-game waiters for the long poll: one future per game, resolved and replaced by `notify`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Hub:
    """Parks long-poll requests until their game moves, times out, or the server stops."""

    def __init__(self, on_wake: Callable[[float], None] | None = None) -> None:
        self._on_wake = on_wake  # told how long after `notify` each waiter woke
        self._futures: dict[str, asyncio.Future[tuple[int, float] | None]] = {}
        self._waiters: dict[str, int] = {}
        self._closed = False

    async def wait(self, game_id: str, timeout: float) -> int | None:
        """The cursor that `notify` announced for the game, or None on timeout or shutdown."""
        if self._closed or timeout <= 0:
            return None
        future = self._futures.get(game_id)
        if future is None:
            future = self._futures[game_id] = asyncio.get_running_loop().create_future()
        self._waiters[game_id] = self._waiters.get(game_id, 0) + 1
        try:
            async with asyncio.timeout(timeout):
                # Shielded: one waiter that is cancelled (its client hung up) must not cancel
                # the future the other waiters of the game share.
                woken = await asyncio.shield(future)
        except TimeoutError:
            return None
        finally:
            self._forget_waiter(game_id, future)
        if woken is None:
            return None
        cursor, notified_at = woken
        if self._on_wake is not None:
            self._on_wake(asyncio.get_running_loop().time() - notified_at)
        return cursor

    def _forget_waiter(self, game_id: str, future: asyncio.Future[tuple[int, float] | None]) -> None:
        left = self._waiters[game_id] - 1
        if left:
            self._waiters[game_id] = left
            return
        del self._waiters[game_id]
        # Nobody waits on this game any more: drop its future so that it costs nothing.
        if self._futures.get(game_id) is future:
            del self._futures[game_id]
            future.cancel()

    def notify(self, game_id: str, cursor: int) -> None:
        """Wake every waiter of the game; call only after the events up to `cursor` committed."""
        future = self._futures.pop(game_id, None)
        if future is not None and not future.done():
            future.set_result((cursor, asyncio.get_running_loop().time()))

    def close(self) -> None:
        """Answer every waiter now (the server is stopping) and refuse new waits."""
        self._closed = True
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def waiting(self, game_id: str | None = None) -> int:
        """How many polls wait, on one game or on all."""
        if game_id is not None:
            return self._waiters.get(game_id, 0)
        return sum(self._waiters.values())
