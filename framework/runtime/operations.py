"""Operations that need only a backend: redrive, peek, purge, stats; shared by the app and the CLI.

The Backend protocol has no peek and no "receive this message id", so ``peek`` and the
operations on chosen messages (``redrive_selected``, ``delete_selected``) receive what is
visible with ``wait=0``, keep the leases while they look, and release every message they do
not act on with ``delay=0``. Like the SQS console's "poll for messages", that increments each
message's receive count; on a dead-letter queue (which nothing consumes) that is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence

from framework.backends.base import Backend
from framework.exceptions import InvalidRedriveError
from framework.logs import event
from framework.messages import Delivery, Outgoing, QueueStats
from framework.semantics.redrive import redriven, target_of

__all__ = [
    "check_redrive_target",
    "delete_selected",
    "peek",
    "purge",
    "queue_stats",
    "redrive",
    "redrive_selected",
    "send_batch",
]

log = logging.getLogger("framework.operations")

Progress = Callable[[int], None]

# A receive returns at most 10 messages on every backend (SQS's own limit).
_BATCH = 10


async def send_batch(backend: Backend, queue: str, messages: Sequence[Outgoing]) -> list[str]:
    """Send ``messages`` to ``queue`` in order; return their ids, in the same order.

    With the backend's own ``send_batch`` (``CanSendBatch``) when it has one, else one
    ``send`` after another.
    """
    if not messages:
        return []
    batch = getattr(backend, "send_batch", None)
    if batch is not None:
        ids: list[str] = await batch(queue, messages)
        return ids
    return [await backend.send(queue, message) for message in messages]


class _Mover:
    """Sends dead letters back to their target, then deletes them: the one copy of the rule.

    Each message is sent to its target before it is deleted from the dead-letter queue, so a
    crash in between can duplicate one message but never lose one.
    """

    def __init__(self, backend: Backend, dlq: str, to: str | None, sources: Sequence[str]) -> None:
        self.backend = backend
        self.to, self.sources = to, sources
        self.fifo = dlq.endswith(".fifo")

    async def move(self, delivery: Delivery) -> None:
        """Send ``delivery`` to its target queue, then delete it from the dead-letter queue.

        Raises:
            UnknownQueueError: If the target queue does not exist (the backend's send says so;
                a broker's process may not know every queue by name beforehand).
        """
        target = target_of(delivery, to=self.to, sources=self.sources)
        fifo = self.fifo or target.endswith(".fifo")
        await self.backend.send(target, redriven(delivery, fifo=fifo))
        await self.backend.ack(delivery)


async def redrive(
    backend: Backend,
    dlq: str,
    *,
    to: str | None = None,
    limit: int | None = None,
    sources: Sequence[str] = (),
    progress: Progress | None = None,
) -> int:
    """Move dead letters from ``dlq`` back to their source queue (or ``to``), oldest first.

    Each message is sent to its target before it is deleted from the dead-letter queue, so a
    crash in between can duplicate one message but never lose one. A message moved once is
    not moved again by the same redrive: when one comes back (a running handler failed it at
    once, a poison body), the redrive stops and leaves it there, instead of going round.

    Args:
        backend: The backend holding the queues.
        dlq: The dead-letter queue to empty.
        to: Send every message here instead of its source queue.
        limit: Move at most this many.
        sources: The queues known to use ``dlq``, for messages that do not name their source.
        progress: Called with the running count after each message.

    Returns:
        How many messages were moved.

    Raises:
        UnknownQueueError: If ``dlq``, ``to`` or a recorded source queue does not exist.
        InvalidRedriveError: If ``to`` is ``dlq`` itself.
    """
    check_redrive_target(dlq, to)
    moved = 0
    seen: set[str] = set()
    mover = _Mover(backend, dlq, to, sources)
    back_again = False
    while not back_again and (limit is None or moved < limit):
        want = _BATCH if limit is None else min(_BATCH, limit - moved)
        batch = await backend.receive(dlq, limit=want, wait=0)
        if not batch:
            break
        for index, delivery in enumerate(batch):
            back_again = back_again or delivery.message_id in seen
            try:
                if back_again:
                    await backend.release(delivery, delay=0)
                    continue
                await mover.move(delivery)
            except BaseException:
                for unsent in batch[index:]:
                    await backend.release(unsent, delay=0)
                raise
            seen.add(delivery.message_id)
            moved += 1
            if progress is not None:
                progress(moved)
    event(log, logging.INFO, "queue.redriven", queue=dlq, to=to, moved=moved)
    return moved


def check_redrive_target(dlq: str, to: str | None) -> None:
    """Refuse a redrive of ``dlq`` into itself, before any message is touched.

    Moving a queue's messages into itself would only count them and raise their receive
    counts, and report them as moved.

    Raises:
        InvalidRedriveError: If ``to`` is ``dlq``.
    """
    if to == dlq:
        raise InvalidRedriveError(
            f"cannot redrive {dlq!r} to itself: omit 'to' to send each message back to its "
            "source queue, or name another queue"
        )


async def _on_selected(
    backend: Backend,
    queue: str,
    message_ids: Collection[str],
    act: Callable[[Delivery], Awaitable[None]],
) -> tuple[int, list[str]]:
    """Run ``act`` on the visible messages with ``message_ids``; release every other one.

    Messages not chosen stay leased until the end, so no receive returns one twice, and are
    then released with ``delay=0``; so is a chosen one whose ``act`` raised. Receiving stops
    as soon as every id was found.

    Returns:
        How many were acted on, and the ids not found among the visible messages.
    """
    wanted = set(message_ids)
    done = 0
    held: list[Delivery] = []
    try:
        while wanted:
            batch = await backend.receive(queue, limit=_BATCH, wait=0)
            if not batch:
                break
            held.extend(batch)
            for delivery in batch:
                if delivery.message_id in wanted:
                    await act(delivery)
                    held.remove(delivery)
                    wanted.discard(delivery.message_id)
                    done += 1
    finally:
        for delivery in held:
            await backend.release(delivery, delay=0)
    return done, sorted(wanted)


async def peek(backend: Backend, queue: str, *, limit: int = 10) -> list[Delivery]:
    """Return up to ``limit`` visible messages of ``queue`` and leave them there, oldest first.

    Each one is received and released at once, so its receive count goes up by one (as with
    the SQS console's "poll for messages"); messages in flight or delayed are not seen.

    Args:
        backend: The backend holding the queue.
        queue: The queue to look into.
        limit: The most messages to return.

    Returns:
        The deliveries as received (their receipts are no longer valid).
    """
    held: list[Delivery] = []
    try:
        while len(held) < limit:
            batch = await backend.receive(queue, limit=min(_BATCH, limit - len(held)), wait=0)
            if not batch:
                break
            held.extend(batch)
    finally:
        for delivery in held:
            await backend.release(delivery, delay=0)
    return held


async def redrive_selected(
    backend: Backend,
    dlq: str,
    message_ids: Collection[str],
    *,
    to: str | None = None,
    sources: Sequence[str] = (),
    progress: Progress | None = None,
) -> tuple[int, list[str]]:
    """Move the dead letters with ``message_ids`` back, as ``redrive`` does; leave the rest.

    The queue's visible messages are leased while the chosen ones are moved (each sent before
    it is deleted: never lost, at most duplicated by a crash in between); every other message
    is released at once, unchanged but for its receive count.

    Args:
        backend: The backend holding the queues.
        dlq: The dead-letter queue.
        message_ids: The ids of the messages to move.
        to: Send them here instead of their source queue.
        sources: The queues known to use ``dlq``, for messages that do not name their source.
        progress: Called with the running count after each message.

    Returns:
        How many were moved, and the ids not found among the visible messages.

    Raises:
        UnknownQueueError: If ``to`` or a recorded source queue does not exist.
        InvalidRedriveError: If ``to`` is ``dlq`` itself.
    """
    check_redrive_target(dlq, to)
    mover = _Mover(backend, dlq, to, sources)
    moved = 0

    async def move(delivery: Delivery) -> None:
        nonlocal moved
        await mover.move(delivery)
        moved += 1
        if progress is not None:
            progress(moved)

    moved, missing = await _on_selected(backend, dlq, message_ids, move)
    event(log, logging.INFO, "queue.redriven", queue=dlq, to=to, moved=moved)
    return moved, missing


async def delete_selected(
    backend: Backend, queue: str, message_ids: Collection[str]
) -> tuple[int, list[str]]:
    """Delete the visible messages with ``message_ids`` from ``queue``; leave the rest.

    Args:
        backend: The backend holding the queue.
        queue: The queue.
        message_ids: The ids of the messages to delete.

    Returns:
        How many were deleted, and the ids not found among the visible messages.
    """
    deleted, missing = await _on_selected(backend, queue, message_ids, backend.ack)
    event(log, logging.INFO, "queue.messages_deleted", queue=queue, deleted=deleted)
    return deleted, missing


async def purge(backend: Backend, queue: str) -> int:
    """Delete every message of ``queue`` and log how many (``queue.purged``).

    Args:
        backend: The backend holding the queue.
        queue: The queue.

    Returns:
        How many messages were deleted (as the backend counts them).
    """
    purged = await backend.purge(queue)
    event(log, logging.INFO, "queue.purged", queue=queue, purged=purged)
    return purged


async def queue_stats(backend: Backend, names: Sequence[str] | None = None) -> list[QueueStats]:
    """Return the stats of ``names`` (default: every queue the backend knows), by name."""
    chosen = names if names is not None else await backend.queues()
    return [await backend.stats(name) for name in sorted(chosen)]
