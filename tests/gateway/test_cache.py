"""Response caching for GET: TTL, key of path, query and principal, bypass, LRU bound."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import JSONResponse, Response

from framework import App
from framework.exceptions import DeclarationError
from framework.gateway.auth import APIKeyAuth
from framework.gateway.cache import Cache, ExpiringLRU
from tests.gateway.helpers import FakeClock, client


def cached_app(calls: list[str]) -> App:
    app = App("cache")

    @app.route("/items/{item}", cache=30)
    async def item(item: str, a: str = "", b: str = "") -> dict[str, Any]:
        calls.append(item)
        return {"item": item, "n": len(calls), "a": a, "b": b}

    @app.route("/mine", auth=APIKeyAuth({"k1": "one", "k2": "two"}), cache=Cache(ttl=30))
    async def mine() -> dict[str, int]:
        calls.append("mine")
        return {"n": len(calls)}

    @app.route("/small", cache=Cache(ttl=30, max_entries=2))
    async def small(q: str) -> str:
        calls.append(q)
        return q

    @app.route("/failing", cache=30)
    async def failing() -> Response:
        calls.append("failing")
        return JSONResponse({"n": len(calls)}, status_code=503)

    @app.route("/cookie", cache=30)
    async def cookie() -> Response:
        calls.append("cookie")
        return Response("c", headers={"set-cookie": "s=1"})

    return app


async def test_repeated_get_is_served_from_the_cache_until_the_ttl() -> None:
    """A second GET within the TTL is a hit with the same body; after the TTL, a miss."""
    calls: list[str] = []
    clock = FakeClock()
    async with client(cached_app(calls), clock) as c:
        first = await c.get("/items/x", headers={"X-Request-ID": "one"})
        second = await c.get("/items/x", headers={"X-Request-ID": "two"})
        clock.advance(30)
        third = await c.get("/items/x")
    assert (first.headers["x-cache"], second.headers["x-cache"], third.headers["x-cache"]) == (
        "miss",
        "hit",
        "miss",
    )
    assert first.json() == second.json()
    assert second.headers["x-request-id"] == "two"
    assert calls == ["x", "x"]


async def test_query_order_does_not_split_the_cache() -> None:
    """?a=1&b=2 and ?b=2&a=1 are one cache entry; another value is another."""
    calls: list[str] = []
    async with client(cached_app(calls)) as c:
        await c.get("/items/x?a=1&b=2")
        swapped = await c.get("/items/x?b=2&a=1")
        other = await c.get("/items/x?a=2&b=2")
    assert swapped.headers["x-cache"] == "hit"
    assert other.json()["a"] == "2"
    assert len(calls) == 2


async def test_each_principal_has_its_own_cache_entries() -> None:
    """An authorized route never serves one key's cached answer to another key."""
    calls: list[str] = []
    async with client(cached_app(calls)) as c:
        one = await c.get("/mine", headers={"X-API-Key": "k1"})
        two = await c.get("/mine", headers={"X-API-Key": "k2"})
        one_again = await c.get("/mine", headers={"X-API-Key": "k1"})
    assert (one.json(), two.json(), one_again.json()) == ({"n": 1}, {"n": 2}, {"n": 1})
    assert one_again.headers["x-cache"] == "hit"


@pytest.mark.parametrize("value", ["max-age=0", "no-cache"])
async def test_cache_control_max_age_0_bypasses_and_refreshes(value: str) -> None:
    """Cache-Control: max-age=0 runs the handler and replaces the stored answer."""
    calls: list[str] = []
    async with client(cached_app(calls)) as c:
        await c.get("/items/x")
        fresh = await c.get("/items/x", headers={"Cache-Control": value})
        after = await c.get("/items/x")
    assert fresh.headers["x-cache"] == "bypass"
    assert fresh.json()["n"] == 2
    assert after.json()["n"] == 2


async def test_cache_is_bounded_least_recently_used_first() -> None:
    """Past max_entries, the least recently used answer is evicted."""
    calls: list[str] = []
    async with client(cached_app(calls)) as c:
        for q in ("a", "b", "a", "c", "a", "b"):
            await c.get(f"/small?q={q}")
    assert calls == ["a", "b", "c", "b"]


async def test_only_cacheable_200_answers_are_stored() -> None:
    """Error answers and answers setting cookies are not cached."""
    calls: list[str] = []
    async with client(cached_app(calls)) as c:
        for _ in range(2):
            await c.get("/failing")
            await c.get("/cookie")
    assert calls == ["failing", "cookie", "failing", "cookie"]


def test_cache_on_a_post_route_is_refused() -> None:
    """cache= on a route without GET fails at the decorator, naming the handler."""
    app = App("bad")

    with pytest.raises(DeclarationError, match="only applies to GET"):

        @app.route("/x", methods=["POST"], cache=10)
        async def x() -> None: ...


@pytest.mark.parametrize("value", [0, "30s", Cache(ttl=5, max_entries=0)])
def test_cache_in_an_unknown_form_or_range_is_refused(value: object) -> None:
    """cache= takes a positive TTL or a Cache with a positive size."""
    app = App("bad")

    with pytest.raises(DeclarationError, match="cache"):

        @app.route("/x", cache=value)
        async def x() -> None: ...


def test_expiring_lru_tells_a_cached_none_from_a_missing_item() -> None:
    """lookup() reports a stored None as found, and an expired item as missing."""
    store: ExpiringLRU[str, None] = ExpiringLRU(4)
    store.put("k", None, expires=10.0)
    assert store.lookup("k", 5.0) == (None, True)
    assert store.lookup("k", 10.0) == (None, False)
    assert len(store) == 0
