"""``memory://``: queues, topics and an outbox in this process, the reference model of SPEC §3."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Self

from framework.clock import Clock, SystemClock
from framework.exceptions import UnknownQueueError, UnknownTopicError
from framework.logs import event
from framework.messages import DeadLetterReason, Delivery, Outgoing, OutgoingMail, QueueStats
from framework.registry import QueueSpec, SubscriptionSpec, TopicSpec
from framework.semantics.fanout import matching
from framework.semantics.fifo import DeduplicationWindow
from framework.semantics.redrive import dead_lettered

from .queues import MemoryQueue, new_message_id

__all__ = ["MemoryBackend"]

log = logging.getLogger("framework.backends.memory")


class MemoryBackend:
    """Queues, topics and an outbox in memory. Everything is lost when the process exits."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._queues: dict[str, MemoryQueue] = {}
        self._topics: dict[str, TopicSpec] = {}
        self._topic_dedup: dict[str, DeduplicationWindow] = {}
        self._subscriptions: dict[str, list[SubscriptionSpec]] = {}
        self.outbox: list[OutgoingMail] = []

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Build a memory backend; ``memory://`` takes no options."""
        return cls()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def _queue(self, name: str) -> MemoryQueue:
        try:
            return self._queues[name]
        except KeyError:
            known = ", ".join(sorted(self._queues)) or "none"
            raise UnknownQueueError(
                f"queue {name!r} does not exist on memory:// (queues: {known})"
            ) from None

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue, or keep the existing one (its messages survive a redeclare)."""
        existing = self._queues.get(spec.name)
        if existing is None:
            self._queues[spec.name] = MemoryQueue(spec, self.clock)
        else:
            existing.spec = spec

    async def send(self, queue: str, message: Outgoing) -> str:
        """Enqueue; a FIFO duplicate inside the window is accepted and dropped, as on SQS."""
        return self._queue(queue).send(message)

    async def send_batch(self, queue: str, messages: Sequence[Outgoing]) -> list[str]:
        """Enqueue every message in order, in one step; see ``CanSendBatch``."""
        return self._queue(queue).send_batch(messages)

    async def receive(self, queue: str, *, limit: int, wait: float) -> Sequence[Delivery]:
        """Lease up to ``limit`` messages, waiting up to ``wait`` seconds for one."""
        return await self._queue(queue).receive(limit, wait)

    async def ack(self, delivery: Delivery) -> None:
        """Delete the delivered message (a no-op for an expired receipt)."""
        queue = self._queues.get(delivery.queue)
        (queue or self._queue(delivery.queue)).delete(delivery.receipt)

    async def release(self, delivery: Delivery, *, delay: float) -> None:
        """Make the message visible again after ``delay`` seconds."""
        self._queue(delivery.queue).change_visibility(delivery.receipt, delay)

    async def extend(self, delivery: Delivery, *, seconds: float) -> None:
        """Keep the message invisible for ``seconds`` from now."""
        self._queue(delivery.queue).change_visibility(delivery.receipt, seconds)

    async def dead_letter(self, delivery: Delivery, *, reason: DeadLetterReason) -> None:
        """Move the message to its dead-letter queue, atomically, keeping its id and body."""
        source = self._queue(delivery.queue)
        if source.spec.dead_letter is None:
            raise UnknownQueueError(f"queue {delivery.queue!r} has no dead-letter queue")
        target = self._queue(source.spec.dead_letter)
        record = source.delete(delivery.receipt)
        if record is None:
            return  # the lease expired meanwhile: the next receive decides again
        # The record is the delivery's message: its id, body, attributes and headers.
        target.send(dead_lettered(delivery, reason, fifo=target.spec.fifo))

    async def stats(self, queue: str) -> QueueStats:
        """Return depth, in flight, delayed and the dead-letter queue's size."""
        q = self._queue(queue)
        stats = q.stats()
        dlq = self._queues.get(q.spec.dead_letter or "")
        if dlq is not None:
            stats = replace(stats, dead_letters=len(dlq))
        return stats

    async def has_receivable(self, queue: str) -> bool:
        """True if a receive on ``queue`` now would return a message (for ``TestApp.drain``)."""
        return self._queue(queue).has_receivable()

    async def purge(self, queue: str) -> int:
        """Delete every message of the queue; return how many."""
        return self._queue(queue).purge()

    async def queues(self) -> Sequence[str]:
        """Return the declared queue names, sorted."""
        return sorted(self._queues)

    async def missing(
        self,
        queues: Sequence[QueueSpec],
        topics: Sequence[TopicSpec],
        subscriptions: Sequence[SubscriptionSpec],
    ) -> list[str]:
        """Return the queues, topics and subscriptions of the lists that do not exist here."""
        out = [f"queue {q.name!r}" for q in queues if q.name not in self._queues]
        out += [f"topic {t.name!r}" for t in topics if t.name not in self._topics]
        out += [
            f"subscription {s.name!r} of topic {s.topic!r}"
            for s in subscriptions
            if all(known.name != s.name for known in self._subscriptions.get(s.topic, []))
        ]
        return out

    async def declare_topic(self, spec: TopicSpec) -> None:
        """Create the topic (idempotent)."""
        self._topics[spec.name] = spec
        self._subscriptions.setdefault(spec.name, [])
        if spec.fifo:
            self._topic_dedup.setdefault(spec.name, DeduplicationWindow())

    async def subscribe(self, subscription: SubscriptionSpec) -> None:
        """Attach a subscription queue to its topic (replacing one of the same name)."""
        if subscription.topic not in self._topics:
            raise UnknownTopicError(f"topic {subscription.topic!r} does not exist on memory://")
        if subscription.queue is None:
            raise NotImplementedError("endpoint subscriptions are delivered by the runtime")
        subs = self._subscriptions[subscription.topic]
        subs[:] = [s for s in subs if s.name != subscription.name] + [subscription]

    async def publish(self, topic: str, message: Outgoing) -> str:
        """Copy the message to every subscription queue whose filter policy matches."""
        spec = self._topics.get(topic)
        if spec is None:
            known = ", ".join(sorted(self._topics)) or "none"
            raise UnknownTopicError(
                f"topic {topic!r} does not exist on memory:// (topics: {known})"
            )
        message_id = message.message_id or new_message_id()
        dedup = self._topic_dedup.get(topic)
        if dedup is not None:
            first = dedup.duplicate_of(
                message.deduplication_id,
                message.body,
                message_id=message_id,
                content_based=spec.content_based_deduplication,
                now=self.clock.now(),
            )
            if first is not None:
                return first
        copy = replace(message, message_id=message_id, sent_at=message.sent_at or self.clock.wall())
        for sub in matching(
            self._subscriptions[topic],
            attributes=message.attributes,
            body=message.body,
            content_type=message.content_type,
        ):
            assert sub.queue is not None
            self._queue(sub.queue.name).send(copy)
        return message_id

    async def send_mail(self, mail: OutgoingMail) -> str:
        """Capture the mail in ``outbox``: the memory backend never sends mail out."""
        self.outbox.append(mail)
        event(
            log,
            logging.INFO,
            "mail.captured",
            message_id=mail.message_id,
            recipients=len(mail.recipients),
            outbox=len(self.outbox),
        )
        return mail.message_id
