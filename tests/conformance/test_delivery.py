"""SPEC §3.1 at-least-once delivery: a message is deleted only after its handler returns."""

from __future__ import annotations

from typing import Any

import anyio
from anyio.lowlevel import checkpoint
from pydantic import BaseModel

from framework import App, Context
from framework.testing import TestApp


class Order(BaseModel):
    id: str
    total: float


async def test_sent_message_is_handled_once_and_deleted(backend_url: str, queue_name: str) -> None:
    """A message whose handler returns is handled exactly once and leaves the queue."""
    app = App("conformance")
    seen: list[str] = []

    @app.on_queue(queue_name, visibility_timeout=1)
    async def handle(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        await t.clock.advance(1.5)  # past the visibility timeout: nothing may come back
        await t.drain()
        stats = (await t.stats())[queue_name]
    assert seen == ["hello"]
    assert (stats.depth, stats.in_flight, stats.delayed, stats.dead_letters) == (0, 0, 0, 0)


async def test_message_stays_in_flight_until_handler_returns(
    backend_url: str, queue_name: str
) -> None:
    """A message stays in flight, not deleted, while its handler runs, and goes when it returns."""
    app = App("conformance")
    started = anyio.Event()
    finish = anyio.Event()

    @app.on_queue(queue_name, visibility_timeout=2)
    async def handle(body: str) -> None:
        started.set()
        await finish.wait()

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        with anyio.fail_after(5):
            await started.wait()
        during = (await t.stats())[queue_name]
        finish.set()
        await t.drain()
        after = (await t.stats())[queue_name]
    assert (during.depth, during.in_flight) == (0, 1)
    assert (after.depth, after.in_flight) == (0, 0)


async def test_message_whose_handler_raised_is_delivered_again(
    backend_url: str, queue_name: str
) -> None:
    """A handler exception does not lose the message: it is delivered again after the delay."""
    app = App("conformance")
    seen: list[tuple[str, int]] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=1, max_receive_count=3)
    async def handle(body: str, ctx: Context) -> None:
        seen.append((body, ctx.message.receive_count))
        if ctx.message.receive_count == 1:
            raise RuntimeError("transient failure")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        await t.clock.advance(1.5)
        await t.drain()
        stats = (await t.stats())[queue_name]
    assert seen == [("hello", 1), ("hello", 2)]
    assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 0)


async def test_every_one_of_many_messages_is_handled(backend_url: str, queue_name: str) -> None:
    """Fifty messages handled by ten concurrent handlers are each handled, none lost."""
    app = App("conformance")
    seen: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=2, concurrency=10)
    async def handle(body: dict[str, int]) -> None:
        await checkpoint()
        seen.append(body["n"])

    async with TestApp(app, backend=backend_url) as t:
        for n in range(50):
            await app.send(queue_name, {"n": n})
        await t.drain()
    assert sorted(seen) == list(range(50))


async def test_message_body_attributes_and_id_reach_the_handler(
    backend_url: str, queue_name: str
) -> None:
    """The handler gets the validated model, the attributes as sent and the id send returned."""
    app = App("conformance")
    got: list[tuple[Order, dict[str, object], str]] = []

    @app.on_queue(queue_name, visibility_timeout=1)
    async def handle(order: Order, ctx: Context) -> None:
        got.append((order, dict(ctx.message.attributes), ctx.message.id))

    async with TestApp(app, backend=backend_url) as t:
        message_id = await app.send(
            queue_name, Order(id="A-1", total=9.5), attributes={"kind": "order", "priority": 3}
        )
        await t.drain()
    assert got == [(Order(id="A-1", total=9.5), {"kind": "order", "priority": 3}, message_id)]


async def test_bytes_text_and_json_bodies_arrive_unchanged(
    backend_url: str, queue_name: str
) -> None:
    """Bytes, text and JSON bodies reach an untyped handler as sent, non-ASCII text included."""
    app = App("conformance")
    seen: list[object] = []

    @app.on_queue(queue_name, visibility_timeout=1, concurrency=1)
    async def handle(body: Any) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, b"\x00\xffraw")
        await t.drain()
        await app.send(queue_name, "héllo wörld")
        await t.drain()
        await app.send(queue_name, {"items": [1, 2], "name": "é"})
        await t.drain()
    assert seen == [b"\x00\xffraw", "héllo wörld", {"items": [1, 2], "name": "é"}]
