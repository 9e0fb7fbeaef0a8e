"""Dead letters and redrive: what a message looks like in its dead-letter queue, where it goes
back to, and what it looks like when it gets there."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from framework.exceptions import UnknownQueueError
from framework.messages import DLQ_HEADERS, DLQ_SOURCE, DeadLetterReason, Delivery, Outgoing

__all__ = ["dead_lettered", "redriven", "target_of"]


def dead_lettered(delivery: Delivery, reason: DeadLetterReason, *, fifo: bool) -> Outgoing:
    """Return the message to send to a dead-letter queue: ``delivery`` with ``reason``'s headers.

    It keeps the message's id, body, attributes and first send time. On a FIFO dead-letter
    queue it is a new message, so its deduplication id is fresh: the queue's deduplication
    must never drop it.
    """
    return Outgoing(
        body=delivery.body,
        attributes=delivery.attributes,
        headers=reason.stamped(delivery.headers),
        group_id=delivery.group_id if fifo else None,
        deduplication_id=uuid.uuid4().hex if fifo else None,
        message_id=delivery.message_id,
        sent_at=delivery.sent_at,
    )


def target_of(delivery: Delivery, *, to: str | None, sources: Sequence[str]) -> str:
    """Return the queue a dead letter goes back to.

    ``to`` wins; then the source queue recorded when it was dead-lettered; then the one queue
    that names this dead-letter queue.

    Raises:
        UnknownQueueError: If none of those decides it.
    """
    if to is not None:
        return to
    source = delivery.headers.get(DLQ_SOURCE)
    if source:
        return source
    if len(sources) == 1:
        return sources[0]
    raise UnknownQueueError(
        f"message {delivery.message_id} in {delivery.queue!r} does not say which queue it came "
        "from; pass --to QUEUE (redrive(..., to=...))"
    )


def redriven(delivery: Delivery, *, fifo: bool) -> Outgoing:
    """Return the message as it is sent back: same id, body and attributes, a fresh count.

    The dead-letter headers are dropped, so the receive count starts again and the handler
    sees a message that was never dead-lettered. FIFO targets get a fresh deduplication id:
    the original one may still be inside the five-minute window.
    """
    headers = {k: v for k, v in delivery.headers.items() if k not in DLQ_HEADERS}
    return Outgoing(
        body=delivery.body,
        attributes=delivery.attributes,
        headers=headers,
        group_id=delivery.group_id if fifo else None,
        deduplication_id=uuid.uuid4().hex if fifo else None,
        message_id=delivery.message_id,
        sent_at=delivery.sent_at,
    )
