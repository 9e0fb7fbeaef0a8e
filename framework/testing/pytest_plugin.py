"""The pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``framework_backend_url``: the backend to test on: ``--framework-backend URL``, else the
  ``FRAMEWORK_TEST_BACKEND_URL`` variable, else ``memory://``.
- ``framework_app``: override it in your conftest.py to return your ``App``.
- ``framework_test_app``: your app running in a ``TestApp`` on that backend, for the test.
- ``virtual_clock``: a fresh ``VirtualClock``.

The running app lives in a task of its own, so its task groups are entered and left in one
task even though pytest-asyncio sets a fixture up and tears it down in different ones.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from framework.testing.clock import VirtualClock
from framework.testing.harness import TestApp

if TYPE_CHECKING:
    from framework.app import App


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--framework-backend``."""
    parser.addoption(
        "--framework-backend",
        default=None,
        help="backend URL for the framework_test_app fixture (default: memory://)",
    )


@pytest.fixture
def framework_backend_url(request: pytest.FixtureRequest) -> str:
    """The backend URL tests run on."""
    option = request.config.getoption("--framework-backend")
    return str(option or os.environ.get("FRAMEWORK_TEST_BACKEND_URL") or "memory://")


@pytest.fixture
def framework_app() -> App:
    """Your app: override this fixture in conftest.py."""
    raise pytest.UsageError(
        "define a `framework_app` fixture returning your App to use framework_test_app"
    )


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A fresh virtual clock starting at 0."""
    return VirtualClock()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixture needs pytest-asyncio; the rest does not
    pass
else:

    @pytest_asyncio.fixture
    async def framework_test_app(
        framework_app: App, framework_backend_url: str
    ) -> AsyncIterator[TestApp]:
        """Your app running on the test backend for the duration of one test."""
        ready: asyncio.Future[TestApp] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()

        async def hold() -> None:
            try:
                async with TestApp(framework_app, backend=framework_backend_url) as t:
                    ready.set_result(t)
                    await stop.wait()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)
                raise

        task = asyncio.create_task(hold())
        try:
            yield await ready
        finally:
            stop.set()
            await task
