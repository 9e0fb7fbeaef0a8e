"""The backend contract: the SQS-shaped primitives every backend implements (the protocols).

Policy lives in ``framework.semantics`` and ``framework.runtime``; a backend only executes these
primitives. ``tests/conformance/`` is the full contract: a backend is finished when it passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, Self

from framework.clock import Clock
from framework.messages import DeadLetterReason, Delivery, Outgoing, OutgoingMail, QueueStats
from framework.registry import EmailRule, QueueSpec, SubscriptionSpec, TopicSpec

__all__ = ["Backend", "CanCheckDeclared", "CanDeclareMailRules", "CanSendBatch"]


class Backend(Protocol):
    """**Protocol**: the primitives the runtime needs.

    Backends do not subclass it; they match it structurally. Receipts are opaque: ``ack``,
    ``release`` and ``extend`` on a receipt that already expired are no-ops, never errors.
    """

    clock: Clock

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Build the backend from its URL (``memory://``, ``amqp://...``, ``aws://...``)."""

    async def __aenter__(self) -> Self:
        """Connect."""

    async def __aexit__(self, *exc_info: object) -> None:
        """Disconnect; messages in flight become visible again."""

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue if missing (idempotent)."""

    async def send(self, queue: str, message: Outgoing) -> str:
        """Enqueue ``message`` and return its message id.

        Raises:
            UnknownQueueError: If the queue does not exist.
        """

    async def receive(self, queue: str, *, limit: int, wait: float) -> Sequence[Delivery]:
        """Lease up to ``limit`` visible messages for the queue's visibility timeout.

        Waits up to ``wait`` seconds for the first one; returns an empty sequence on timeout.
        Every receive increments the message's receive count.
        """

    async def ack(self, delivery: Delivery) -> None:
        """Delete the message for good."""

    async def release(self, delivery: Delivery, *, delay: float) -> None:
        """Make the message visible again after ``delay`` seconds."""

    async def extend(self, delivery: Delivery, *, seconds: float) -> None:
        """Set the message's remaining invisibility to ``seconds`` from now."""

    async def dead_letter(self, delivery: Delivery, *, reason: DeadLetterReason) -> None:
        """Move the message to its queue's dead-letter queue with ``reason``'s headers."""

    async def stats(self, queue: str) -> QueueStats:
        """Return the queue's depth, in-flight and delayed counts."""

    async def purge(self, queue: str) -> int:
        """Delete every message, in flight or not, as SQS's PurgeQueue does; return how many."""

    async def queues(self) -> Sequence[str]:
        """Return the names of the queues the backend knows."""

    async def declare_topic(self, spec: TopicSpec) -> None:
        """Create the topic if missing (idempotent)."""

    async def subscribe(self, subscription: SubscriptionSpec) -> None:
        """Attach ``subscription``'s queue (declared first) to its topic, with its filter policy."""

    async def publish(self, topic: str, message: Outgoing) -> str:
        """Deliver a copy of ``message`` to every matching subscription; return the message id.

        Raises:
            UnknownTopicError: If the topic does not exist.
        """

    async def send_mail(self, mail: OutgoingMail) -> str:
        """Hand an outgoing mail to the backend's transport; return its message id."""


class CanSendBatch(Protocol):
    """**Protocol**, optional: a backend that sends many messages to one queue at once.

    ``App.send_batch`` (and the admin API's and the CLI's bulk sends) use it when the backend
    has it, and otherwise send the messages one at a time: it is an optimisation, never a
    different meaning. Memory and SQLite store a batch in one step (one transaction on SQLite),
    SQS sends ``SendMessageBatch`` requests of up to 10, RabbitMQ publishes with every confirm
    in flight at once.
    """

    async def send_batch(self, queue: str, messages: Sequence[Outgoing]) -> list[str]:
        """Enqueue ``messages`` in order; return their message ids, in the same order.

        A FIFO duplicate inside the window is accepted and dropped, as by ``send``, and its
        place in the result holds the first message's id. If the broker fails part way, the
        error is raised and the messages before the failure may have been sent.

        Raises:
            UnknownQueueError: If the queue does not exist.
        """


class CanCheckDeclared(Protocol):
    """**Protocol**, optional: a backend that can say which declared resources are missing.

    ``framework run --no-declare`` needs it: infrastructure managed elsewhere is checked, never
    created, and the app refuses to start with the list of what is absent.
    """

    async def missing(
        self,
        queues: Sequence[QueueSpec],
        topics: Sequence[TopicSpec],
        subscriptions: Sequence[SubscriptionSpec],
    ) -> list[str]:
        """Return one line per missing resource (``queue 'orders'``), in the order given."""


class CanDeclareMailRules(Protocol):
    """**Protocol**, optional: a backend whose broker receives mail itself (AWS: SES).

    ``Runtime.declare`` calls ``declare_mail_rules`` after the queues, topics and
    subscriptions when the app has ``@on_email`` rules, and ``--no-declare`` adds
    ``missing_mail_rules`` to the list of what is absent. Backends whose mail arrives only
    through the framework's SMTP receiver (memory, RabbitMQ) do not implement it.
    """

    async def declare_mail_rules(
        self,
        app_name: str,
        rules: Sequence[EmailRule],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Create the broker's receipt rules for ``rules``, in order (idempotent).

        ``progress`` is called with one line per rule once it is declared.
        """

    async def missing_mail_rules(self, app_name: str, rules: Sequence[EmailRule]) -> list[str]:
        """Return one line per missing mail resource of ``rules``; create nothing."""
