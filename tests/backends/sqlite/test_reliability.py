"""``sqlite://`` loses nothing: real worker processes killed, restarted, sharing one file.

Each test counts what it sent and what the workers handled (every handler appends a record to
its process's results file), prints sent / handled / duplicates / lost, and asserts lost == 0;
duplicates == 0 too where no process was killed mid-handling (at-least-once allows them only
then).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from framework.backends.sqlite import SQLiteBackend
from tests.backends.sqlite.fleet import HERE, Fleet, open_fleet, until


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """Worker processes on a fresh file and queue; all killed afterwards."""
    async with open_fleet(tmp_path, FW_SQ_VISIBILITY="2", FW_SQ_SLEEP="0.3") as fleet:
        yield fleet


async def finish(fleet: Fleet, sent: list[str], test: str, started: float) -> int:
    """Stop every running worker, check nothing is left in the file; print, return duplicates."""
    for worker in fleet.workers:
        if worker.process.poll() is None:
            assert await fleet.stop(worker) == 0, fleet.logs()
    stats = await fleet.backend.stats(fleet.queue)
    assert (stats.depth, stats.in_flight, stats.delayed) == (0, 0, 0), stats
    tally = fleet.tally(sent)
    print(tally.report(test, time.monotonic() - started))  # noqa: T201
    assert tally.lost == 0
    return tally.duplicates


async def test_kill_9_of_a_worker_holding_messages_loses_nothing(fleet: Fleet) -> None:
    """A worker killed with messages in flight: its replacement gets them once their leases
    end, with the receive count bumped; every id is handled."""
    started = time.monotonic()
    sent = [f"job-{n}" for n in range(60)]
    a = fleet.start("a")
    await fleet.send(sent)

    def holding() -> bool:
        done = len(a.records("D"))
        return done >= 10 and len(a.records("S")) > done

    await until(holding, 20, f"a to finish 10 and hold more:\n{fleet.logs()}")
    fleet.kill(a)
    done = {r.id for r in a.records("D")}
    held = {r.id for r in a.records("S")} - done
    assert held, "the worker held nothing when killed"
    b = fleet.start("b")
    await fleet.wait_until_handled(sent)
    again = {r.id: r.receive_count for r in b.records("S") if r.id in held}
    assert set(again) == held
    assert all(count >= 2 for count in again.values()), again
    await finish(fleet, sent, "kill -9", started)
    # Only a message done but not yet acked at the kill can run twice.
    twice = {job for job, count in fleet.handled().items() if count > 1}
    assert twice <= done, twice - done


async def test_restart_keeps_queued_delayed_and_dead_lettered_messages(tmp_path: Path) -> None:
    """A process killed with queued, delayed, dead-lettered and held messages in the file:
    after it, the file still has them all; a worker handles them and a redrive brings the
    dead letters back."""
    started = time.monotonic()
    async with open_fleet(tmp_path, FW_SQ_VISIBILITY="1") as fleet:
        env = {**os.environ, "FW_SQ_COUNTS": "20,10,5,5"}
        producer = subprocess.Popen(  # noqa: ASYNC220  # started once, never waited on here
            [sys.executable, "producer.py", fleet.url, fleet.queue],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert producer.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(producer.stdout.readline), 20)
            assert line.strip() == "ready"
        finally:
            producer.kill()
            producer.wait(timeout=10)
            if producer.stdout is not None:
                producer.stdout.close()
        assert producer.returncode == -9
        # A new connection, as after a restart: everything is in the file.
        async with SQLiteBackend.from_url(fleet.url) as restarted:
            stats = await restarted.stats(fleet.queue)
        assert stats.depth + stats.in_flight == 25  # queued + held (held until 1 s passed)
        assert stats.delayed == 10
        assert stats.dead_letters == 5
        worker = fleet.start("w")
        sent = [
            f"{kind}-{n}"
            for kind, count in (("queued", 20), ("delayed", 10), ("held", 5))
            for n in range(count)
        ]
        await fleet.wait_until_handled(sent)
        redrive = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "framework.cli",
                "redrive",
                f"{fleet.queue}-dlq",
                "--backend",
                fleet.url,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert redrive.returncode == 0, redrive.stderr
        assert "moved 5 messages" in redrive.stdout
        sent += [f"dead-{n}" for n in range(5)]
        await fleet.wait_until_handled(sent)
        held = [r for r in worker.records("S") if r.id.startswith("held-")]
        assert all(r.receive_count == 2 for r in held), held
        duplicates = await finish(fleet, sent, "restart", started)
        assert duplicates == 0
        assert (await fleet.backend.stats(f"{fleet.queue}-dlq")).depth == 0


@pytest.mark.parametrize("processes", [2, 4])
async def test_processes_sharing_a_file_keep_fifo_group_order(
    tmp_path: Path, processes: int
) -> None:
    """Several processes on one FIFO queue: per group, messages are handled in send order,
    one at a time, each exactly once, and the processes share the work."""
    started = time.monotonic()
    groups, per_group = 8, 25
    async with open_fleet(
        tmp_path, fifo="1", FW_SQ_VISIBILITY="5", FW_SQ_SLEEP="0.002", FW_SQ_CONCURRENCY="4"
    ) as fleet:
        for n in range(processes):
            fleet.start(f"p{n}")
        await fleet.wait_started()
        sent = [f"g{n % groups}-{n // groups}" for n in range(groups * per_group)]
        await fleet.send(sent, group=lambda n: f"g{n % groups}")
        await fleet.wait_until_handled(sent)
        duplicates = await finish(fleet, sent, f"fifo x{processes}", started)
        assert duplicates == 0
        by_group: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
        for worker in fleet.workers:
            for record in worker.records():
                by_group[record.group].append((record.at, record.kind, record.id))
        assert len(by_group) == groups
        for group, events in by_group.items():
            events.sort()
            expected = [(kind, f"{group}-{i}") for i in range(per_group) for kind in ("S", "D")]
            # Start, done, start, done ...: in order, and never two of a group in flight.
            assert [(kind, job) for _, kind, job in events] == expected, group
        busy = [w.name for w in fleet.workers if w.records("D")]
        assert len(busy) >= 2, f"only {busy} handled anything"
