"""Queues, delay queues and topic exchanges on the broker: their arguments and declarations.

Every framework queue is a durable quorum queue: quorum queues count the broker's own
redeliveries (``x-delivery-count``), which makes the receive count exact after a crash.
Arguments depend only on the options that cannot change without recreating the queue (FIFO,
the dead-letter queue's name), so redeclaring a queue after editing its visibility timeout or
retry delay never fails with PRECONDITION_FAILED.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import (
    AMQPError,
    ChannelClosed,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from framework.exceptions import DeclarationError, UnknownQueueError, UnknownTopicError
from framework.registry import QueueSpec

__all__ = [
    "DELIVERY_LIMIT",
    "Topology",
    "delay_milliseconds",
    "delay_queue_arguments",
    "delay_queue_name",
    "queue_arguments",
]

log = logging.getLogger("framework.backends.rabbitmq")

# Far above max_receive_count (at most 1000): the framework decides dead-lettering, never the
# broker. Set explicitly because RabbitMQ 4.0 quorum queues default to 20.
DELIVERY_LIMIT = 10_000
# A delay queue lives at least this long after its last declaration with no message in it.
DELAY_QUEUE_IDLE = 60_000


def queue_arguments(spec: QueueSpec, *, expires: float | None = None) -> dict[str, Any]:
    """Return the broker arguments of the quorum queue behind ``spec``.

    Args:
        spec: The framework queue.
        expires: Seconds after which the broker deletes the queue once unused (``x-expires``);
            for tests and throw-away environments only, as it deletes waiting messages too.
    """
    args: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT}
    if spec.dead_letter is not None:
        # A route for whatever the broker dead-letters itself (the delivery limit, a backstop
        # far above max_receive_count), so it never drops a message.
        args.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": spec.dead_letter})
    if spec.fifo:
        # One consumer process at a time receives a FIFO queue, in queue order; the backend
        # then keeps one message in flight per group. Other processes stand by for failover.
        args["x-single-active-consumer"] = True
    if expires:
        args["x-expires"] = int(expires * 1000)
    return args


def delay_milliseconds(seconds: float) -> int:
    """Return a delay in whole milliseconds (at least 1): one delay queue per distinct value."""
    return max(1, round(seconds * 1000))


def delay_queue_name(queue: str, milliseconds: int) -> str:
    """Return the name of ``queue``'s delay queue for ``milliseconds``: ``NAME.delay.<ms>``."""
    return f"{queue}.delay.{milliseconds}"


def delay_queue_arguments(queue: str, milliseconds: int) -> dict[str, Any]:
    """Return the arguments of a delay queue: a fixed TTL, then dead-lettered back to ``queue``.

    A queue-wide TTL expires messages in arrival order, all after the same wait, so it is an
    exact delay (per-message TTLs expire only at the head of a queue). The queue deletes itself
    when unused for twice its delay plus a minute; the backend redeclares it before that.

    Delay queues are classic queues: quorum delay queues with at-least-once dead-lettering
    and ``x-expires`` stalled RabbitMQ 3.10.8 here for a minute at a time (new connections
    waited until such a queue expired). A classic queue dead-letters at most once: a broker
    crash during the hop back can lose a delayed message (docs/backends/rabbitmq.md).
    """
    return {
        "x-queue-type": "classic",
        "x-message-ttl": milliseconds,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        "x-expires": 2 * milliseconds + DELAY_QUEUE_IDLE,
    }


