"""Real ``framework run --workers-only`` processes sharing one SQLite file, and their records.

A ``Fleet`` owns a fresh file and queue, starts worker processes of ``worker_app.py`` on it,
sends them jobs straight into the file, reads back what each process recorded, and in
``close`` kills every process it started. ``Tally`` counts sent, handled, duplicates, lost.
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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from framework.backends.sqlite import SQLiteBackend
from framework.messages import CONTENT_TYPE, Outgoing
from framework.registry import QueueSpec

__all__ = ["Fleet", "Record", "Tally", "Worker", "open_fleet", "until"]

HERE = Path(__file__).parent
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
    """Worker processes sharing one fresh SQLite file and queue, and a backend to feed them."""

    def __init__(self, folder: Path, *, fifo: bool = False, **options: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.queue = f"sq-{tag}.fifo" if fifo else f"sq-{tag}"
        self.path = folder / "shared.db"
        self.url = f"sqlite:///{self.path}"
        self.folder = folder
        self.options = options
        self.workers: list[Worker] = []
        self.backend = SQLiteBackend.from_url(self.url)
        self.spec = QueueSpec.from_options(
            self.queue, visibility_timeout=float(options.get("FW_SQ_VISIBILITY", "5"))
        )

    async def open(self) -> None:
        """Create the file, the queue and its DLQ as the workers will."""
        await self.backend.__aenter__()
        await self.backend.declare_queue(self.spec)
        dlq = self.spec.dead_letter_spec()
        assert dlq is not None
        await self.backend.declare_queue(dlq)

    def start(self, name: str, **env: str) -> Worker:
        """Start a worker process named ``name`` on the fleet's file."""
        results = self.folder / f"{name}.records"
        log = self.folder / f"{name}.log"
        environment = {
            **os.environ,
            "FW_SQ_QUEUE": self.queue,
            "FW_SQ_RESULTS": str(results),
            **self.options,
            **env,
        }
        command = [sys.executable, "-m", "framework.cli", "run", "worker_app:app"]
        command += ["--workers-only", "--backend", self.url, "--grace", "2"]
        command += ["--log-level", "info"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=HERE, env=environment, stdout=out, stderr=subprocess.STDOUT
            )
        worker = Worker(name, process, results, log)
        self.workers.append(worker)
        return worker

    async def wait_started(self) -> None:
        """Wait until every worker logged ``app.started`` (its signal handlers are set)."""

        def started() -> bool:
            for worker in self.workers:
                if worker.process.poll() is not None:
                    raise AssertionError(f"{worker.name} exited early:\n{self.logs()}")
            return all("app.started" in w.log.read_text() for w in self.workers)

        await until(started, START_TIMEOUT, f"the workers to start:\n{self.logs()}")

    def kill(self, worker: Worker) -> None:
        """``kill -9`` the worker: no shutdown code runs."""
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

    async def send(self, ids: list[str], group: Callable[[int], str] | None = None) -> None:
        """Send one job per id, in order (FIFO jobs in group ``group(index)``)."""
        for n, job in enumerate(ids):
            body = json.dumps({"id": job}).encode()
            await self.backend.send(
                self.queue,
                Outgoing(
                    body=body,
                    headers={CONTENT_TYPE: "application/json"},
                    group_id=group(n) if group is not None else None,
                    deduplication_id=job if group is not None else None,
                ),
            )

    def handled(self) -> Counter[str]:
        """How many times each id was handled to the end, over every worker."""
        return Counter(r.id for w in self.workers for r in w.records("D"))

    def tally(self, sent: list[str]) -> Tally:
        """Count sent, handled (distinct ids), duplicates (extra handlings) and lost ids."""
        handled = self.handled()
        expected = set(sent)
        return Tally(
            sent=len(sent),
            handled=len(expected & handled.keys()),
            duplicates=sum(n - 1 for i, n in handled.items() if i in expected),
            lost=len(expected - handled.keys()),
            per_worker={w.name: len(w.records("D")) for w in self.workers},
        )

    async def wait_until_handled(self, sent: list[str], within: float = 25.0) -> None:
        """Wait until every id in ``sent`` was handled at least once."""
        expected = set(sent)

        def done() -> bool:
            for worker in self.workers:
                code = worker.process.poll()
                if code not in (None, -signal.SIGKILL, 0):
                    raise AssertionError(f"{worker.name} exited with {code}:\n{self.logs()}")
            return expected <= self.handled().keys()

        await until(done, within, f"all {len(sent)} handled:\n{self.logs()}")

    async def close(self) -> None:
        """Kill every worker still running and close the sender's backend."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait(timeout=STOP_TIMEOUT)
        await self.backend.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def open_fleet(folder: Path, **options: str) -> AsyncIterator[Fleet]:
    """An open fleet; on the way out every worker is killed."""
    fifo = options.pop("fifo", "") == "1"
    fleet = Fleet(folder, fifo=fifo, **options)
    try:
        await fleet.open()
        yield fleet
    finally:
        await fleet.close()


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``check`` every 20 ms until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)
