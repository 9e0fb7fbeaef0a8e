"""The RabbitMQ backend's primitives against the broker: what the conformance suite cannot see."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid

import pytest

from framework.backends.rabbitmq import RabbitMQBackend
from framework.backends.rabbitmq.wire import ATTRIBUTES, RECEIVE_COUNT
from framework.exceptions import MailError, UnknownQueueError
from framework.messages import DeadLetterReason, Delivery, Outgoing
from framework.registry import QueueSpec

pytestmark = pytest.mark.rabbitmq


def fresh(**options: object) -> QueueSpec:
    """A queue spec with a fresh name, so tests never share a queue on the broker."""
    return QueueSpec.from_options(f"rq-{uuid.uuid4().hex[:12]}", **options)


async def declared(backend: RabbitMQBackend, **options: object) -> QueueSpec:
    """Declare a fresh queue and its DLQ, as the runtime does; return the queue's spec."""
    spec = fresh(**options)
    await backend.declare_queue(spec)
    dlq = spec.dead_letter_spec()
    assert dlq is not None
    await backend.declare_queue(dlq)
    return spec


async def test_attributes_round_trip_with_their_python_types(backend: RabbitMQBackend) -> None:
    """str, int, float, bool and list attributes come back equal and of the same types."""
    spec = await declared(backend)
    attributes = {"s": "x", "i": 3, "f": 2.5, "whole": 1.0, "b": True, "l": ["a", 1, False]}
    message_id = await backend.send(spec.name, Outgoing(body=b"{}", attributes=attributes))
    (delivery,) = await backend.receive(spec.name, limit=1, wait=2)
    assert delivery.message_id == message_id
    assert delivery.attributes == attributes
    assert [type(v) for v in delivery.attributes.values()] == [type(v) for v in attributes.values()]
    await backend.ack(delivery)


async def test_release_carries_the_count_in_a_header(backend: RabbitMQBackend) -> None:
    """A release re-publishes the copy with x-framework-receive-count = receipts so far."""
    spec = await declared(backend)
    await backend.send(spec.name, Outgoing(body=b"x", attributes={"k": "v"}))
    # wait=0 fetches with basic.get: no consumer takes the copies before the raw look below.
    (first,) = await backend.receive(spec.name, limit=1, wait=0)
    await backend.release(first, delay=0)
    (second,) = await backend.receive(spec.name, limit=1, wait=0)
    assert (first.receive_count, second.receive_count) == (1, 2)
    assert second.first_received_at == first.first_received_at
    assert second.sent_at == first.sent_at
    await backend.release(second, delay=0)
    # Look at the raw copy with basic.get from another backend: the header says 2.
    raw = await _raw_get(backend, spec.name)
    assert raw[RECEIVE_COUNT] == 2
    assert json.loads(raw[ATTRIBUTES]) == {"k": "v"}


async def _raw_get(backend: RabbitMQBackend, queue: str) -> dict[str, object]:
    assert backend.connection is not None
    channel = await backend.connection.channel()
    amqp_queue = await channel.get_queue(queue, ensure=False)
    message = await amqp_queue.get(no_ack=True, fail=True, timeout=5)
    assert message is not None
    await channel.close()
    return dict(message.headers)


async def test_release_with_delay_waits_in_a_delay_queue(backend: RabbitMQBackend) -> None:
    """A release with a delay goes through NAME.delay.<ms>, counted as delayed, then returns."""
    spec = await declared(backend)
    await backend.send(spec.name, Outgoing(body=b"x"))
    (first,) = await backend.receive(spec.name, limit=1, wait=2)
    await backend.release(first, delay=0.5)
    stats = await backend.stats(spec.name)
    assert (stats.depth, stats.in_flight, stats.delayed) == (0, 0, 1)
    assert f"{spec.name}.delay.500" in await backend.queues()
    assert await backend.receive(spec.name, limit=1, wait=0.2) == []
    (again,) = await backend.receive(spec.name, limit=1, wait=2)
    assert again.receive_count == 2
    await backend.ack(again)


