"""An SQS batch from an event source mapping, through the same dispatch as a worker's receive.

Lambda's poller received the records; Lambda deletes every record the answer does not list in
``batchItemFailures`` (the mapping has ``ReportBatchItemFailures``). So a delivery is settled
against the *batch*, not SQS, where SQS would be told twice (``BatchSettlement``):

| dispatcher's verdict | on SQS | in the answer |
| --- | --- | --- |
| acknowledged | nothing (Lambda deletes it) | not listed |
| released after ``delay`` (a failure) | ``ChangeMessageVisibility`` to ``delay`` | listed |
| dead-lettered (receive limit, poison) | ``SendMessage`` to the DLQ, with the reason | not listed |

Standard queues run their records concurrently, at most the handler's ``concurrency`` at once.
FIFO queues run each message group's records in order, groups side by side; after a failure the
rest of that group is released at once (the failed head keeps the group blocked on SQS until
its retry) and listed, so no later record overtakes it. A record dead-lettered leaves the queue
for good, so its group goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from framework.backends.base import Backend
from framework.clock import Clock
from framework.messages import DeadLetterReason, Delivery
from framework.registry import QueueSpec
from framework.semantics.redrive import dead_lettered

__all__ = ["BatchSettlement", "Settled", "run_batch"]

log = logging.getLogger("framework.aws")

Verdict = Literal["acked", "released", "dead_lettered"]


@dataclass(slots=True)
class Settled:
    """What became of one delivery of the batch."""

    verdict: Verdict
    delay: float = 0.0
    reason: DeadLetterReason | None = None


@dataclass(slots=True)
class BatchSettlement:
    """The backend a Lambda batch's dispatcher settles on: SQS only where Lambda does not act.

    It has what the dispatcher calls (``clock``, ``ack``, ``release``, ``extend``,
    ``dead_letter``) and records each delivery's verdict, by receipt handle, for the answer.
    """

    backend: Backend
    queues: Mapping[str, QueueSpec]
    settled: dict[str, Settled] = field(default_factory=dict)
    # By receipt: the clock time its invocation ends (the record's latest deadline).
    held_until: dict[str, float] = field(default_factory=dict)

    @property
    def clock(self) -> Clock:
        """The real backend's clock: deadlines are on it."""
        return self.backend.clock

    async def ack(self, delivery: Delivery) -> None:
        """Leave the delete to Lambda: the record is not listed in ``batchItemFailures``."""
        self.settled[delivery.receipt] = Settled("acked")

    async def release(self, delivery: Delivery, *, delay: float) -> None:
        """Make the record visible after ``delay`` seconds, and list it as failed."""
        await self.backend.release(delivery, delay=delay)
        self.settled[delivery.receipt] = Settled("released", delay=delay)

    async def extend(self, delivery: Delivery, *, seconds: float) -> None:
        """Keep the record invisible ``seconds`` longer (``ctx.extend_visibility``), and at
        least until its invocation ends (``held_until``).

        Lambda deletes a handled record only when the whole invocation returns, so SQS must
        not make it visible before then: an extension shorter than what the invocation has
        left (the queue's visibility, six function timeouts, covered it) would hand a record
        that is being handled, or already was, to another invocation.
        """
        until = self.held_until.get(delivery.receipt)
        if until is not None:
            seconds = max(seconds, until - self.backend.clock.now())
        await self.backend.extend(delivery, seconds=seconds)

    async def dead_letter(self, delivery: Delivery, *, reason: DeadLetterReason) -> None:
        """Send a copy with ``reason``'s headers to the dead-letter queue; Lambda deletes it.

        The copy keeps the message's id, body, attributes and first send time, as the AWS
        backend's own ``dead_letter`` does.
        """
        spec = self.queues[delivery.queue]
        dlq = spec.dead_letter
        assert dlq is not None, "the dispatcher dead-letters only queues that have one"
        copy = dead_lettered(delivery, reason, fifo=dlq.endswith(".fifo"))
        await self.backend.send(dlq, copy)
        self.settled[delivery.receipt] = Settled("dead_lettered", reason=reason)


Run = Callable[[Delivery], Awaitable[bool]]


async def run_batch(
    deliveries: Sequence[Delivery],
    run: Run,
    settlement: BatchSettlement,
    *,
    fifo: bool,
    concurrency: int,
) -> list[Delivery]:
    """Run every delivery of one batch; return those Lambda must leave on the queue.

    Args:
        deliveries: The batch, in the event's order.
        run: Handles one delivery (the dispatcher, under the batch's deadline).
        settlement: Where the verdicts are recorded.
        fifo: Run message groups in order (a FIFO queue).
        concurrency: At most this many handlers at once (standard queues).

    Returns:
        The deliveries to list in ``batchItemFailures``, in the event's order. A delivery
        whose settling itself failed (SQS refused) is listed too: Lambda then leaves it for
        its visibility timeout, and nothing is lost.
    """
    failed: set[str] = set()

    async def one(delivery: Delivery) -> bool:
        try:
            await run(delivery)
        except Exception:  # SQS refused a verdict: listed, so Lambda leaves the record
            log.exception(
                "lambda.settle_failed",
                extra={"fields": {"queue": delivery.queue, "message_id": delivery.message_id}},
            )
            failed.add(delivery.receipt)
            return False
        verdict = settlement.settled.get(delivery.receipt)
        if verdict is None or verdict.verdict == "released":
            failed.add(delivery.receipt)
            return False
        return True

    if fifo:
        groups: dict[str | None, list[Delivery]] = {}
        for d in deliveries:
            groups.setdefault(d.group_id, []).append(d)

        async def group(batch: list[Delivery]) -> None:
            for index, delivery in enumerate(batch):
                if not await one(delivery):
                    rest = batch[index + 1 :]
                    failed.update(d.receipt for d in rest)
                    for later in rest:
                        await _release_quietly(settlement.backend, later)
                    return

        await _gather([group(b) for b in groups.values()])
    else:
        limit = asyncio.Semaphore(max(1, concurrency))

        async def bounded(delivery: Delivery) -> None:
            async with limit:
                await one(delivery)

        await _gather([bounded(d) for d in deliveries])
    return [d for d in deliveries if d.receipt in failed]


async def _release_quietly(backend: Backend, delivery: Delivery) -> None:
    """Make a record behind a failed one visible now; listed either way, so nothing is lost."""
    try:
        await backend.release(delivery, delay=0)
    except Exception:  # it then waits for its visibility timeout: later, never lost
        return


async def _gather(coroutines: list[Awaitable[Any]]) -> None:
    """Run them all to the end; a failure of one (already recorded) never stops the others."""
    await asyncio.gather(*coroutines, return_exceptions=True)
