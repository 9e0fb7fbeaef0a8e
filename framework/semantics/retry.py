"""What happens to a message after its handler ran: acknowledge, redeliver later, or dead-letter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from framework.messages import DeadLetterReason, Delivery
from framework.registry import QueueSpec
from framework.semantics.visibility import VisibilityTimeoutError

__all__ = ["DeadLetter", "Outcome", "Redeliver", "after_failure", "before_handling", "poison"]


@dataclass(frozen=True, slots=True)
class Redeliver:
    """Release the message to become visible again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Move the message to the dead-letter queue with ``reason``."""

    reason: DeadLetterReason


Outcome = Redeliver | DeadLetter


def _error_message(error: BaseException) -> str:
    text = str(error)
    return text if text else type(error).__name__


def after_failure(
    delivery: Delivery, queue: QueueSpec, error: BaseException, now: datetime
) -> Outcome:
    """Decide what happens to a message whose handler raised ``error`` (or timed out).

    A handler that outlived the visibility timeout (a ``VisibilityTimeoutError``) has its
    message visible again at once; any other failure waits ``retry_delay``.

    The delivery that used the last allowed receive goes to the dead-letter queue now, rather
    than after one more wait: the handler ran ``max_receive_count`` times, as on SQS.
    """
    if queue.dead_letter is not None and delivery.receive_count >= queue.max_receive_count:
        return DeadLetter(
            DeadLetterReason(
                source_queue=delivery.queue,
                receive_count=delivery.receive_count,
                error_type=type(error).__name__,
                error_message=_error_message(error),
                time=now,
            )
        )
    if isinstance(error, VisibilityTimeoutError):
        # The visibility timeout ran out: the message is visible again now, as on SQS; the
        # retry delay is for failures the handler reported.
        return Redeliver(delay=0.0)
    return Redeliver(delay=queue.retry_delay_for(delivery.receive_count))


def before_handling(delivery: Delivery, queue: QueueSpec, now: datetime) -> DeadLetter | None:
    """Dead-letter a message received more often than allowed before its handler runs.

    That happens when earlier receipts ended without a verdict (a worker killed, a connection
    lost): the count went up but no handler failure was recorded.
    """
    if queue.dead_letter is not None and delivery.receive_count > queue.max_receive_count:
        return DeadLetter(
            DeadLetterReason(
                source_queue=delivery.queue,
                receive_count=delivery.receive_count,
                error_type="MaxReceiveCountExceeded",
                error_message=(
                    f"received {delivery.receive_count} times, more than max_receive_count="
                    f"{queue.max_receive_count}, without a handler verdict"
                ),
                time=now,
            )
        )
    return None


def poison(delivery: Delivery, error_type: str, message: str, now: datetime) -> DeadLetter:
    """Dead-letter a body that failed decoding or validation at once: retrying cannot help."""
    return DeadLetter(
        DeadLetterReason(
            source_queue=delivery.queue,
            receive_count=delivery.receive_count,
            error_type=error_type,
            error_message=message,
            time=now,
        )
    )
