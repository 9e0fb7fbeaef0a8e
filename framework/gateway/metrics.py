"""Prometheus metrics at ``/metrics``: per route and version, plus the queues read at scrape time.

Each gateway has its own ``CollectorRegistry`` (never the process-wide default), so two apps,
or two tests, in one process never share or clash over series. Routes are labelled by their
template (``/v2/orders/{order_id}``), never the raw path, so the number of series stays bounded.

| metric | labels |
| --- | --- |
| ``framework_http_requests_total`` | route, method, version, status_class (``2xx`` … ``5xx``) |
| ``framework_http_request_duration_seconds`` (histogram) | route, method, version |
| ``framework_http_cache_hits_total``, ``framework_http_cache_misses_total`` | route, version |
| ``framework_http_throttled_total`` | route, version, per (route, key, client, plan) |
| ``framework_queue_depth``, ``_in_flight``, ``_delayed``, ``_dead_letters`` (gauges) | queue |
| ``framework_handler_duration_seconds`` (histogram) | queue, handler |
| ``framework_handler_outcomes_total`` | queue, handler, outcome (ok, retry, timeout, ...) |
| ``framework_mail_scan_duration_seconds`` (histogram) | scanner (spf, dkim, clamav, dnsbl, ...) |
| ``framework_mail_scan_failures_total`` | scanner |
| ``framework_websocket_connections_open`` (gauge), ``_connections_total`` | api |
| ``framework_websocket_refused_total`` (handshakes refused) | api, status, reason |
| ``framework_websocket_messages_in_total``, ``_messages_out_total`` | api, route |
| ``framework_websocket_errors_total`` | api, kind (validation, unknown_route, throttled, ...) |

Requests matching no route count under route ``<unmatched>``. The queue gauges are read from
the backend when ``/metrics`` is scraped, and are absent while the app is not running.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from framework.gateway.errors import ClientDisconnectedError, HTTPError
from framework.gateway.responses import send_bytes
from framework.gateway.routing import Endpoint
from framework.gateway.throttle import ThrottledError
from framework.runtime import operations
from framework.runtime.events import Events, HandlerEvent, ScanEvent

if TYPE_CHECKING:
    from framework.runtime import Runtime

__all__ = ["BOUNDS", "METRICS_PATH", "Metrics", "RouteTotals", "SocketMetrics"]

METRICS_PATH = "/metrics"
UNMATCHED = "<unmatched>"

_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BOUNDS = _BOUNDS
"""The latency histogram's upper bounds in seconds; ``RouteTotals.buckets`` adds +Inf."""


@dataclass(frozen=True, slots=True)
class RouteTotals:
    """One route and method's counts since the gateway was built, copied at one moment.

    ``counts`` is indexed by status class (``counts[5]`` is 5xx); ``buckets`` holds the
    requests per latency bucket of ``BOUNDS`` (not cumulative), the last one over 5 s.
    """

    route: str
    method: str
    version: str
    counts: tuple[int, ...]
    buckets: tuple[int, ...]


class _RouteStats:
    """One route and method's counts, kept as plain numbers.

    The gateway's requests all run on the event loop's thread, so plain increments need none
    of the locks a prometheus-client metric takes on every update: the registry reads these
    through ``_RouteCollector`` only when scraped.
    """

    __slots__ = ("buckets", "counts", "method", "route", "timed", "total", "version")

    def __init__(self, route: str, method: str, version: str, *, timed: bool = True) -> None:
        self.route, self.method, self.version, self.timed = route, method, version, timed
        self.counts = [0] * 6  # by status // 100
        self.buckets = [0] * (len(_BOUNDS) + 1)  # the last is +Inf
        self.total = 0.0


