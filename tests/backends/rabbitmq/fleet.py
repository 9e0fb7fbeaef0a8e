"""Several real ``framework run --workers-only`` processes sharing fresh queues on the broker.

A ``BrokerFleet`` (a ``tests/fleet.py`` fleet on the broker) starts worker processes of
``worker_app.py``, sends them messages, reads back what each process handled (its results
file), and in ``close`` kills every process it started and deletes the queues it used. The
workers connect without ``delete_on_exit``: with several processes sharing queues, the first
one to exit would delete the queues, and the messages the others still hold, under them. The
fleet deletes the queues itself once every worker is gone.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from framework.backends.rabbitmq.topology import delay_milliseconds, delay_queue_name
from framework.registry import QueueSpec
from tests import fleet as shared
from tests.fleet import START_TIMEOUT, Fleet, Worker, job_ids, until, until_async

__all__ = [
    "BrokerFleet",
    "broker_url",
    "close_connections",
    "framework_cli",
    "job_ids",
    "open_fleet",
    "until",
    "until_async",
]

HERE = Path(__file__).parent


def broker_url(broker: str, **options: str) -> str:
    """Return ``broker`` without ``delete_on_exit`` and with ``options`` set."""
    parts = urlsplit(broker)
    query = {k: v for k, v in parse_qsl(parts.query) if k != "delete_on_exit"}
    query.update(options)
    return urlunsplit(parts._replace(query=urlencode(query)))


def framework_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``framework`` command in a subprocess and capture its output.

    Raises:
        subprocess.TimeoutExpired: If it runs longer than ``timeout`` (it is killed then).
    """
    return subprocess.run(
        [sys.executable, "-m", "framework.cli", *args],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


class BrokerFleet(Fleet):
    """Worker processes sharing one fresh queue (and its DLQ) on the broker.

    Each worker's connection is named ``fw-mp-<tag>-<name>`` (``connection_name``); the fleet
    asks the broker for queue depths and consumers, and deletes its queues in ``close``.
    """

    def __init__(self, broker: str, folder: Path, **options: str) -> None:
        self.tag = uuid.uuid4().hex[:10]
        super().__init__(
            broker_url(broker),
            folder,
            QueueSpec.from_options(f"mp-{self.tag}"),
            app_dir=HERE,
            prefix="FW_MP",
            sender_url=broker_url(broker, connection_name=f"fw-mp-{self.tag}-sender"),
            log_level="warning",
            in_flight=50,
            handle_within=60.0,
            **options,
        )
        self._inspector: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def open(self) -> None:
        """Connect the sender, declare the queue and its DLQ, connect the inspector."""
        await super().open()
        self._inspector = await aio_pika.connect(self.url)

    def connection_name(self, worker: Worker) -> str:
        """The name ``worker``'s broker connection gives itself."""
        return f"fw-mp-{self.tag}-{worker.name}"

    def worker_url(self, name: str) -> str:
        """The broker URL of worker ``name``, its connection named ``fw-mp-<tag>-<name>``."""
        return broker_url(self.url, connection_name=f"fw-mp-{self.tag}-{name}")

    async def _queue_info(self, name: str) -> tuple[int, int]:
        """Return (ready messages, consumers) of queue ``name`` (a passive declaration)."""
        assert self._inspector is not None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._inspector.channel()
        queue = await self._channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)

    async def depth(self, name: str | None = None) -> int:
        """Ready messages in ``name`` (default: the fleet's queue)."""
        return (await self._queue_info(name or self.queue))[0]

    async def consumers(self) -> int:
        """Consumers on the fleet's queue."""
        return (await self._queue_info(self.queue))[1]

    async def wait_for_consumers(self, count: int) -> None:
        """Wait until ``count`` worker processes consume the queue."""

        async def ready() -> bool:
            self.check_running()
            return await self.consumers() >= count

        await until_async(ready, START_TIMEOUT, f"{count} consumers")

    async def delete_resources(self) -> None:
        """Delete the queue, its DLQ and its retry-delay queue; disconnect the inspector."""
        if self._inspector is None:
            return
        channel = await self._inspector.channel()
        retry = float(self.options.get("FW_MP_RETRY_DELAY", "0.2"))
        delay = delay_queue_name(self.queue, delay_milliseconds(retry))
        for name in (self.queue, self.dlq, delay):
            await channel.queue_delete(name)
        await self._inspector.close()


@contextlib.asynccontextmanager
async def open_fleet(broker: str, folder: Path, **options: str) -> AsyncIterator[BrokerFleet]:
    """A connected fleet; on the way out every worker is killed and the queues deleted."""
    async with shared.open_fleet(BrokerFleet(broker, folder, **options)) as fleet:
        yield fleet


def close_connections(names: list[str]) -> None:
    """Close the broker connections whose clients named themselves ``names``, and only those.

    Like ``rabbitmqctl close_all_connections``, as the workers see it, without touching the
    connections of other users of the shared broker.
    """
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    pids = [
        line.split("\t")[0]
        for line in listing.splitlines()
        if any(f'"{name}"' in line for name in names)
    ]
    assert len(pids) == len(names), listing
    closing = [
        subprocess.Popen(
            ["rabbitmqctl", "close_connection", pid, "test: connection closed on purpose"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]
    for process in closing:
        assert process.wait(timeout=30) == 0
