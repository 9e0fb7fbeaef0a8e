"""Unit tests of MemoryQueue, the in-memory SQS model, on a virtual clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from framework.backends.memory.queues import MemoryQueue
from framework.messages import Outgoing
from framework.registry import QueueSpec
from framework.testing import VirtualClock


def queue(clock: VirtualClock, name: str = "jobs", **options: Any) -> MemoryQueue:
    """Build a memory queue named ``name`` with ``options`` on ``clock``."""
    return MemoryQueue(QueueSpec.from_options(name, **options), clock)


def message(body: bytes = b"x", **changes: Any) -> Outgoing:
    """Build an outgoing message."""
    return Outgoing(body=body, **changes)


async def test_sent_message_is_received_with_count_one() -> None:
    """A sent message is received once, with its body and a receive count of 1."""
    clock = VirtualClock()
    q = queue(clock)
    message_id = q.send(message(b"hello", attributes={"k": "v"}))
    (delivery,) = await q.receive(10, 0)
    assert delivery.message_id == message_id
    assert delivery.body == b"hello"
    assert delivery.attributes == {"k": "v"}
    assert delivery.receive_count == 1
    assert delivery.queue == "jobs"


async def test_messages_come_out_in_send_order() -> None:
    """A standard memory queue hands out messages in the order they were sent."""
    q = queue(VirtualClock())
    for i in range(5):
        q.send(message(str(i).encode()))
    assert [d.body for d in await q.receive(10, 0)] == [b"0", b"1", b"2", b"3", b"4"]


async def test_receive_takes_at_most_limit_messages() -> None:
    """``limit`` caps how many messages one receive leases."""
    q = queue(VirtualClock())
    for _ in range(5):
        q.send(message())
    assert len(await q.receive(2, 0)) == 2
    assert len(await q.receive(10, 0)) == 3


async def test_leased_message_is_invisible_until_the_visibility_timeout() -> None:
    """A received message stays invisible for the visibility timeout, then returns counted twice."""
    clock = VirtualClock()
    q = queue(clock, visibility_timeout=30)
    q.send(message())
    await q.receive(1, 0)
    await clock.advance(29.9)
    assert await q.receive(1, 0) == []
    assert q.stats().in_flight == 1
    await clock.advance(0.1)
    (again,) = await q.receive(1, 0)
    assert again.receive_count == 2


async def test_ack_deletes_and_a_stale_receipt_deletes_nothing() -> None:
    """Deleting with the current receipt removes the message; an expired receipt is a no-op."""
    clock = VirtualClock()
    q = queue(clock, visibility_timeout=5)
    q.send(message())
    (first,) = await q.receive(1, 0)
    await clock.advance(5)
    (second,) = await q.receive(1, 0)
    assert q.delete(first.receipt) is None
    assert len(q) == 1
    assert q.delete(second.receipt) is not None
    assert len(q) == 0


async def test_change_visibility_extends_and_releases_leases() -> None:
    """Visibility can be extended past the timeout, or set to 0 to release at once."""
    clock = VirtualClock()
    q = queue(clock, visibility_timeout=5)
    q.send(message())
    (d,) = await q.receive(1, 0)
    assert q.change_visibility(d.receipt, 60)
    await clock.advance(30)
    assert await q.receive(1, 0) == []
    assert q.change_visibility(d.receipt, 0)
    (again,) = await q.receive(1, 0)
    assert again.receive_count == 2
    assert not q.change_visibility(d.receipt, 10)


async def test_delayed_message_is_invisible_until_its_delay_ends() -> None:
    """A per-message delay keeps the message out of receives and counted as delayed."""
    clock = VirtualClock()
    q = queue(clock)
    q.send(message(delay=10))
    assert q.stats().delayed == 1
    assert await q.receive(1, 0) == []
    await clock.advance(10)
    assert q.stats().depth == 1
    assert len(await q.receive(1, 0)) == 1


async def test_queue_delay_applies_when_longer_than_the_message_delay() -> None:
    """The queue's own delay is the floor of every message's delay."""
    clock = VirtualClock()
    q = queue(clock, delay=20)
    q.send(message(delay=5))
    await clock.advance(19)
    assert await q.receive(1, 0) == []
    await clock.advance(1)
    assert len(await q.receive(1, 0)) == 1


async def test_waiting_receive_wakes_on_send() -> None:
    """A receive waiting for messages returns as soon as one is sent."""
    q = queue(VirtualClock())
    waiting = asyncio.create_task(q.receive(1, 20))
    await asyncio.sleep(0)
    assert not waiting.done()
    q.send(message(b"late"))
    (d,) = await asyncio.wait_for(waiting, timeout=1)
    assert d.body == b"late"


async def test_waiting_receive_returns_empty_when_its_wait_ends() -> None:
    """A receive with nothing to take returns empty once its wait has passed on the clock."""
    clock = VirtualClock()
    q = queue(clock)
    waiting = asyncio.create_task(q.receive(1, 20))
    await clock.advance(19)
    assert not waiting.done()
    await clock.advance(1)
    assert await asyncio.wait_for(waiting, timeout=1) == []


async def test_waiting_receive_wakes_when_a_lease_expires() -> None:
    """A waiting receive takes a message whose lease expires during the wait."""
    clock = VirtualClock()
    q = queue(clock, visibility_timeout=5)
    q.send(message())
    await q.receive(1, 0)
    waiting = asyncio.create_task(q.receive(1, 20))
    await clock.advance(5)
    (d,) = await asyncio.wait_for(waiting, timeout=1)
    assert d.receive_count == 2


async def test_stats_count_visible_in_flight_and_delayed() -> None:
    """Stats split messages into depth, in flight and delayed, and name the dead-letter queue."""
    q = queue(VirtualClock())
    q.send(message())
    q.send(message())
    q.send(message(delay=60))
    await q.receive(1, 0)
    stats = q.stats()
    assert (stats.depth, stats.in_flight, stats.delayed) == (1, 1, 1)
    assert stats.dead_letter_queue == "jobs-dlq"


async def test_purge_removes_every_message_and_invalidates_receipts() -> None:
    """Purge deletes visible, delayed and leased messages; old receipts then do nothing."""
    clock = VirtualClock()
    q = queue(clock)
    q.send(message())
    q.send(message(delay=60))
    q.send(message())
    (d,) = await q.receive(1, 0)
    assert q.purge() == 3
    assert len(q) == 0
    assert q.delete(d.receipt) is None
    await clock.advance(120)
    stats = q.stats()
    assert (stats.depth, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_message_past_retention_is_dropped() -> None:
    """A message older than the queue's retention is never delivered."""
    clock = VirtualClock()
    q = queue(clock, retention=60)
    q.send(message())
    await clock.advance(60)
    assert await q.receive(1, 0) == []
    assert len(q) == 0


