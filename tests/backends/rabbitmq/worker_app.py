"""The app the multi-process tests run in real ``framework run --workers-only`` processes.

Everything comes from the environment, so every test uses fresh queue names:

- ``FW_MP_QUEUE``: the queue (its dead-letter queue is ``QUEUE-dlq``);
- ``FW_MP_RESULTS``: the file this process appends its records to, one line per event, with
  ``O_APPEND`` (lines from one ``write`` never interleave, and survive ``kill -9``):
  ``S <id> <group> <receive count> <monotonic ns>`` when a handler starts, ``D ...`` when done
  (the format ``tests/fleet.py`` reads);
- ``FW_MP_SLEEP``: seconds each handler sleeps (messages stay in flight meanwhile);
- ``FW_MP_VISIBILITY``, ``FW_MP_CONCURRENCY``, ``FW_MP_MAX_RECEIVE``, ``FW_MP_RETRY_DELAY``:
  the queue's options;
- ``FW_MP_FAIL_WHILE``: a path; a job with ``fail=true`` raises while that file exists.
"""

from __future__ import annotations

import os
import time

import anyio
from pydantic import BaseModel

from framework import App, Context

QUEUE = os.environ.get("FW_MP_QUEUE", "mp-unset")
RESULTS = os.environ.get("FW_MP_RESULTS", os.devnull)
SLEEP = float(os.environ.get("FW_MP_SLEEP", "0"))
FAIL_WHILE = os.environ.get("FW_MP_FAIL_WHILE")

app = App("multiprocess")

_results = os.open(RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


class Job(BaseModel):
    id: str
    fail: bool = False


def record(kind: str, job: Job, ctx: Context) -> None:
    """Append one line to this process's results file: a single write, atomic with O_APPEND."""
    line = (
        f"{kind} {job.id} {ctx.message.group_id or '-'} {ctx.message.receive_count} "
        f"{time.monotonic_ns()}\n"
    )
    os.write(_results, line.encode())


def must_fail(job: Job) -> bool:
    """True for a job asking to fail while the marker file exists (one stat of a local file)."""
    return job.fail and FAIL_WHILE is not None and os.path.exists(FAIL_WHILE)


@app.on_queue(
    QUEUE,
    visibility_timeout=float(os.environ.get("FW_MP_VISIBILITY", "2")),
    concurrency=int(os.environ.get("FW_MP_CONCURRENCY", "10")),
    max_receive_count=int(os.environ.get("FW_MP_MAX_RECEIVE", "5")),
    retry_delay=float(os.environ.get("FW_MP_RETRY_DELAY", "0.2")),
)
async def work(job: Job, ctx: Context) -> None:
    """Record the start, sleep, fail when asked to, record the end."""
    record("S", job, ctx)
    if SLEEP:
        await anyio.sleep(SLEEP)
    if must_fail(job):
        raise RuntimeError(f"job {job.id} failed on purpose")
    record("D", job, ctx)
