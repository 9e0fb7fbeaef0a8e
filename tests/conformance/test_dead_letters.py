"""SPEC §3.4 failure and dead letters: retry after ``retry_delay``, then the dead-letter queue."""

from __future__ import annotations

from datetime import datetime

import anyio
from pydantic import BaseModel

from framework import App, Context, DeadLetterInfo
from framework.testing import TestApp


class Order(BaseModel):
    id: str
    total: float


async def test_failed_message_waits_for_retry_delay(backend_url: str, queue_name: str) -> None:
    """A message whose handler raised is not redelivered before ``retry_delay``, and is after it."""
    app = App("conformance")
    seen: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=2, max_receive_count=3)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        if ctx.message.receive_count == 1:
            raise RuntimeError("transient")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        await t.clock.advance(1.5)  # past the visibility timeout, before the retry delay
        await t.drain()
        early = list(seen)
        await t.clock.advance(1)
        await t.drain()
    assert early == [1]
    assert seen == [1, 2]


async def test_retry_delay_defaults_to_the_visibility_timeout(
    backend_url: str, queue_name: str
) -> None:
    """Without ``retry_delay`` a failed message returns after the visibility timeout, as on SQS."""
    app = App("conformance")
    seen: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=2, max_receive_count=3)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        if ctx.message.receive_count == 1:
            raise RuntimeError("transient")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        await t.clock.advance(1)
        await t.drain()
        early = list(seen)
        await t.clock.advance(1.5)
        await t.drain()
    assert early == [1]
    assert seen == [1, 2]


async def test_zero_retry_delay_redelivers_at_once(backend_url: str, queue_name: str) -> None:
    """With ``retry_delay=0`` a failed message is delivered again without waiting."""
    app = App("conformance")
    seen: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=2, retry_delay=0, max_receive_count=5)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        if ctx.message.receive_count < 3:
            raise RuntimeError("transient")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
    assert seen == [1, 2, 3]


async def test_callable_retry_delay_is_asked_for_each_wait(
    backend_url: str, queue_name: str
) -> None:
    """A backoff callable gets the receive count and its result is the wait before the next try."""
    app = App("conformance")
    seen: list[int] = []
    asked: list[int] = []

    def backoff(receive_count: int) -> float:
        asked.append(receive_count)
        # 2 s after the first failure, 4 s after the second: on a real broker, redelivery from a
        # delay queue on a loaded machine can take a few tenths of a second past its time.
        return 2.0 * receive_count

    @app.on_queue(queue_name, visibility_timeout=2, retry_delay=backoff, max_receive_count=5)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        if ctx.message.receive_count < 3:
            raise RuntimeError("transient")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        await t.clock.advance(2.5)
        await t.drain()
        after_first = list(seen)
        await t.clock.advance(2.5)  # 2.5 to 3 s after the second failure: too early
        await t.drain()
        early = list(seen)
        await t.clock.advance(2)
        await t.drain()
    assert after_first == [1, 2]
    assert early == [1, 2]
    assert seen == [1, 2, 3]
    assert asked == [1, 2]


async def test_message_moves_to_dead_letter_queue_after_max_receive_count(
    backend_url: str, queue_name: str
) -> None:
    """A message that always fails is handled ``max_receive_count`` times, then dead-lettered."""
    app = App("conformance")
    seen: list[int] = []
    dead: list[str] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=1, max_receive_count=3)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        raise RuntimeError("always")

    @app.on_queue(f"{queue_name}-dlq", visibility_timeout=1)
    async def graveyard(body: str) -> None:
        dead.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        for _ in range(4):
            await t.clock.advance(1.5)
            await t.drain()
        stats = (await t.stats())[queue_name]
    assert seen == [1, 2, 3]
    assert dead == ["hello"]
    assert (stats.depth, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_dead_letter_says_source_count_error_and_time(
    backend_url: str, queue_name: str
) -> None:
    """A DLQ handler sees the source queue, receive count, last error type and message, and time."""
    app = App("conformance")
    infos: list[tuple[DeadLetterInfo | None, datetime]] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=1, max_receive_count=2)
    async def handle(body: str, ctx: Context) -> None:
        raise ValueError(f"bad value on try {ctx.message.receive_count}")

    @app.on_queue(f"{queue_name}-dlq", visibility_timeout=1)
    async def graveyard(body: str, ctx: Context) -> None:
        infos.append((ctx.message.dead_letter, ctx.message.sent_at))

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        await t.clock.advance(1.5)
        await t.drain()
    [(info, sent_at)] = infos
    assert info is not None
    assert info.source_queue == queue_name
    assert info.receive_count == 2
    assert info.error_type == "ValueError"
    assert info.error_message == "bad value on try 2"
    assert info.time.tzinfo is not None
    assert info.time >= sent_at


