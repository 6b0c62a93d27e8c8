"""Who a request comes from, and how many long polls and streams each remote address holds open.

Used by the HTTP shell (api.py); nothing here knows about HTTP beyond a header's value.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Iterator

from .rules import GameError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TooManyPolls(GameError):
    """This address already holds as many open long polls and streams as it may."""

    code = 121


class ClientAddresses:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
    address of `X-Forwarded-For` that is not itself a trusted proxy (the left part is the
    client's own word and can be forged)."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._trusted: tuple[Network, ...] = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or ""
        if not self._trusted or forwarded_for is None or not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return _canonical(hop)
        return _canonical(hops[0]) if hops else peer  # every hop is a proxy of ours: the first one asked


def _canonical(address: str) -> str:
    """One spelling per address (`::0001` and `::1` count together); anything else as given, bounded."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address[:64]


class OpenPolls:
    """Open long polls and streams per address, at most `limit` each (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, address: str) -> Iterator[None]:
        """Count one open poll for `address` while the block runs; TooManyPolls past the limit."""
        if not self.limit:
            yield
            return
        held = self._open.get(address, 0)
        if held >= self.limit:
            raise TooManyPolls(f"too many open long polls and streams from your address (at most {self.limit})")
        self._open[address] = held + 1
        try:
            yield
        finally:
            left = self._open[address] - 1
            if left:
                self._open[address] = left
            else:
                del self._open[address]

    def open_at(self, address: str) -> int:
        return self._open.get(address, 0)
