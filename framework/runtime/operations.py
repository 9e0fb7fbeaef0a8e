"""Operations that need only a backend: redrive, purge, stats; shared by the app and the CLI."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from framework.backends.base import Backend, QueueStats
from framework.exceptions import UnknownQueueError
from framework.logs import event
from framework.semantics.redrive import redriven, target_of

__all__ = ["queue_stats", "redrive"]

log = logging.getLogger("framework.operations")

Progress = Callable[[int], None]


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
    crash in between can duplicate one message but never lose one.

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
    """
    moved = 0
    names = set(await backend.queues())
    fifo = dlq.endswith(".fifo")
    while limit is None or moved < limit:
        want = 10 if limit is None else min(10, limit - moved)
        batch = await backend.receive(dlq, limit=want, wait=0)
        if not batch:
            break
        for index, delivery in enumerate(batch):
            try:
                target = target_of(delivery, to=to, sources=sources)
                if names and target not in names:
                    raise UnknownQueueError(
                        f"cannot redrive to {target!r}: no such queue "
                        f"(queues: {', '.join(sorted(names))})"
                    )
                await backend.send(
                    target, redriven(delivery, fifo=fifo or target.endswith(".fifo"))
                )
            except BaseException:
                for unsent in batch[index:]:
                    await backend.release(unsent, delay=0)
                raise
            await backend.ack(delivery)
            moved += 1
            if progress is not None:
                progress(moved)
    event(log, logging.INFO, "queue.redriven", queue=dlq, to=to, moved=moved)
    return moved


async def queue_stats(backend: Backend, names: Sequence[str] | None = None) -> list[QueueStats]:
    """Return the stats of ``names`` (default: every queue the backend knows), by name."""
    chosen = names if names is not None else await backend.queues()
    return [await backend.stats(name) for name in sorted(chosen)]
