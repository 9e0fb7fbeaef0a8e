"""Real ``framework run --workers-only`` processes sharing one backend, and their records.

A ``Fleet`` is parametrised by the backend URL the workers share and by the folder of the
``worker_app.py`` they run. It declares the fleet's queue and its DLQ, starts worker processes,
sends them jobs, reads back what each process recorded, and in ``close`` kills every process it
started. ``Tally`` counts sent, handled, duplicates and lost.

A worker app appends one line per event to its results file (``<PREFIX>_RESULTS``), with
``O_APPEND`` so that lines never interleave and survive ``kill -9``:
``S <id> <group> <receive count> <monotonic ns>`` when a handler starts, ``D ...`` when done.
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
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from framework.backends import from_url
from framework.messages import CONTENT_TYPE, Outgoing
from framework.registry import QueueSpec

__all__ = [
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Fleet",
    "Record",
    "Tally",
    "Worker",
    "job_ids",
    "open_fleet",
    "until",
    "until_async",
]

# Process start (import, connect, declare) takes about a second on this 2-core machine.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Record:
    """One line of a worker's results file."""

    kind: str
    id: str
    group: str
    receive_count: int
    at: int  # CLOCK_MONOTONIC nanoseconds, one clock for every process


@dataclass
class Worker:
    """One ``framework run --workers-only`` process and its results file."""

    name: str
    process: subprocess.Popen[bytes]
    results: Path
    log: Path

    def records(self, kind: str | None = None) -> list[Record]:
        """Return this process's records (of ``kind``: ``S`` started, ``D`` done)."""
        if not self.results.exists():
            return []
        out = []
        for line in self.results.read_text().splitlines():
            parts = line.split()
            if len(parts) != 5 or not parts[4].isdigit():
                continue  # a line cut short by kill -9 mid-write is not a record
            if kind is None or parts[0] == kind:
                out.append(Record(parts[0], parts[1], parts[2], int(parts[3]), int(parts[4])))
        return out

    def ids(self, kind: str) -> list[str]:
        """Return the ids of this process's ``kind`` records, in the order it wrote them."""
        return [record.id for record in self.records(kind)]


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


def job_ids(count: int, prefix: str = "job") -> list[str]:
    """Return ``count`` unique job ids ``<prefix>-<n>``."""
    return [f"{prefix}-{n}" for n in range(count)]


