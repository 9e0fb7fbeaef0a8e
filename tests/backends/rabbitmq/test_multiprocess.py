"""Several real ``framework run --workers-only`` processes on the real broker lose nothing.

Each test sends messages with unique ids to a fresh queue that two worker processes share
(``worker_app.py``), counts what the workers handled (every handler appends its id to its
process's results file), prints sent / handled / duplicates / lost, and asserts that nothing
was lost: when the workers just share the work, when one is killed with ``kill -9`` holding
messages, and when the broker closes their connections under them. Duplicates are allowed
(at-least-once) and counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends.rabbitmq.fleet import (
    BrokerFleet,
    close_connections,
    job_ids,
    open_fleet,
    until,
)
from tests.fleet import Worker

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def fleet(broker: str, tmp_path: Path) -> AsyncIterator[BrokerFleet]:
    """Worker processes on a fresh queue; all killed, and the queue deleted, afterwards."""
    async with open_fleet(broker, tmp_path) as fleet:
        yield fleet


async def finish(fleet: BrokerFleet, sent: list[str], test: str, started: float) -> None:
    """Stop every running worker gracefully, check the queues are empty, print the tally."""
    for worker in fleet.workers:
        if worker.process.poll() is None:
            assert await fleet.stop(worker) == 0, fleet.logs()
    # Every worker is gone, so nothing is held: whatever was not acked would be ready again.
    assert await fleet.depth() == 0
    assert await fleet.depth(fleet.dlq) == 0
    tally = fleet.tally(sent)
    print(tally.report(test, time.monotonic() - started))  # noqa: T201
    assert tally.lost == 0


async def test_two_workers_share_the_queue(fleet: BrokerFleet) -> None:
    """600 messages over two processes: every one handled, each process handled some."""
    started = time.monotonic()
    a = fleet.start("a", FW_MP_SLEEP="0.005")
    b = fleet.start("b", FW_MP_SLEEP="0.005")
    await fleet.wait_for_consumers(2)
    sent = await fleet.send(job_ids(600))
    await fleet.wait_until_handled(sent)
    assert a.records("D"), fleet.logs()
    assert b.records("D"), fleet.logs()
    await finish(fleet, sent, "share", started)


async def test_kill_9_of_a_worker_holding_messages_loses_nothing(fleet: BrokerFleet) -> None:
    """A worker killed mid-handling: its unacknowledged messages go to the survivor and to
    its restarted replacement; every id is handled, the ones it held at least twice over."""
    started = time.monotonic()
    a = fleet.start("a", FW_MP_SLEEP="0.1")
    fleet.start("b", FW_MP_SLEEP="0.1")
    await fleet.wait_for_consumers(2)
    sent = await fleet.send(job_ids(400))
    await until(lambda: len(a.records("S")) >= 20, 30, "a to start handling")
    fleet.kill(a)
    held = set(a.ids("S")) - set(a.ids("D"))
    assert held, "a held no message in flight when killed"
    fleet.start("a2", FW_MP_SLEEP="0.1")
    await fleet.wait_until_handled(sent)
    survivors = {i for w in fleet.workers if w is not a for i in w.ids("D")}
    assert held <= survivors  # what a held was handled again elsewhere
    await finish(fleet, sent, f"kill-9 (a held {len(held)} in flight)", started)


async def test_connections_closed_by_the_broker_are_survived(fleet: BrokerFleet) -> None:
    """The broker closes both workers' connections while they hold messages: they reconnect,
    keep consuming, and nothing is lost."""
    started = time.monotonic()
    a = fleet.start("a", FW_MP_SLEEP="0.1")
    b = fleet.start("b", FW_MP_SLEEP="0.1")
    await fleet.wait_for_consumers(2)
    sent = await fleet.send(job_ids(600))
    await until(
        lambda: len(a.records("S")) >= 10 and len(b.records("S")) >= 10, 30, "both to start"
    )
    closing = time.monotonic()
    await asyncio.to_thread(close_connections, [fleet.connection_name(a), fleet.connection_name(b)])
    closed = time.monotonic() - closing
    await fleet.wait_until_handled(sent)
    # The survivor of a forced close may finish the whole backlog before the other is back
    # (aio-pika waits out `reconnect_interval` after a recent connect): wait for both to
    # reconnect, then give them new work, which each must take a share of.
    for worker in (a, b):
        await until(
            lambda w=worker: "backend.reconnected" in w.log.read_text(),  # type: ignore[misc]
            30,
            f"{worker.name} to reconnect",
        )
    back = time.monotonic() - closing
    before = {w.name: len(w.records("D")) for w in (a, b)}
    more = await fleet.send(job_ids(200, prefix="after"))
    await fleet.wait_until_handled(more)
    for worker in (a, b):
        # Each process handled messages after its connection was closed: it came back.
        assert len(worker.records("D")) > before[worker.name], fleet.logs()
    sent += more
    await finish(
        fleet,
        sent,
        f"close-connections (rabbitmqctl took {closed:.1f}s, both back {back:.1f}s after)",
        started,
    )


def _starts(worker: Worker) -> list[tuple[str, int]]:
    """The (id, receive count) of every handler start a worker recorded."""
    return [(r.id, r.receive_count) for r in worker.records("S")]


@pytest.mark.xfail(
    strict=False,
    reason=(
        "the broker-side residual left after the stop waits for its deliveries to stand "
        "still (docs/backends/rabbitmq.md, 'Receive count'): a message published within "
        "the cancel's round trip can come back counted once more (RabbitMQ 3.10.8)"
    ),
)
async def test_a_graceful_stop_under_load_counts_only_receipts_handlers_saw(
    fleet: BrokerFleet,
) -> None:
    """SIGTERM one of two busy workers, three times over: every message the survivor starts
    with a count above 1 was started before (by a stopped worker); none comes back counted for
    a delivery that a stopping process had only buffered."""
    started = time.monotonic()
    b = fleet.start("b", FW_MP_SLEEP="0.05", FW_MP_CONCURRENCY="20")
    stopped = [fleet.start(f"a{n}", FW_MP_SLEEP="0.05", FW_MP_CONCURRENCY="20") for n in range(3)]
    await fleet.wait_for_consumers(4)
    sent = await fleet.send(job_ids(900))
    for a in stopped:
        await until(lambda a=a: len(a.records("S")) >= 20, 30, f"{a.name} to handle")  # type: ignore[misc]
        assert await fleet.stop(a) == 0, fleet.logs()
    await fleet.wait_until_handled(sent)
    seen_before: set[str] = set()
    for worker in stopped:
        seen_before |= {i for i, _ in _starts(worker)}
    overcounted = [(i, count) for i, count in _starts(b) if count > 1 and i not in seen_before]
    assert overcounted == [], fleet.logs()
    await finish(fleet, sent, "sigterm under load, 3 rounds", started)
