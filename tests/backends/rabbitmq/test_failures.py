"""What the RabbitMQ backend does when the broker, the network or a message is not as expected.

Connection losses are made with a TCP proxy on loopback (``proxy.py``), which cuts only the
connections of the backend under test; a silent port is a loopback server that accepts and
never answers. Everything else is the real broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from framework import App
from framework.backends.rabbitmq import RabbitMQBackend
from framework.exceptions import BackendUnavailableError, InvalidMessageError, MessageTooLargeError
from framework.messages import Outgoing
from framework.registry import QueueSpec
from framework.testing import TestApp
from tests.rabbitmq_cleanup import delete_named

from .proxy import proxy_to, send_once_reconnected

pytestmark = pytest.mark.rabbitmq

HERE = Path(__file__).parent


def fresh() -> QueueSpec:
    """A queue spec with a fresh name."""
    return QueueSpec.from_options(f"rq-{uuid.uuid4().hex[:12]}")


async def test_attributes_over_the_frame_are_refused_and_other_sends_go_on(
    backend: RabbitMQBackend,
) -> None:
    """A 200 KB attribute passes the 256 KiB size check but not AMQP's frame: it is refused
    with MessageTooLargeError naming frame_max, and 200 concurrent sends all succeed on a
    connection that never dropped."""
    spec = fresh()
    await backend.declare_queue(spec)
    assert backend.connection is not None
    transport = backend.connection.transport
    big = backend.send(spec.name, Outgoing(body=b"{}", attributes={"a": "x" * 200_000}))
    small = [backend.send(spec.name, Outgoing(body=b"{}")) for _ in range(200)]
    results = await asyncio.gather(big, *small, return_exceptions=True)
    assert isinstance(results[0], MessageTooLargeError)
    assert "131072-byte AMQP frame" in str(results[0])
    assert "frame_max" in str(results[0])
    assert [r for r in results[1:] if isinstance(r, BaseException)] == []
    assert backend.connection.transport is transport  # never reconnected
    await asyncio.sleep(0.1)
    assert (await backend.stats(spec.name)).depth == 200


async def test_a_message_whose_properties_cannot_be_encoded_is_refused(
    backend: RabbitMQBackend,
) -> None:
    """A message id over AMQP's 255 bytes is an InvalidMessageError before the wire, not an
    encoding failure in the connection's writer."""
    spec = fresh()
    await backend.declare_queue(spec)
    with pytest.raises(InvalidMessageError, match="cannot be encoded"):
        await backend.send(spec.name, Outgoing(body=b"x", message_id="i" * 300))
    await backend.send(spec.name, Outgoing(body=b"x"))  # the connection is fine


async def test_sends_during_a_connection_loss_raise_backend_unavailable(broker: str) -> None:
    """With the broker out of reach, send, publish-side stats and receive raise
    BackendUnavailableError, never the client library's exceptions; once it is back, sends
    work again, and the outage is logged as backend.disconnected / backend.reconnected."""
    async with (
        proxy_to(broker) as proxy,
        RabbitMQBackend.from_url(f"{proxy.url(broker)}&reconnect_interval=0.2") as backend,
    ):
        spec = fresh()
        await backend.declare_queue(spec)
        await backend.send(spec.name, Outgoing(body=b"before"))
        proxy.cut()
        await proxy.refuse()
        await asyncio.sleep(0.05)
        for call in (
            backend.send(spec.name, Outgoing(body=b"during")),
            backend.stats(spec.name),
        ):
            with pytest.raises(BackendUnavailableError, match="reconnects by itself"):
                await call
        await proxy.start()
        await send_once_reconnected(backend, spec.name)
        assert (await backend.stats(spec.name)).depth == 2


