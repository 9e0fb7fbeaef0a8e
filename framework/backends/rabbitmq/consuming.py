"""Deliveries off the wire without aio-pika's ``IncomingMessage``, on aio-pika's robust consumers.

aio-pika's ``Queue.consume`` hands aiormq a wrapper that builds an ``IncomingMessage`` (every
attribute set through a checking ``__setattr__``, the timestamp and expiration decoded) and
runs the callback in a task of its own: a second task per delivery, after aiormq's. The
framework reads five properties of a delivery, so a ``Consumer`` takes aiormq's delivered
message as it is and keeps what it needs in an ``AmqpDelivery``.

The consumer stays aio-pika's in everything else: the connection's channels build their queues
as ``_Queue``, a ``RobustQueue`` whose ``consume`` registers a ``Consumer`` with aiormq directly
and records it as ``RobustQueue`` records its own, so a reconnect restores it in the same step
as aio-pika's consumers. aio-pika's fallback recovery of a consumer missing after a restore
registers it through the base ``Queue.consume`` instead: the ``Consumer`` then gets
``IncomingMessage`` objects, and reads them the same way. Any other callback (the connection
relay's) is consumed exactly as aio-pika does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, ConsumerTag, TimeoutType
from aio_pika.exceptions import ChannelInvalidStateError
from aio_pika.robust_queue import RobustQueue
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.common import Arguments

__all__ = ["AmqpDelivery", "Consumer", "RobustConnection"]

_NO_HEADERS: Mapping[str, Any] = {}


@dataclass(slots=True, eq=False)
class AmqpDelivery:
    """One delivery as the framework reads it: where to settle it, and what it carries."""

    channel: AbstractChannel  # the aiormq channel it came on, where it is settled
    delivery_tag: int
    message_id: str | None
    content_type: str | None
    headers: Mapping[str, Any]
    body: bytes
    timestamp: datetime | None

    @classmethod
    def of(cls, message: DeliveredMessage) -> AmqpDelivery:
        """Read aiormq's delivered message (a basic.deliver or a basic.get-ok)."""
        properties = message.header.properties
        tag: int = message.delivery.delivery_tag  # type: ignore[union-attr,assignment]
        return cls(
            message.channel,
            tag,  # a basic.deliver's or a basic.get-ok's: always set
            properties.message_id,
            properties.content_type,
            properties.headers or _NO_HEADERS,
            message.body,
            properties.timestamp,
        )

    @classmethod
    def of_incoming(cls, message: AbstractIncomingMessage) -> AmqpDelivery | None:
        """Read aio-pika's message; None if its channel has closed (the broker has it back)."""
        try:
            channel = message.channel
        except ChannelInvalidStateError:
            return None
        if message.delivery_tag is None:
            return None
        return cls(
            channel,
            message.delivery_tag,
            message.message_id,
            message.content_type,
            message.headers or _NO_HEADERS,
            message.body,
            message.timestamp,
        )

    async def ack(self) -> None:
        """Acknowledge it on its own, at once (a basic.get; consumers batch theirs)."""
        await self.channel.basic_ack(self.delivery_tag)

    async def reject(self, *, requeue: bool) -> None:
        """Reject it (``requeue``: back to its queue, counted by a quorum queue)."""
        await self.channel.basic_reject(self.delivery_tag, requeue=requeue)


class Consumer:
    """A consumer callback that hands each delivery to ``put`` as an ``AmqpDelivery``."""

    __slots__ = ("put",)

    def __init__(self, put: Callable[[AmqpDelivery], None]) -> None:
        self.put = put

    async def __call__(self, message: DeliveredMessage | AbstractIncomingMessage) -> None:
        """Take a delivery: aiormq's own (``deliver``), or aio-pika's message."""
        if isinstance(message, DeliveredMessage):
            self.put(AmqpDelivery.of(message))
            return
        delivery = AmqpDelivery.of_incoming(message)  # through aio-pika's fallback recovery
        if delivery is not None:
            self.put(delivery)

    async def deliver(self, message: DeliveredMessage) -> None:
        """What aiormq calls, in a task of its own, for each delivery."""
        self.put(AmqpDelivery.of(message))


class _Queue(RobustQueue):
    """A robust queue that consumes with a ``Consumer`` without aio-pika's wrapper."""

    __slots__ = ()

    async def consume(
        self,
        callback: Callable[[Any], Awaitable[Any]],
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Arguments = None,
        consumer_tag: ConsumerTag | None = None,
        timeout: TimeoutType = None,  # noqa: ASYNC109  (aio-pika's signature)
        robust: bool = True,
    ) -> ConsumerTag:
        if not isinstance(callback, Consumer):
            return await super().consume(
                callback,
                no_ack=no_ack,
                exclusive=exclusive,
                arguments=arguments,
                consumer_tag=consumer_tag,
                timeout=timeout,
                robust=robust,
            )
        channel = await self.channel.get_underlay_channel()
        result = await channel.basic_consume(
            queue=self.name,
            consumer_callback=callback.deliver,  # a coroutine function: aiormq adds no wrapper
            exclusive=exclusive,
            no_ack=no_ack,
            arguments=arguments,
            consumer_tag=consumer_tag,
            timeout=timeout,
        )
        if result.consumer_tag is None:  # as aio-pika checks: never from RabbitMQ
            raise RuntimeError("Consumer tag is None")
        if robust:  # what a reconnect restores, as RobustQueue.consume records it
            self._consumers[result.consumer_tag] = dict(
                callback=callback, no_ack=no_ack, exclusive=exclusive, arguments=arguments
            )
        return result.consumer_tag


class _Channel(aio_pika.RobustChannel):
    QUEUE_CLASS = _Queue


class RobustConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection, whose channels' queues consume with ``Consumer``."""

    CHANNEL_CLASS = _Channel
