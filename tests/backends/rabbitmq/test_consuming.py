"""Consuming without aio-pika's IncomingMessage (consuming.py): the deliveries are read off
aiormq's own messages, and the consumer is restored with the connection as aio-pika's are."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from aio_pika.robust_queue import RobustQueue

from framework.backends.rabbitmq import RabbitMQBackend
from framework.backends.rabbitmq.consuming import AmqpDelivery, Consumer, RobustConnection
from framework.messages import Outgoing
from framework.registry import QueueSpec

from .proxy import proxy_to

pytestmark = pytest.mark.rabbitmq


def test_the_aio_pika_extension_points_are_as_they_were_read() -> None:
    """consuming.py relies on these (a pinned version range): the connection's and channel's
    class attributes that pick the classes they build, and RobustQueue's record of its
    consumers, which a restore re-consumes with ``self.consume``."""
    assert aio_pika.RobustConnection.CHANNEL_CLASS is aio_pika.RobustChannel
    assert aio_pika.RobustChannel.QUEUE_CLASS is RobustQueue
    assert "_consumers" in RobustQueue.__slots__
    assert "consume" in RobustQueue.restore.__code__.co_names
    assert issubclass(RobustConnection, aio_pika.RobustConnection)


async def test_a_consumer_survives_a_cut_connection_and_its_deliveries_are_aiormqs(
    broker: str,
) -> None:
    """Deliveries reach the inbox as ``AmqpDelivery`` read from aiormq's message (no aio-pika
    IncomingMessage built); after the connection is cut while one is held, the consumer is
    back on the new channel: the held one returns counted, and a message sent after the
    outage is delivered too."""
    spec = QueueSpec.from_options(f"rq-consume-{uuid.uuid4().hex[:8]}")
    async with (
        proxy_to(broker) as proxy,
        RabbitMQBackend.from_url(f"{proxy.url(broker)}&reconnect_interval=0.2") as backend,
    ):
        await backend.declare_queue(spec)
        await backend.send(spec.name, Outgoing(body=b"held", headers={"k": "v"}))
        (held,) = await backend.receive(spec.name, limit=1, wait=5)
        assert held.headers["k"] == "v"
        assert held.receive_count == 1
        inbox = backend._inboxes[spec.name]
        lease = backend._leases.get(held.receipt)
        assert lease is not None
        assert type(lease.message) is AmqpDelivery
        consumers = backend._consumers[spec.name][0]
        underlay = await consumers.get_underlay_channel()
        callback = underlay.consumers[inbox.consumer_tag or ""]
        assert isinstance(getattr(callback, "__self__", None), Consumer)
        assert backend.connection is not None
        back = asyncio.Event()
        backend.connection.reconnect_callbacks.add(lambda *_: back.set())
        await asyncio.sleep(0.3)  # past reconnect_interval since the connect
        proxy.cut()
        await asyncio.wait_for(back.wait(), 10)
        again = await backend.receive(spec.name, limit=1, wait=10)
        assert [d.body for d in again] == [b"held"]
        assert again[0].receive_count == 2
        await backend.ack(held)  # its channel died with the connection: a no-op
        await backend.ack(again[0])
        await backend.send(spec.name, Outgoing(body=b"after"))
        after = await backend.receive(spec.name, limit=1, wait=10)
        assert [d.body for d in after] == [b"after"]
        await backend.ack(after[0])
        underlay = await consumers.get_underlay_channel()
        callback = underlay.consumers[inbox.consumer_tag or ""]
        assert isinstance(getattr(callback, "__self__", None), Consumer)
        await asyncio.sleep(0.2)
        stats = await backend.stats(spec.name)
        assert (stats.depth, stats.in_flight) == (0, 0)
