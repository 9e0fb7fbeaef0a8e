"""SPEC §3.7 delay: a message sent with ``delay`` is invisible until the delay has passed."""

from __future__ import annotations

from framework import App
from framework.testing import TestApp


async def test_delayed_message_is_invisible_until_its_delay_ends(
    backend_url: str, queue_name: str
) -> None:
    """A message sent with ``delay=2`` is not delivered at 1.5 s and is delivered after 2 s."""
    app = App("conformance")
    seen: list[str] = []

    @app.on_queue(queue_name, visibility_timeout=1)
    async def handle(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "later", delay=2)
        await t.drain()
        await t.clock.advance(1.5)
        await t.drain()
        early = list(seen)
        await t.clock.advance(1)
        await t.drain()
    assert early == []
    assert seen == ["later"]


async def test_delayed_message_counts_as_delayed_not_visible(
    backend_url: str, queue_name: str
) -> None:
    """While waiting, a delayed message shows in ``delayed``, not in ``depth`` or ``in_flight``."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "later", delay=2)
        during = (await t.stats())[queue_name]
        await t.clock.advance(2.5)
        after = (await t.stats())[queue_name]
    assert (during.depth, during.in_flight, during.delayed) == (0, 0, 1)
    assert (after.depth, after.in_flight, after.delayed) == (1, 0, 0)


async def test_undelayed_message_overtakes_a_delayed_one(backend_url: str, queue_name: str) -> None:
    """A message sent without delay after a delayed one is delivered first."""
    app = App("conformance")
    seen: list[str] = []

    @app.on_queue(queue_name, visibility_timeout=1, concurrency=1)
    async def handle(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "later", delay=1)
        await app.send(queue_name, "now")
        await t.drain()
        early = list(seen)
        await t.clock.advance(1.5)
        await t.drain()
    assert early == ["now"]
    assert seen == ["now", "later"]


async def test_queue_delay_applies_to_every_message(backend_url: str, queue_name: str) -> None:
    """A queue declared with ``delay=2`` holds back messages sent without a delay of their own."""
    app = App("conformance")
    seen: list[str] = []

    @app.on_queue(queue_name, visibility_timeout=1, delay=2)
    async def handle(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        await t.clock.advance(1.5)
        await t.drain()
        early = list(seen)
        await t.clock.advance(1)
        await t.drain()
    assert early == []
    assert seen == ["hello"]
