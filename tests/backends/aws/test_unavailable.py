"""An unreachable AWS endpoint is ``BackendUnavailableError``, never botocore's exception."""

from __future__ import annotations

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
