"""The operations dashboard at ``/_framework/dashboard``: its page, its state, its history.

The page (``static/dashboard.html``, ``.js``, ``.css``, shipped in the package: no CDN) is
served to anyone, since it holds no data; everything it shows comes from
``GET /_framework/dashboard/state`` and the other admin endpoints, which need the admin token
when one is set. The page asks for the token once, keeps it in ``sessionStorage`` and sends it
as ``Authorization: Bearer`` on every call (a browser sends no bearer header on navigation).

History is kept here, server-side, so a page opened now shows the last five minutes: while the
app runs, a task samples the queues (through ``Backend.stats`` only, so every backend works),
the routes' counters and the handlers' outcomes once a second into a ring buffer of
``HISTORY`` points. Queue rates come from those samples: what left a queue is what its
handlers settled (acked or dead-lettered) in this process, or its shrinkage if more; what
came in is the growth plus what left.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from framework.gateway.dashboard_data import (
    latency_quantile,
    queue_rows,
    route_rows,
    topic_rows,
)
from framework.gateway.errors import RequestValidationError
from framework.gateway.responses import send_bytes
from framework.gateway.routing import Endpoint
from framework.runtime import operations
from framework.runtime.connections import Connections
from framework.runtime.events import Events, HandlerEvent

if TYPE_CHECKING:
    from framework.gateway.admin import AdminTarget
    from framework.gateway.metrics import Metrics, RouteTotals
    from framework.registry import Registry
    from framework.runtime import Runtime

__all__ = ["DASHBOARD_PATH", "HISTORY", "Dashboard"]

log = logging.getLogger("framework.dashboard")

DASHBOARD_PATH = "/_framework/dashboard"
HISTORY = 300
"""Points kept: five minutes at one a second."""

_ASSETS = {
    "": ("dashboard.html", b"text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Outcomes that take a message off its queue (the others release it for a retry).
_SETTLED = frozenset({"ok", "dead_letter", "poison"})
_RECENT = 50


@dataclass(slots=True)
class _Sample:
    """What was read at one moment; history points are the differences of two samples."""

    t: float
    queues: dict[str, dict[str, Any]]
    settled: dict[str, int]
    handled: int
    failed: int
    routes: list[RouteTotals] = field(default_factory=list)


class Dashboard:
    """The dashboard's state: recent failures and mail, and a sampled history.

    Args:
        registry: The app shown.
        events: The app's events hub: settled deliveries, and the runtime whose task group
            runs the sampler while the app runs.
        metrics: The gateway's metrics, for route rates and latency (None: no route numbers).
        interval: Seconds between samples.
        clock: Wall-clock seconds.
    """

    def __init__(
        self,
        registry: Registry,
        events: Events[Runtime],
        metrics: Metrics | None,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.events = events
        self.metrics = metrics
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.failures: deque[dict[str, Any]] = deque(maxlen=_RECENT)
        self.mail: deque[dict[str, Any]] = deque(maxlen=_RECENT)
        self.settled: dict[str, int] = {}
        self.handled = 0
        self.failed = 0
        self._last: _Sample | None = None
        self._samples: deque[_Sample] = deque(maxlen=16)  # for rates over a few seconds
        # The sampler now running, if any: a new start or ``close`` ends the old one's loop.
        self._sampler: object | None = None
        self._pages: dict[str, bytes] = {}
        self._mail_queues = {rule.queue.name for rule in registry.email_rules}
        self._unsubscribe = (
            events.observe_handlers(self.observe_handler),
            events.observe_runtime(self.runtime_changed),
        )

    def close(self) -> None:
        """Stop observing and sampling (the gateway is being replaced)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._sampler = None

    # --- hooks ---------------------------------------------------------------------------

    def observe_handler(self, happened: HandlerEvent) -> None:
        """Count a settled delivery; remember it if it failed or was mail."""
        if happened.outcome in _SETTLED:
            self.settled[happened.queue] = self.settled.get(happened.queue, 0) + 1
        record = {
            "time": self.clock(),
            "queue": happened.queue,
            "handler": happened.handler,
            "outcome": happened.outcome,
            "receive_count": happened.receive_count,
            "seconds": happened.seconds,
            "error": happened.error,
            "mail": dict(happened.mail) if happened.mail is not None else None,
        }
        if happened.outcome == "ok":
            self.handled += 1
        else:
            self.failed += 1
            self.failures.appendleft(record)
        if happened.queue in self._mail_queues:
            self.mail.appendleft(record)

    def runtime_changed(self, runtime: Runtime | None) -> None:
        """Start sampling in the runtime's task group when the app starts; stop when it stops."""
        self._sampler = None
        if runtime is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a gateway built outside the loop (Lambda): sample on demand only
            return
        token = self._sampler = object()
        runtime.spawn(lambda: self._run(runtime, token))

    async def _run(self, runtime: Runtime, token: object) -> None:
        """Sample every ``interval`` seconds while ``token`` is the sampler; a failed read
        skips one point."""
        while self._sampler is token:
            await asyncio.sleep(self.interval)
            if self._sampler is not token:
                return
            try:
                await self.sample(runtime)
            except Exception as exc:  # a broker hiccup must not end the sampling
                log.debug("dashboard.sample_failed", extra={"fields": {"error": repr(exc)}})

    # --- sampling ------------------------------------------------------------------------

    async def sample(self, runtime: Runtime) -> dict[str, Any]:
        """Read the queues, routes and outcomes now; append the history point and return it."""
        stats = await operations.queue_stats(runtime.backend)
        now = _Sample(
            t=self.clock(),
            queues={s.name: s.as_dict() for s in stats},
            settled=dict(self.settled),
            handled=self.handled,
            failed=self.failed,
            routes=self.metrics.route_totals() if self.metrics is not None else [],
        )
        point = _point(self._last, now)
        self._last = now
        self._samples.append(now)
        self.history.append(point)
        return point

    def _window(self, seconds: float) -> _Sample | None:
        """The oldest recent sample at most ``seconds`` old (None before the first)."""
        if self._last is None:
            return None
        for s in self._samples:
            if self._last.t - s.t <= seconds:
                return s
        return self._last

    # --- state ---------------------------------------------------------------------------

    async def state(self, since: float | None = None) -> dict[str, Any]:
        """Return the dashboard's JSON snapshot; ``history`` holds only points after ``since``.

        Raises:
            BackendUnavailableError: If the backend cannot be read.
        """
        registry = self.registry
        runtime = self.events.running
        if runtime is not None and (
            self._last is None or self.clock() - self._last.t > 2 * self.interval
        ):
            await self.sample(runtime)  # nothing sampled lately (the gateway came late)
        last = self._last
        queues = queue_rows(registry, last.queues if last and runtime else {}, self._queue_rates())
        now_routes = self.metrics.route_totals() if self.metrics is not None else []
        old = self._window(10.0)
        now = self.clock()
        before = old.routes if old is not None else []
        span = now - old.t if old is not None else 0.0
        if span < self.interval / 2:  # no sample old enough yet: rates since the start
            before, span = [], now - self.started
        return {
            "app": registry.name,
            "running": runtime is not None,
            "time": now,
            "interval": self.interval,
            "queues": queues,
            "topics": topic_rows(registry),
            "websockets": self._socket_rows(runtime),
            "routes": route_rows(registry, now_routes, before, span),
            "email": {
                "rules": [
                    {
                        "recipients": list(rule.recipients),
                        "queue": rule.queue.name,
                        "handler": _consumer_name(registry, rule.queue.name),
                        "stop": rule.stop,
                    }
                    for rule in registry.email_rules
                ],
                "recent": list(self.mail),
            },
            "failures": list(self.failures),
            "totals": {"handled": self.handled, "failed": self.failed},
            "history": [p for p in self.history if since is None or p["t"] > since],
        }

    def _socket_rows(self, runtime: Runtime | None) -> list[dict[str, Any]]:
        """Each WebSocket API: its routes and the connections this process holds open."""
        connections = runtime.connections if runtime is not None else None
        held = connections if isinstance(connections, Connections) else None
        return [
            {
                "path": path,
                "route_selection": api.route_selection,
                "routes": [r.route for r in self.registry.websocket_routes if r.path == path],
                "open": held.count(path) if held is not None else 0,
            }
            for path, api in self.registry.websocket_apis.items()
        ]

    def _queue_rates(self) -> dict[str, tuple[float, float]]:
        """Each queue's (in, out) messages per second over the last five seconds."""
        old, new = self._window(5.0), self._last
        if old is None or new is None or new.t <= old.t:
            return {}
        return {
            name: _rates(old, new, name, new.t - old.t) for name in new.queues if name in old.queues
        }

    # --- endpoints -----------------------------------------------------------------------

    def routes(self) -> list[tuple[str, Endpoint]]:
        """The page and its assets as ``(path, endpoint)``, served without the admin token."""
        return [
            (DASHBOARD_PATH + suffix, self._asset(name, kind))
            for suffix, (name, kind) in _ASSETS.items()
        ]

    def _asset(self, name: str, kind: bytes) -> Endpoint:
        async def endpoint(scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
            body = self._pages.get(name)
            if body is None:
                body = self._pages[name] = (
                    resources.files("framework.gateway") / "static" / name
                ).read_bytes()
            headers = [(b"content-security-policy", _CSP), (b"cache-control", b"no-cache")]
            await send_bytes(send, 200, body, kind, request_id, headers)

        return endpoint

    async def state_operation(
        self, target: AdminTarget, scope: Scope, receive: Receive, limit: int
    ) -> tuple[int, Any]:
        """The admin operation behind ``GET /_framework/dashboard/state?since=T``."""
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("since")
        since: float | None = None
        if values:
            try:
                since = float(values[0])
            except ValueError:
                since = math.nan
            # NaN would compare false with every point (an empty history, no error).
            if not math.isfinite(since):
                raise RequestValidationError(
                    [
                        {
                            "loc": ["query", "since"],
                            "msg": "since must be a finite number (a point's t, in seconds)",
                            "type": "value_error",
                        }
                    ]
                )
        return 200, await self.state(since)


def _consumer_name(registry: Registry, queue: str) -> str | None:
    consumer = registry.consumers.get(queue)
    return consumer.name if consumer is not None else None


def _total(q: dict[str, Any]) -> int:
    return int(q["depth"]) + int(q["in_flight"]) + int(q["delayed"])


def _rates(old: _Sample, new: _Sample, name: str, span: float) -> tuple[float, float]:
    """A queue's (in, out) per second between two samples; see the module docstring."""
    grown = _total(new.queues[name]) - _total(old.queues[name])
    seen_out = new.settled.get(name, 0) - old.settled.get(name, 0)
    came_in = max(0, grown + seen_out)
    return came_in / span, (came_in - grown) / span


def _point(old: _Sample | None, new: _Sample) -> dict[str, Any]:
    """One history point: throughput and latency since ``old``, queue counts at ``new``."""
    point: dict[str, Any] = {
        "t": round(new.t, 3),
        "http_rps": 0.0,
        "http_errors": 0.0,
        "handled": 0.0,
        "failed": 0.0,
        "p50": None,
        "p99": None,
        "queues": {
            name: [q["depth"], q["in_flight"], q["delayed"]] for name, q in new.queues.items()
        },
    }
    if old is None or new.t <= old.t:
        return point
    span = new.t - old.t
    before = {(r.route, r.method): r for r in old.routes}
    buckets: list[int] = []
    requests = errors = 0
    for r in new.routes:
        prev = before.get((r.route, r.method))
        counts = [a - (prev.counts[i] if prev else 0) for i, a in enumerate(r.counts)]
        diff = [a - (prev.buckets[i] if prev else 0) for i, a in enumerate(r.buckets)]
        buckets = [a + b for a, b in zip(buckets, diff, strict=True)] if buckets else diff
        requests += sum(counts)
        errors += counts[5]
    point["http_rps"] = round(requests / span, 3)
    point["http_errors"] = round(errors / span, 3)
    point["handled"] = round((new.handled - old.handled) / span, 3)
    point["failed"] = round((new.failed - old.failed) / span, 3)
    if buckets and sum(buckets):
        point["p50"] = latency_quantile(buckets, 0.5)
        point["p99"] = latency_quantile(buckets, 0.99)
    return point
