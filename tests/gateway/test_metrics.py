"""Prometheus metrics at /metrics: per route template and version, cache, throttling, queues."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from framework import App
from framework.gateway.auth import APIKey, APIKeyAuth
from framework.gateway.throttle import Throttle, UsagePlan
from framework.testing import TestApp
from tests.gateway.helpers import client


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of a Prometheus text page by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metrics_app() -> App:
    app = App("metrics")

    @app.route("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        if order_id == 0:
            raise RuntimeError("boom")
        return {"id": order_id}

    @app.route("/orders/{order_id}", version="v2", cache=10)
    async def order_v2(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    @app.route("/limited", throttle=Throttle(rate=1, burst=1))
    async def limited() -> None:
        return None

    plan = APIKey("p", UsagePlan(rate=1, burst=1))

    @app.route("/planned", auth=APIKeyAuth({"k": plan}))
    async def planned() -> None:
        return None

    return app


def labels(**items: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(items.items()))


async def test_requests_are_counted_by_route_template_version_and_status_class() -> None:
    """Counts use the template, not the raw path, and split 2xx, 4xx and 5xx by version."""
    async with client(metrics_app()) as c:
        await c.get("/orders/1")
        await c.get("/orders/2")
        await c.get("/orders/x")
        await c.get("/orders/0")
        await c.get("/v2/orders/a")
        await c.get("/nowhere")
        page = await c.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    got = samples(page.text)
    v1 = {"route": "/orders/{order_id}", "method": "GET", "version": ""}
    assert got["framework_http_requests_total", labels(**v1, status_class="2xx")] == 2
    assert got["framework_http_requests_total", labels(**v1, status_class="4xx")] == 1
    assert got["framework_http_requests_total", labels(**v1, status_class="5xx")] == 1
    v2 = {"route": "/v2/orders/{order_id}", "method": "GET", "version": "v2"}
    assert got["framework_http_requests_total", labels(**v2, status_class="2xx")] == 1
    unmatched = {"route": "<unmatched>", "method": "GET", "version": "", "status_class": "4xx"}
    assert got["framework_http_requests_total", labels(**unmatched)] == 1
    assert got["framework_http_request_duration_seconds_count", labels(**v1)] == 4
    assert not any("/orders/1" in dict(k[1]).get("route", "") for k in got)


async def test_cache_hits_and_misses_are_counted() -> None:
    """A cached route's misses and hits appear per route and version."""
    async with client(metrics_app()) as c:
        for _ in range(3):
            await c.get("/v2/orders/a")
        got = samples((await c.get("/metrics")).text)
    route = {"route": "/v2/orders/{order_id}", "version": "v2"}
    assert got["framework_http_cache_misses_total", labels(**route)] == 1
    assert got["framework_http_cache_hits_total", labels(**route)] == 2


async def test_throttled_requests_are_counted_by_what_refused_them() -> None:
    """429s from a route throttle and from a usage plan are counted apart."""
    async with client(metrics_app()) as c:
        for _ in range(3):
            await c.get("/limited")
            await c.get("/planned", headers={"X-API-Key": "k"})
        got = samples((await c.get("/metrics")).text)
    assert (
        got["framework_http_throttled_total", labels(route="/limited", version="", per="route")]
        == 2
    )
    assert (
        got["framework_http_throttled_total", labels(route="/planned", version="", per="plan")] == 2
    )


async def test_two_apps_keep_separate_registries() -> None:
    """Each gateway has its own registry, so one app's requests never show in another's."""
    async with client(metrics_app()) as a, client(metrics_app()) as b:
        await a.get("/orders/1")
        got = samples((await b.get("/metrics")).text)
    v1 = {"route": "/orders/{order_id}", "method": "GET", "version": "", "status_class": "2xx"}
    assert got["framework_http_requests_total", labels(**v1)] == 0


async def test_queue_gauges_are_read_from_the_backend_at_scrape_time() -> None:
    """Depth and dead letters of each queue appear once the app runs."""
    app = metrics_app()
    app.queue("jobs")
    async with TestApp(app, workers=False) as t:
        await app.send("jobs", "one")
        await app.send("jobs", "two")
        got = samples((await t.http.get("/metrics")).text)
    assert got["framework_queue_depth", labels(queue="jobs")] == 2
    assert got["framework_queue_dead_letters", labels(queue="jobs")] == 0


async def test_metrics_off_serves_no_metrics_endpoint() -> None:
    """An app with metrics = False has no /metrics and its routes still answer."""
    app = metrics_app()
    app.metrics = False
    async with client(app) as c:
        assert (await c.get("/metrics")).status_code == 404
        assert (await c.get("/v2/orders/a")).headers["x-cache"] == "miss"


async def test_handler_outcomes_and_durations_are_exported() -> None:
    """Queue handlers' outcomes (ok, retry, dead_letter, poison) and run times reach /metrics."""
    app = App("metrics")

    @app.on_queue("jobs", max_receive_count=2, retry_delay=1)
    async def work(body: dict[str, int]) -> None:
        if body["n"] < 0:
            raise ValueError("negative")

    async with TestApp(app) as t:
        await app.send("jobs", {"n": 1})
        await app.send("jobs", {"n": -1})
        await app.send("jobs", "not json at all")
        await t.drain()
        await t.clock.advance(1)
        await t.drain()
        page = samples((await t.http.get("/metrics")).text)
    handler = app.registry.consumers["jobs"].name
    labels = (("handler", handler), ("queue", "jobs"))

    def outcome(name: str) -> float:
        key = ("framework_handler_outcomes_total", (*labels[:1], ("outcome", name), labels[1]))
        return page.get(key, 0.0)

    assert outcome("ok") == 1
    assert outcome("retry") == 1
    assert outcome("dead_letter") == 1
    assert outcome("poison") == 1
    assert page[("framework_handler_duration_seconds_count", labels)] == 3
