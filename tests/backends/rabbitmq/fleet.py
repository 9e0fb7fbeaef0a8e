"""Several real ``framework run --workers-only`` processes sharing fresh queues on the broker.

A ``Fleet`` starts worker processes of ``worker_app.py``, sends them messages, reads back
what each process handled (its results file), and in ``close`` kills every process it started
and deletes the queues it used. The workers connect without ``delete_on_exit``: with several
processes sharing queues, the first one to exit would delete the queues, and the messages the
others still hold, under them. The fleet deletes the queues itself once every worker is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from framework.backends.rabbitmq import RabbitMQBackend
from framework.backends.rabbitmq.topology import delay_milliseconds, delay_queue_name
from framework.messages import CONTENT_TYPE, Outgoing
from framework.registry import QueueSpec

__all__ = [
    "Fleet",
    "Tally",
    "Worker",
    "broker_url",
    "close_connections",
    "framework_cli",
    "open_fleet",
    "until",
    "until_async",
]

HERE = Path(__file__).parent
# Process start (import, connect, declare) takes about a second on this 2-core machine.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


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


@dataclass
class Worker:
    """One ``framework run --workers-only`` process and its results file."""

    name: str
    process: subprocess.Popen[bytes]
    results: Path
    log: Path
    connection_name: str

    def records(self, kind: str) -> list[str]:
        """Return the ids of this process's ``kind`` records (``S`` started, ``D`` done)."""
        if not self.results.exists():
            return []
        lines = self.results.read_text().splitlines()
        # A line cut short by kill -9 mid-write has fewer than three fields: not a record.
        return [p[1] for p in (line.split() for line in lines) if len(p) == 3 and p[0] == kind]


@dataclass(frozen=True)
class Tally:
    """What a test sent and what the workers handled."""

    sent: int
    handled: int
    duplicates: int
    lost: int
    per_worker: dict[str, int]

    def report(self, test: str, seconds: float) -> str:
        """One line for the test's output."""
        workers = " ".join(f"{k}={v}" for k, v in self.per_worker.items())
        return (
            f"\n{test}: sent={self.sent} handled={self.handled} "
            f"duplicates={self.duplicates} lost={self.lost} [{workers}] in {seconds:.1f}s"
        )


