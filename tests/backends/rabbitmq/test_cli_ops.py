"""``framework queues``, ``redrive`` and ``purge`` straight against the broker (``--backend``).

The queues are declared by a real worker process (``worker_app.py``) or by the test through
the backend; the dead letters are made by the worker: jobs whose handler raises until a
marker file is removed, and a poison body that fails validation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends.rabbitmq.fleet import (
    BrokerFleet,
    framework_cli,
    job_ids,
    open_fleet,
    until_async,
)

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def fleet(broker: str, tmp_path: Path) -> AsyncIterator[BrokerFleet]:
    """Worker processes on a fresh queue; all killed, and the queue deleted, afterwards."""
    async with open_fleet(broker, tmp_path) as fleet:
        yield fleet


async def wait_for_depth(fleet: BrokerFleet, queue: str, depth: int) -> None:
    """Wait until ``queue`` holds ``depth`` ready messages."""

    async def reached() -> bool:
        return await fleet.depth(queue) == depth

    await until_async(reached, 30, f"{queue} to hold {depth}:\n{fleet.logs()}")


async def test_redrive_returns_dead_letters_to_their_queue(
    fleet: BrokerFleet, tmp_path: Path
) -> None:
    """Failing jobs and a poison body are dead-lettered by a worker. After the fix (the marker
    file goes), ``framework redrive DLQ --backend`` moves all of them back to the queue; the
    next worker handles the jobs with their receive count reset and dead-letters the poison
    body again at once; ``framework purge DLQ --backend`` deletes it."""
    started = time.monotonic()
    failing = tmp_path / "failing"
    failing.touch()
    options = {"FW_MP_FAIL_WHILE": str(failing), "FW_MP_MAX_RECEIVE": "2"}
    a = fleet.start("a", **options)
    await fleet.wait_for_consumers(1)
    good = await fleet.send(job_ids(20, "good"))
    bad = await fleet.send(job_ids(5, "bad"), fail=True)
    await fleet.send_body(json.dumps({"no_id": True}))  # poison: fails validation
    await wait_for_depth(fleet, fleet.dlq, len(bad) + 1)
    assert set(good) <= fleet.handled().keys()
    assert await fleet.stop(a) == 0, fleet.logs()

    failing.unlink()
    result = framework_cli("redrive", fleet.dlq, "--backend", fleet.url, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"moved": len(bad) + 1}
    assert (await fleet.depth(), await fleet.depth(fleet.dlq)) == (len(bad) + 1, 0)

    b = fleet.start("b", **options)
    await fleet.wait_until_handled(bad)
    await wait_for_depth(fleet, fleet.dlq, 1)  # the poison body, dead-lettered again
    assert {r.receive_count for r in b.records("D") if r.id in bad} == {1}

    result = framework_cli("purge", fleet.dlq, "--yes", "--backend", fleet.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"purged 1 message from {fleet.dlq}"
    assert await fleet.depth(fleet.dlq) == 0

    assert await fleet.stop(b) == 0, fleet.logs()
    assert await fleet.depth() == 0
    tally = fleet.tally([*good, *bad])
    print(tally.report("redrive", time.monotonic() - started))  # noqa: T201
    assert tally.lost == 0


async def test_redrive_of_poison_bodies_under_a_running_worker_ends(fleet: BrokerFleet) -> None:
    """Redriving 100 poison bodies while a worker consumes the queue moves each once and ends:
    the redrive stops at the first message it already moved (dead-lettered again at once)."""
    fleet.start("a")
    await fleet.wait_for_consumers(1)
    for start in range(0, 100, 50):
        await asyncio.gather(
            *(fleet.send_body(json.dumps({"no_id": n})) for n in range(start, start + 50))
        )
    await wait_for_depth(fleet, fleet.dlq, 100)
    result = await asyncio.to_thread(
        framework_cli, "redrive", fleet.dlq, "--backend", fleet.url, "--json", timeout=10
    )
    assert json.loads(result.stdout) == {"moved": 100}


async def test_purge_deletes_a_queues_ready_messages(fleet: BrokerFleet) -> None:
    """``framework purge QUEUE --backend`` empties a queue no process consumes."""
    await fleet.send(job_ids(30))
    await wait_for_depth(fleet, fleet.queue, 30)
    result = framework_cli("purge", fleet.queue, "--yes", "--backend", fleet.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"purged 30 messages from {fleet.queue}"
    assert await fleet.depth() == 0


async def test_unknown_queues_are_one_line_errors(fleet: BrokerFleet) -> None:
    """Redrive and purge of a queue missing on the broker exit 1 with its name, no traceback."""
    missing = f"{fleet.queue}-missing"
    for command in (("redrive", missing), ("purge", missing, "--yes")):
        result = framework_cli(*command, "--backend", fleet.url)
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: queue {missing!r} does not exist"), result.stderr
        assert "Traceback" not in result.stderr


async def test_queues_json_answers_from_a_fresh_process(fleet: BrokerFleet) -> None:
    """``framework queues --backend --json`` connects, answers JSON and exits 0."""
    result = framework_cli("queues", "--backend", fleet.url, "--json")
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout)["queues"], list)


async def test_queues_json_lists_the_queues_a_worker_declared(fleet: BrokerFleet) -> None:
    """Named with --queue (AMQP cannot list a broker's queues), the queue and its DLQ are
    listed with their counts."""
    await fleet.send(job_ids(3))
    await wait_for_depth(fleet, fleet.queue, 3)
    names = ("--queue", fleet.queue, "--queue", fleet.dlq)
    result = framework_cli("queues", *names, "--backend", fleet.url, "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["queues"]}
    assert rows[fleet.queue]["depth"] == 3
    assert rows[fleet.dlq]["depth"] == 0