async def test_fifo_group_delivers_one_message_at_a_time_in_order() -> None:
    """In a FIFO group the next message is held back until the one in flight is deleted."""
    q = queue(VirtualClock(), "jobs.fifo")
    for i in range(3):
        q.send(message(str(i).encode(), group_id="g", deduplication_id=f"d{i}"))
    (first,) = await q.receive(10, 0)
    assert first.body == b"0"
    assert await q.receive(10, 0) == []
    q.delete(first.receipt)
    (second,) = await q.receive(10, 0)
    assert second.body == b"1"
    assert second.group_id == "g"


async def test_fifo_groups_proceed_in_parallel() -> None:
    """Different FIFO groups each have one message in flight at the same time."""
    q = queue(VirtualClock(), "jobs.fifo")
    for group in ("a", "b"):
        for i in range(2):
            q.send(message(f"{group}{i}".encode(), group_id=group, deduplication_id=f"{group}{i}"))
    assert sorted(d.body for d in await q.receive(10, 0)) == [b"a0", b"b0"]


async def test_fifo_released_message_keeps_its_place_at_the_head() -> None:
    """A FIFO message released after failure is delivered again before the rest of its group."""
    clock = VirtualClock()
    q = queue(clock, "jobs.fifo", visibility_timeout=5)
    q.send(message(b"first", group_id="g", deduplication_id="1"))
    q.send(message(b"second", group_id="g", deduplication_id="2"))
    (d,) = await q.receive(10, 0)
    q.change_visibility(d.receipt, 0)
    (again,) = await q.receive(10, 0)
    assert again.body == b"first"
    assert again.receive_count == 2


async def test_fifo_duplicate_dedup_id_is_dropped_for_five_minutes() -> None:
    """A deduplication id seen in the last 300 s is accepted and dropped; after that it is new."""
    clock = VirtualClock()
    q = queue(clock, "jobs.fifo")
    first = q.send(message(group_id="g", deduplication_id="d"))
    await clock.advance(299)
    assert q.send(message(group_id="g", deduplication_id="d")) == first  # the first one's id
    assert len(q) == 1
    await clock.advance(1)
    assert q.send(message(group_id="g", deduplication_id="d")) != first
    assert len(q) == 2


