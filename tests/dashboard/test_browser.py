"""The dashboard in headless Chromium, against a real app served by uvicorn on loopback.

Needs Playwright for Python and Debian's ``chromium`` (never ``playwright install``). Without
them the test skips, unless ``FRAMEWORK_TEST_BROWSER=1`` (CI), where it fails. With
``FRAMEWORK_UPDATE_SCREENSHOT=1`` it also saves ``docs/images/dashboard.png``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from framework import App
from tests.browser import chromium, serve

from .shop import make_app

if TYPE_CHECKING:
    from playwright.sync_api import Route

SCREENSHOT = Path(__file__).parents[2] / "docs" / "images" / "dashboard.png"
TOKEN = "browser-test-token"


@dataclass
class Live:
    """An app served by uvicorn in a thread: its URL and what its handlers saw."""

    app: App
    url: str
    seen: list[Any]
    healed: set[str]


@pytest.fixture
def live() -> Iterator[Live]:
    """The shop app on memory://, with an admin token, served on a free loopback port."""
    yield from _serve(*make_app(admin_token=TOKEN))


@pytest.fixture
def live_open() -> Iterator[Live]:
    """The shop app without an admin token (the default), served on a free loopback port."""
    yield from _serve(*make_app())


def _serve(app: App, seen: list[Any], healed: set[str]) -> Iterator[Live]:
    """Serve ``app`` with uvicorn in a thread until the test ends."""
    for url in serve(app, name="dashboard-server"):
        yield Live(app, url, seen, healed)


def _eventually(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_dashboard_shows_queues_and_redrives_a_dead_letter(live: Live) -> None:
    """The page asks for the token, shows a queue fill and drain, and redrives a dead letter."""
    with chromium() as browser, httpx.Client(base_url=live.url, timeout=10) as http:
        from playwright.sync_api import expect

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live.url}/_framework/dashboard")

        # The admin API answers 401, so the page asks for the token once.
        expect(page.locator("#token-dialog")).to_be_visible()
        page.fill("#token-input", TOKEN)
        page.click("#token-save")
        expect(page.locator("#status")).to_have_text("running")
        expect(page.locator("#app-name")).to_have_text("dash")

        # A queue filling, then draining, while messages flow.
        depth = page.locator('#queues tr[data-queue="jobs"] td.depth')
        expect(depth).to_have_text("0")
        for n in range(24):
            http.post("/v1/jobs", json={"id": f"j{n}", "seconds": 0.15}).raise_for_status()
            http.get("/v2/health").raise_for_status()
            time.sleep(0.05)  # a few seconds of traffic, so the charts have a shape
        expect(depth).not_to_have_text("0", timeout=5000)
        expect(depth).to_have_text("0", timeout=20000)
        _eventually(lambda: sum(1 for s in live.seen if s[0] == "jobs") == 24, "24 jobs handled")

        # A dead letter appears with the error that sent it there.
        http.post("/v1/jobs", json={"id": "bad", "fail": True}).raise_for_status()
        dead = page.locator("#dlq-messages tr.dead-letter")
        expect(dead).to_have_count(1, timeout=15000)
        expect(dead.locator(".reason")).to_contain_text("ValueError: job bad cannot be done")
        expect(dead.locator(".source")).to_have_text("jobs")
        expect(page.locator('#queues tr[data-queue="jobs"] td.dead-letters')).to_have_text("1")
        expect(page.locator("#failures tbody tr").first).to_contain_text("dead_letter")
        expect(page.locator("#chart-depth path.series").first).to_be_visible()

        # Mail handled by the @on_email handler is listed with its sender and subject.
        raw = (
            "From: Ann <ann@customer.example>\r\nTo: support@dash.example\r\n"
            "Subject: Printer on fire\r\n\r\nIt is on fire.\r\n"
        )
        http.post(
            "/_framework/queues/email-support/messages",
            json={"body": raw},
            headers={"authorization": f"Bearer {TOKEN}"},
        ).raise_for_status()
        recent = page.locator("#email .recent")
        expect(recent).to_contain_text("Printer on fire", timeout=10000)
        expect(recent).to_contain_text("ann@customer.example")
        if os.environ.get("FRAMEWORK_UPDATE_SCREENSHOT") == "1":
            time.sleep(1.5)  # one more point on the charts
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

        # Redrive it from the button, accepting the confirmation; the handler then sees it.
        live.healed.add("bad")
        dead.locator("input[type=checkbox]").check()
        page.click("#redrive-selected")
        expect(page.locator("#confirm")).to_be_visible()
        expect(page.locator("#confirm-text")).to_contain_text("1 message(s) from jobs-dlq")
        page.click("#confirm-ok")
        expect(page.locator("#dlq-note")).to_contain_text("moved 1")
        _eventually(lambda: any(s[:2] == ("jobs", "bad") for s in live.seen), "the redriven job")
        expect(dead).to_have_count(0)
        expect(page.locator('#queues tr[data-queue="jobs"] td.dead-letters')).to_have_text("0")
    assert errors == []


@pytest.mark.timeout(120)
def test_a_dead_letter_queue_that_fails_to_load_shows_no_other_queues_rows(live: Live) -> None:
    """Choosing a dead-letter queue whose messages cannot be loaded empties the table."""

    def fail(route: Route) -> None:  # what a failed load looked like: a 500 for that queue
        route.fulfill(status=500, content_type="application/json", body='{"detail": "boom"}')

    with chromium() as browser, httpx.Client(base_url=live.url, timeout=10) as http:
        from playwright.sync_api import expect

        http.post("/v1/jobs", json={"id": "bad", "fail": True}).raise_for_status()
        page = browser.new_page()
        page.route("**/_framework/queues/parked-dlq/messages*", fail)
        page.goto(f"{live.url}/_framework/dashboard")
        page.fill("#token-input", TOKEN)
        page.click("#token-save")
        dead = page.locator("#dlq-messages tr.dead-letter")
        expect(dead).to_have_count(1, timeout=15000)  # jobs-dlq, the fullest, shown first
        page.select_option("#dlq-select", "parked-dlq")
        expect(page.locator("#dlq-note")).to_contain_text("could not load parked-dlq")
        expect(dead).to_have_count(0)
        expect(page.locator("#dlq-messages")).to_contain_text("could not load parked-dlq")


@pytest.mark.timeout(120)
def test_without_a_token_the_dashboard_works_on_loopback(live_open: Live) -> None:
    """No admin token: opened on 127.0.0.1, the page reads and purges (same-origin, JSON)."""
    with chromium() as browser, httpx.Client(base_url=live_open.url, timeout=10) as http:
        from playwright.sync_api import expect

        http.post("/v1/jobs", json={"id": "bad", "fail": True}).raise_for_status()
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_open.url}/_framework/dashboard")
        expect(page.locator("#status")).to_have_text("running")
        expect(page.locator("#token-dialog")).not_to_be_visible()
        dead = page.locator("#dlq-messages tr.dead-letter")
        expect(dead).to_have_count(1, timeout=15000)
        page.click("#purge")
        page.click("#confirm-ok")
        expect(page.locator("#dlq-note")).to_contain_text("purged 1")
        expect(dead).to_have_count(0)
    assert errors == []
