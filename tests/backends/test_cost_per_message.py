"""The storage one queued message costs stays flat from 10 to 100,000 messages queued.

A queue whose cost per message grows with its depth (a structure that is quadratic, an index
that degrades, something kept per message that is never dropped) only shows at depth, so each
backend that holds messages itself queues 10, 1,000 and 100,000 small messages and the bytes
per message at each depth must stay within ``FACTOR`` of each other:

- ``memory://``: the bytes tracemalloc sees allocated by the sends and still held, per message.
- ``sqlite://``: the bytes the ``messages`` table and its indexes use in their pages (each
  page's size less its unused bytes, from SQLite's ``dbstat``), above the empty queue's, per
  message. Whole pages would hide 10 messages in the empty table's first page.

RabbitMQ and SQS (moto) are left out: they keep messages in another process, whose memory this
process cannot attribute to one queue, and 100,000 confirmed publishes (10,000 SendMessageBatch
requests on moto) take minutes, not the few seconds this suite allows a test.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from framework import App
from framework.backends.sqlite import SQLiteBackend

DEPTHS = (10, 1_000, 100_000)
# The largest per-message figure may be at most this many times the smallest: room for the
# fixed steps of a growing dict, deque block or database page at 10 messages, and nothing like
# the growth of a cost that depends on the depth.
FACTOR = 2.0
CHUNK = 10_000  # bodies per send_batch call


def _bodies(count: int) -> list[str]:
    """``count`` distinct text bodies of 100 characters."""
    return [f"{i:010d}" + "x" * 90 for i in range(count)]


async def _memory_bytes_per_message(count: int) -> float:
    app = App("cost")
    app.queue("q")
    bodies = _bodies(count)
    async with app.run("memory://", workers=False) as runtime:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for start in range(0, count, CHUNK):
                await app.send_batch("q", bodies[start : start + CHUNK])
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert (await runtime.stats())["q"].depth == count
    return held / count


async def _sqlite_bytes_per_message(count: int, path: Path) -> float:
    url = f"sqlite:///{path}"
    app = App("cost")
    app.queue("q")
    bodies = _bodies(count)
    async with app.run(url, workers=False) as runtime:
        backend = runtime.backend
        assert isinstance(backend, SQLiteBackend)
        empty = _used_bytes(backend)
        for start in range(0, count, CHUNK):
            await app.send_batch("q", bodies[start : start + CHUNK])
        used = _used_bytes(backend) - empty
        assert (await runtime.stats())["q"].depth == count
    return used / count


def _used_bytes(backend: SQLiteBackend) -> int:
    """Bytes used in the pages of the messages table and of its indexes."""
    row = backend.store.db.execute(
        "SELECT sum(pgsize - unused) FROM dbstat WHERE name IN "
        "(SELECT name FROM sqlite_schema WHERE tbl_name = 'messages')"
    ).fetchone()
    return int(row[0])


def _assert_flat(figures: dict[int, float]) -> None:
    low, high = min(figures.values()), max(figures.values())
    assert low > 0, figures
    assert high <= FACTOR * low, f"bytes per message by depth: {figures}"


async def test_memory_bytes_per_queued_message_stay_flat() -> None:
    """On memory://, bytes held per queued message at 10, 1,000, 100,000 are within 2x."""
    figures = {count: await _memory_bytes_per_message(count) for count in DEPTHS}
    _assert_flat(figures)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_sqlite_bytes_per_queued_message_stay_flat(tmp_path: Path) -> None:
    """On sqlite://, database bytes per queued message at 10, 1,000, 100,000 are within 2x."""
    figures = {
        count: await _sqlite_bytes_per_message(count, tmp_path / f"{count}.db") for count in DEPTHS
    }
    _assert_flat(figures)
