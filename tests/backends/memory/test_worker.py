"""The worker and dispatcher on ``memory://``: handler tasks, the deadline watchdog, stopping."""

from __future__ import annotations

import asyncio

import anyio

from framework import App, Context
from framework.testing import TestApp


async def test_handler_swallowing_its_cancellation_still_times_out() -> None:
    """A handler that catches the deadline's cancellation and returns is still a timeout."""
    app = App("worker")
    seen: list[int] = []

    @app.on_queue("jobs", visibility_timeout=1, max_receive_count=3)
    async def stubborn(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        if ctx.message.receive_count == 1:
            try:
                await anyio.sleep_forever()
            except asyncio.CancelledError:
                return

    async with TestApp(app) as t:
        await app.send("jobs", "x")
        await t.clock.advance(1.5)
        await t.drain()
        stats = (await t.stats())["jobs"]
    assert seen == [1, 2]
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_fast_handlers_share_one_batch_and_slow_ones_spread_over_tasks() -> None:
    """Every message of a batch is handled, and handlers that suspend run concurrently."""
    app = App("worker")
    running = 0
    peak = 0

    @app.on_queue("jobs", concurrency=4, batch_size=4)
    async def slow(body: str) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running -= 1

    async with TestApp(app) as t:
        for i in range(20):
            await app.send("jobs", str(i))
        await t.drain()
        stats = (await t.stats())["jobs"]
    assert peak == 4
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_each_handler_gets_its_own_deadline_after_an_extension() -> None:
    """Extending one delivery's visibility does not move the other handlers' deadlines."""
    app = App("worker")
    seen: list[tuple[str, int]] = []

    @app.on_queue("jobs", visibility_timeout=2, max_receive_count=5, concurrency=2)
    async def handler(body: str, ctx: Context) -> None:
        seen.append((body, ctx.message.receive_count))
        if ctx.message.receive_count == 1:
            if body == "extended":
                await ctx.extend_visibility(10)
                await t.clock.sleep(5)
            else:
                await anyio.sleep_forever()

    async with TestApp(app) as t:
        await app.send("jobs", "extended")
        await app.send("jobs", "stuck")
        await t.clock.advance(2.5)
        await t.clock.advance(3)
        await t.drain()
    assert sorted(seen) == [("extended", 1), ("stuck", 1), ("stuck", 2)]
