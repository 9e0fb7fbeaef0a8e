"""Headless Chromium against an app served by uvicorn on loopback, for the browser tests.

``serve`` runs an app on ``memory://`` with uvicorn in a thread, as ``framework run`` serves
it; ``chromium`` launches Debian's ``chromium`` through Playwright for Python (never
``playwright install``). Without them a browser test skips, unless ``FRAMEWORK_TEST_BROWSER=1``
(CI), where it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import pytest
import uvicorn

from framework import App
from framework.backends import from_url

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["CHROMIUM", "chromium", "serve", "unavailable"]

CHROMIUM = os.environ.get("FRAMEWORK_TEST_CHROMIUM", "/usr/bin/chromium")


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when CI asked for the browser test."""
    if os.environ.get("FRAMEWORK_TEST_BROWSER") == "1":
        pytest.fail(f"FRAMEWORK_TEST_BROWSER=1 but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, closed afterwards; skips (or fails) without Playwright or chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(app: App, *, name: str) -> Iterator[str]:
    """Serve ``app`` on memory:// with uvicorn in thread ``name`` until the caller resumes it.

    Yields the app's URL on a free loopback port; on resuming, the app's WebSocket
    connections are closed, the server stops, and a failure in the thread is raised.
    """
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

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    assert started.wait(15), "the server did not start"
    if failure:
        raise failure[0]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join(15)
    assert not failure, failure
