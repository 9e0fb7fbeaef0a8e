"""Throttling: token buckets per route, per principal and per client address, and usage plans.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; each request
takes one, and a request finding less than one is answered 429 with ``Retry-After``: the whole
seconds (at least 1) until a token is back. ``throttle=`` takes one ``Throttle`` or a list of
them, checked in order, so a route can have a global ceiling and a per-client one together.

An API key's ``UsagePlan`` adds a daily quota (per UTC day) on top of its own bucket.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starlette.types import Receive, Scope, Send

from framework.exceptions import DeclarationError
from framework.gateway.errors import HTTPError
from framework.gateway.routing import Endpoint

__all__ = [
    "PlanLimiter",
    "Throttle",
    "ThrottledError",
    "TokenBuckets",
    "UsagePlan",
    "throttled",
    "throttles_for",
]

Per = Literal["route", "key", "client"]
_DAY = 86_400.0


def _check_rate(where: str, rate: float, burst: int | None) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise DeclarationError(f"{where}: rate={rate!r} must be a positive number per second")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise DeclarationError(f"{where}: burst={burst!r} must be a whole number, 1 or more")


@dataclass(frozen=True, slots=True)
class Throttle:
    """A token bucket: ``rate`` requests per second, up to ``burst`` at once.

    Attributes:
        rate: Tokens added per second.
        burst: The bucket's size (default: the rate rounded up, at least 1).
        per: ``"route"`` for one bucket shared by every caller, ``"key"`` for one per
            authorized principal (needs ``auth=``), ``"client"`` for one per client IP
            address (the socket peer, or behind the app's ``trusted_proxies`` the client they
            forwarded in ``X-Forwarded-For``).
    """

    rate: float
    burst: int | None = None
    per: Per = "route"

    def __post_init__(self) -> None:
        _check_rate("Throttle", self.rate, self.burst)
        if self.per not in ("route", "key", "client"):
            raise DeclarationError(f"Throttle per={self.per!r} must be route, key or client")

    @property
    def size(self) -> int:
        """The bucket's size in tokens."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate))


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """An API key's limits, shared by every route its authorizer guards.

    Attributes:
        rate: Requests per second (None: no rate limit).
        burst: Requests at once (default: the rate rounded up, at least 1).
        quota: Requests per UTC day (None: no quota).
    """

    rate: float | None = None
    burst: int | None = None
    quota: int | None = None

    def __post_init__(self) -> None:
        if self.rate is not None:
            _check_rate("UsagePlan", self.rate, self.burst)
        if self.quota is not None and (
            isinstance(self.quota, bool) or not isinstance(self.quota, int) or self.quota < 0
        ):
            raise DeclarationError(f"UsagePlan quota={self.quota!r} must be a whole number")


class TokenBuckets:
    """Token buckets of one size and rate, one per key, at most ``max_keys`` of them.

    Args:
        rate: Tokens added per second.
        size: Tokens a bucket holds.
        max_keys: Buckets kept; past it, full buckets are dropped (they are as good as new),
            then the oldest, so a flood of client addresses cannot exhaust memory.
    """

    __slots__ = ("_buckets", "max_keys", "rate", "size")

    def __init__(self, rate: float, size: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.size = float(size)
        self.max_keys = max_keys
        self._buckets: dict[Any, list[float]] = {}

    def take(self, key: Any, now: float) -> float:
        """Take a token from ``key``'s bucket: 0 when there was one, else seconds until there is."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            self._buckets[key] = [self.size - 1.0, now]
            return 0.0
        # A wall clock can step back; a negative elapsed time must not drain the bucket.
        tokens = min(self.size, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.size
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            for key in list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[key]


class ThrottledError(HTTPError):
    """A 429 with ``Retry-After``: the whole seconds, at least 1, until the caller may retry.

    Args:
        wait: Seconds until a request would pass.
        detail: What was exceeded.
        per: What refused it: ``route``, ``key``, ``client`` or ``plan`` (a usage plan).
    """

    def __init__(self, wait: float, detail: str, per: str) -> None:
        super().__init__(429, detail, {"Retry-After": str(max(1, math.ceil(wait)))})
        self.per = per


class PlanLimiter:
    """Enforces usage plans: a token bucket and a daily count per principal."""

    def __init__(self) -> None:
        self._buckets: dict[UsagePlan, TokenBuckets] = {}
        self._days: dict[str, tuple[int, int]] = {}

    def check(self, principal: str, plan: UsagePlan, now: float) -> None:
        """Count one request of ``principal`` at wall time ``now`` against ``plan``.

        Raises:
            HTTPError: 429 with ``Retry-After`` when the rate or the day's quota is used up.
        """
        if plan.rate is not None:
            buckets = self._buckets.get(plan)
            if buckets is None:
                size = plan.burst if plan.burst is not None else max(1, math.ceil(plan.rate))
                buckets = self._buckets[plan] = TokenBuckets(plan.rate, size)
            wait = buckets.take(principal, now)
            if wait:
                raise ThrottledError(
                    wait, "the API key's request rate is exceeded; slow down", "plan"
                )
        if plan.quota is not None:
            day = int(now // _DAY)
            seen_day, count = self._days.get(principal, (day, 0))
            if seen_day != day:
                count = 0
            if count >= plan.quota:
                raise ThrottledError(
                    (day + 1) * _DAY - now, "the API key's daily quota is used up", "plan"
                )
            self._days[principal] = (day, count + 1)


def throttles_for(value: Any, where: str, has_auth: bool) -> tuple[Throttle, ...]:
    """Return the throttles ``throttle=`` names: a ``Throttle`` or a sequence of them.

    Raises:
        DeclarationError: For anything else, or ``per="key"`` on a route without ``auth=``.
    """
    items = (value,) if isinstance(value, Throttle) else value
    if not isinstance(items, Sequence) or not all(isinstance(t, Throttle) for t in items):
        raise DeclarationError(
            f"{where}: throttle={value!r} must be Throttle(rate, burst, per) or a list of them"
        )
    if not has_auth and any(t.per == "key" for t in items):
        raise DeclarationError(f"{where}: Throttle(per='key') needs auth= on the route")
    return tuple(items)


def _client(scope: Scope) -> Any:
    client = scope.get("client")
    return client[0] if client else None


def _principal(scope: Scope) -> Any:
    return scope["state"]["principal"].id


_KEYS: dict[str, Callable[[Scope], Any]] = {
    "route": lambda scope: None,
    "key": _principal,
    "client": _client,
}


def throttled(
    endpoint: Endpoint,
    throttles: Sequence[Throttle],
    clock: Callable[[], float],
) -> Endpoint:
    """Return ``endpoint`` behind ``throttles``, checked in order.

    Args:
        endpoint: The route's endpoint.
        throttles: The buckets' settings.
        clock: Seconds now.
    """
    checks = [(TokenBuckets(t.rate, t.size), _KEYS[t.per], t.per) for t in throttles]

    async def throttled_endpoint(
        scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        now = clock()
        for buckets, key_of, per in checks:
            wait = buckets.take(key_of(scope), now)
            if wait:
                raise ThrottledError(wait, f"too many requests (per {per}); retry later", per)
        await endpoint(scope, receive, send, request_id)

    return throttled_endpoint