async def test_the_gateway_answers_503_with_retry_after_during_an_outage(broker: str) -> None:
    """An app route that sends while the broker is out of reach gets 503 and Retry-After."""
    app = App("outage")
    queue = f"rq-{uuid.uuid4().hex[:12]}"
    app.queue(queue)

    @app.route("/orders", methods=["POST"])
    async def order() -> dict[str, str]:
        return {"id": await app.send(queue, {"n": 1})}

    async with (
        proxy_to(broker) as proxy,
        TestApp(app, backend=f"{proxy.url(broker)}&reconnect_interval=0.2") as t,
    ):
        assert (await t.http.post("/orders")).status_code == 200
        proxy.cut()
        await proxy.refuse()
        await asyncio.sleep(0.05)
        r = await t.http.post("/orders")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        await proxy.start()
        for _ in range(100):
            if (await t.http.post("/orders")).status_code == 200:
                break
            await asyncio.sleep(0.05)


async def test_connection_losses_are_framework_events_and_reconnects_are_timed(
    broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A cut connection logs backend.disconnected with the reason and backend.reconnected with
    the outage; aio-pika's and aiormq's own records arrive as backend.client_log events of the
    framework's logger."""
    with caplog.at_level(logging.INFO):
        async with (
            proxy_to(broker) as proxy,
            RabbitMQBackend.from_url(f"{proxy.url(broker)}&reconnect_interval=0.3") as backend,
        ):
            assert backend.connection is not None
            back = asyncio.Event()
            backend.connection.reconnect_callbacks.add(lambda *_: back.set())
            await asyncio.sleep(0.4)  # past reconnect_interval since the connect
            cut_at = time.monotonic()
            proxy.cut()
            await asyncio.wait_for(back.wait(), 5)
            took = time.monotonic() - cut_at
    names = [r.msg for r in caplog.records]
    assert "backend.disconnected" in names
    assert "backend.reconnected" in names
    (reconnected,) = [r for r in caplog.records if r.msg == "backend.reconnected"]
    outage = reconnected.fields["outage_seconds"]  # type: ignore[attr-defined]
    assert 0 < outage <= took + 0.05
    assert took < 0.3  # up longer than reconnect_interval: reconnected at once
    assert "backend.client_log" in names
    # The libraries' loggers hand their records to the framework's handler and stop there
    # (pytest's own capture attaches to every non-propagating logger, so it sees both).
    for name in ("aio_pika", "aiormq"):
        library = logging.getLogger(name)
        assert library.propagate is False
        assert any(type(h).__name__ == "ClientLogs" for h in library.handlers)


async def test_sigterm_ends_framework_run_during_an_outage(broker: str) -> None:
    """``framework run`` whose broker went out of reach (reconnecting, every receive failing)
    stops on SIGTERM within a second or two, exit status 0, and logs the outage."""
    queue = f"rq-{uuid.uuid4().hex[:12]}"
    async with proxy_to(broker) as proxy:
        url = proxy.url(broker).replace("delete_on_exit=1", "delete_on_exit=0")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "framework.cli",
            "run",
            "worker_app:app",
            "--workers-only",
            "--backend",
            f"{url}&connect_timeout=1&reconnect_interval=0.2",
            "--grace",
            "1",
            cwd=HERE,
            env={**os.environ, "FW_MP_QUEUE": queue},
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        seen = b""
        try:
            while b"app.started" not in seen:
                line = await asyncio.wait_for(process.stderr.readline(), 30)
                assert line, seen.decode()
                seen += line
            proxy.cut()
            await proxy.refuse()
            while b"backend.disconnected" not in seen:
                line = await asyncio.wait_for(process.stderr.readline(), 10)
                assert line, seen.decode()
                seen += line
            await asyncio.sleep(0.5)  # reconnect attempts failing meanwhile
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            rest, _ = await asyncio.wait_for(process.communicate(), 15)
            took = time.monotonic() - started
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await delete_named(broker, [queue, f"{queue}-dlq"], [])
    log = (seen + (rest or b"")).decode()
    assert process.returncode == 0, log
    assert took < 4, f"took {took:.1f} s to stop\n{log}"
    assert "Traceback" not in log
