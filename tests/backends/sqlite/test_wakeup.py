"""Waking receivers without busy polling: at once in-process, within milliseconds across
processes, and an idle worker costs next to no CPU. Each test prints what it measured (the
figures in docs/backends/sqlite.md come from these)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

from framework.backends.sqlite import SQLiteBackend
from framework.backends.sqlite.wakeup import POLL_MAX
from framework.messages import Outgoing
from framework.registry import QueueSpec
from tests.backends.sqlite.fleet import HERE, open_fleet, until


async def test_a_send_wakes_a_waiting_receiver_of_the_same_process_at_once(
    tmp_path: Path,
) -> None:
    """A receive waiting for 5 s returns within milliseconds of a send in its process."""
    async with SQLiteBackend.from_url(f"sqlite:///{tmp_path / 'w.db'}") as backend:
        await backend.declare_queue(QueueSpec.from_options("q"))
        latencies = []
        for _ in range(20):
            waiting = asyncio.create_task(backend.receive("q", limit=1, wait=5))
            await asyncio.sleep(0.01)
            await backend.send("q", Outgoing(body=b"x"))
            sent = time.perf_counter()
            [delivery] = await waiting
            latencies.append(time.perf_counter() - sent)
            await backend.ack(delivery)
        assert backend._watcher is not None
    median, worst = statistics.median(latencies) * 1000, max(latencies) * 1000
    print(f"\nin-process wake-up: median {median:.2f} ms, max {worst:.2f} ms")  # noqa: T201
    assert worst < 50


async def test_a_send_wakes_a_receiver_in_another_process_within_the_poll_limit(
    tmp_path: Path,
) -> None:
    """A receiver in another process, idle long enough for its watcher to back off fully,
    gets a message within POLL_MAX (plus scheduling) of its commit."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    async with SQLiteBackend.from_url(url) as backend:
        await backend.declare_queue(QueueSpec.from_options("q"))
        listener = subprocess.Popen(  # noqa: ASYNC220  # started once, read in a thread
            [sys.executable, "listener.py", url, "q"],
            cwd=HERE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(listener.stdout.readline), 20)
            assert line.strip() == "ready"
            latencies = []
            for n in range(15):
                # Idle for 0.2 s: the watcher has backed off to POLL_MAX by the next send.
                await asyncio.sleep(0.2)
                await backend.send("q", Outgoing(body=str(n).encode()))
                sent = time.monotonic_ns()
                got = await asyncio.wait_for(asyncio.to_thread(listener.stdout.readline), 5)
                body, at = got.split()
                assert body == str(n)
                latencies.append((int(at) - sent) / 1e6)
        finally:
            listener.kill()
            listener.wait(timeout=10)
            listener.stdout.close()
    median = statistics.median(latencies)
    worst = max(latencies)
    print(  # noqa: T201
        f"\ncross-process wake-up after 0.2 s idle: median {median:.1f} ms, "
        f"max {worst:.1f} ms (POLL_MAX {POLL_MAX * 1000:.0f} ms)"
    )
    assert median < POLL_MAX * 1000 + 20
    assert worst < POLL_MAX * 1000 + 100


def _cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid``, to the nanosecond (utime/stime count whole ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


async def test_an_idle_worker_process_uses_next_to_no_cpu(tmp_path: Path) -> None:
    """A `framework run --workers-only` process with nothing to do uses under 1% of a core."""
    async with open_fleet(tmp_path) as fleet:
        worker = fleet.start("idle")
        await fleet.send(["warm-up"])
        await until(lambda: bool(worker.records("D")), 20, f"the warm-up:\n{fleet.logs()}")
        await asyncio.sleep(0.5)
        before, started = _cpu_seconds(worker.process.pid), time.monotonic()
        await asyncio.sleep(3)
        used = _cpu_seconds(worker.process.pid) - before
        share = used / (time.monotonic() - started)
    print(f"\nidle worker: {used * 1000:.0f} ms of CPU in 3 s ({share:.2%} of a core)")  # noqa: T201
    assert share < 0.01
