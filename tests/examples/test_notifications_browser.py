"""The notifications example in headless Chromium: two tabs, a push reaching the right one only.

The dashboard then shows both connections open.

The app is served by uvicorn on loopback (a thread, memory backend), as ``framework run``
serves it (``tests/browser.py``). Needs Playwright for Python and Debian's ``chromium`` (never
``playwright install``); without them the test skips, unless ``FRAMEWORK_TEST_BROWSER=1`` (CI),
where it fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from examples.notifications import app
from tests.browser import chromium, serve


@pytest.fixture
def served() -> Iterator[str]:
    """The example on memory://, served on a free loopback port; its URL."""
    yield from serve(app, name="notifications-server")


@pytest.mark.timeout(120)
def test_a_push_reaches_the_tab_that_asked_only(served: str) -> None:
    """Work started in one tab is pushed back to that tab; the other tab gets nothing."""
    with chromium() as browser:
        from playwright.sync_api import expect

        context = browser.new_context()
        errors: list[str] = []
        first, second = context.new_page(), context.new_page()
        for page in (first, second):
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served)
            expect(page.locator("#send")).to_be_enabled()
        assert (
            first.locator("#connection").text_content()
            != second.locator("#connection").text_content()
        )

        first.fill("#text", "from the first tab")
        first.click("#send")
        result = first.locator("#results li.result")
        expect(result).to_have_text("from the first tab -> FROM THE FIRST TAB", timeout=10000)

        second.fill("#text", "second")
        second.click("#send")
        expect(second.locator("#results li.result")).to_have_text("second -> SECOND")
        expect(first.locator("#results li.result")).to_have_count(1)
        expect(second.locator("#results li.result")).to_have_count(1)

        # The dashboard counts both tabs' connections.
        dashboard = context.new_page()
        dashboard.on("pageerror", lambda exc: errors.append(str(exc)))
        dashboard.goto(f"{served}/_framework/dashboard")
        expect(dashboard.locator('#websockets tr[data-api="/ws"] td.open')).to_have_text("2")
    assert errors == []
