"""The dashboard without a browser: its page, its state snapshot, and the admin API it calls."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from framework.gateway import Gateway
from framework.gateway.dashboard import Dashboard
from framework.testing import TestApp

from .shop import Job, make_app

TOKEN = "dash-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def dashboard_of(t: TestApp) -> Dashboard:
    """Return the dashboard of the test app's gateway."""
    dashboard = cast(Gateway, t.app.asgi).dashboard
    assert dashboard is not None
    return dashboard


async def dead_letter_one(t: TestApp, job_id: str = "bad") -> None:
    """Send a failing job and run it into the dead-letter queue."""
    await t.app.send("jobs", Job(id=job_id, fail=True))
    await t.drain()
    await t.drain()


async def test_page_and_assets_are_served_without_the_token() -> None:
    """The page holds no data, so it and its assets need no token; a strict CSP comes along."""
    app, _, _ = make_app(admin_token=TOKEN)
    async with TestApp(app) as t:
        page = await t.http.get("/_framework/dashboard")
        script = await t.http.get("/_framework/dashboard/dashboard.js")
        style = await t.http.get("/_framework/dashboard/dashboard.css")
    assert page.status_code == script.status_code == style.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="dashboard/dashboard.js"' in page.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert "sessionStorage" in script.text
    assert style.headers["content-type"].startswith("text/css")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


@pytest.mark.parametrize(
    "path",
    ["/_framework/dashboard/state", "/_framework/queues/jobs-dlq/messages"],
)
async def test_data_needs_the_admin_token(path: str) -> None:
    """State and peek are 401 without a token, 403 with a wrong one, 200 with the right one."""
    app, _, _ = make_app(admin_token=TOKEN)
    async with TestApp(app) as t:
        missing = await t.http.get(path)
        wrong = await t.http.get(path, headers={"Authorization": "Bearer nope"})
        right = await t.http.get(path, headers=AUTH)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 403
    assert right.status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_framework/queues/jobs-dlq/redrive", {"message_ids": ["x"]}),
        ("/_framework/queues/jobs-dlq/messages/delete", {"message_ids": ["x"]}),
    ],
)
async def test_selected_operations_need_the_admin_token(path: str, body: Any) -> None:
    """Redrive and delete of chosen messages are refused without the token, as every op is."""
    app, _, _ = make_app(admin_token=TOKEN)
    async with TestApp(app) as t:
        missing = await t.http.post(path, json=body)
        wrong = await t.http.post(path, json=body, headers={"Authorization": "Bearer nope"})
    assert (missing.status_code, wrong.status_code) == (401, 403)


async def test_state_lists_queues_topics_routes_and_mail_rules() -> None:
    """The snapshot has every queue with its counts, topics with filters, routes per version."""
    app, _, _ = make_app()
    async with TestApp(app, workers=False) as t:
        await app.send("parked", "one")
        await t.http.post("/v1/jobs", json={"id": "a"})
        await t.http.get("/v2/health")
        state = (await t.http.get("/_framework/dashboard/state")).json()
    assert state["app"] == "dash"
    assert state["running"] is True
    queues = {q["name"]: q for q in state["queues"]}
    assert {"jobs", "jobs-dlq", "parked", "events.audit", "email-support"} <= set(queues)
    assert queues["parked"]["depth"] == 1
    assert queues["jobs"]["depth"] == 1
    assert queues["jobs"]["handler"].endswith("work")
    assert queues["jobs-dlq"]["is_dead_letter_queue"] is True
    assert queues["jobs-dlq"]["sources"] == ["jobs"]
    assert queues["jobs"]["is_dead_letter_queue"] is False
    (topic,) = state["topics"]
    assert topic["name"] == "events"
    (sub,) = topic["subscriptions"]
    assert sub["queue"] == "events.audit"
    assert sub["filter_policy"] == {"kind": ["created"]}
    routes = {(r["method"], r["path"]): r for r in state["routes"]}
    assert routes["POST", "/v1/jobs"]["version"] == "v1"
    assert routes["POST", "/v1/jobs"]["requests"] == 1
    assert routes["POST", "/v1/jobs"]["error_rate"] == 0
    assert routes["GET", "/v2/health"]["p50"] is not None
    assert state["email"]["rules"] == [
        {
            "recipients": ["support@dash.example"],
            "queue": "email-support",
            "handler": state["email"]["rules"][0]["handler"],
            "stop": False,
        }
    ]


async def test_state_shows_handler_failures_with_their_error() -> None:
    """A failing handler's retries and its dead letter appear under failures, newest first."""
    app, _, _ = make_app()
    async with TestApp(app) as t:
        await dead_letter_one(t)
        state = (await t.http.get("/_framework/dashboard/state")).json()
    outcomes = [f["outcome"] for f in state["failures"]]
    assert outcomes == ["dead_letter", "retry"]
    assert state["failures"][0]["error"] == "ValueError: job bad cannot be done"
    assert state["failures"][0]["queue"] == "jobs"
    assert state["totals"]["failed"] == 2