async def test_content_based_dedup_drops_identical_bodies() -> None:
    """With content-based deduplication an identical body is dropped and a different one kept."""
    q = queue(VirtualClock(), "jobs.fifo", content_based_deduplication=True)
    first = q.send(message(b"same", group_id="g"))
    assert q.send(message(b"same", group_id="g")) == first
    assert q.send(message(b"other", group_id="g")) != first
    assert len(q) == 2


async def test_explicit_dedup_id_wins_over_content() -> None:
    """An explicit deduplication id is used even on a content-deduplicating queue."""
    q = queue(VirtualClock(), "jobs.fifo", content_based_deduplication=True)
    assert q.send(message(b"same", group_id="g", deduplication_id="1")) is not None
    assert q.send(message(b"same", group_id="g", deduplication_id="2")) is not None


async def test_standard_queue_never_deduplicates() -> None:
    """A standard queue keeps every message, whatever its deduplication id."""
    q = queue(VirtualClock())
    q.send(message(deduplication_id="d"))
    q.send(message(deduplication_id="d"))
    assert len(q) == 2


@pytest.mark.parametrize("given", [None, "fixed-id"])
async def test_message_id_is_kept_or_generated(given: str | None) -> None:
    """A message keeps the id it was sent with (redrive, dead letters) or gets a fresh one."""
    q = queue(VirtualClock())
    message_id = q.send(message(message_id=given))
    assert message_id
    if given is not None:
        assert message_id == given
    (d,) = await q.receive(1, 0)
    assert d.message_id == message_id


async def test_acked_leases_leave_nothing_for_a_later_receive_to_clean_up() -> None:
    """Leases acked before their timeout leave no timers behind, so an empty receive stays cheap."""
    clock = VirtualClock()
    q = queue(clock, visibility_timeout=30)
    for _ in range(1_000):
        q.send(message())
    for delivery in await q.receive(1_000, 0):
        assert q.delete(delivery.receipt) is not None
    assert (q._timers, q._leases, q._moved) == ([], {}, {})
    assert await q.receive(10, 0) == []


async def test_timers_of_moved_leases_are_compacted_once_settled() -> None:
    """Timer entries of leases moved by change_visibility and then acked do not pile up."""
    q = queue(VirtualClock(), visibility_timeout=30)
    for _ in range(10):
        for _ in range(100):
            q.send(message())
        for delivery in await q.receive(100, 0):
            q.change_visibility(delivery.receipt, 60)
            q.delete(delivery.receipt)
    assert len(q._timers) <= 128


async def test_leases_expire_on_time_after_a_redeclare_shortens_the_timeout() -> None:
    """A lease taken after the visibility timeout shrinks expires at its own, earlier deadline."""
    clock = VirtualClock()
    q = queue(clock, visibility_timeout=30)
    q.send(message(b"long"))
    await q.receive(1, 0)
    q.spec = QueueSpec.from_options("jobs", visibility_timeout=5)
    q.send(message(b"short"))
    await q.receive(1, 0)
    await clock.advance(5)
    (again,) = await q.receive(10, 0)
    assert (again.body, again.receive_count) == (b"short", 2)
    q.delete(again.receipt)
    await clock.advance(25)
    (last,) = await q.receive(10, 0)
    assert last.body == b"long"


async def test_redelivered_message_goes_before_later_sends() -> None:
    """A message visible again is received before messages sent after it, as on a FIFO line."""
    clock = VirtualClock()
    q = queue(clock, visibility_timeout=5)
    q.send(message(b"0"))
    (first,) = await q.receive(1, 0)
    q.send(message(b"1"))
    q.change_visibility(first.receipt, 0)
    assert [d.body for d in await q.receive(10, 0)] == [b"0", b"1"]


async def test_waiting_receive_wakes_for_a_release_after_its_own_timer_fired() -> None:
    """A receive whose timer fired for nothing and that waits again still wakes for a release."""
    clock = VirtualClock()
    q = queue(clock, visibility_timeout=5)
    q.send(message(b"acked"))
    q.send(message(b"released"))
    acked, released = await q.receive(2, 0)
    got: list[bytes] = []

    async def waiting() -> None:
        got.extend(d.body for d in await q.receive(1, 20))

    task = asyncio.ensure_future(waiting())
    await clock.advance(1)
    q.change_visibility(released.receipt, 100)
    q.delete(acked.receipt)
    await clock.advance(5)  # the receive's timer (t=5) fires for a lease acked meanwhile
    q.change_visibility(released.receipt, 2)
    await clock.advance(2)
    assert got == [b"released"]
    await task
