"""SPEC §3.6 FIFO queues: strict order and one in flight per group, groups in parallel, dedup."""

from __future__ import annotations

from collections import defaultdict

import anyio
import pytest
from anyio.lowlevel import checkpoint

from framework import App, Context
from framework.testing import TestApp

GROUPS = ("red", "green", "blue")


async def test_each_group_is_handled_in_send_order(backend_url: str, queue_name: str) -> None:
    """With ``concurrency=10`` and groups interleaved, each group arrives in send order."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    seen: defaultdict[str, list[int]] = defaultdict(list)

    @app.on_queue(fifo, visibility_timeout=2, concurrency=10)
    async def handle(body: dict[str, int], ctx: Context) -> None:
        for _ in range(body["n"] % 3 + 1):  # uneven handler times, so groups interleave
            await checkpoint()
        assert ctx.message.group_id is not None
        seen[ctx.message.group_id].append(body["n"])

    async with TestApp(app, backend=backend_url) as t:
        for n in range(10):
            for group in GROUPS:
                await app.send(fifo, {"n": n}, group_id=group, deduplication_id=f"{group}-{n}")
        await t.drain()
    assert dict(seen) == {group: list(range(10)) for group in GROUPS}


async def test_only_one_message_per_group_is_in_flight(backend_url: str, queue_name: str) -> None:
    """A group never has two messages in flight at once, while different groups overlap."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    in_flight: defaultdict[str, int] = defaultdict(int)
    most_per_group = 0
    most_overall = 0
    # Handlers hold on until every message is queued: on a broker a send takes longer than
    # this handler, so without the gate no two handlers might ever overlap; with it, each
    # group's later messages are available while its head is in flight.
    all_sent = anyio.Event()

    @app.on_queue(fifo, visibility_timeout=2, concurrency=10)
    async def handle(body: str, ctx: Context) -> None:
        nonlocal most_per_group, most_overall
        group = ctx.message.group_id or ""
        in_flight[group] += 1
        most_per_group = max(most_per_group, in_flight[group])
        most_overall = max(most_overall, sum(in_flight.values()))
        await all_sent.wait()
        for _ in range(5):
            await checkpoint()
        in_flight[group] -= 1

    async with TestApp(app, backend=backend_url) as t:
        for n in range(5):
            for group in GROUPS:
                await app.send(fifo, f"{group}{n}", group_id=group, deduplication_id=f"{group}{n}")
        all_sent.set()
        await t.drain()
    assert most_per_group == 1
    assert most_overall > 1


async def test_blocked_group_does_not_hold_up_other_groups(
    backend_url: str, queue_name: str
) -> None:
    """While one group's head is still being handled, other groups' messages are all handled."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    release = anyio.Event()
    fast_done = anyio.Event()
    seen: list[str] = []

    @app.on_queue(fifo, visibility_timeout=2, concurrency=10)
    async def handle(body: str, ctx: Context) -> None:
        if body == "slow-0":
            await release.wait()
        seen.append(body)
        if body == "fast-2":
            fast_done.set()

    async with TestApp(app, backend=backend_url) as t:
        await app.send(fifo, "slow-0", group_id="slow", deduplication_id="s0")
        await app.send(fifo, "slow-1", group_id="slow", deduplication_id="s1")
        for n in range(3):
            await app.send(fifo, f"fast-{n}", group_id="fast", deduplication_id=f"f{n}")
        with anyio.fail_after(5):
            await fast_done.wait()
        while_blocked = list(seen)
        release.set()
        await t.drain()
    assert while_blocked == ["fast-0", "fast-1", "fast-2"]
    assert seen[3:] == ["slow-0", "slow-1"]


async def test_failed_head_blocks_the_rest_of_its_group(backend_url: str, queue_name: str) -> None:
    """A failed message is retried before any later message of its group is delivered."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    seen: list[tuple[str, int]] = []

    @app.on_queue(fifo, visibility_timeout=1, retry_delay=1, max_receive_count=3, concurrency=10)
    async def handle(body: str, ctx: Context) -> None:
        seen.append((body, ctx.message.receive_count))
        if body == "first" and ctx.message.receive_count == 1:
            raise RuntimeError("transient")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(fifo, "first", group_id="g", deduplication_id="1")
        await app.send(fifo, "second", group_id="g", deduplication_id="2")
        # Not t.drain(): "second" counts as visible while it waits behind its group's head.
        await t.clock.advance(0.5)
        during_retry = list(seen)
        await t.clock.advance(1)
        await t.drain()
    assert during_retry == [("first", 1)]
    assert seen == [("first", 1), ("first", 2), ("second", 1)]


