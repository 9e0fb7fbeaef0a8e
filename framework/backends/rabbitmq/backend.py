"""``amqp://``: the backend primitives on RabbitMQ (aio-pika); see docs/backends/rabbitmq.md."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Sequence
from typing import Self

from aio_pika.abc import (
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import (
    AMQPError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    DeliveryError,
    MessageProcessError,
    PublishError,
)

from framework.clock import Clock, SystemClock
from framework.exceptions import (
    BackendUnavailableError,
    MailError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.ids import new_message_id
from framework.logs import event
from framework.messages import DeadLetterReason, Delivery, Outgoing, OutgoingMail, QueueStats
from framework.registry import QueueSpec, SubscriptionSpec, TopicSpec
from framework.semantics.fanout import matching
from framework.semantics.fifo import DeduplicationWindow
from framework.websocket import Serve

from .connection import LOST as _LOST
from .connection import Link, connect, route_client_logs, unavailable_as_error, where
from .consuming import AmqpDelivery, Consumer
from .leases import BrokerLease, Inbox, LeaseTable, UnseenDeliveries, is_alive
from .publishing import AmqpMessage, Publisher
from .relay import ConnectionRelay
from .settings import RabbitMQSettings
from .topology import Topology
from .wire import Received, amqp_message, copy_of

__all__ = ["RabbitMQBackend"]

log = logging.getLogger("framework.backends.rabbitmq")

DEFAULT_PREFETCH = 10
DEFAULT_VISIBILITY = 30.0
# A cancelled consumer's inbox counts as drained after this many turns of this many seconds
# without a new delivery (see _return_buffered).
_QUIET_TURNS = 3
_QUIET_TURN = 0.01
# A consumer is cancelled only this many seconds after its last delivery or settlement.
_STILL = 0.06
# What ends a stop early: the broker is too slow (connect_timeout) or the connection is gone.
_STOP_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *_LOST)
# Errors that mean a delivery's channel is gone: the broker has already put it back.
_GONE = (ChannelInvalidStateError, MessageProcessError, AMQPError, ConnectionError)


class RabbitMQBackend:
    """Queues and topics on a RabbitMQ broker, shared by every process that connects to it.

    Build it with ``from_url("amqp://user:pass@host:5672/vhost?options")`` (options: see
    ``RabbitMQSettings``) and use it as an async context manager: entering connects, leaving stops
    the consumers, puts buffered deliveries back and disconnects.
    """

    def __init__(self, settings: RabbitMQSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.connection: AbstractRobustConnection | None = None
        self._topology: Topology | None = None
        self._publisher: Publisher | None = None
        self._getter: AbstractRobustChannel | None = None
        self._inboxes: dict[str, Inbox] = {}
        self._consumers: dict[str, tuple[AbstractRobustChannel, AbstractQueue]] = {}
        self._leases = LeaseTable(settings.lease_grace, self._expire)
        self._filters: dict[str, SubscriptionSpec] = {}
        self._dedup: dict[str, DeduplicationWindow] = {}
        self._topic_specs: dict[str, TopicSpec] = {}
        self._start_lock = asyncio.Lock()
        # Receipts are opaque and only mean something to this process: a counter is enough,
        # and the prefix keeps two backends' receipts apart.
        self._receipt_prefix = f"{uuid.uuid4().hex[:8]}-"
        self._receipts = itertools.count(1)
        self._link = Link(where(settings.url))
        self._unseen = UnseenDeliveries()

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Build a backend for ``amqp://user:pass@host:port/vhost?options`` (not yet connected)."""
        return cls(RabbitMQSettings.from_url(url))

    # --- connection ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Connect, the handshake and the first channel bounded by ``connect_timeout``.

        Raises:
            BackendUnavailableError: If the broker is unreachable or does not answer in time.
            ConfigError: If the broker refuses the credentials or the virtual host.
        """
        route_client_logs()
        settings = self.settings
        connection = await connect(
            settings.url, name=settings.connection_name, seconds=settings.connect_timeout
        )
        try:
            async with asyncio.timeout(settings.connect_timeout):
                # Confirms make every publish wait for the broker to have the message; returns
                # (an unroutable message: its queue was deleted) raise instead of dropping it.
                self._publisher = Publisher(
                    await connection.channel(publisher_confirms=True, on_return_raises=True)
                )
        except BaseException as exc:
            await connection.close()
            if isinstance(exc, TimeoutError):
                raise BackendUnavailableError(
                    f"RabbitMQ at {where(settings.url)} opened the connection but no channel "
                    f"within {settings.connect_timeout:g} s (connect_timeout)"
                ) from None
            raise
        self.connection = connection
        self._link.closing = False
        connection.close_callbacks.add(self._link.disconnected)
        connection.reconnect_callbacks.add(self._reconnected)
        self._topology = Topology(connection, expires=settings.queue_expires)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        self._leases.clear()  # before any await: no backstop fires while shutting down
        self._link.closing = True
        # Bounded: a stalled or vanished broker must not keep a stopping process alive.
        seconds = self.settings.connect_timeout
        try:
            async with asyncio.timeout(seconds):
                await self._stop_consumers()
                if self.settings.delete_on_exit and self._topology is not None:
                    # After an outage, wait for the reconnect rather than leave queues behind.
                    await connection.connected.wait()
                    await self._topology.delete_declared()
        except _STOP_ERRORS as exc:
            left = sorted(self._topology.specs) if self._topology is not None else []
            event(
                log,
                logging.WARNING,
                "backend.stop_incomplete",
                backend="rabbitmq",
                error=f"{type(exc).__name__}: {exc}",
                not_deleted=left if self.settings.delete_on_exit else [],
            )
        finally:
            try:
                async with asyncio.timeout(seconds):
                    await connection.close()
            except TimeoutError:
                event(log, logging.WARNING, "backend.close_timeout", seconds=seconds)

    def _reconnected(self, *_: object) -> None:
        # Deliveries of the old channels went back to their queues with the connection.
        for inbox in self._inboxes.values():
            inbox.reset()
        self._link.reconnected()

    async def connection_relay(self, process: str, serve: Serve) -> ConnectionRelay:
        """Start answering connection requests for ``process``; see ``relay.py``."""
        if self.connection is None:
            raise RuntimeError("the RabbitMQ backend is not connected")
        relay = ConnectionRelay(self.connection, process, serve)
        await relay.open()
        return relay

    @property
    def topology(self) -> Topology:
        """The queue and exchange declarations (after ``__aenter__``)."""
        if self._topology is None:
            raise RuntimeError("RabbitMQBackend is not connected: use 'async with backend:'")
        return self._topology

    async def _publish(self, routing_key: str, message: AmqpMessage, *, exchange: str = "") -> None:
        if self._publisher is None:
            raise RuntimeError("RabbitMQBackend is not connected: use 'async with backend:'")
        try:
            # Refused before the wire: a content header over frame_max makes the broker close
            # the whole connection, and with it every other send in flight on it.
            await self._publisher.publish(
                message, exchange=exchange, routing_key=routing_key, mandatory=not exchange
            )
        except PublishError:
            self.topology.known.discard(routing_key)
            raise UnknownQueueError(
                f"queue {routing_key!r} does not exist on the broker (deleted while in use?)"
            ) from None
        except ChannelNotFoundEntity:
            self.topology.topics.discard(exchange)
            raise UnknownTopicError(
                f"topic {exchange!r} does not exist on the broker (deleted while in use?)"
            ) from None
        except DeliveryError as exc:
            raise BackendUnavailableError(
                f"the broker refused a message for {exchange or routing_key!r} (nack): {exc}"
            ) from exc

    # --- queues ----------------------------------------------------------------------------

    @unavailable_as_error
    async def declare_queue(self, spec: QueueSpec) -> None:
        """Declare ``spec``'s quorum queue on the broker (idempotent)."""
        await self.topology.declare_queue(spec)
        if spec.fifo:
            self._dedup.setdefault(spec.name, DeduplicationWindow())

    def _spec(self, queue: str) -> QueueSpec | None:
        return self.topology.specs.get(queue)

    def _is_fifo(self, queue: str) -> bool:
        spec = self._spec(queue)
        return spec.fifo if spec is not None else queue.endswith(".fifo")

    @unavailable_as_error
    async def send(self, queue: str, message: Outgoing) -> str:
        """Publish ``message`` to ``queue`` (through a delay queue if delayed), confirmed.

        Raises:
            UnknownQueueError: If the queue does not exist.
        """
        spec = self._spec(queue)
        if spec is None:
            await self.topology.ensure_queue(queue)
        fifo = self._is_fifo(queue)
        message_id = message.message_id or new_message_id()
        if fifo:
            content_based = spec is not None and spec.content_based_deduplication
            first = self._duplicate_of(queue, message, message_id, content_based)
            if first is not None:
                return first
        delay = max(message.delay, spec.delay if spec is not None else 0.0)
        target = queue if delay <= 0 else await self.topology.delay_queue(queue, delay)
        await self._publish(
            target,
            amqp_message(
                message,
                message_id=message_id,
                sent_at=message.sent_at or self.clock.wall(),
                group_id=message.group_id if fifo else None,
            ),
        )
        return message_id

    async def send_batch(self, queue: str, messages: Sequence[Outgoing]) -> list[str]:
        """Publish ``messages`` to ``queue`` with their confirms in flight together.

        On a standard queue every message is published before the first confirm is awaited
        (one round trip for the batch rather than one per message); a FIFO queue's messages
        are published one after another, so the group order holds. If the broker refuses one,
        the first error is raised once every publish has been answered.

        Raises:
            UnknownQueueError: If the queue does not exist.
        """
        if self._is_fifo(queue):
            return [await self.send(queue, message) for message in messages]
        spec = self._spec(queue)
        if spec is None:
            await self.topology.ensure_queue(queue)
        ids: list[str] = []
        publishes = []
        for message in messages:
            message_id = message.message_id or new_message_id()
            delay = max(message.delay, spec.delay if spec is not None else 0.0)
            target = queue if delay <= 0 else await self.topology.delay_queue(queue, delay)
            sent_at = message.sent_at or self.clock.wall()
            amqp = amqp_message(message, message_id=message_id, sent_at=sent_at, group_id=None)
            publishes.append(self._publish(target, amqp))
            ids.append(message_id)
        # return_exceptions: the other publishes are answered (never cancelled mid-frame).
        results = await asyncio.gather(*publishes, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return ids

    async def _inbox(self, queue: str) -> Inbox:
        """Return ``queue``'s inbox, starting its consumer on first use."""
        inbox = self._inboxes.get(queue)
        if inbox is not None:
            return inbox
        async with self._start_lock:
            if queue in self._inboxes:
                return self._inboxes[queue]
            await self.topology.ensure_queue(queue)
            assert self.connection is not None
            spec = self._spec(queue)
            fifo = self._is_fifo(queue)
            concurrency = spec.concurrency if spec is not None else DEFAULT_PREFETCH
            prefetch = (
                max(self.settings.fifo_prefetch, concurrency)
                if fifo
                else self.settings.prefetch or concurrency
            )
            inbox = Inbox(queue, fifo=fifo, dropped=self._unseen.add)
            channel = await self.connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=prefetch)
            amqp_queue = await channel.declare_queue(queue, passive=True)
            inbox.consumer_tag = await amqp_queue.consume(Consumer(inbox.put), no_ack=False)
            self._consumers[queue] = (channel, amqp_queue)
            self._inboxes[queue] = inbox
            return inbox

    @unavailable_as_error
    async def receive(self, queue: str, *, limit: int, wait: float) -> Sequence[Delivery]:
        """BrokerLease up to ``limit`` deliveries, waiting up to ``wait`` seconds for the first.

        With ``wait > 0`` the queue gets a consumer (prefetch = its concurrency) whose
        deliveries are buffered; ``wait == 0`` takes what is buffered or, on a queue this
        process does not consume, fetches with basic.get, so a one-off receive (redrive)
        never leaves a consumer holding messages.
        """
        inbox = self._inboxes.get(queue)
        if inbox is None and wait <= 0:
            return await self._get(queue, limit)
        if inbox is None:
            inbox = await self._inbox(queue)
        end = self.clock.now() + wait
        while True:
            now = self.clock.now()
            taken = inbox.take(limit, now)
            out = await self._lease_all(queue, taken, inbox, now)
            if out:
                return out
            if taken:
                continue  # every one was filtered out: look again at once
            if now >= end:
                return []
            wake = end
            held = inbox.next_ready(now)
            if held is not None:
                wake = min(wake, held)
            await inbox.wait(max(0.0, wake - now))

    async def _get(self, queue: str, limit: int) -> list[Delivery]:
        await self.topology.ensure_queue(queue)
        if self._getter is None or self._getter.is_closed:
            assert self.connection is not None
            self._getter = await self.connection.channel(publisher_confirms=False)
        amqp_queue = await self._getter.get_queue(queue, ensure=False)
        out: list[Delivery] = []
        while len(out) < limit:
            got = await amqp_queue.get(no_ack=False, fail=False)
            if got is None:
                break
            message = AmqpDelivery.of_incoming(got)
            if message is not None:
                out += await self._lease_all(queue, [message], None, self.clock.now())
        return out

    async def _lease_all(
        self,
        queue: str,
        messages: Sequence[AmqpDelivery],
        inbox: Inbox | None,
        now: float,
    ) -> list[Delivery]:
        """Lease ``messages`` (their receipts, deadlines and backstop); drop filtered copies.

        The clocks are read once for the batch, and nothing awaits unless a subscription's
        filter policy drops a copy.
        """
        if not messages:
            return []
        spec = self._spec(queue)
        deadline = now + (spec.visibility_timeout if spec is not None else DEFAULT_VISIBILITY)
        wall = self.clock.wall()
        subscription = self._filters.get(queue)
        prefix, receipts, uncounted = self._receipt_prefix, self._receipts, self._unseen.uncounted
        add = self._leases.add
        out: list[Delivery] = []
        for message in messages:
            received = Received(
                queue,
                message,
                receipt=f"{prefix}{next(receipts)}",
                now=wall,
                uncounted=uncounted(message),
            )
            if subscription is not None and not self._matches(subscription, received.delivery):
                # The policy belongs to the subscriber: a copy it does not want is dropped here.
                await self._settle_message(message, inbox)
                if inbox is not None:
                    inbox.settle(received.group_id)
                continue
            add(BrokerLease(received, inbox, deadline=deadline))
            out.append(received.delivery)
        return out

    @staticmethod
    def _matches(subscription: SubscriptionSpec, delivery: Delivery) -> bool:
        return bool(
            matching(
                [subscription],
                attributes=delivery.attributes,
                body=delivery.body,
                content_type=delivery.content_type,
            )
        )

    async def _expire(self, delivery: Delivery) -> None:
        if self.connection is not None:
            await self.release(delivery, delay=0)

    async def _settle_message(self, message: AmqpDelivery, inbox: Inbox | None = None) -> None:
        """Acknowledge ``message``: at the end of this loop turn, with others, if it came from
        ``inbox``'s consumer (see acks.py); at once otherwise (a basic.get)."""
        self._unseen.forget(message)  # this copy leaves its queue
        acks = inbox.acks if inbox is not None else None
        if acks is not None and message.channel is acks.channel:
            if not message.channel.is_closed:  # closed: the broker has it back already
                acks.ack(message.delivery_tag)
            return
        with contextlib.suppress(*_GONE):  # a closed channel: the broker has it back already
            await message.ack()

    async def _reject(self, message: AmqpDelivery, inbox: Inbox | None) -> None:
        """Reject ``message`` with requeue; a later batched ack may then cover its tag."""
        with contextlib.suppress(*_GONE):  # a closed channel: the broker has it back already
            await message.reject(requeue=True)
            acks = inbox.acks if inbox is not None else None
            if acks is not None and message.channel is acks.channel:
                acks.done(message.delivery_tag)

    async def _give_back(self, message: AmqpDelivery, inbox: Inbox | None) -> None:
        """Return a delivery whose copy could not be published to its queue, counted.

        Its lease is gone already, so nothing would settle it: left unacknowledged, it would
        stay hidden from every consumer until its channel closes (the broker's consumer
        timeout, 30 minutes by default) and hold a prefetch slot meanwhile. ``reject`` with
        requeue puts it back now; quorum queues count that receipt on every version. The
        publish may have reached the broker all the same: a duplicate, never a loss.
        """
        await self._reject(message, inbox)

    @unavailable_as_error
    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge the delivery (a no-op for a receipt that is no longer held)."""
        lease = self._leases.take(delivery)
        if lease is None:
            return
        try:
            await self._settle_message(lease.message, lease.inbox)
        finally:
            if lease.inbox is not None:
                lease.inbox.settle(delivery.group_id)

    @unavailable_as_error
    async def release(self, delivery: Delivery, *, delay: float) -> None:
        """Make the message visible again after ``delay`` seconds, its receive count kept.

        A standard queue's message is re-published (to the queue, or through its delay queue)
        with the count in a header, confirmed, and only then acknowledged: a crash in between
        duplicates it, never loses it; a publish that fails gives the original back to the
        broker (``reject`` with requeue) before the error propagates. A FIFO message is
        rejected back to the head of its queue instead, which keeps its place in its group;
        the broker counts that receipt.
        """
        lease = self._leases.take(delivery)
        if lease is None:
            return
        message = lease.message
        inbox = lease.inbox
        if not is_alive(message):
            if inbox is not None:
                inbox.settle(delivery.group_id)
            return
        if inbox is not None and inbox.fifo:
            inbox.requeued(delivery.group_id, delivery.message_id, self.clock.now() + delay)
            await self._reject(message, inbox)
            return
        try:
            target = (
                delivery.queue
                if delay <= 0
                else await self.topology.delay_queue(delivery.queue, delay)
            )
            await self._publish(target, copy_of(delivery, count=delivery.receive_count))
        except BaseException:
            await self._give_back(message, inbox)
            raise
        else:
            await self._settle_message(message, inbox)
        finally:
            if inbox is not None:
                inbox.settle(delivery.group_id)

    @unavailable_as_error
    async def extend(self, delivery: Delivery, *, seconds: float) -> None:
        """Keep the delivery leased ``seconds`` from now: the message simply stays unacked."""
        lease = self._leases.get(delivery.receipt)
        if lease is None:
            return
        lease.deadline = self.clock.now() + seconds
        self._leases.arm(lease)

    @unavailable_as_error
    async def dead_letter(self, delivery: Delivery, *, reason: DeadLetterReason) -> None:
        """Publish the message to its dead-letter queue with ``reason``'s headers, then ack it.

        If the publish fails, the original goes back to its queue (``reject`` with requeue),
        counted, and the error propagates.

        Raises:
            UnknownQueueError: If the queue has no dead-letter queue.
        """
        spec = self._spec(delivery.queue)
        dlq = spec.dead_letter if spec is not None else None
        if dlq is None:
            raise UnknownQueueError(f"queue {delivery.queue!r} has no dead-letter queue")
        lease = self._leases.take(delivery)
        if lease is None:
            return
        try:
            if not is_alive(lease.message):
                return  # back in its queue: the next receipt decides again
            copy = copy_of(
                delivery,
                count=0,
                headers=reason.stamped(delivery.headers),
                keep_first_received=False,
            )
            try:
                await self._publish(dlq, copy)
            except BaseException:
                await self._give_back(lease.message, lease.inbox)
                raise
            await self._settle_message(lease.message, lease.inbox)
        finally:
            if lease.inbox is not None:
                lease.inbox.settle(delivery.group_id)

    def _held(self, queue: str) -> int:
        inbox = self._inboxes.get(queue)
        return len(inbox) if inbox is not None else 0

    @unavailable_as_error
    async def stats(self, queue: str) -> QueueStats:
        """Return the queue's counts; ``in_flight`` and ``delayed`` as this process sees them.

        Raises:
            UnknownQueueError: If the queue does not exist.
        """
        depth = await self.topology.depth(queue) + self._held(queue)
        spec = self._spec(queue)
        dlq = spec.dead_letter if spec is not None else None
        dead = 0
        if dlq is not None:
            try:
                dead = await self.topology.depth(dlq) + self._held(dlq) + self._leases.held(dlq)
            except UnknownQueueError:
                dead = 0
        return QueueStats(
            name=queue,
            depth=depth,
            in_flight=self._leases.held(queue),
            delayed=await self.topology.delayed(queue),
            dead_letters=dead,
            dead_letter_queue=dlq,
        )

    @unavailable_as_error
    async def has_receivable(self, queue: str) -> bool:
        """True if a receive on ``queue`` now would return a message (for ``TestApp.drain``).

        A FIFO message buffered behind its group's head does not count.
        """
        inbox = self._inboxes.get(queue)
        if inbox is not None and inbox.receivable(self.clock.now()):
            return True
        return await self.topology.depth(queue) > 0

    @unavailable_as_error
    async def purge(self, queue: str) -> int:
        """Delete the queue's ready and delayed messages and those this process holds.

        Messages other processes hold unacknowledged are out of reach (AMQP has no way to
        delete them): they come back if their holder releases them.
        """
        await self.topology.ensure_queue(queue)
        count = await self.topology.purge(queue) + await self.topology.purge_delayed(queue)
        inbox = self._inboxes.get(queue)
        if inbox is not None:
            for message in inbox.drain():
                await self._settle_message(message, inbox)
                count += 1
        for lease in self._leases.of_queue(queue):
            taken = self._leases.take(lease.received.delivery)
            if taken is not None:
                await self._settle_message(taken.message, taken.inbox)
                count += 1
        return count

    @unavailable_as_error
    async def queues(self) -> Sequence[str]:
        """Return the queues this process declared or found, sorted.

        AMQP cannot list a broker's queues (the management plugin can, and may be off).
        """
        return sorted(self.topology.known)

    async def _stop_consumers(self) -> None:
        """Cancel the consumers once no delivery is on its way, then give back buffered ones.

        A quorum queue's channel that meets a delivery for a consumer it has just cancelled
        gives it back to the queue itself, counted in ``x-delivery-count``, without sending
        it to the client: a receipt nobody saw, that no client can tell apart from a real
        one. Such a delivery exists when the queue sent it between the channel's cancel and
        the queue's: after an acknowledgement freed a prefetch slot just before the cancel,
        or a message arriving in the queue at that instant. So nothing is acknowledged on a
        consumer's channel from here on, and each consumer is cancelled only once its
        deliveries have stood still for a while (its prefetch window is full, or its queue
        has nothing ready): the first cause is gone; the second remains for a message
        published within the cancel's round trip (see docs/backends/rabbitmq.md).

        A standard queue's buffered delivery is then re-published with its count unchanged
        and acked, so a restart does not count a receipt no handler saw; a FIFO queue's are
        left to the broker (re-publishing would reorder them), which counts them once more.
        """
        consumers = [
            (queue, channel, amqp_queue, self._inboxes[queue])
            for queue, (channel, amqp_queue) in self._consumers.items()
        ]
        self._consumers.clear()
        await _until_still([inbox for *_, inbox in consumers])
        cancelled = []
        for queue, channel, amqp_queue, inbox in consumers:
            try:
                if inbox.consumer_tag is not None and not channel.is_closed:
                    await amqp_queue.cancel(inbox.consumer_tag)
                cancelled.append((queue, inbox))
            except _GONE:  # the connection is going anyway: the broker keeps the messages
                pass
        for queue, inbox in cancelled:
            if inbox.fifo:
                continue
            with contextlib.suppress(*_GONE):
                await self._return_buffered(queue, inbox)
        for *_, inbox in consumers:
            if inbox.acks is not None:
                inbox.acks.flush()  # now, before the connection closes
        self._inboxes.clear()

    async def _return_buffered(self, queue: str, inbox: Inbox) -> None:
        """Re-publish every delivery buffered in ``inbox`` with its count unchanged, then ack it.

        Deliveries the broker sent before its cancel-ok can land in the inbox after the cancel
        returns (each reaches it two tasks deep in aio-pika and aiormq): one left behind would
        go back with the connection, counted. So the inbox is drained until it stays empty
        for a few turns of the loop.
        """
        quiet = 0
        while quiet < _QUIET_TURNS:
            batch = [message for message in inbox.drain() if is_alive(message)]
            if not batch:
                quiet += 1
                await asyncio.sleep(_QUIET_TURN)
                continue
            quiet = 0
            await asyncio.gather(*(self._put_back(queue, message, inbox) for message in batch))

    async def _put_back(self, queue: str, message: AmqpDelivery, inbox: Inbox) -> None:
        received = Received(
            queue,
            message,
            receipt="",
            now=self.clock.wall(),
            uncounted=self._unseen.uncounted(message),
        )
        count = received.delivery.receive_count - 1
        await self._publish(
            queue, copy_of(received.delivery, count=count, keep_first_received=False)
        )
        await self._settle_message(message, inbox)

    # --- topics ----------------------------------------------------------------------------

    @unavailable_as_error
    async def missing(
        self,
        queues: Sequence[QueueSpec],
        topics: Sequence[TopicSpec],
        subscriptions: Sequence[SubscriptionSpec],
    ) -> list[str]:
        """Return the resources that do not exist on the broker; adopt the ones that do.

        Nothing is created (``framework run --no-declare``): queues and exchanges are checked
        with passive declarations. What exists is taken over as ``declare_queue``,
        ``declare_topic`` and ``subscribe`` would (FIFO deduplication windows, filter
        policies), so the process behaves the same either way. AMQP cannot list a queue's
        bindings: a subscription counts as present when its queue and topic are.
        """
        out: list[str] = []
        for spec in queues:
            try:
                await self.topology.ensure_queue(spec.name)
            except UnknownQueueError:
                out.append(f"queue {spec.name!r}")
                continue
            self.topology.specs[spec.name] = spec
            if spec.fifo:
                self._dedup.setdefault(spec.name, DeduplicationWindow())
        for topic in topics:
            try:
                await self.topology.ensure_topic(topic.name)
            except UnknownTopicError:
                out.append(f"topic {topic.name!r}")
                continue
            self._topic_specs[topic.name] = topic
            if topic.fifo:
                self._dedup.setdefault(f"topic:{topic.name}", DeduplicationWindow())
        for sub in subscriptions:
            if sub.filter_policy is not None and sub.queue is not None:
                self._filters[sub.queue.name] = sub
        return out

    @unavailable_as_error
    async def declare_topic(self, spec: TopicSpec) -> None:
        """Declare the topic's durable fanout exchange (idempotent)."""
        await self.topology.declare_topic(spec.name)
        self._topic_specs[spec.name] = spec
        if spec.fifo:
            self._dedup.setdefault(f"topic:{spec.name}", DeduplicationWindow())

    @unavailable_as_error
    async def subscribe(self, subscription: SubscriptionSpec) -> None:
        """Declare the subscription's queue, bind it to the topic, and keep its filter policy.

        The policy is applied when this process receives from the queue: copies that do not
        match are acknowledged and dropped before any handler sees them.
        """
        if subscription.queue is None:
            raise NotImplementedError("endpoint subscriptions are delivered by the runtime")
        await self.topology.ensure_topic(subscription.topic)
        await self.declare_queue(subscription.queue)
        await self.topology.bind(subscription.queue.name, subscription.topic)
        if subscription.filter_policy is not None:
            self._filters[subscription.queue.name] = subscription
        else:
            self._filters.pop(subscription.queue.name, None)

    @unavailable_as_error
    async def publish(self, topic: str, message: Outgoing) -> str:
        """Publish ``message`` to the topic's exchange, confirmed; return its id.

        Raises:
            UnknownTopicError: If the topic does not exist.
        """
        await self.topology.ensure_topic(topic)
        spec = self._topic_specs.get(topic)
        fifo = spec.fifo if spec is not None else topic.endswith(".fifo")
        message_id = message.message_id or new_message_id()
        if fifo:
            content_based = spec is not None and spec.content_based_deduplication
            first = self._duplicate_of(f"topic:{topic}", message, message_id, content_based)
            if first is not None:
                return first
        await self._publish(
            "",
            amqp_message(
                message,
                message_id=message_id,
                sent_at=message.sent_at or self.clock.wall(),
                group_id=message.group_id if fifo else None,
            ),
            exchange=topic,
        )
        return message_id

    def _duplicate_of(
        self, key: str, message: Outgoing, message_id: str, content_based: bool
    ) -> str | None:
        """The first message's id if ``message`` repeats one sent through ``key`` lately.

        The window lives in this process: deduplication's scope on RabbitMQ (see the docs).
        """
        window = self._dedup.setdefault(key, DeduplicationWindow())
        return window.duplicate_of(
            message.deduplication_id,
            message.body,
            message_id=message_id,
            content_based=content_based,
            now=self.clock.now(),
        )

    async def send_mail(self, mail: OutgoingMail) -> str:
        """Refuse: outbound mail over SMTP for ``amqp://`` comes with the SMTP transport.

        Raises:
            MailError: Always, saying so.
        """
        raise MailError(
            "amqp:// has no mail transport of its own: configure an SMTP relay with "
            "App(mail_relay=RelayConfig(...)) or FRAMEWORK_MAIL_RELAY=smtp://host:port "
            f"(mail {mail.message_id} to {len(mail.recipients)} recipient(s) not sent)"
        )


async def _until_still(inboxes: Sequence[Inbox]) -> None:
    """Return once no delivery arrived at and none was settled from ``inboxes`` for a while.

    ``_STILL`` seconds: longer than a quorum queue takes to fill a prefetch slot that an
    acknowledgement freed. An idle consumer costs no wait; a busy one at most that long
    after its last delivery, as with nothing settled it gets at most its window's worth more.
    """
    loop = asyncio.get_running_loop()
    while inboxes:
        left = max(inbox.touched for inbox in inboxes) + _STILL - loop.time()
        if left <= 0:
            return
        await asyncio.sleep(left)