class _RouteCollector(Collector):
    """Reads the routes' plain numbers as Prometheus families at scrape time."""

    def __init__(self, routes: list[_RouteStats]) -> None:
        self.routes = routes

    def describe(self) -> Iterable[Metric]:
        """Name the families without reading the routes, so registration stays cheap."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """Return the request counts and duration histograms of every route."""
        requests, duration = _requests_family(), _duration_family()
        for s in self.routes:
            labels = [s.route, s.method, s.version]
            for index, name in _CLASSES.items():
                requests.add_metric([*labels, name], s.counts[index])
            if s.timed:
                cumulative, running = [], 0
                for bound, count in zip((*_BOUNDS, math.inf), s.buckets, strict=True):
                    running += count
                    cumulative.append((_BOUND_LABELS[bound], running))
                duration.add_metric(labels, cumulative, s.total)
        return [requests, duration]

    @staticmethod
    def _families() -> list[Metric]:
        return [_requests_family(), _duration_family()]


_LABELS = ["route", "method", "version"]
# A client gone before its answer is timed but counted in no status class: it got no status.
_DISCONNECTED = 0
_BOUND_LABELS = {b: "+Inf" if b == math.inf else repr(b) for b in (*_BOUNDS, math.inf)}


def _requests_family() -> CounterMetricFamily:
    return CounterMetricFamily(
        "framework_http_requests",
        "HTTP requests answered, by status class.",
        labels=[*_LABELS, "status_class"],
    )


def _duration_family() -> HistogramMetricFamily:
    return HistogramMetricFamily(
        "framework_http_request_duration_seconds",
        "Time from a request's arrival to its last response byte handed to the server.",
        labels=_LABELS,
    )


class SocketMetrics:
    """The WebSocket APIs' counters, labelled by the API's path (``api``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.open = Gauge(
            "framework_websocket_connections_open", "Connections open now.", ["api"], registry=r
        )
        self.connections = Counter(
            "framework_websocket_connections", "Connections accepted.", ["api"], registry=r
        )
        self.refused = Counter(
            "framework_websocket_refused",
            "Handshakes refused, by HTTP status and reason: origin, auth, connect, error, "
            "full, stopping.",
            ["api", "status", "reason"],
            registry=r,
        )
        self.messages_in = Counter(
            "framework_websocket_messages_in",
            "Messages received from clients, by the route they went to.",
            ["api", "route"],
            registry=r,
        )
        self.messages_out = Counter(
            "framework_websocket_messages_out",
            "Messages sent or queued to clients: replies by their route, $push for "
            "app.connections.send delivered here, $error for error answers.",
            ["api", "route"],
            registry=r,
        )
        self.errors = Counter(
            "framework_websocket_errors",
            "Errors: validation, unknown_route, throttled, too_big, send_queue_full, handler, "
            "authorizer.",
            ["api", "kind"],
            registry=r,
        )


class Metrics:
    """The gateway's metrics in their own registry.

    Args:
        events: The app's events hub: settled deliveries feed the handler metrics, and the
            running runtime's backend gives the queue gauges.
    """

    def __init__(self, events: Events[Runtime]) -> None:
        self.events = events
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.routes: list[_RouteStats] = []
        self._unmatched: dict[str, _RouteStats] = {}
        r.register(_RouteCollector(self.routes))
        self.cache_hits = Counter(
            "framework_http_cache_hits",
            "GETs answered from the cache.",
            ["route", "version"],
            registry=r,
        )
        self.cache_misses = Counter(
            "framework_http_cache_misses",
            "GETs of cached routes that ran the handler.",
            ["route", "version"],
            registry=r,
        )
        self.throttled = Counter(
            "framework_http_throttled",
            "Requests refused with 429.",
            ["route", "version", "per"],
            registry=r,
        )
        self.queue = {
            name: Gauge(f"framework_queue_{name}", doc, ["queue"], registry=r)
            for name, doc in (
                ("depth", "Messages visible in the queue."),
                ("in_flight", "Messages received and not yet acknowledged."),
                ("delayed", "Messages waiting for their delay."),
                ("dead_letters", "Messages in the queue's dead-letter queue."),
            )
        }
        self.handler_seconds = Histogram(
            "framework_handler_duration_seconds",
            "Queue, topic and mail handlers' run time.",
            ["queue", "handler"],
            buckets=_BOUNDS,
            registry=r,
        )
        self.handler_outcomes = Counter(
            "framework_handler_outcomes",
            "Settled deliveries by outcome: ok, retry, timeout, dead_letter, poison.",
            ["queue", "handler", "outcome"],
            registry=r,
        )
        self._outcome_children: dict[tuple[str, str, str], Any] = {}
        self._seconds_children: dict[tuple[str, str], Any] = {}
        self.sockets = SocketMetrics(r)
        self.scan_seconds = Histogram(
            "framework_mail_scan_duration_seconds",
            "Each mail scanner's run time on one mail (dnsbl: on one connecting client).",
            ["scanner"],
            buckets=_BOUNDS,
            registry=r,
        )
        self.scan_failures = Counter(
            "framework_mail_scan_failures",
            "Scanner runs that raised or timed out (their checks became PROCESSING_FAILED).",
            ["scanner"],
            registry=r,
        )
        self._unsubscribe = (
            events.observe_handlers(self.observe_handler),
            events.observe_scans(self.observe_scan),
        )

    def close(self) -> None:
        """Stop observing the app's events (the gateway is being replaced)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    def route_totals(self) -> list[RouteTotals]:
        """Return a copy of every timed route's counts and latency buckets (for the dashboard)."""
        return [
            RouteTotals(s.route, s.method, s.version, tuple(s.counts), tuple(s.buckets))
            for s in self.routes
            if s.timed
        ]

    def observe_handler(self, happened: HandlerEvent) -> None:
        """Count one settled delivery and, when its handler ran, time it."""
        # The labelled children are cached per (queue, handler[, outcome]), all declared up
        # front: ``labels()`` per message was a fifth of a small handler's settling.
        key = (happened.queue, happened.handler, happened.outcome)
        outcome = self._outcome_children.get(key)
        if outcome is None:
            outcome = self._outcome_children[key] = self.handler_outcomes.labels(*key)
        outcome.inc()
        if happened.seconds is not None:
            timer = self._seconds_children.get(key[:2])
            if timer is None:
                timer = self._seconds_children[key[:2]] = self.handler_seconds.labels(*key[:2])
            timer.observe(happened.seconds)

    def observe_scan(self, happened: ScanEvent) -> None:
        """Time one scanner's run; count it when it failed."""
        self.scan_seconds.labels(happened.scanner).observe(happened.seconds)
        if happened.failed:
            self.scan_failures.labels(happened.scanner).inc()

    def cache_counter(self, route: str, version: str) -> Callable[[bool], None]:
        """Return the callback counting the route's cache hits (True) and misses (False)."""
        hit = self.cache_hits.labels(route, version).inc
        miss = self.cache_misses.labels(route, version).inc

        def counted(is_hit: bool) -> None:
            (hit if is_hit else miss)()

        return counted

    def instrument(self, endpoint: Endpoint, route: str, method: str, version: str) -> Endpoint:
        """Return ``endpoint`` counting its answers by status class and timing them."""
        stats = _RouteStats(route, method, version)
        self.routes.append(stats)
        counts, buckets, bounds = stats.counts, stats.buckets, _BOUNDS
        throttled = self.throttled

        async def instrumented(scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
            status = 500
            started = time.perf_counter()

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await endpoint(scope, receive, send_status, request_id)
            except HTTPError as exc:
                status = exc.status
                if isinstance(exc, ThrottledError):
                    throttled.labels(route, version, exc.per).inc()
                raise
            except HTTPException as exc:
                status = exc.status_code
                raise
            except ClientDisconnectedError:
                status = _DISCONNECTED
                raise
            finally:
                elapsed = time.perf_counter() - started
                buckets[bisect_left(bounds, elapsed)] += 1
                stats.total += elapsed
                if 100 <= status < 600:
                    counts[status // 100] += 1

        return instrumented

    def unmatched(self, method: str, status: int) -> None:
        """Count a request no route matched (404, 405)."""
        stats = self._unmatched.get(method)
        if stats is None:
            stats = self._unmatched[method] = _RouteStats(UNMATCHED, method, "", timed=False)
            self.routes.append(stats)
        stats.counts[status // 100] += 1

    async def endpoint(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """Serve ``GET /metrics``: refresh the queue gauges, then the registry as text."""
        runtime = self.events.running
        if runtime is not None:
            for gauge in self.queue.values():
                gauge.clear()  # queues purged or gone since the last scrape disappear
            for stats in await operations.queue_stats(runtime.backend):
                for name, gauge in self.queue.items():
                    gauge.labels(stats.name).set(getattr(stats, name))
        body = generate_latest(self.registry)
        await send_bytes(send, 200, body, CONTENT_TYPE_LATEST.encode(), request_id)
