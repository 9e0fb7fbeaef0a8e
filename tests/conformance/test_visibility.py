"""SPEC §3.2 visibility timeout: a lease hides a message; a handler outliving it is cancelled."""

from __future__ import annotations

from datetime import timedelta

import anyio

from framework import App, Context
from framework.testing import TestApp


async def test_handler_outliving_visibility_timeout_is_redelivered(
    backend_url: str, queue_name: str
) -> None:
    """A message whose handler is still running at the timeout is cancelled and delivered again."""
    app = App("conformance")
    seen: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1, max_receive_count=3)
    async def slow(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        if ctx.message.receive_count == 1:
            await anyio.sleep_forever()

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.clock.advance(1.5)
        await t.drain()
    assert seen == [1, 2]


async def test_leased_message_is_invisible_until_the_timeout(
    backend_url: str, queue_name: str
) -> None:
    """Until its visibility timeout a leased message is not delivered again, even to idle slots."""
    app = App("conformance")
    seen: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=2, concurrency=5)
    async def slow(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        await anyio.sleep_forever()

    async with TestApp(app, backend=backend_url, grace=0.1) as t:
        await app.send(queue_name, "hello")
        await t.clock.advance(1)
        before = list(seen)
        stats = (await t.stats())[queue_name]
        await t.clock.advance(1.5)
        after = list(seen)
    assert before == [1]
    assert (stats.depth, stats.in_flight) == (0, 1)
    assert after == [1, 2]


async def test_timed_out_handler_is_cancelled(backend_url: str, queue_name: str) -> None:
    """The handler still running when the visibility timeout ends is cancelled, not left running."""
    app = App("conformance")
    cancelled: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1, max_receive_count=3)
    async def slow(body: str, ctx: Context) -> None:
        if ctx.message.receive_count > 1:
            return
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(ctx.message.receive_count)
            raise

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.clock.advance(0.5)
        early = list(cancelled)
        await t.clock.advance(1)
        await t.drain()
    assert early == []
    assert cancelled == [1]


async def test_extend_visibility_keeps_slow_handler_alive(
    backend_url: str, queue_name: str
) -> None:
    """A handler that extends its visibility runs past the first timeout and is not redelivered."""
    app = App("conformance")
    seen: list[int] = []
    extended = anyio.Event()
    finish = anyio.Event()
    finished: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1, max_receive_count=3)
    async def slow(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        await ctx.extend_visibility(2)
        extended.set()
        await finish.wait()
        finished.append(ctx.message.receive_count)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        with anyio.fail_after(5):
            await extended.wait()
        await t.clock.advance(1.5)  # past the original timeout, within the extension
        finish.set()
        await t.drain()
        await t.clock.advance(2)  # past the extension: an acked message stays gone
        await t.drain()
        stats = (await t.stats())[queue_name]
    assert seen == [1]
    assert finished == [1]
    assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 0)


async def test_extended_visibility_still_ends(backend_url: str, queue_name: str) -> None:
    """An extension moves the deadline, not removes it: the handler is cancelled at its end."""
    app = App("conformance")
    seen: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1, max_receive_count=3)
    async def slow(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        if ctx.message.receive_count == 1:
            await ctx.extend_visibility(2)
            await anyio.sleep_forever()

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.clock.advance(1.5)
        during = list(seen)
        await t.clock.advance(1)  # 2.5 s after receipt: the extension of 2 s is over
        await t.drain()
    assert during == [1]
    assert seen == [1, 2]


async def test_context_deadline_is_visibility_timeout_after_receipt(
    backend_url: str, queue_name: str
) -> None:
    """``ctx.deadline`` is the receipt time plus the visibility timeout, and moves on extension."""
    app = App("conformance")
    deadlines: list[tuple[float, float]] = []

    @app.on_queue(queue_name, visibility_timeout=2)
    async def handle(body: str, ctx: Context) -> None:
        received = ctx.message.first_received_at
        first = (ctx.deadline - received) / timedelta(seconds=1)
        await ctx.extend_visibility(10)
        deadlines.append((first, (ctx.deadline - received) / timedelta(seconds=1)))

    async with TestApp(app, backend=backend_url) as t:
        await t.clock.advance(1.5)  # on memory, virtual time now differs from the system's
        await app.send(queue_name, "hello")
        await t.drain()
    [(first, extended)] = deadlines
    assert abs(first - 2) < 0.5
    assert abs(extended - 10) < 0.5
