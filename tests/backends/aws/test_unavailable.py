"""An unreachable AWS endpoint is ``BackendUnavailableError``, never botocore's exception."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

pytest.importorskip("aiobotocore", reason="the aws extra is not installed")

from framework import App
from framework.backends.aws import AWSBackend
from framework.exceptions import BackendUnavailableError, ConfigError
from framework.messages import Outgoing
from framework.registry import QueueSpec
from tests.conftest import free_port


def unreachable(**options: str) -> str:
    """An ``aws://`` URL whose endpoint is a loopback port nothing listens on."""
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"aws://us-east-1?endpoint_url=http://127.0.0.1:{free_port()}{extra}"


async def test_every_call_on_an_unreachable_endpoint_raises_backend_unavailable() -> None:
    """Declare, send, receive and stats each raise BackendUnavailableError, after botocore's
    attempts (one here), with botocore's error as the cause."""
    async with AWSBackend.from_url(unreachable(max_attempts="1")) as backend:
        calls = [
            backend.declare_queue(QueueSpec.from_options("orders")),
            backend.send("orders", Outgoing(body=b"x")),
            backend.receive("orders", limit=1, wait=0),
            backend.stats("orders"),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="AWS is not reachable") as info:
                await call
            assert type(info.value.__cause__).__module__.startswith("botocore")
            assert time.monotonic() - started < 5


async def test_app_run_on_an_unreachable_endpoint_raises_backend_unavailable() -> None:
    """Starting an app there fails with BackendUnavailableError, not a botocore traceback."""
    app = App("unreachable")
    app.queue("orders")
    with pytest.raises(BackendUnavailableError):
        async with app.run(unreachable(max_attempts="1")):
            pass


def test_max_attempts_must_be_a_positive_count() -> None:
    """The option is checked when the URL is parsed."""
    with pytest.raises(ConfigError, match="max_attempts"):
        AWSBackend.from_url(unreachable(max_attempts="0"))


async def test_a_settle_that_cannot_reach_aws_is_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """AWS goes away while a handler runs: the worker's delete fails with
    BackendUnavailableError, logged as one ``worker.settle_failed`` line naming the error, not
    botocore's and aiohttp's tracebacks (one per message, for as long as the outage lasts)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stopped = asyncio.Event()
    app = App("settle-outage")

    @app.on_queue("orders")
    async def handle(body: str) -> None:
        await asyncio.to_thread(server.stop)
        stopped.set()

    def settle_failures() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == "worker.settle_failed"]

    url = f"aws://us-east-1?endpoint_url=http://127.0.0.1:{port}&max_attempts=1"
    with caplog.at_level(logging.INFO, logger="framework"):
        try:
            async with app.run(url, grace=1):
                await app.send("orders", "x")
                await asyncio.wait_for(stopped.wait(), 30)
                for _ in range(200):
                    if settle_failures():
                        break
                    await asyncio.sleep(0.05)
        finally:
            if not stopped.is_set():
                server.stop()
    [record] = settle_failures()
    assert record.exc_info is None
    fields = getattr(record, "fields", {})
    assert fields["queue"] == "orders"
    assert fields["error"].startswith("BackendUnavailableError: AWS is not reachable")