class Fleet:
    """Worker processes sharing one backend URL and one fresh queue, and a backend to feed them.

    Args:
        url: The backend URL the workers run on.
        folder: Where the results files and logs go.
        spec: The queue the workers consume (its DLQ is declared too).
        app_dir: The folder of the ``worker_app.py`` the workers run.
        prefix: The worker app's environment prefix (``<prefix>_QUEUE``, ``<prefix>_RESULTS``).
        sender_url: The URL of the sender's backend (default: ``url``).
        log_level: The workers' ``--log-level``.
        in_flight: How many sends ``send`` keeps in flight (FIFO sends go one at a time).
        handle_within: How long ``wait_until_handled`` waits, in seconds, by default.
        options: More environment for every worker (the worker app's options).
    """

    def __init__(
        self,
        url: str,
        folder: Path,
        spec: QueueSpec,
        *,
        app_dir: Path,
        prefix: str,
        sender_url: str | None = None,
        log_level: str = "info",
        in_flight: int = 1,
        handle_within: float = 25.0,
        **options: str,
    ) -> None:
        self.url = url
        self.folder = folder
        self.spec = spec
        self.queue = spec.name
        dlq = spec.dead_letter_spec()
        assert dlq is not None, f"{spec.name} has no dead-letter queue"
        self.dlq_spec = dlq
        self.dlq = dlq.name
        self.app_dir = app_dir
        self.prefix = prefix
        self.log_level = log_level
        self.in_flight = in_flight
        self.handle_within = handle_within
        self.options = options
        self.workers: list[Worker] = []
        self.backend = from_url(sender_url or url)

    async def open(self) -> None:
        """Open the sender's backend and declare the queue and its DLQ as the workers will."""
        await self.backend.__aenter__()
        await self.backend.declare_queue(self.spec)
        await self.backend.declare_queue(self.dlq_spec)

    def worker_url(self, name: str) -> str:
        """The backend URL worker ``name`` runs on."""
        return self.url

    def start(self, name: str, **env: str) -> Worker:
        """Start a worker process named ``name`` on the fleet's backend and queue."""
        results = self.folder / f"{name}.records"
        log = self.folder / f"{name}.log"
        environment = {
            **os.environ,
            f"{self.prefix}_QUEUE": self.queue,
            f"{self.prefix}_RESULTS": str(results),
            **self.options,
            **env,
        }
        command = [sys.executable, "-m", "framework.cli", "run", "worker_app:app"]
        command += ["--workers-only", "--backend", self.worker_url(name), "--grace", "2"]
        command += ["--log-level", self.log_level]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=self.app_dir, env=environment, stdout=out, stderr=subprocess.STDOUT
            )
        worker = Worker(name, process, results, log)
        self.workers.append(worker)
        return worker

    def check_running(self) -> None:
        """Fail if a worker exited before it was stopped."""
        for worker in self.workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"{worker.name} exited early:\n{self.logs()}")

    async def wait_started(self) -> None:
        """Wait until every worker logged ``app.started`` (its signal handlers are set)."""

        def started() -> bool:
            self.check_running()
            return all("app.started" in w.log.read_text() for w in self.workers)

        await until(started, START_TIMEOUT, f"the workers to start:\n{self.logs()}")

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

    async def send_body(
        self, body: str, *, group: str | None = None, deduplication_id: str | None = None
    ) -> str:
        """Send one JSON body to the fleet's queue; return the message id."""
        message = Outgoing(
            body=body.encode(),
            headers={CONTENT_TYPE: "application/json"},
            group_id=group,
            deduplication_id=deduplication_id,
        )
        return await self.backend.send(self.queue, message)

    async def send(
        self, ids: list[str], group: Callable[[int], str] | None = None, **fields: object
    ) -> list[str]:
        """Send one job per id, ``in_flight`` at a time; return the ids.

        FIFO jobs (in group ``group(index)``, deduplicated by id) go one at a time, in order.
        """
        if group is not None:
            for n, job in enumerate(ids):
                body = json.dumps({"id": job, **fields})
                await self.send_body(body, group=group(n), deduplication_id=job)
            return ids
        for start in range(0, len(ids), self.in_flight):
            batch = ids[start : start + self.in_flight]
            await asyncio.gather(*(self.send_body(json.dumps({"id": i, **fields})) for i in batch))
        return ids

    def handled(self) -> Counter[str]:
        """How many times each id was handled to the end, over every worker."""
        return Counter(i for w in self.workers for i in w.ids("D"))

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

    async def wait_until_handled(self, sent: list[str], within: float | None = None) -> None:
        """Wait until every id in ``sent`` was handled at least once.

        Raises:
            AssertionError: If a worker exits with a failure status meanwhile, or after
                ``within`` seconds (default: the fleet's ``handle_within``).
        """
        expected = set(sent)

        def done() -> bool:
            for worker in self.workers:
                code = worker.process.poll()
                if code not in (None, -signal.SIGKILL, 0):
                    raise AssertionError(f"{worker.name} exited with {code}:\n{self.logs()}")
            return expected <= self.handled().keys()

        seconds = self.handle_within if within is None else within
        await until(done, seconds, f"all {len(sent)} handled:\n{self.logs()}")

    async def delete_resources(self) -> None:
        """Delete what the fleet declared on the backend, once every worker is gone."""

    async def close(self) -> None:
        """Kill every worker still running, delete the fleet's resources, close the sender."""
        try:
            for worker in self.workers:
                if worker.process.poll() is None:
                    worker.process.kill()
                worker.process.wait(timeout=STOP_TIMEOUT)
            await self.delete_resources()
        finally:
            await self.backend.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def open_fleet(fleet: Fleet) -> AsyncIterator[Fleet]:
    """``fleet``, open; on the way out every worker is killed and its resources deleted."""
    try:
        await fleet.open()
        yield fleet
    finally:
        await fleet.close()


async def until(
    check: Callable[[], bool], within: float, what: str, *, every: float = 0.02
) -> None:
    """Poll ``check`` every ``every`` seconds until it is true; fail after ``within`` seconds."""

    async def check_async() -> bool:
        return check()

    await until_async(check_async, within, what, every=every)


async def until_async(
    check: Callable[[], Awaitable[bool]], within: float, what: str, *, every: float = 0.05
) -> None:
    """Poll the async ``check`` every ``every`` seconds (a broker question each time, so less
    often than ``until``) until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(every)