class Topology:
    """Declares and inspects queues and exchanges on a channel of its own.

    A passive declaration of a missing queue closes its channel, so inspection never shares a
    channel with deliveries: unacknowledged messages would return to the queue with it.
    """

    def __init__(self, connection: AbstractRobustConnection, *, expires: float | None) -> None:
        self.connection = connection
        self.expires = expires
        self.specs: dict[str, QueueSpec] = {}
        self.known: set[str] = set()
        self.topics: set[str] = set()
        # queue -> delay in ms -> monotonic time of its last declaration
        self.delays: dict[str, dict[int, float]] = {}
        self._channel: AbstractRobustChannel | None = None

    async def channel(self) -> AbstractRobustChannel:
        """Return the topology channel, opening a new one if the broker closed the last."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await self.connection.channel(publisher_confirms=False)
        return self._channel

    async def _discard(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(AMQPError, ChannelInvalidStateError):
                await channel.close()  # already going: nothing to keep

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Declare ``spec``'s quorum queue (idempotent).

        Raises:
            DeclarationError: If the queue exists with other arguments (FIFO, dead-letter queue).
        """
        if self.specs.get(spec.name) == spec:
            return
        await self._declare(spec.name, queue_arguments(spec, expires=self.expires))
        self.specs[spec.name] = spec
        self.known.add(spec.name)

    async def _declare(self, name: str, arguments: dict[str, Any]) -> None:
        channel = await self.channel()
        try:
            await channel.declare_queue(name, durable=True, arguments=arguments, robust=False)
        except ChannelPreconditionFailed as exc:
            await self._discard()
            raise DeclarationError(
                f"queue {name!r} already exists on the broker with other arguments ({exc}); "
                f"declare it with the options it was created with, or delete it "
                f"(rabbitmqctl delete_queue {name}) and let the app create it again"
            ) from None

    async def ensure_queue(self, name: str) -> None:
        """Check that queue ``name`` exists (once per process).

        Raises:
            UnknownQueueError: If it does not.
        """
        if name not in self.known:
            await self.depth(name)

    async def depth(self, name: str) -> int:
        """Return how many messages of queue ``name`` are ready (not delivered to a consumer).

        Raises:
            UnknownQueueError: If the queue does not exist.
        """
        channel = await self.channel()
        try:
            queue = await channel.declare_queue(name, passive=True, robust=False)
        except ChannelNotFoundEntity:
            await self._discard()
            self.known.discard(name)
            known = ", ".join(sorted(self.known)) or "none declared by this process"
            raise UnknownQueueError(
                f"queue {name!r} does not exist on the broker (queues: {known})"
            ) from None
        self.known.add(name)
        result = queue.declaration_result
        return int(result.message_count or 0)

    async def purge(self, name: str) -> int:
        """Delete the ready messages of queue ``name``; return how many."""
        channel = await self.channel()
        queue = await channel.get_queue(name, ensure=False)
        result = await queue.purge()
        return int(result.message_count or 0)

    async def delay_queue(self, queue: str, seconds: float) -> str:
        """Return the name of ``queue``'s delay queue for ``seconds``, declared recently enough.

        A delay queue is redeclared when its last declaration is older than half its
        ``x-expires``, so it cannot expire with a message inside: a message published now
        leaves it after ``ms``, before ``x-expires`` (more than twice ``ms``) has passed.
        """
        ms = delay_milliseconds(seconds)
        name = delay_queue_name(queue, ms)
        declared = self.delays.setdefault(queue, {})
        now = time.monotonic()
        arguments = delay_queue_arguments(queue, ms)
        if now - declared.get(ms, -float("inf")) > arguments["x-expires"] / 2000:
            await self._declare(name, arguments)
            declared[ms] = now
        return name

    async def delayed(self, queue: str) -> int:
        """Return how many messages wait in the delay queues this process used for ``queue``."""
        total = 0
        for ms in list(self.delays.get(queue, {})):
            try:
                total += await self.depth(delay_queue_name(queue, ms))
            except UnknownQueueError:  # expired since: it held nothing
                self.delays[queue].pop(ms, None)
        return total

    async def purge_delayed(self, queue: str) -> int:
        """Purge the delay queues this process used for ``queue``; return how many went."""
        total = 0
        for ms in list(self.delays.get(queue, {})):
            name = delay_queue_name(queue, ms)
            try:
                await self.depth(name)
            except UnknownQueueError:
                self.delays[queue].pop(ms, None)
                continue
            total += await self.purge(name)
        return total

    async def declare_topic(self, name: str) -> None:
        """Declare topic ``name``'s durable fanout exchange (idempotent)."""
        if name in self.topics:
            return
        channel = await self.channel()
        try:
            await channel.declare_exchange(
                name,
                ExchangeType.FANOUT,
                durable=True,
                # With expiring test queues, the exchange goes when its last binding does.
                auto_delete=self.expires is not None,
                robust=False,
            )
        except ChannelPreconditionFailed as exc:
            await self._discard()
            raise DeclarationError(
                f"exchange {name!r} already exists on the broker as another type ({exc}); "
                "topics are fanout exchanges: pick another topic name or delete the exchange"
            ) from None
        self.topics.add(name)

    async def ensure_topic(self, name: str) -> None:
        """Check that topic ``name``'s exchange exists (once per process).

        Raises:
            UnknownTopicError: If it does not.
        """
        if name in self.topics:
            return
        channel = await self.channel()
        try:
            await channel.declare_exchange(name, passive=True, robust=False)
        except ChannelNotFoundEntity:
            await self._discard()
            known = ", ".join(sorted(self.topics)) or "none declared by this process"
            raise UnknownTopicError(
                f"topic {name!r} does not exist on the broker (topics: {known})"
            ) from None
        self.topics.add(name)

    async def delete_declared(self) -> None:
        """Delete every queue, delay queue and exchange this process declared (tests only)."""
        channel = await self.channel()
        names = [
            delay_queue_name(queue, ms) for queue, delays in self.delays.items() for ms in delays
        ]
        for name in [*names, *self.specs]:
            await channel.queue_delete(name)
        for topic in self.topics:
            await channel.exchange_delete(topic)
        self.specs.clear()
        self.delays.clear()
        self.topics.clear()
        self.known.clear()

    async def bind(self, queue: str, topic: str) -> None:
        """Bind ``queue`` to ``topic``'s exchange (idempotent on the broker)."""
        channel = await self.channel()
        exchange: AbstractExchange = await channel.get_exchange(topic, ensure=False)
        bound = await channel.get_queue(queue, ensure=False)
        try:
            await bound.bind(exchange, routing_key="")
        except ChannelClosed:
            await self._discard()
            raise
