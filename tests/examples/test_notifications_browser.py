"""The notifications example in headless Chromium: two tabs, a push reaching the right one only.

The dashboard then shows both connections open.

The app is served by uvicorn on loopback (a thread, memory backend), as ``framework run``
serves it. Needs Playwright for Python and Debian's ``chromium`` (never ``playwright
install``); without them the test skips, unless ``FRAMEWORK_TEST_BROWSER=1`` (CI), where it
fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from typing import NoReturn

import pytest
import uvicorn

from examples.notifications import app
from framework.backends import from_url

CHROMIUM = os.environ.get("FRAMEWORK_TEST_CHROMIUM", "/usr/bin/chromium")


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail when CI asked for the browser test."""
    if os.environ.get("FRAMEWORK_TEST_BROWSER") == "1":
        pytest.fail(f"FRAMEWORK_TEST_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served() -> Iterator[str]:
    """The example on memory://, served on a free loopback port; its URL."""
    port = _free_port()
    stop = threading.Event()
    started = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        config = uvicorn.Config(
            app.asgi, host="127.0.0.1", port=port, log_config=None, lifespan="off"
        )
        server = uvicorn.Server(config)
        async with app.run(from_url("memory://"), grace=1) as runtime:
            serving = asyncio.create_task(server.serve())
            for _ in range(1500):  # 15 s at most
                if server.started or serving.done():
                    break
                await asyncio.sleep(0.01)
            started.set()
            await asyncio.to_thread(stop.wait)
            await runtime.close_connections()
            server.should_exit = True
            await serving

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the fixture, not lost in the thread
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="notifications-server", daemon=True)
    thread.start()
    assert started.wait(15), "the server did not start"
    if failure:
        raise failure[0]
    yield f"http://127.0.0.1:{port}"
    stop.set()
    thread.join(15)
    assert not failure, failure


@pytest.mark.timeout(120)
def test_a_push_reaches_the_tab_that_asked_only(served: str) -> None:
    """Work started in one tab is pushed back to that tab; the other tab gets nothing."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
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
        browser.close()
    assert errors == []