async def test_mail_handled_shows_under_recent_mail() -> None:
    """Mail through the SMTP receiver and its handler is listed as recent mail."""
    app, seen, _ = make_app()
    async with TestApp(app) as t:
        await t.send_email(to="support@dash.example", subject="help")
        await t.drain()
        state = (await t.http.get("/_framework/dashboard/state")).json()
    assert ("mail", "help") in seen
    (mail,) = state["email"]["recent"]
    assert (mail["queue"], mail["outcome"]) == ("email-support", "ok")
    assert mail["mail"]["subject"] == "help"
    assert mail["mail"]["to"] == "support@dash.example"
    assert "@" in mail["mail"]["from"]


async def test_history_points_come_from_samples_and_since_filters_them() -> None:
    """Each sample appends a point with queue counts; ?since= returns only newer points."""
    app, _, _ = make_app()
    async with TestApp(app, workers=False) as t:
        dashboard = dashboard_of(t)
        await app.send("parked", "one")
        first = await dashboard.sample(t.runtime)
        await asyncio.sleep(0.01)  # points are stamped to the millisecond
        await app.send("parked", "two")
        second = await dashboard.sample(t.runtime)
        everything = (await t.http.get("/_framework/dashboard/state")).json()["history"]
        newer = await t.http.get(f"/_framework/dashboard/state?since={first['t']}")
    assert first["queues"]["parked"] == [1, 0, 0]
    assert second["queues"]["parked"] == [2, 0, 0]
    assert [p["t"] for p in everything][:2] == [first["t"], second["t"]]
    assert newer.json()["history"][0]["t"] == second["t"]


@pytest.mark.parametrize("since", ["x", "nan", "NaN", "inf", "-inf", "1e400", "%C2%B2"])
async def test_a_bad_since_is_422(since: str) -> None:
    """?since= must be a finite number of seconds: anything else is 422 with a reason, not
    ignored (a 200 with the whole history) nor an empty history (NaN compares false)."""
    app, _, _ = make_app()
    async with TestApp(app, workers=False) as t:
        r = await t.http.get(f"/_framework/dashboard/state?since={since}")
    assert r.status_code == 422
    assert "since must be a finite number" in r.text


async def test_queue_rates_count_what_came_in_and_what_was_handled() -> None:
    """Rates in and out per queue come from two samples: growth plus what handlers settled."""
    app, _, _ = make_app()
    now = [1000.0]
    async with TestApp(app) as t:
        dashboard = Dashboard(app.registry, app.events, None, clock=lambda: now[0])
        await dashboard.sample(t.runtime)
        for n in range(4):
            await app.send("jobs", Job(id=str(n)))
        await t.drain()
        await app.send("parked", "x")
        await app.send("parked", "y")
        now[0] += 2.0
        await dashboard.sample(t.runtime)
        state = await dashboard.state()
    queues = {q["name"]: q for q in state["queues"]}
    assert (queues["jobs"]["rate_in"], queues["jobs"]["rate_out"]) == (2.0, 2.0)
    assert (queues["parked"]["rate_in"], queues["parked"]["rate_out"]) == (1.0, 0.0)
    assert state["history"][-1]["handled"] == 2.0


async def test_sampler_runs_while_the_app_runs_and_stops_with_it() -> None:
    """The sampler runs in the runtime's task group every interval, and stops with it."""
    app, _, _ = make_app()
    gateway = cast(Gateway, app.asgi)
    dashboard = gateway.dashboard
    assert dashboard is not None
    dashboard.interval = 0.02
    async with TestApp(app, workers=False):
        for _ in range(500):
            if len(dashboard.history) >= 3:
                break
            await asyncio.sleep(0.01)
        assert len(dashboard.history) >= 3
    stopped_at = len(dashboard.history)
    await asyncio.sleep(0.1)  # five intervals: a sampler still running would add points
    assert len(dashboard.history) == stopped_at


async def test_state_while_the_app_is_stopped_says_not_running() -> None:
    """Without a runtime the snapshot still answers, with running false and no queues."""
    import httpx

    app, _, _ = make_app()
    transport = httpx.ASGITransport(app=app.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as http:
        r = await http.get("/_framework/dashboard/state")
    assert r.status_code == 200
    assert (r.json()["running"], r.json()["queues"]) == (False, [])


async def test_dashboard_off_serves_no_page() -> None:
    """An app with dashboard = False has no page and no state endpoint."""
    app, _, _ = make_app()
    app.dashboard = False
    async with TestApp(app) as t:
        page = await t.http.get("/_framework/dashboard")
        state = await t.http.get("/_framework/dashboard/state")
    assert (page.status_code, state.status_code) == (404, 404)
