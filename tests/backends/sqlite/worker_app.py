"""The app the sqlite reliability tests run in real ``framework run --workers-only`` processes.

Everything comes from the environment, so every test uses a fresh file and queue:

- ``FW_SQ_QUEUE``: the queue (``.fifo`` names make a FIFO queue; its DLQ is ``QUEUE-dlq``);
- ``FW_SQ_RESULTS``: the file this process appends its records to with ``O_APPEND`` (one
  ``write`` per line: lines never interleave and survive ``kill -9``):
  ``S <id> <group> <receive count> <monotonic ns>`` when a handler starts, ``D ...`` when done;
- ``FW_SQ_SLEEP``: seconds each handler sleeps (messages stay in flight meanwhile);
- ``FW_SQ_VISIBILITY``, ``FW_SQ_CONCURRENCY``: the queue's options.

``time.monotonic_ns`` is the machine's CLOCK_MONOTONIC, one clock for every process, so the
records of several processes can be put in one order.
"""

from __future__ import annotations

import os
import time

import anyio
from pydantic import BaseModel

from framework import App, Context

QUEUE = os.environ.get("FW_SQ_QUEUE", "sq-unset")
RESULTS = os.environ.get("FW_SQ_RESULTS", os.devnull)
SLEEP = float(os.environ.get("FW_SQ_SLEEP", "0"))

app = App("sqlite-reliability")

_results = os.open(RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


class Job(BaseModel):
    id: str


def record(kind: str, job: Job, ctx: Context) -> None:
    """Append one line to this process's results file: a single write, atomic with O_APPEND."""
    line = (
        f"{kind} {job.id} {ctx.message.group_id or '-'} {ctx.message.receive_count} "
        f"{time.monotonic_ns()}\n"
    )
    os.write(_results, line.encode())


@app.on_queue(
    QUEUE,
    visibility_timeout=float(os.environ.get("FW_SQ_VISIBILITY", "5")),
    concurrency=int(os.environ.get("FW_SQ_CONCURRENCY", "10")),
    retry_delay=0.2,
)
async def work(job: Job, ctx: Context) -> None:
    """Record the start, sleep, record the end."""
    record("S", job, ctx)
    if SLEEP:
        await anyio.sleep(SLEEP)
    record("D", job, ctx)
