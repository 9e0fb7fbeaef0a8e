"""SPEC §3.3 receive count: every delivery increments ``receive_count``, on every backend."""

from __future__ import annotations

from datetime import datetime

import anyio

from framework import App, Context
from framework.testing import TestApp


async def test_receive_count_counts_one_two_three_across_failures(
    backend_url: str, queue_name: str
) -> None:
    """A message that fails twice is seen with receive counts 1, 2 and 3."""
    app = App("conformance")
    seen: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=1, max_receive_count=5)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        if ctx.message.receive_count < 3:
            raise RuntimeError("not yet")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        for _ in range(2):
            await t.clock.advance(1.5)
            await t.drain()
    assert seen == [1, 2, 3]


async def test_receive_count_counts_deliveries_that_timed_out(
    backend_url: str, queue_name: str
) -> None:
    """Deliveries ended by the visibility timeout count too: the third delivery sees 3."""
    app = App("conformance")
    seen: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1, max_receive_count=5)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        if ctx.message.receive_count < 3:
            await anyio.sleep_forever()

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        for _ in range(2):
            await t.clock.advance(1.25)
        await t.drain()
    assert seen == [1, 2, 3]


async def test_redeliveries_keep_id_body_and_first_receipt_time(
    backend_url: str, queue_name: str
) -> None:
    """A redelivered message keeps its id, body, ``sent_at`` and ``first_received_at``."""
    app = App("conformance")
    seen: list[tuple[str, str, datetime, datetime]] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=1, max_receive_count=5)
    async def handle(body: str, ctx: Context) -> None:
        message = ctx.message
        seen.append((message.id, body, message.sent_at, message.first_received_at))
        if message.receive_count == 1:
            raise RuntimeError("once")

    async with TestApp(app, backend=backend_url) as t:
        message_id = await app.send(queue_name, "hello")
        await t.drain()
        await t.clock.advance(1.5)
        await t.drain()
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert seen[0][:2] == (message_id, "hello")
    assert seen[0][2] <= seen[0][3]


async def test_each_message_has_its_own_receive_count(backend_url: str, queue_name: str) -> None:
    """A retried message's count does not leak into other messages: a fresh one starts at 1."""
    app = App("conformance")
    seen: list[tuple[str, int]] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=1, max_receive_count=5)
    async def handle(body: str, ctx: Context) -> None:
        seen.append((body, ctx.message.receive_count))
        if body == "bad" and ctx.message.receive_count < 3:
            raise RuntimeError("bad")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "bad")
        await t.drain()
        await t.clock.advance(1.5)
        await t.drain()
        await app.send(queue_name, "good")
        await t.drain()
        await t.clock.advance(1.5)
        await t.drain()
    assert sorted(seen) == [("bad", 1), ("bad", 2), ("bad", 3), ("good", 1)]