async def test_dead_letter_carries_reason_headers_and_resets_the_count(
    backend: RabbitMQBackend,
) -> None:
    """A dead letter keeps id, body and attributes, adds the reason, and starts at count 1."""
    spec = await declared(backend)
    message_id = await backend.send(spec.name, Outgoing(body=b"x", attributes={"a": 1}))
    (delivery,) = await backend.receive(spec.name, limit=1, wait=2)
    reason = DeadLetterReason(spec.name, 1, "ValueError", "bad", delivery.first_received_at)
    await backend.dead_letter(delivery, reason=reason)
    assert spec.dead_letter is not None
    (dead,) = await backend.receive(spec.dead_letter, limit=1, wait=0)
    assert (dead.message_id, dead.body, dead.attributes) == (message_id, b"x", {"a": 1})
    assert dead.receive_count == 1
    assert {k: dead.headers[k] for k in reason.headers()} == reason.headers()
    await backend.ack(dead)
    assert (await backend.stats(spec.name)).dead_letters == 0


async def test_settling_an_unknown_receipt_is_a_no_op(backend: RabbitMQBackend) -> None:
    """Acking, releasing or extending a delivery twice does nothing the second time."""
    spec = await declared(backend)
    await backend.send(spec.name, Outgoing(body=b"x"))
    (delivery,) = await backend.receive(spec.name, limit=1, wait=2)
    await backend.ack(delivery)
    await backend.ack(delivery)
    await backend.release(delivery, delay=0)
    await backend.extend(delivery, seconds=5)
    stats = await backend.stats(spec.name)
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_receive_with_zero_wait_uses_basic_get_without_a_consumer(
    backend: RabbitMQBackend,
) -> None:
    """A one-off receive (redrive) gets messages in order and leaves no consumer behind."""
    spec = await declared(backend)
    for n in range(3):
        await backend.send(spec.name, Outgoing(body=str(n).encode()))
    await asyncio.sleep(0.1)
    deliveries = await backend.receive(spec.name, limit=10, wait=0)
    assert [d.body for d in deliveries] == [b"0", b"1", b"2"]
    assert spec.name not in backend._inboxes
    for d in deliveries:
        await backend.ack(d)


async def test_unknown_queue_is_named(backend: RabbitMQBackend) -> None:
    """Sending to, or asking the stats of, a queue missing on the broker names it."""
    with pytest.raises(UnknownQueueError, match="rq-missing"):
        await backend.send("rq-missing", Outgoing(body=b"x"))
    with pytest.raises(UnknownQueueError, match="rq-missing"):
        await backend.stats("rq-missing")


async def test_stuck_lease_is_released_after_its_grace(broker: str) -> None:
    """A delivery held past its deadline plus lease_grace goes back, counted."""
    async with RabbitMQBackend.from_url(f"{broker}&lease_grace=0.2") as backend:
        spec = await declared(backend, visibility_timeout=0.3)
        await backend.send(spec.name, Outgoing(body=b"x"))
        (first,) = await backend.receive(spec.name, limit=1, wait=2)
        (second,) = await backend.receive(spec.name, limit=1, wait=2)
        assert second.receive_count == 2
        await backend.ack(first)  # expired: a no-op
        await backend.ack(second)


