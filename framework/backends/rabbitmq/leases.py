"""Deliveries between the broker and ``receive``: per-queue buffers, FIFO groups, and leases.

A consumer (basic.consume with manual acknowledgement and a prefetch window) pushes deliveries
into the queue's ``Inbox``; ``receive`` takes them out and leases them. An unacknowledged
delivery is invisible to every other consumer, which is the visibility timeout's natural
equivalent: the lease ends when the message is acked, released or dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from framework.clock import EarliestTimer, SystemClock
from framework.logs import event
from framework.messages import Delivery

from .acks import ChannelAcks
from .consuming import AmqpDelivery
from .wire import GROUP_ID, Received, copy_key

__all__ = ["BrokerLease", "Inbox", "LeaseTable", "UnseenDeliveries", "is_alive"]

log = logging.getLogger("framework.backends.rabbitmq")


def is_alive(message: AmqpDelivery) -> bool:
    """True while ``message``'s channel is open, so its acknowledgement can still reach the
    broker. Once the channel closed, the broker has put the message back in its queue."""
    return not message.channel.is_closed


def _group_of(message: AmqpDelivery) -> str | None:
    value = message.headers.get(GROUP_ID)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(slots=True, eq=False)
class BrokerLease:
    """A delivery handed out by ``receive`` and not yet settled."""

    received: Received
    inbox: Inbox | None
    deadline: float
    expiring: bool = False  # handed to ``expire`` (until an extension moves the deadline)

    @property
    def message(self) -> AmqpDelivery:
        """The AMQP delivery to acknowledge or reject."""
        return self.received.message


class LeaseTable:
    """The deliveries this process holds, by receipt, and one backstop timer for all of them.

    The runtime cancels a handler at its deadline and releases the message itself; the timer
    only catches a handler that cannot be cancelled (a blocking call in a thread): a lease
    still held ``grace`` seconds after its deadline is handed to ``expire`` (a release).

    One loop timer, at the earliest ``deadline + grace`` among the leases, rather than one per
    lease: taking a lease cancels nothing, and a timer that finds nothing due moves itself to
    the earliest deadline left (a scan of the leases held, at most the prefetch windows).
    """

    def __init__(
        self, grace: float, expire: Callable[[Delivery], Coroutine[Any, Any, None]]
    ) -> None:
        self.grace = grace
        self._expire_with = expire
        self._leases: dict[str, BrokerLease] = {}
        self._held: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer = EarliestTimer(SystemClock().call_at, self._fire)

    def add(self, lease: BrokerLease) -> None:
        """Hold ``lease`` and arm its timer."""
        delivery = lease.received.delivery
        self._leases[delivery.receipt] = lease
        self._held[delivery.queue] += 1
        self.arm(lease)

    def get(self, receipt: str) -> BrokerLease | None:
        """Return the lease of ``receipt``, if still held."""
        return self._leases.get(receipt)

    def take(self, delivery: Delivery) -> BrokerLease | None:
        """Stop holding ``delivery``'s lease and return it (None if no longer held)."""
        lease = self._leases.pop(delivery.receipt, None)
        if lease is None:
            return None
        self._held[delivery.queue] -= 1
        return lease

    def held(self, queue: str) -> int:
        """How many of ``queue``'s deliveries this process holds."""
        return self._held[queue]

    def of_queue(self, queue: str) -> list[BrokerLease]:
        """The leases held on ``queue``."""
        return [lease for lease in self._leases.values() if lease.received.delivery.queue == queue]

    def arm(self, lease: BrokerLease) -> None:
        """Make sure the timer fires by ``grace`` seconds past ``lease``'s deadline."""
        lease.expiring = False
        self._timer.by(lease.deadline + self.grace)

    def clear(self) -> None:
        """Forget every lease and stop the timer (the connection is going)."""
        self._timer.at(math.inf)
        self._leases.clear()
        self._held.clear()

    def _fire(self) -> None:
        now = asyncio.get_running_loop().time()
        grace = self.grace
        due = [
            lease
            for lease in self._leases.values()
            if not lease.expiring and lease.deadline + grace <= now
        ]
        for lease in due:
            lease.expiring = True
            self._expire(lease.received.delivery.receipt)
        later = min(
            (lease.deadline for lease in self._leases.values() if not lease.expiring),
            default=math.inf,
        )
        self._timer.at(later + grace)

    def _expire(self, receipt: str) -> None:
        lease = self._leases.get(receipt)
        if lease is None:
            return
        delivery = lease.received.delivery
        event(
            log,
            logging.WARNING,
            "lease.expired",
            queue=delivery.queue,
            message_id=delivery.message_id,
            receive_count=delivery.receive_count,
        )
        task = asyncio.get_running_loop().create_task(self._expire_with(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class UnseenDeliveries:
    """Deliveries this process dropped before any receive took them: not receipts.

    When a connection goes, the broker puts back every delivery on it and counts each in
    ``x-delivery-count``, also those that sat in a consumer's buffer and no handler saw (a
    broker restart pushes a closing connection's messages to the consumers still open, which
    close next). Each such drop is recorded with the copy's count at the time; when the copy
    comes back to this process with a higher count, the drop is not counted as a receipt. A
    copy that comes back to another process is counted there (AMQP shares no such state).
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._drops: OrderedDict[tuple[str, int], list[int]] = OrderedDict()

    def add(self, message: AmqpDelivery) -> None:
        """Record that ``message`` was dropped unseen (its channel closed in a buffer)."""
        key = copy_key(message)
        if key is None:
            return
        message_id, counted, redelivered = key
        self._drops.setdefault((message_id, counted), []).append(redelivered)
        self._drops.move_to_end((message_id, counted))
        while len(self._drops) > self.limit:
            self._drops.popitem(last=False)

    def uncounted(self, message: AmqpDelivery) -> int:
        """Return how many of ``message``'s broker redeliveries were drops recorded here."""
        if not self._drops:
            return 0
        key = copy_key(message)
        if key is None:
            return 0
        message_id, counted, redelivered = key
        drops = self._drops.get((message_id, counted), ())
        return sum(1 for d in drops if d < redelivered)

    def forget(self, message: AmqpDelivery) -> None:
        """The copy left its queue (acknowledged, re-published, dead-lettered): drop its record."""
        if self._drops:
            key = copy_key(message)
            if key is not None:
                self._drops.pop(key[:2], None)

    def __len__(self) -> int:
        return len(self._drops)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(slots=True)
class _Group:
    """A FIFO group's buffered messages, in order, and whether its head is out."""

    messages: deque[AmqpDelivery] = field(default_factory=deque)
    locked: bool = False
    # The message id of a released head on its way back from the broker: the group waits
    # for it, and puts it first, so later messages never overtake it.
    awaiting: str | None = None
    not_before: float = 0.0


class Inbox:
    """The deliveries of one queue's consumer that no ``receive`` has taken yet.

    Standard queues hand out deliveries in arrival order. FIFO queues hand out only the head
    of each group, one per group until it is settled, and hold a released head back until its
    retry delay has passed.
    """

    def __init__(
        self,
        name: str,
        *,
        fifo: bool,
        dropped: Callable[[AmqpDelivery], None] | None = None,
    ) -> None:
        self.name = name
        self.fifo = fifo
        self.consumer_tag: str | None = None
        # The acknowledgements of the consumer's current channel (a new one after a reconnect).
        self.acks: ChannelAcks | None = None
        # When a delivery last arrived or one was last settled (the loop's clock): a stop
        # cancels the consumer only once this lies far enough back (see _stop_consumers).
        self.touched = 0.0
        # Told of every delivery this buffer discards because its channel closed before any
        # receive took it: the broker counts that delivery, no handler saw it.
        self._dropped = dropped or _ignore
        self._ready: deque[AmqpDelivery] = deque()
        self._groups: dict[str | None, _Group] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def _notify(self) -> None:
        """Wake every waiting ``receive``: something changed."""
        for waiter in self._waiters:
            _wake(waiter)
        self._waiters.clear()

    def put(self, message: AmqpDelivery) -> None:
        """Buffer a delivery from the consumer and wake a waiting ``receive``."""
        self.touched = asyncio.get_running_loop().time()
        channel = message.channel
        acks = self.acks
        if acks is None or acks.channel is not channel:
            acks = self.acks = ChannelAcks(channel)
        if message.delivery_tag is not None:
            acks.delivered(message.delivery_tag)
        if not self.fifo:
            self._ready.append(message)
        else:
            group = self._groups.setdefault(_group_of(message), _Group())
            if group.awaiting is not None and group.awaiting == message.message_id:
                group.messages.appendleft(message)
                group.awaiting = None
            else:
                group.messages.append(message)
        self._notify()

    def take(self, limit: int, now: float) -> list[AmqpDelivery]:
        """Return up to ``limit`` deliveries a receive may lease now; FIFO groups get locked."""
        taken: list[AmqpDelivery] = []
        if not self.fifo:
            while self._ready and len(taken) < limit:
                message = self._ready.popleft()
                if is_alive(message):  # a delivery from before a reconnect is back in the queue
                    taken.append(message)
                else:
                    self._dropped(message)
            return taken
        for key, group in list(self._groups.items()):
            if len(taken) >= limit:
                break
            if group.locked or group.awaiting is not None or group.not_before > now:
                continue
            while group.messages and not is_alive(group.messages[0]):
                self._dropped(group.messages.popleft())
            if not group.messages:
                del self._groups[key]
                continue
            taken.append(group.messages.popleft())
            group.locked = True
        return taken

    def settle(self, group_id: str | None) -> None:
        """Unlock ``group_id`` after its head was acked or dead-lettered."""
        self.touched = asyncio.get_running_loop().time()
        group = self._groups.get(group_id)
        if group is None:
            return
        group.locked = False
        if not group.messages and group.awaiting is None:
            del self._groups[group_id]
        self._notify()

    def requeued(self, group_id: str | None, message_id: str, not_before: float) -> None:
        """Hold ``group_id`` until its released head ``message_id`` is back and its delay ends."""
        group = self._groups.setdefault(group_id, _Group())
        group.locked = False
        group.awaiting = message_id
        group.not_before = not_before
        self._notify()

    def next_ready(self, now: float) -> float | None:
        """Return when a held FIFO group becomes receivable, if one waits for its delay."""
        times = [
            g.not_before
            for g in self._groups.values()
            if g.not_before > now and g.messages and not g.locked and g.awaiting is None
        ]
        return min(times, default=None)

    async def wait(self, seconds: float) -> None:
        """Wait up to ``seconds`` for a new delivery or a settled group."""
        # A future and a timer, not wait_for: no task per wait on the receive path.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def receivable(self, now: float) -> bool:
        """True if a receive now would get a delivery from this buffer."""
        if not self.fifo:
            return any(is_alive(m) for m in self._ready)
        return any(
            not g.locked and g.awaiting is None and g.not_before <= now and g.messages
            for g in self._groups.values()
        )

    def __len__(self) -> int:
        if not self.fifo:
            return len(self._ready)
        return sum(len(g.messages) for g in self._groups.values())

    def drain(self) -> Iterator[AmqpDelivery]:
        """Remove and yield every buffered delivery (on shutdown)."""
        while self._ready:
            yield self._ready.popleft()
        for group in self._groups.values():
            while group.messages:
                yield group.messages.popleft()
        self._groups.clear()

    def reset(self) -> None:
        """Forget deliveries of a closed channel: the broker has put them back (reconnect)."""
        self._ready = deque(self._alive(self._ready))
        for group in self._groups.values():
            group.messages = deque(self._alive(group.messages))
            # The awaited head comes back through the new channel in queue order, first.
            group.awaiting = None
        self._notify()

    def _alive(self, messages: deque[AmqpDelivery]) -> list[AmqpDelivery]:
        alive = []
        for message in messages:
            if is_alive(message):
                alive.append(message)
            else:
                self._dropped(message)
        return alive


def _ignore(message: AmqpDelivery) -> None:
    pass
