"""SPEC §3.5 redrive: dead letters go back, in order, counts reset, without loss or duplication."""

from __future__ import annotations

import pytest

from framework import App, Context, DeadLetterInfo, UnknownQueueError
from framework.testing import TestApp


def failing_app(
    queue_name: str, handled: list[tuple[str, int, DeadLetterInfo | None]], *, failing: list[bool]
) -> App:
    """An app whose one handler dead-letters everything while ``failing[0]`` is true.

    It handles one message at a time, so messages reach the DLQ in the order they were sent.
    """
    app = App("conformance")

    @app.on_queue(
        queue_name, visibility_timeout=1, retry_delay=0, max_receive_count=1, concurrency=1
    )
    async def handle(body: str, ctx: Context) -> None:
        if failing[0]:
            raise RuntimeError("down")
        handled.append((body, ctx.message.receive_count, ctx.message.dead_letter))

    return app


async def test_redrive_moves_every_dead_letter_back_in_order(
    backend_url: str, queue_name: str
) -> None:
    """``app.redrive(dlq)`` returns each dead letter to its source once, oldest first."""
    handled: list[tuple[str, int, DeadLetterInfo | None]] = []
    failing = [True]
    app = failing_app(queue_name, handled, failing=failing)
    bodies = [f"m{n}" for n in range(6)]

    async with TestApp(app, backend=backend_url) as t:
        for body in bodies:
            await app.send(queue_name, body)
        await t.drain()
        before = (await t.stats())[queue_name].dead_letters
        failing[0] = False
        moved = await app.redrive(f"{queue_name}-dlq")
        await t.drain()
        after = (await t.stats())[queue_name]
    assert before == 6
    assert moved == 6
    assert [body for body, _, _ in handled] == bodies
    assert (after.dead_letters, after.depth, after.in_flight) == (0, 0, 0)


async def test_redriven_message_starts_with_receive_count_one(
    backend_url: str, queue_name: str
) -> None:
    """A redriven message arrives with ``receive_count`` 1 and no dead-letter reason."""
    handled: list[tuple[str, int, DeadLetterInfo | None]] = []
    failing = [True]
    app = failing_app(queue_name, handled, failing=failing)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        failing[0] = False
        await app.redrive(f"{queue_name}-dlq")
        await t.drain()
    assert handled == [("hello", 1, None)]


async def test_redrive_with_limit_moves_only_that_many_oldest_first(
    backend_url: str, queue_name: str
) -> None:
    """``limit=`` moves the oldest dead letters only; a second redrive moves the rest once."""
    handled: list[tuple[str, int, DeadLetterInfo | None]] = []
    failing = [True]
    app = failing_app(queue_name, handled, failing=failing)
    bodies = [f"m{n}" for n in range(5)]

    async with TestApp(app, backend=backend_url) as t:
        for body in bodies:
            await app.send(queue_name, body)
        await t.drain()
        failing[0] = False
        first = await app.redrive(f"{queue_name}-dlq", limit=2)
        await t.drain()
        handled_first = [body for body, _, _ in handled]
        left = (await t.stats())[queue_name].dead_letters
        rest = await app.redrive(f"{queue_name}-dlq")
        await t.drain()
    assert (first, left, rest) == (2, 3, 3)
    assert handled_first == ["m0", "m1"]
    assert [body for body, _, _ in handled] == bodies


async def test_redrive_to_another_queue(backend_url: str, queue_name: str) -> None:
    """``to=`` sends dead letters to the named queue instead of their source."""
    handled: list[tuple[str, int, DeadLetterInfo | None]] = []
    failing = [True]
    app = failing_app(queue_name, handled, failing=failing)
    other: list[str] = []

    @app.on_queue(f"{queue_name}-other", visibility_timeout=1)
    async def handle_other(body: str) -> None:
        other.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        moved = await app.redrive(f"{queue_name}-dlq", to=f"{queue_name}-other")
        await t.drain()
    assert moved == 1
    assert other == ["hello"]
    assert handled == []


async def test_redriven_message_that_fails_again_is_dead_lettered_again(
    backend_url: str, queue_name: str
) -> None:
    """After a redrive the message gets the full ``max_receive_count`` tries again, then the DLQ."""
    app = App("conformance")
    seen: list[int] = []
    dead: list[int] = []

    @app.on_queue(queue_name, visibility_timeout=1, retry_delay=0, max_receive_count=2)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(ctx.message.receive_count)
        raise RuntimeError("always")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(queue_name, "hello")
        await t.drain()
        await app.redrive(f"{queue_name}-dlq")
        await t.drain()
        dead.append((await t.stats())[queue_name].dead_letters)
    assert seen == [1, 2, 1, 2]
    assert dead == [1]


async def test_redrive_of_empty_dead_letter_queue_moves_nothing(
    backend_url: str, queue_name: str
) -> None:
    """Redriving an empty dead-letter queue returns 0 and changes nothing."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)

    async with TestApp(app, backend=backend_url) as t:
        moved = await app.redrive(f"{queue_name}-dlq")
        stats = (await t.stats())[queue_name]
    assert moved == 0
    assert (stats.depth, stats.dead_letters) == (0, 0)


async def test_redrive_of_unknown_queue_is_refused_by_name(
    backend_url: str, queue_name: str
) -> None:
    """Redriving a queue that is not declared raises UnknownQueueError naming it."""
    app = App("conformance")
    app.queue(queue_name, visibility_timeout=1)

    async with TestApp(app, backend=backend_url):
        with pytest.raises(UnknownQueueError, match=f"{queue_name}-nope"):
            await app.redrive(f"{queue_name}-nope")
