"""The server's Prometheus metrics, one registry per application (no global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """What `/metrics` shows; the service, the hub and the error middleware feed it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls_open = Gauge("tictactoe_long_polls_open", "Long polls parked, waiting for an event", registry=r)
        self.streams_open = Gauge("tictactoe_streams_open", "Server-Sent Events streams open", registry=r)
        self.games = Gauge("tictactoe_games", "Games in memory by state", ["state"], registry=r)
        self.events = Counter("tictactoe_events_appended", "Events appended to the log, by type", ["type"], registry=r)
        self._event_children: dict[str, Counter] = {}
        self.append_seconds = Histogram(
            "tictactoe_append_seconds", "From submitting an append to its commit", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.notify_seconds = Histogram(
            "tictactoe_notify_seconds",
            "From an append's commit to a parked poll holding the event",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("tictactoe_errors", "Error responses, by protocol code", ["code"], registry=r)
        self.transactions = Gauge(
            "tictactoe_sqlite_write_transactions", "SQLite write transactions committed (group commit)", registry=r
        )

    def event_appended(self, event_type: str) -> None:
        # Counter.labels() locks and builds a key on every call: keep each type's child.
        child = self._event_children.get(event_type)
        if child is None:
            child = self._event_children[event_type] = self.events.labels(event_type)
        child.inc()

    def follow(
        self, *, polls: Callable[[], int], games: Callable[[], dict[str, int]], transactions: Callable[[], int]
    ) -> None:
        """Read the live figures from their owners at scrape time."""
        self.polls_open.set_function(polls)
        self.transactions.set_function(transactions)
        for state in ("waiting", "playing"):
            self.games.labels(state).set_function(lambda state=state: games().get(state, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