async def test_dead_letter_keeps_body_attributes_and_id(backend_url: str, queue_name: str) -> None:
    """A dead letter is the same message: same id, body and attributes as sent."""
    app = App("conformance")
    dead: list[tuple[str, Order, dict[str, object]]] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=0, max_receive_count=1)
    async def handle(order: Order) -> None:
        raise RuntimeError("always")

    @app.on_queue(f"{queue_name}-dlq", visibility_timeout=1)
    async def graveyard(order: Order, ctx: Context) -> None:
        dead.append((ctx.message.id, order, dict(ctx.message.attributes)))

    async with TestApp(app, backend=backend_url) as t:
        message_id = await app.send(
            queue_name, Order(id="A-1", total=2.5), attributes={"tenant": "acme"}
        )
        await t.drain()
    assert dead == [(message_id, Order(id="A-1", total=2.5), {"tenant": "acme"})]


async def test_dead_letters_are_counted_in_the_source_queue_stats(
    backend_url: str, queue_name: str
) -> None:
    """Unhandled dead letters wait in the DLQ and show in the source queue's ``dead_letters``."""
    app = App("conformance")

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=0, max_receive_count=1)
    async def handle(body: str) -> None:
        raise RuntimeError("always")

    async with TestApp(app, backend=backend_url) as t:
        for n in range(3):
            await app.send(queue_name, f"m{n}")
        await t.drain()
        stats = await t.stats()
    assert stats[queue_name].dead_letters == 3
    assert stats[queue_name].depth == 0
    assert stats[f"{queue_name}-dlq"].depth == 3


async def test_handler_timing_out_every_time_is_dead_lettered(
    backend_url: str, queue_name: str
) -> None:
    """A message whose handler always outlives its visibility timeout ends in the DLQ too."""
    app = App("conformance")
    seen: list[int] = []
    infos: list[DeadLetterInfo | None] = []

    @app.on_queue(queue_name, visibility_timeout=1, max_receive_count=2)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        await anyio.sleep_forever()

    @app.on_queue(f"{queue_name}-dlq", visibility_timeout=1)
    async def graveyard(body: str, ctx: Context) -> None:
        infos.append(ctx.message.dead_letter)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        for _ in range(3):
            await t.clock.advance(1.25)
        await t.drain()
    assert seen == [1, 2]
    [info] = infos
    assert info is not None
    assert (info.source_queue, info.receive_count) == (queue_name, 2)
    assert "Timeout" in info.error_type


async def test_invalid_body_goes_to_dead_letter_queue_at_once(
    backend_url: str, queue_name: str
) -> None:
    """A body failing pydantic validation is dead-lettered on its first receipt, never retried."""
    app = App("conformance")
    handled: list[Order] = []
    infos: list[DeadLetterInfo | None] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=0, max_receive_count=5)
    async def handle(order: Order) -> None:
        handled.append(order)

    @app.on_queue(f"{queue_name}-dlq", visibility_timeout=1)
    async def graveyard(body: bytes, ctx: Context) -> None:
        infos.append(ctx.message.dead_letter)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, {"id": "A-1", "total": "not a number"})
        await t.drain()
        await t.clock.advance(2)
        await t.drain()
        stats = (await t.stats())[queue_name]
    assert handled == []
    [info] = infos
    assert info is not None
    assert (info.source_queue, info.receive_count) == (queue_name, 1)
    assert info.error_type == "ValidationError"
    assert "total" in info.error_message
    assert (stats.depth, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_invalid_json_goes_to_dead_letter_queue_at_once(
    backend_url: str, queue_name: str
) -> None:
    """A body that is not JSON at all, sent to a model handler, is dead-lettered at once."""
    app = App("conformance")
    handled: list[Order] = []
    dead: list[tuple[bytes, DeadLetterInfo | None]] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=0, max_receive_count=5)
    async def handle(order: Order) -> None:
        handled.append(order)

    @app.on_queue(f"{queue_name}-dlq", visibility_timeout=1)
    async def graveyard(body: bytes, ctx: Context) -> None:
        dead.append((body, ctx.message.dead_letter))

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, b"{not json")
        await t.drain()
        await t.clock.advance(2)
        await t.drain()
        stats = (await t.stats())[queue_name]
    assert handled == []
    [(body, info)] = dead
    assert body == b"{not json"
    assert info is not None
    assert (info.source_queue, info.receive_count) == (queue_name, 1)
    assert (stats.depth, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_fifo_dead_letters_go_to_the_fifo_dead_letter_queue(
    backend_url: str, queue_name: str
) -> None:
    """The DLQ of ``q.fifo`` is ``q-dlq.fifo`` and its dead letters keep their group."""
    app = App("conformance")
    dead: list[tuple[str, str | None]] = []

    @app.on_queue(f"{queue_name}.fifo", visibility_timeout=1, retry_delay=0, max_receive_count=1)
    async def handle(body: str) -> None:
        raise RuntimeError("always")

    @app.on_queue(f"{queue_name}-dlq.fifo", visibility_timeout=1)
    async def graveyard(body: str, ctx: Context) -> None:
        dead.append((body, ctx.message.group_id))

    async with TestApp(app, backend=backend_url) as t:
        await app.send(f"{queue_name}.fifo", "hello", group_id="g1", deduplication_id="d1")
        await t.drain()
    assert dead == [("hello", "g1")]