@pytest.mark.moto_gap(
    "a deduplication id is free again once its message is deleted (AWS keeps it for five "
    "minutes), so 'fourth' is delivered"
)
async def test_duplicate_deduplication_id_is_accepted_and_dropped(
    backend_url: str, queue_name: str
) -> None:
    """A second send with the same ``deduplication_id`` succeeds but is not delivered again."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    seen: list[str] = []

    @app.on_queue(fifo, visibility_timeout=1)
    async def handle(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(fifo, "first", group_id="g", deduplication_id="same")
        await app.send(fifo, "second", group_id="g", deduplication_id="same")
        await app.send(fifo, "third", group_id="g", deduplication_id="other")
        await t.drain()
        await t.clock.advance(1)  # still well inside the five-minute window
        await app.send(fifo, "fourth", group_id="g", deduplication_id="same")
        await t.drain()
    assert seen == ["first", "third"]


@pytest.mark.moto_gap(
    "a deduplication id is free again once its message is deleted (AWS keeps it for five "
    "minutes): when the handler deletes the first copy before the second is sent, the "
    "second is delivered",
    strict=False,
)
async def test_content_based_deduplication_drops_identical_bodies(
    backend_url: str, queue_name: str
) -> None:
    """With content-based deduplication an identical body is dropped and a different one is not."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    seen: list[dict[str, int]] = []

    @app.on_queue(fifo, visibility_timeout=1, content_based_deduplication=True)
    async def handle(body: dict[str, int]) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(fifo, {"n": 1}, group_id="g")
        await app.send(fifo, {"n": 1}, group_id="g")
        await app.send(fifo, {"n": 2}, group_id="g")
        await t.drain()
    assert seen == [{"n": 1}, {"n": 2}]


async def test_explicit_deduplication_id_wins_over_content(
    backend_url: str, queue_name: str
) -> None:
    """With content-based deduplication on, distinct explicit ids keep identical bodies apart."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    seen: list[str] = []

    @app.on_queue(fifo, visibility_timeout=1, content_based_deduplication=True)
    async def handle(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(fifo, "same", group_id="g", deduplication_id="a")
        await app.send(fifo, "same", group_id="g", deduplication_id="b")
        await t.drain()
    assert seen == ["same", "same"]


async def test_duplicate_after_the_five_minute_window_is_accepted(
    backend_url: str, queue_name: str
) -> None:
    """A deduplication id reused after five minutes is a new message; memory only, as it needs
    the virtual clock: on a real broker ``t.clock.advance(301)`` would sleep five minutes."""
    if not backend_url.startswith("memory:"):
        pytest.skip("needs a virtual clock to pass five minutes quickly")
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    seen: list[str] = []

    @app.on_queue(fifo, visibility_timeout=1)
    async def handle(body: str) -> None:
        seen.append(body)

    async with TestApp(app, backend=backend_url) as t:
        await app.send(fifo, "first", group_id="g", deduplication_id="same")
        await t.drain()
        await t.clock.advance(299)
        await app.send(fifo, "inside", group_id="g", deduplication_id="same")
        await t.drain()
        await t.clock.advance(2)
        await app.send(fifo, "after", group_id="g", deduplication_id="same")
        await t.drain()
    assert seen == ["first", "after"]


async def test_drain_returns_while_a_fifo_group_waits_for_its_retry(
    backend_url: str, queue_name: str
) -> None:
    """``t.drain()`` returns while a group's later messages wait behind a head that is retrying."""
    app = App("conformance")
    fifo = f"{queue_name}.fifo"
    seen: list[str] = []

    @app.on_queue(fifo, visibility_timeout=1, retry_delay=1, max_receive_count=3)
    async def handle(body: str, ctx: Context) -> None:
        seen.append(body)
        if ctx.message.receive_count == 1:
            raise RuntimeError("transient")

    async with TestApp(app, backend=backend_url) as t:
        await app.send(fifo, "first", group_id="g", deduplication_id="1")
        await app.send(fifo, "second", group_id="g", deduplication_id="2")
        await t.drain(timeout=1)
    assert seen == ["first"]
