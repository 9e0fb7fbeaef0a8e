"""Connecting is bounded: a port that accepts TCP and never answers AMQP is a clear error.

These need no broker: the "broker" is a loopback server that accepts and says nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from framework import App
from framework.backends.rabbitmq import RabbitMQBackend
from framework.exceptions import BackendUnavailableError

from .proxy import silent_server

HERE = Path(__file__).parent


def _connection_tasks() -> list[asyncio.Task[object]]:
    """aio-pika's tasks still running: a reconnect loop left behind keeps a process alive."""
    return [
        t
        for t in asyncio.all_tasks()
        if "connection_factory" in repr(t.get_coro()) or "Connection.connect" in repr(t.get_coro())
    ]


async def test_a_silent_port_fails_within_connect_timeout_and_leaves_no_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """BackendUnavailableError after connect_timeout, naming the wait; logs say what it waits
    for; no aio-pika reconnect loop runs on behind the error."""
    async with silent_server() as server:
        url = f"amqp://guest:secret@127.0.0.1:{server.port}/?connect_timeout=0.3"
        started = time.monotonic()
        with (
            caplog.at_level(logging.INFO, logger="framework"),
            pytest.raises(BackendUnavailableError, match=r"AMQP handshake within 0\.3 s"),
        ):
            async with RabbitMQBackend.from_url(url):
                pass
        assert time.monotonic() - started < 2
        assert server.accepted == 1
        await asyncio.sleep(0.4)
        assert _connection_tasks() == []
        assert server.accepted == 1  # no second attempt
    (connecting,) = [r for r in caplog.records if r.getMessage() == "backend.connecting"]
    assert connecting.fields["waiting_for"] == "TCP connect and AMQP handshake"  # type: ignore[attr-defined]
    assert "secret" not in caplog.text


async def test_app_run_raises_for_a_silent_broker() -> None:
    """``async with app.run(url)`` raises BackendUnavailableError instead of hanging."""
    app = App("silent")
    app.queue("orders")
    async with silent_server() as server:
        url = f"amqp://guest:guest@127.0.0.1:{server.port}/?connect_timeout=0.3"
        with pytest.raises(BackendUnavailableError, match="connect_timeout"):
            async with app.run(url):
                pass


async def test_a_refused_port_is_backend_unavailable() -> None:
    """Nothing listening: BackendUnavailableError at once, not aiormq's exception."""
    from tests.conftest import free_port

    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/?connect_timeout=1"
    with pytest.raises(BackendUnavailableError, match="cannot connect to RabbitMQ"):
        async with RabbitMQBackend.from_url(url):
            pass


async def test_sigterm_ends_framework_run_while_it_waits_for_a_silent_broker() -> None:
    """``framework run`` against a silent port logs what it waits for, and SIGTERM ends it
    at once, whatever the backend was doing."""
    async with silent_server() as server:
        url = f"amqp://guest:guest@127.0.0.1:{server.port}/?connect_timeout=30"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "framework.cli",
            "run",
            "worker_app:app",
            "--workers-only",
            "--backend",
            url,
            cwd=HERE,
            env={**os.environ, "FW_MP_QUEUE": "silent"},
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        try:
            seen = b""
            while b"backend.connecting" not in seen:
                line = await asyncio.wait_for(process.stderr.readline(), 20)
                assert line, seen.decode()
                seen += line
            assert b"waiting_for='TCP connect and AMQP handshake'" in seen
            assert b"guest:guest" not in seen
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            status = await asyncio.wait_for(process.wait(), 10)
            took = time.monotonic() - started
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert status == 0
    assert took < 2, f"took {took:.1f} s to stop"