async def test_purge_deletes_ready_delayed_and_held_messages(backend: RabbitMQBackend) -> None:
    """Purge empties the queue, its delay queues and what this process holds."""
    spec = await declared(backend)
    for _ in range(3):
        await backend.send(spec.name, Outgoing(body=b"x"))
    await backend.send(spec.name, Outgoing(body=b"x", delay=30))
    (held,) = await backend.receive(spec.name, limit=1, wait=2)
    await asyncio.sleep(0.1)
    assert await backend.purge(spec.name) == 4
    await backend.ack(held)  # purged: a no-op
    stats = await backend.stats(spec.name)
    assert (stats.depth, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_send_mail_is_refused_with_the_reason(backend: RabbitMQBackend) -> None:
    """amqp:// has no mail transport of its own, and says to configure a relay."""
    from framework.messages import OutgoingMail

    with pytest.raises(MailError, match="FRAMEWORK_MAIL_RELAY"):
        await backend.send_mail(OutgoingMail("a@b.c", ("d@e.f",), b"", "<id@x>"))


def _close_connection(name: str) -> None:
    """Close the broker connection whose client named itself ``name``, and only that one."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    mine = [line.split("\t")[0] for line in listing.splitlines() if f'"{name}"' in line]
    assert len(mine) == 1, listing
    subprocess.run(
        ["rabbitmqctl", "close_connection", mine[0], "test: connection closed on purpose"],
        capture_output=True,
        check=True,
        timeout=30,
    )


@pytest.mark.skipif(
    os.environ.get("FRAMEWORK_TEST_RABBITMQ_CLOSE_CONNECTION") != "1",
    reason=(
        "closes a broker connection with rabbitmqctl: on RabbitMQ 3.10.8 here that stalled the "
        "whole shared broker for up to two minutes; set FRAMEWORK_TEST_RABBITMQ_CLOSE_CONNECTION=1"
    ),
)
async def test_connection_closed_under_a_lease_loses_nothing(backend: RabbitMQBackend) -> None:
    """A broker-closed connection returns the held message; it comes back counted, and the
    stale lease settles as a no-op."""
    spec = await declared(backend)
    await backend.send(spec.name, Outgoing(body=b"x"))
    (held,) = await backend.receive(spec.name, limit=1, wait=2)
    await asyncio.to_thread(_close_connection, backend.settings.connection_name)
    again = await backend.receive(spec.name, limit=1, wait=10)
    await backend.ack(held)  # its channel died with the connection: a no-op
    assert [d.body for d in again] == [b"x"]
    assert again[0].receive_count == 2
    await backend.ack(again[0])
    await asyncio.sleep(0.2)
    stats = await backend.stats(spec.name)
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_acks_settled_out_of_order_leave_exactly_the_released_copies(broker: str) -> None:
    """Acks batched per loop turn (``multiple`` for a settled prefix, plain past the first tag
    still held) acknowledge exactly what was settled: with the lowest tag held while later ones
    are acked, released and dead-lettered, nothing else goes back, and the channel stays open."""
    async with RabbitMQBackend.from_url(broker) as backend:
        spec = await declared(backend, concurrency=20)
        for n in range(20):
            await backend.send(spec.name, Outgoing(body=str(n).encode()))
        deliveries: list[Delivery] = []
        while len(deliveries) < 20:
            deliveries += await backend.receive(spec.name, limit=20, wait=2)
        by_body = {int(d.body): d for d in deliveries}
        held = by_body.pop(0)  # the lowest tag: no prefix can pass it yet
        for n in sorted(by_body, reverse=True):
            if n in (5, 11):
                await backend.release(by_body[n], delay=0)
            elif n == 7:
                d = by_body[n]
                reason = DeadLetterReason(spec.name, 1, "ValueError", "bad", d.first_received_at)
                await backend.dead_letter(d, reason=reason)
            else:
                await backend.ack(by_body[n])
        await asyncio.sleep(0.05)  # the flushes go out
        await backend.ack(held)
        again = []
        while len(again) < 2:
            again += await backend.receive(spec.name, limit=10, wait=2)
        assert sorted((int(d.body), d.receive_count) for d in again) == [(5, 2), (11, 2)]
        for d in again:
            await backend.ack(d)
        assert await backend.receive(spec.name, limit=10, wait=0.3) == []
        stats = await backend.stats(spec.name)
        assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 1)
