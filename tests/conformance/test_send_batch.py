"""``app.send_batch``: many messages in one call, with ``send``'s meaning, checks and errors."""

from __future__ import annotations

import pytest

from framework import (
    App,
    Context,
    InvalidMessageError,
    MessageTooLargeError,
    UnknownQueueError,
)
from framework.testing import TestApp

LIMIT = 256 * 1024


async def test_batch_is_delivered_whole_with_the_ids_it_returned(
    backend_url: str, queue_name: str
) -> None:
    """25 bodies (more than one SQS request of 10) each arrive once, under the id returned."""
    app = App("conformance")
    seen: dict[str, int] = {}

    @app.on_queue(queue_name, visibility_timeout=2)
    async def handle(body: dict[str, int], ctx: Context) -> None:
        seen[ctx.message.id] = body["n"]

    async with TestApp(app, backend=backend_url) as t:
        ids = await app.send_batch(queue_name, [{"n": n} for n in range(25)])
        await t.drain()
    assert len(set(ids)) == 25
    assert seen == {message_id: n for n, message_id in enumerate(ids)}


async def test_fifo_batch_keeps_its_order_in_the_group(backend_url: str, queue_name: str) -> None:
    """A batch to a FIFO queue with one group id is handled in the order of the list."""
    app = App("conformance")
    name = f"{queue_name}.fifo"
    seen: list[int] = []

    @app.on_queue(name, fifo=True, content_based_deduplication=True, visibility_timeout=2)
    async def handle(body: int) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send_batch(name, list(range(12)), group_id="g")
        await t.drain()
    assert seen == list(range(12))


async def test_one_body_over_the_limit_sends_none(backend_url: str, queue_name: str) -> None:
    """A batch whose third body is over 256 KiB raises, naming that body, and enqueues nothing."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)

    async with TestApp(app, backend=backend_url) as t:
        with pytest.raises(MessageTooLargeError, match="body 2 of 3"):
            await app.send_batch(queue_name, ["a", "b", "x" * (LIMIT + 1)])
        stats = (await t.stats())[queue_name]
    assert (stats.depth, stats.delayed) == (0, 0)


async def test_batch_options_are_checked_as_send_checks_them(
    backend_url: str, queue_name: str
) -> None:
    """A bad delay, too many attributes, or one deduplication id for several bodies is refused."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)

    async with TestApp(app, backend=backend_url) as t:
        with pytest.raises(InvalidMessageError, match="delay"):
            await app.send_batch(queue_name, ["a", "b"], delay=901)
        with pytest.raises(InvalidMessageError, match="at most 10"):
            await app.send_batch(queue_name, ["a"], attributes={f"k{i}": i for i in range(11)})
        with pytest.raises(InvalidMessageError, match="deduplication_id"):
            await app.send_batch(queue_name, ["a", "b"], deduplication_id="d")
        with pytest.raises(UnknownQueueError, match="nowhere"):
            await app.send_batch("nowhere", ["a"])
        assert await app.send_batch(queue_name, []) == []
        stats = (await t.stats())[queue_name]
    assert stats.depth == 0


async def test_delayed_batch_is_invisible_until_its_delay(
    backend_url: str, queue_name: str
) -> None:
    """A batch sent with ``delay`` is counted as delayed and arrives after the delay."""
    app = App("conformance")
    seen: list[str] = []

    @app.on_queue(queue_name, visibility_timeout=1)
    async def handle(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send_batch(queue_name, ["a", "b"], delay=1, attributes={"kind": "late"})
        await t.drain()
        assert seen == []
        await t.clock.advance(1.5)
        await t.drain()
    assert sorted(seen) == ["a", "b"]
