"""SPEC §3.9 limits and bad input: refused at ``send``/``publish`` with a clear error."""

from __future__ import annotations

import pytest

from framework import (
    App,
    InvalidMessageError,
    MessageTooLargeError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.testing import TestApp

LIMIT = 256 * 1024


async def test_body_over_256_kib_is_refused_at_send(backend_url: str, queue_name: str) -> None:
    """A body one byte over 256 KiB raises MessageTooLargeError at send and is not enqueued."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)

    async with TestApp(app, backend=backend_url) as t:
        with pytest.raises(MessageTooLargeError, match=str(LIMIT)):
            await app.send(queue_name, "x" * (LIMIT + 1))
        stats = (await t.stats())[queue_name]
    assert (stats.depth, stats.delayed) == (0, 0)


async def test_body_of_exactly_256_kib_is_delivered(backend_url: str, queue_name: str) -> None:
    """A body of exactly 256 KiB is accepted and arrives whole."""
    app = App("conformance")
    sizes: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1)
    async def handle(body: bytes) -> None:
        sizes.append(len(body))

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, b"x" * LIMIT)
        await t.drain()
    assert sizes == [LIMIT]


async def test_size_counts_utf8_bytes_not_characters(backend_url: str, queue_name: str) -> None:
    """262,000 'é' characters are 524,000 UTF-8 bytes: too large, though under 262,144 chars."""
    app = App("conformance")
    sizes: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1)
    async def handle(body: str) -> None:
        sizes.append(len(body))

    async with TestApp(app, backend=backend_url) as t:
        with pytest.raises(MessageTooLargeError):
            await app.send(queue_name, "é" * 262_000)
        await app.send(queue_name, "é" * (LIMIT // 2))  # exactly 256 KiB of UTF-8
        await t.drain()
    assert sizes == [LIMIT // 2]


async def test_attributes_count_toward_the_size_limit(backend_url: str, queue_name: str) -> None:
    """A body that fits alone is refused when its attributes take the message over the limit."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)
    body = "x" * (LIMIT - 100)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, body)
        with pytest.raises(MessageTooLargeError):
            await app.send(queue_name, body, attributes={"note": "y" * 100})
        stats = (await t.stats())[queue_name]
    assert stats.depth == 1


async def test_body_over_256_kib_is_refused_at_publish(backend_url: str, topic_name: str) -> None:
    """Publishing more than 256 KiB of UTF-8 raises MessageTooLargeError and delivers nothing."""
    app = App("conformance")
    seen: list[str] = []

    @app.on_topic(topic_name, visibility_timeout=1)
    async def handle(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        with pytest.raises(MessageTooLargeError):
            await app.publish(topic_name, "é" * 262_000)
        with pytest.raises(MessageTooLargeError):
            await app.publish(topic_name, "x" * (LIMIT - 10), attributes={"k": "v" * 20})
        await t.drain()
    assert seen == []


async def test_queue_with_a_larger_limit_accepts_larger_bodies(
    backend_url: str, queue_name: str
) -> None:
    """A queue declared with ``max_message_size`` of 1 MiB takes a 512 KiB body."""
    app = App("conformance")
    sizes: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1, max_message_size=1024 * 1024)
    async def handle(body: bytes) -> None:
        sizes.append(len(body))

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, b"x" * (512 * 1024))
        with pytest.raises(MessageTooLargeError):
            await app.send(queue_name, b"x" * (1024 * 1024 + 1))
        await t.drain()
    assert sizes == [512 * 1024]


async def test_send_to_unknown_queue_names_it(backend_url: str, queue_name: str) -> None:
    """Sending to a queue that is not declared raises UnknownQueueError naming the queue."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)

    async with TestApp(app, backend=backend_url):
        with pytest.raises(UnknownQueueError, match=f"{queue_name}-missing"):
            await app.send(f"{queue_name}-missing", "hello")


async def test_publish_to_unknown_topic_names_it(backend_url: str, topic_name: str) -> None:
    """Publishing to a topic that is not declared raises UnknownTopicError naming the topic."""
    app = App("conformance")
    app.topic(topic_name)

    async with TestApp(app, backend=backend_url):
        with pytest.raises(UnknownTopicError, match=f"{topic_name}-missing"):
            await app.publish(f"{topic_name}-missing", "hello")


async def test_fifo_message_without_group_id_is_refused(backend_url: str, queue_name: str) -> None:
    """A FIFO send without ``group_id`` raises InvalidMessageError and enqueues nothing."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    app.queue(fifo, visibility_timeout=1, content_based_deduplication=True)

    async with TestApp(app, backend=backend_url) as t:
        with pytest.raises(InvalidMessageError, match="group_id"):
            await app.send(fifo, "hello")
        stats = (await t.stats())[fifo]
    assert stats.depth == 0


async def test_fifo_message_without_deduplication_is_refused(
    backend_url: str, queue_name: str
) -> None:
    """A FIFO send with neither ``deduplication_id`` nor content-based deduplication is refused."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    app.queue(fifo, visibility_timeout=1)

    async with TestApp(app, backend=backend_url):
        with pytest.raises(InvalidMessageError, match="deduplication_id"):
            await app.send(fifo, "hello", group_id="g")


async def test_fifo_publish_without_group_id_is_refused(backend_url: str, topic_name: str) -> None:
    """Publishing to a FIFO topic without ``group_id`` raises InvalidMessageError."""
    app = App("conformance")
    app.topic(f"{topic_name}.fifo", content_based_deduplication=True)

    async with TestApp(app, backend=backend_url):
        with pytest.raises(InvalidMessageError, match="group_id"):
            await app.publish(f"{topic_name}.fifo", "hello")


async def test_out_of_range_delay_is_refused(backend_url: str, queue_name: str) -> None:
    """A delay over 900 seconds, or below 0, raises InvalidMessageError."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)

    async with TestApp(app, backend=backend_url) as t:
        with pytest.raises(InvalidMessageError, match="delay"):
            await app.send(queue_name, "hello", delay=901)
        with pytest.raises(InvalidMessageError, match="delay"):
            await app.send(queue_name, "hello", delay=-1)
        stats = (await t.stats())[queue_name]
    assert (stats.depth, stats.delayed) == (0, 0)


async def test_more_than_ten_attributes_are_refused(backend_url: str, queue_name: str) -> None:
    """A message with eleven attributes raises InvalidMessageError, as SQS allows ten."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)

    async with TestApp(app, backend=backend_url):
        with pytest.raises(InvalidMessageError, match="10"):
            await app.send(queue_name, "hello", attributes={f"a{n}": n for n in range(11)})
