"""Throttling: token buckets per route, per key and per client; 429 with Retry-After."""

from __future__ import annotations

import httpx
import pytest

from framework import App
from framework.exceptions import DeclarationError
from framework.gateway import Gateway
from framework.gateway.auth import APIKeyAuth
from framework.gateway.throttle import Throttle, TokenBuckets, UsagePlan
from tests.gateway.helpers import FakeClock, client


def throttled_app() -> App:
    app = App("throttle")
    keys = APIKeyAuth({"k1": "one", "k2": "two"})

    @app.route("/route", throttle=Throttle(rate=1, burst=2))
    async def per_route() -> str:
        return "ok"

    @app.route("/key", auth=keys, throttle=Throttle(rate=0.5, burst=1, per="key"))
    async def per_key() -> str:
        return "ok"

    @app.route("/client", throttle=[Throttle(rate=100), Throttle(rate=0.1, burst=1, per="client")])
    async def per_client() -> str:
        return "ok"

    return app


async def test_route_bucket_refuses_past_its_burst_with_retry_after() -> None:
    """A route throttle lets `burst` requests through, then answers 429 with Retry-After."""
    async with client(throttled_app()) as c:
        codes = [(await c.get("/route")).status_code for _ in range(3)]
        refused = await c.get("/route")
    assert codes == [200, 200, 429]
    assert refused.headers["retry-after"] == "1"
    assert "retry" in refused.json()["detail"]


async def test_route_bucket_refills_at_its_rate() -> None:
    """After 1/rate seconds a refused route accepts one more request."""
    clock = FakeClock()
    async with client(throttled_app(), clock) as c:
        for _ in range(3):
            await c.get("/route")
        clock.advance(1.0)
        refilled = await c.get("/route")
        again = await c.get("/route")
    assert (refilled.status_code, again.status_code) == (200, 429)


async def test_key_buckets_are_separate_per_principal() -> None:
    """One key using up its bucket leaves another key's untouched; Retry-After rounds up."""
    async with client(throttled_app()) as c:
        first = await c.get("/key", headers={"X-API-Key": "k1"})
        refused = await c.get("/key", headers={"X-API-Key": "k1"})
        other = await c.get("/key", headers={"X-API-Key": "k2"})
    assert (first.status_code, refused.status_code, other.status_code) == (200, 429, 200)
    assert refused.headers["retry-after"] == "2"


async def test_client_buckets_are_separate_per_address() -> None:
    """Each client address has its own bucket behind the route's shared one."""
    app = throttled_app()
    gateway = Gateway(app.registry, app.events, clock=FakeClock())

    def from_ip(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=gateway, client=(ip, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://t")

    async with from_ip("10.0.0.1") as a, from_ip("10.0.0.2") as b:
        codes = [
            (await a.get("/client")).status_code,
            (await a.get("/client")).status_code,
            (await b.get("/client")).status_code,
        ]
        refused = await a.get("/client")
    assert codes == [200, 429, 200]
    assert refused.headers["retry-after"] == "10"


def test_per_key_throttle_without_auth_is_refused() -> None:
    """Throttle(per="key") needs an authorizer to name the key, and says so at the decorator."""
    app = App("bad")

    with pytest.raises(DeclarationError, match="needs auth="):

        @app.route("/x", throttle=Throttle(rate=1, per="key"))
        async def x() -> None: ...


@pytest.mark.parametrize(
    "value",
    [pytest.param(5, id="number"), pytest.param("10/s", id="string"), pytest.param([1], id="list")],
)
def test_throttle_in_an_unknown_form_is_refused(value: object) -> None:
    """throttle= takes Throttle objects only, so a typo never leaves a route unthrottled."""
    app = App("bad")

    with pytest.raises(DeclarationError, match="must be Throttle"):

        @app.route("/x", throttle=value)
        async def x() -> None: ...


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Throttle(rate=0), id="zero-rate"),
        pytest.param(lambda: Throttle(rate=1, burst=0), id="zero-burst"),
        pytest.param(lambda: Throttle(rate=1, per="ip"), id="bad-per"),  # type: ignore[arg-type]
        pytest.param(lambda: UsagePlan(quota=-1), id="negative-quota"),
    ],
)
def test_out_of_range_limits_are_refused(make: object) -> None:
    """Rates, bursts and quotas out of range fail when declared."""
    with pytest.raises(DeclarationError):
        make()  # type: ignore[operator]


def test_bucket_store_stays_bounded_under_many_keys() -> None:
    """A flood of distinct client keys never grows the store past its bound."""
    buckets = TokenBuckets(rate=1.0, size=1, max_keys=100)
    for i in range(1000):
        buckets.take(f"10.0.{i // 256}.{i % 256}", float(i) / 1000)
    assert len(buckets._buckets) <= 100


def test_clock_stepping_back_does_not_drain_a_bucket() -> None:
    """A wall clock moving backwards neither adds nor removes tokens."""
    buckets = TokenBuckets(rate=1.0, size=2)
    assert buckets.take("k", 100.0) == 0.0
    assert buckets.take("k", 50.0) == 0.0
    assert buckets.take("k", 50.0) == pytest.approx(1.0)
