"""Response caching for GET routes: the form ``cache=`` takes and the expiring LRU map under it.

A cached route answers a repeated GET from memory for ``ttl`` seconds. The key is the path, the
query string with its keys sorted (``?b=2&a=1`` and ``?a=1&b=2`` are one entry) and the
authorized principal, so one caller never sees another's answer. Only complete 200 responses
are stored, and not those marked ``Cache-Control: no-store`` or setting a cookie. A request
sending ``Cache-Control: max-age=0`` (or ``no-cache``) skips the stored answer and refreshes it.
Every answer of a cached route says ``X-Cache: hit``, ``miss`` or ``bypass``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.types import Message, Receive, Scope, Send

from framework.exceptions import DeclarationError
from framework.gateway.routing import Endpoint

__all__ = ["Cache", "ExpiringLRU", "cache_for", "cached"]

K = TypeVar("K")
V = TypeVar("V")

# Answers larger than this are served but not kept: a few of them would crowd out the rest.
_MAX_CACHED_BODY = 1_048_576


class ExpiringLRU(Generic[K, V]):
    """A map of at most ``max_entries`` items, each forgotten at its expiry time.

    Args:
        max_entries: The most items kept; the least recently used goes first.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise DeclarationError(f"max_entries={max_entries!r} must be 1 or more")
        self.max_entries = max_entries
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, key: K, now: float) -> tuple[V | None, bool]:
        """Return ``(value, True)`` for a live item, now most recently used; else ``(None, False)``.

        The flag tells a cached None from a missing item.
        """
        item = self._items.get(key)
        if item is None:
            return None, False
        if item[1] <= now:
            del self._items[key]
            return None, False
        self._items.move_to_end(key)
        return item[0], True

    def get(self, key: K, now: float) -> V | None:
        """Return the live value of ``key``, or None."""
        return self.lookup(key, now)[0]

    def put(self, key: K, value: V, expires: float) -> None:
        """Keep ``value`` under ``key`` until ``expires``, evicting the least recently used."""
        self._items[key] = (value, expires)
        self._items.move_to_end(key)
        if len(self._items) > self.max_entries:
            self._items.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Cache:
    """How long a GET route's answers are kept.

    Attributes:
        ttl: Seconds an answer is served from the cache.
        max_entries: The most answers kept for the route (least recently used evicted).
    """

    ttl: float
    max_entries: int = 1024


def cache_for(value: Any, where: str) -> Cache:
    """Return the cache ``cache=`` names: a ``Cache`` or a TTL in seconds.

    Raises:
        DeclarationError: For anything else, or a TTL or size out of range.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = Cache(ttl=float(value))
    if not isinstance(value, Cache):
        raise DeclarationError(f"{where}: cache={value!r} must be Cache(ttl=...) or seconds")
    if value.ttl <= 0 or value.max_entries < 1:
        raise DeclarationError(f"{where}: cache ttl must be positive and max_entries at least 1")
    return value


CachedResponse = tuple[int, list[tuple[bytes, bytes]], bytes]
CacheKey = tuple[str, bytes, str | None]


def _key(scope: Scope) -> CacheKey:
    query: bytes = scope["query_string"]
    if b"&" in query:
        pairs: list[bytes] = query.split(b"&")
        # Sorted by key only, so repeated keys keep their order (?tag=b&tag=a is not ?tag=a&tag=b).
        pairs.sort(key=_query_key)
        query = b"&".join(pairs)
    principal = scope.get("state", {}).get("principal")
    return scope["path"], query, None if principal is None else principal.id


def _query_key(pair: bytes) -> bytes:
    return pair.partition(b"=")[0]


def _bypasses(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"cache-control":
            value = value.lower()
            return b"max-age=0" in value or b"no-cache" in value
    return False


def _storable(headers: list[tuple[bytes, bytes]]) -> bool:
    for key, value in headers:
        if key == b"set-cookie" or (key == b"cache-control" and b"no-store" in value.lower()):
            return False
    return True


def cached(
    endpoint: Endpoint,
    cache: Cache,
    clock: Callable[[], float],
    counted: Callable[[bool], None],
) -> Endpoint:
    """Return ``endpoint`` with its GET answers cached as the module docstring describes.

    Args:
        endpoint: The route's endpoint.
        cache: The TTL and size.
        clock: Seconds now.
        counted: Called with True for a hit and False for a miss (or bypass).
    """
    store: ExpiringLRU[CacheKey, CachedResponse] = ExpiringLRU(cache.max_entries)
    ttl = cache.ttl

    async def cached_endpoint(scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        if scope["method"] != "GET":
            await endpoint(scope, receive, send, request_id)
            return
        key = _key(scope)
        now = clock()
        bypass = _bypasses(scope)
        if not bypass:
            stored = store.get(key, now)
            if stored is not None:
                counted(True)
                status, headers, body = stored
                # The stored headers lack X-Request-ID: this request gets its own.
                out = [(b"x-request-id", request_id.encode()), *headers, (b"x-cache", b"hit")]
                await send({"type": "http.response.start", "status": status, "headers": out})
                await send({"type": "http.response.body", "body": body})
                return
        counted(False)
        label = b"bypass" if bypass else b"miss"
        start: Message = {}
        chunks: list[bytes] = []
        size = 0

        async def capture(message: Message) -> None:
            nonlocal start, size
            if message["type"] == "http.response.start":
                start = message
                message = {**message, "headers": [*message.get("headers", ()), (b"x-cache", label)]}
            elif size <= _MAX_CACHED_BODY:
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
            await send(message)

        await endpoint(scope, receive, capture, request_id)
        if start.get("status") != 200 or size > _MAX_CACHED_BODY:
            return
        headers = [(k, v) for k, v in start.get("headers", ()) if k != b"x-request-id"]
        if _storable(headers):
            store.put(key, (200, headers, b"".join(chunks)), now + ttl)

    return cached_endpoint
