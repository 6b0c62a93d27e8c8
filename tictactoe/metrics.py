"""The server's Prometheus metrics, one registry per application (no global state).

The figures fed on every request (events appended, errors, the two latency histograms) are
plain counters in this module, turned into Prometheus families only when `/metrics` is scraped:
prometheus-client's own `Histogram.observe` and `Counter.inc` take a lock and cost 5-12 µs
each, several times per move. Gauges read their owners at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LatencyHistogram:
    """Observations counted in fixed buckets (upper bounds, `le`), and their sum."""

    def __init__(self, buckets: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, total = [], 0
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            cumulative.append((bound, total))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.sum)


class Metrics(Collector):
    """What `/metrics` shows; the service, the hub and the error middleware feed it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls_open = Gauge("tictactoe_long_polls_open", "Long polls parked, waiting for an event", registry=r)
        self.streams_open = Gauge("tictactoe_streams_open", "Server-Sent Events streams open", registry=r)
        self.games = Gauge("tictactoe_games", "Games in memory by state", ["state"], registry=r)
        self.transactions = Gauge(
            "tictactoe_sqlite_write_transactions", "SQLite write transactions committed (group commit)", registry=r
        )
        self.events_by_type: dict[str, int] = {}
        self.errors_by_code: dict[str, int] = {}
        self.append_seconds = LatencyHistogram()
        self.notify_seconds = LatencyHistogram()
        r.register(self)

    def event_appended(self, event_type: str) -> None:
        self.events_by_type[event_type] = self.events_by_type.get(event_type, 0) + 1

    def error_answered(self, code: int) -> None:
        key = str(code)
        self.errors_by_code[key] = self.errors_by_code.get(key, 0) + 1

    def follow(
        self, *, polls: Callable[[], int], games: Callable[[], dict[str, int]], transactions: Callable[[], int]
    ) -> None:
        """Read the live figures from their owners at scrape time."""
        self.polls_open.set_function(polls)
        self.transactions.set_function(transactions)
        for state in ("waiting", "playing"):
            self.games.labels(state).set_function(lambda state=state: games().get(state, 0))

    def collect(self) -> Iterator[Metric]:
        """The hot-path figures as Prometheus families (called by the registry at scrape time)."""
        events = CounterMetricFamily(
            "tictactoe_events_appended", "Events appended to the log, by type", labels=["type"]
        )
        for event_type, count in sorted(self.events_by_type.items()):
            events.add_metric([event_type], count)
        yield events
        yield self.append_seconds.family("tictactoe_append_seconds", "From submitting an append to its commit")
        yield self.notify_seconds.family(
            "tictactoe_notify_seconds", "From an append's commit to a parked poll holding the event"
        )
        errors = CounterMetricFamily("tictactoe_errors", "Error responses, by protocol code", labels=["code"])
        for code, count in sorted(self.errors_by_code.items()):
            errors.add_metric([code], count)
        yield errors

    def render(self) -> bytes:
        return generate_latest(self.registry)