class Fleet:
    """Worker processes sharing one fresh queue (and its DLQ), and a backend to feed them."""

    def __init__(self, broker: str, folder: Path, **options: str) -> None:
        self.tag = uuid.uuid4().hex[:10]
        self.queue = f"mp-{self.tag}"
        self.dlq = f"{self.queue}-dlq"
        self.url = broker_url(broker)
        self.folder = folder
        self.options = options
        self.workers: list[Worker] = []
        self.backend = RabbitMQBackend.from_url(
            broker_url(broker, connection_name=f"fw-mp-{self.tag}-sender")
        )
        self._inspector: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def open(self) -> None:
        """Connect the sender and declare the queue and its DLQ as the workers will."""
        await self.backend.__aenter__()
        spec = QueueSpec.from_options(self.queue)
        await self.backend.declare_queue(spec)
        dlq = spec.dead_letter_spec()
        assert dlq is not None
        await self.backend.declare_queue(dlq)
        self._inspector = await aio_pika.connect(self.url)

    def start(self, name: str, **env: str) -> Worker:
        """Start a worker process named ``name`` (its connection is ``fw-mp-<tag>-<name>``)."""
        connection_name = f"fw-mp-{self.tag}-{name}"
        results = self.folder / f"{name}.records"
        log = self.folder / f"{name}.log"
        environment = {
            **os.environ,
            "FW_MP_QUEUE": self.queue,
            "FW_MP_RESULTS": str(results),
            **self.options,
            **env,
        }
        url = broker_url(self.url, connection_name=connection_name)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "framework.cli",
                    "run",
                    "worker_app:app",
                    "--workers-only",
                    "--backend",
                    url,
                    "--grace",
                    "2",
                    "--log-level",
                    "warning",
                ],
                cwd=HERE,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(name, process, results, log, connection_name)
        self.workers.append(worker)
        return worker

    def kill(self, worker: Worker) -> None:
        """``kill -9`` the worker: no shutdown code runs, the kernel closes its sockets."""
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=STOP_TIMEOUT)

    async def stop(self, worker: Worker) -> int:
        """SIGTERM the worker and wait for it to exit; return its exit status."""
        worker.process.send_signal(signal.SIGTERM)
        await until(lambda: worker.process.poll() is not None, STOP_TIMEOUT, f"{worker.name} stop")
        status = worker.process.returncode
        assert status is not None
        return status

    def logs(self) -> str:
        """Every worker's log, for a failure message."""
        return "\n".join(f"--- {w.name}\n{w.log.read_text()[-3000:]}" for w in self.workers)

    async def send(self, count: int, *, prefix: str = "job", **fields: object) -> list[str]:
        """Send ``count`` jobs with unique ids, 50 publishes in flight; return the ids."""
        ids = [f"{prefix}-{n}" for n in range(count)]
        for start in range(0, count, 50):
            await asyncio.gather(
                *(self.send_body(json.dumps({"id": i, **fields})) for i in ids[start : start + 50])
            )
        return ids

    async def send_body(self, body: str) -> str:
        """Send one JSON body to the fleet's queue."""
        message = Outgoing(body=body.encode(), headers={CONTENT_TYPE: "application/json"})
        return await self.backend.send(self.queue, message)

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
            for worker in self.workers:
                if worker.process.poll() is not None:
                    raise AssertionError(f"{worker.name} exited early:\n{self.logs()}")
            return await self.consumers() >= count

        await until_async(ready, START_TIMEOUT, f"{count} consumers")

    def handled(self) -> Counter[str]:
        """How many times each id was handled to the end, over every worker."""
        return Counter(i for w in self.workers for i in w.records("D"))

    def tally(self, sent: list[str]) -> Tally:
        """Count sent, handled (distinct ids), duplicates (extra handlings) and lost ids."""
        handled = self.handled()
        per_worker: Counter[str] = Counter()
        for worker in self.workers:
            per_worker[worker.name] += len(worker.records("D"))
        expected = set(sent)
        return Tally(
            sent=len(sent),
            handled=len(expected & handled.keys()),
            duplicates=sum(n - 1 for i, n in handled.items() if i in expected),
            lost=len(expected - handled.keys()),
            per_worker=dict(per_worker),
        )

    async def wait_until_handled(self, sent: list[str], within: float = 60.0) -> None:
        """Wait until every id in ``sent`` was handled at least once."""
        expected = set(sent)

        def done() -> bool:
            return expected <= self.handled().keys()

        await until(done, within, f"all {len(sent)} handled:\n{self.logs()}")

    async def close(self) -> None:
        """Kill every worker still running, delete the queues, disconnect."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait(timeout=STOP_TIMEOUT)
        try:
            if self._inspector is not None:
                channel = await self._inspector.channel()
                retry = float(self.options.get("FW_MP_RETRY_DELAY", "0.2"))
                delay = delay_queue_name(self.queue, delay_milliseconds(retry))
                for name in (self.queue, self.dlq, delay):
                    await channel.queue_delete(name)
                await self._inspector.close()
        finally:
            await self.backend.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def open_fleet(broker: str, folder: Path, **options: str) -> AsyncIterator[Fleet]:
    """A connected fleet; on the way out every worker is killed and the queues deleted."""
    fleet = Fleet(broker, folder, **options)
    try:
        await fleet.open()
        yield fleet
    finally:
        await fleet.close()


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``check`` every 50 ms until it is true; fail after ``within`` seconds."""

    async def check_async() -> bool:
        return check()

    await until_async(check_async, within, what)


async def until_async(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Poll the async ``check`` every 50 ms until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


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
