"""A process that fills a SQLite file, then waits to be killed: ``python producer.py URL QUEUE``.

It sends ``queued`` jobs, ``delayed`` jobs (3 s delay), dead-letters ``dead`` jobs and leaves
``held`` jobs received but unsettled, prints ``ready`` and sleeps until ``kill -9`` ends it.
Counts come from ``FW_SQ_COUNTS`` (``queued,delayed,dead,held``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime

from framework.backends.sqlite import SQLiteBackend
from framework.messages import CONTENT_TYPE, DeadLetterReason, Outgoing
from framework.registry import QueueSpec


def job(kind: str, n: int, delay: float = 0.0) -> Outgoing:
    """A JSON job with id ``KIND-N``."""
    body = json.dumps({"id": f"{kind}-{n}"}).encode()
    return Outgoing(body=body, headers={CONTENT_TYPE: "application/json"}, delay=delay)


async def main(url: str, queue: str) -> None:
    """Fill the file as the module docstring says, then wait forever."""
    queued, delayed, dead, held = (int(n) for n in os.environ["FW_SQ_COUNTS"].split(","))
    async with SQLiteBackend.from_url(url) as backend:
        spec = QueueSpec.from_options(queue, visibility_timeout=1)
        await backend.declare_queue(spec)
        dlq = spec.dead_letter_spec()
        assert dlq is not None
        await backend.declare_queue(dlq)
        for n in range(dead):
            await backend.send(queue, job("dead", n))
        got = await backend.receive(queue, limit=10, wait=0)
        assert len(got) == dead, got
        for delivery in got:
            reason = DeadLetterReason(queue, 1, "RuntimeError", "on purpose", datetime.now(UTC))
            await backend.dead_letter(delivery, reason=reason)
        for n in range(held):
            await backend.send(queue, job("held", n))
        got = await backend.receive(queue, limit=10, wait=0)
        assert len(got) == held, got
        for n in range(queued):
            await backend.send(queue, job("queued", n))
        for n in range(delayed):
            await backend.send(queue, job("delayed", n, delay=3.0))
        print("ready", flush=True)  # noqa: T201
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
