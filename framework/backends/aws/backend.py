"""``aws://``: the backend primitives on SQS, SNS and SES v2 (aiobotocore); docs/backends/aws.md."""

from __future__ import annotations

import functools
import importlib.util
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ParamSpec, Self, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from framework.clock import Clock, SystemClock
from framework.exceptions import (
    BackendUnavailableError,
    InvalidMessageError,
    UnknownQueueError,
)
from framework.messages import DeadLetterReason, Delivery, Outgoing, OutgoingMail, QueueStats
from framework.registry import (
    DEFAULT_MESSAGE_SIZE,
    MAX_DELAY,
    EmailRule,
    QueueSpec,
    SubscriptionSpec,
    TopicSpec,
)
from framework.semantics.fanout import matching
from framework.semantics.redrive import dead_lettered
from framework.websocket import Serve

from .clients import MAX_WAIT, Clients
from .cloudformation import SQS_MAX_MESSAGE_SIZE
from .notifications import unwrap_mail
from .outbound_mail import SESSender
from .receipt import ReceiptRules
from .relay import SQSConnectionRelay
from .settings import AWSSettings
from .sns import Topics, missing, queue_policy
from .sqs import (
    Queues,
    error_code,
    is_missing_queue,
    is_stale_receipt,
    seconds,
)
from .tracking import Deleter, FifoGroups
from .wire import decode, encode_checked, fifo_arguments

__all__ = ["AWSBackend"]

# aiobotocore is imported when the first client is made (clients.py); without it installed,
# the backend's import fails here, as framework.backends turns into MissingDependencyError.
if importlib.util.find_spec("aiobotocore") is None:
    raise ModuleNotFoundError("No module named 'aiobotocore'", name="aiobotocore")

MAX_BATCH = 10  # SQS's largest receive and delete batches
SNS_MAX_MESSAGE_SIZE = DEFAULT_MESSAGE_SIZE
# The runtime times a lease from when the receive returned, SQS from when it answered: SQS keeps
# a message invisible this much longer than the runtime's deadline, so the runtime always
# cancels the handler and releases the message first, and SQS never hands a message to a second
# consumer while its first handler still runs. Only a process that dies leaves its messages
# invisible for the extra second.
VISIBILITY_MARGIN = 1.0
MAX_VISIBILITY = 43_200  # SQS's longest visibility timeout, seconds
# SQS's short poll (WaitTimeSeconds=0) asks a sample of its servers and can answer empty while
# messages wait; a one-second long poll asks them all and returns as soon as one has a message.
MIN_WAIT = 1

P = ParamSpec("P")
T = TypeVar("T")


def _batches(
    entries: Sequence[tuple[str, dict[str, Any], int]],
) -> list[Sequence[tuple[str, dict[str, Any], int]]]:
    """Split ``entries`` into ``SendMessageBatch`` requests: at most 10, and 1 MiB in all."""
    chunks: list[Sequence[tuple[str, dict[str, Any], int]]] = []
    start, size = 0, 0
    for index, entry in enumerate(entries):
        if index - start == MAX_BATCH or (index > start and size + entry[2] > SQS_MAX_MESSAGE_SIZE):
            chunks.append(entries[start:index])
            start, size = index, 0
        size += entry[2]
    if start < len(entries):
        chunks.append(entries[start:])
    return chunks


def unavailable_as_error(
    method: Callable[P, Awaitable[T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Make a backend method raise ``BackendUnavailableError`` for an unreachable endpoint.

    botocore's connection errors (refused, timed out, closed) and AWS's own 5xx answers,
    each after botocore's retries, mean "not reachable now", not a bug in the caller.
    """

    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (BotoConnectionError, HTTPClientError) as exc:
            raise BackendUnavailableError(f"AWS is not reachable: {exc}") from exc
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if int(status or 0) >= 500:
                raise BackendUnavailableError(
                    f"AWS answered {status} ({error_code(exc)}): {exc}"
                ) from exc
            raise

    return translated


class AWSBackend:
    """Queues on SQS, topics on SNS, outgoing mail on SES v2, shared by every process.

    Build it with ``from_url("aws://REGION?options")`` (options: see ``AWSSettings``) and use it
    as an async context manager: entering connects (each client is made on its first use),
    leaving closes the clients (messages in flight become visible again when their visibility
    timeout ends, as on SQS).
    """

    def __init__(self, settings: AWSSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._clients: Clients | None = None
        self._client: Any = None
        self._queues: Queues | None = None
        self._topics: Topics | None = None
        self._mailer: SESSender | None = None
        self._receipt: ReceiptRules | None = None
        self._deleter: Deleter | None = None
        self._filters: dict[str, SubscriptionSpec] = {}
        self._fifo = FifoGroups()

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Build a backend for ``aws://REGION?options`` (not yet connected)."""
        return cls(AWSSettings.from_url(url))

    async def __aenter__(self) -> Self:
        """Connect: no client is made yet, each on its first use (``clients.py``)."""
        settings = self.settings
        clients = self._clients = Clients(settings)
        self._client = clients.lazy("sqs")
        self._queues = Queues(self._client, declare=settings.declare)
        self._topics = Topics(
            clients.lazy("sns"), declare=settings.declare, filtering=settings.filtering
        )
        self._mailer = SESSender(clients.lazy("sesv2"))
        # Receipt rules exist only in SES's first API (v2 has none).
        self._receipt = ReceiptRules(
            clients.lazy("ses"), self._queues, self._topics, declare=settings.declare
        )
        self._deleter = Deleter(self._client, self.sqs.url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        clients, self._clients = self._clients, None
        self._queues = self._topics = self._mailer = self._deleter = None
        self._receipt = None
        self._client = None
        if clients is not None:
            await clients.aclose()

    @property
    def clients_made(self) -> tuple[str, ...]:
        """The AWS services this backend has made a client for so far (none on connecting)."""
        return self._clients.made if self._clients is not None else ()

    async def connection_relay(self, process: str, serve: Serve) -> SQSConnectionRelay:
        """Start answering connection requests for ``process``; see ``relay.py``."""
        if self._client is None:
            raise RuntimeError("the AWS backend is not connected")
        relay = SQSConnectionRelay(self._client, process, serve)
        await relay.open()
        return relay

    @property
    def sqs(self) -> Queues:
        """The SQS side (after ``__aenter__``)."""
        if self._queues is None:
            raise RuntimeError("AWSBackend is not connected: use 'async with backend:'")
        return self._queues

    @property
    def sns(self) -> Topics:
        """The SNS side (after ``__aenter__``)."""
        if self._topics is None:
            raise RuntimeError("AWSBackend is not connected: use 'async with backend:'")
        return self._topics

    def _is_fifo(self, queue: str) -> bool:
        spec = self.sqs.specs.get(queue)
        return spec.fifo if spec is not None else queue.endswith(".fifo")

    async def _url(self, queue: str) -> str:
        return await self.sqs.url(queue)

    def _missing(self, queue: str, exc: ClientError) -> None:
        """Raise UnknownQueueError if ``exc`` says the queue is gone (deleted while in use)."""
        if is_missing_queue(exc):
            self.sqs.forget(queue)
            raise UnknownQueueError(f"queue {queue!r} does not exist on SQS (deleted?)") from None

    # --- queues ----------------------------------------------------------------------------

    @unavailable_as_error
    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create ``spec``'s queue with its attributes and redrive policy (idempotent)."""
        await self.sqs.declare_queue(spec)

    @unavailable_as_error
    async def send(self, queue: str, message: Outgoing) -> str:
        """Send ``message`` to ``queue``; return its framework message id.

        Raises:
            UnknownQueueError: If the queue does not exist.
            MessageTooLargeError: If the encoded message exceeds SQS's 1 MiB.
            InvalidMessageError: For a delay over 900 seconds.
        """
        url = await self._url(queue)
        fifo = self._is_fifo(queue)
        message_id, entry, _ = self._entry(queue, message, fifo)
        try:
            await self._client.send_message(QueueUrl=url, **entry)
        except ClientError as exc:
            self._missing(queue, exc)
            raise
        if fifo:
            self._fifo.sent(queue, message.group_id, message_id)
        return message_id

    @unavailable_as_error
    async def send_batch(self, queue: str, messages: Sequence[Outgoing]) -> list[str]:
        """Send ``messages`` in order with ``SendMessageBatch``: 10, and 1 MiB, per request.

        Every message is encoded and checked before the first request. SQS accepts or refuses
        each entry of a request on its own: the first refused entry raises, after the
        requests before it (and that request's other entries) were sent.

        Raises:
            UnknownQueueError: If the queue does not exist.
            MessageTooLargeError: If one encoded message exceeds SQS's 1 MiB.
            InvalidMessageError: For a delay over 900 seconds, or an entry SQS refuses.
        """
        url = await self._url(queue)
        fifo = self._is_fifo(queue)
        entries = [self._entry(queue, message, fifo) for message in messages]
        for chunk in _batches(entries):
            request = [{"Id": str(i), **entry} for i, (_, entry, _) in enumerate(chunk)]
            try:
                answer = await self._client.send_message_batch(QueueUrl=url, Entries=request)
            except ClientError as exc:
                self._missing(queue, exc)
                raise
            failed = answer.get("Failed") or []
            if failed:
                first = failed[0]
                raise InvalidMessageError(
                    f"queue {queue!r}: SQS refused {len(failed)} of {len(chunk)} messages of a "
                    f"batch ({first.get('Code')}: {first.get('Message')})"
                )
        if fifo:
            for message, (message_id, _, _) in zip(messages, entries, strict=True):
                self._fifo.sent(queue, message.group_id, message_id)
        return [message_id for message_id, _, _ in entries]

    def _entry(self, queue: str, message: Outgoing, fifo: bool) -> tuple[str, dict[str, Any], int]:
        """The message's id, its ``SendMessage`` arguments (no ``QueueUrl``) and its size."""
        message_id = message.message_id or str(uuid.uuid4())
        sent_at = message.sent_at or self.clock.wall()
        encoded = encode_checked(
            f"queue {queue!r}", message, message_id, sent_at, limit=SQS_MAX_MESSAGE_SIZE
        )
        entry: dict[str, Any] = {
            "MessageBody": encoded.body,
            "MessageAttributes": encoded.attributes,
        }
        if fifo:
            entry.update(fifo_arguments(f"queue {queue!r}", message))
        elif message.delay > 0:
            if message.delay > MAX_DELAY:
                raise InvalidMessageError(
                    f"queue {queue!r}: delay={message.delay} exceeds SQS's 900 seconds; "
                    "schedule longer delays elsewhere (EventBridge Scheduler, a database)"
                )
            entry["DelaySeconds"] = seconds(message.delay)
        return message_id, entry, encoded.size()

    @unavailable_as_error
    async def receive(self, queue: str, *, limit: int, wait: float) -> Sequence[Delivery]:
        """Receive up to ``limit`` (at most 10) messages, long-polling up to ``wait`` seconds.

        The poll lasts whole seconds, at least one (``MIN_WAIT``: even ``wait=0`` must not
        get a false empty answer, which would end a redrive early) and at most 20 (SQS's
        limit). A subscription filtered by the subscriber (``filtering=subscriber``) drops
        unwanted copies here.
        """
        url = await self._url(queue)
        spec = self.sqs.specs.get(queue)
        if self._is_fifo(queue):
            self._fifo.watch(queue)
        subscription = self._filters.get(queue)
        end = self.clock.now() + max(0.0, wait)
        while True:
            kwargs: dict[str, Any] = {
                "QueueUrl": url,
                "MaxNumberOfMessages": max(1, min(limit, MAX_BATCH)),
                "WaitTimeSeconds": min(MAX_WAIT, max(MIN_WAIT, seconds(end - self.clock.now()))),
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            }
            if spec is not None:
                kwargs["VisibilityTimeout"] = min(
                    MAX_VISIBILITY, seconds(spec.visibility_timeout + VISIBILITY_MARGIN)
                )
            try:
                response = await self._client.receive_message(**kwargs)
            except ClientError as exc:
                self._missing(queue, exc)
                raise
            now = self.clock.wall()
            out = [decode(queue, m, now=now) for m in response.get("Messages") or ()]
            if spec is not None and spec.carries_mail:
                out = [unwrap_mail(delivery) for delivery in out]
            if subscription is not None:
                out = await self._wanted(subscription, out)
            for delivery in out:
                self._fifo.received(delivery)
            if out or self.clock.now() >= end:
                return out

    async def _wanted(
        self, subscription: SubscriptionSpec, deliveries: list[Delivery]
    ) -> list[Delivery]:
        """Keep the copies ``subscription``'s filter policy accepts; delete the others."""
        kept = []
        for delivery in deliveries:
            wanted = matching(
                [subscription],
                attributes=delivery.attributes,
                body=delivery.body,
                content_type=delivery.content_type,
            )
            if wanted:
                kept.append(delivery)
            else:
                await self.ack(delivery)
        return kept

    @unavailable_as_error
    async def ack(self, delivery: Delivery) -> None:
        """Delete the message, batched with other acks of the moment (stale receipt: no-op)."""
        assert self._deleter is not None, "AWSBackend is not connected"
        await self._deleter.delete(delivery.queue, delivery.receipt)

    async def _change_visibility(self, delivery: Delivery, invisible: float) -> None:
        try:
            await self._client.change_message_visibility(
                QueueUrl=await self._url(delivery.queue),
                ReceiptHandle=delivery.receipt,
                VisibilityTimeout=min(MAX_VISIBILITY, seconds(invisible)),
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if is_stale_receipt(error_code(exc), str(error.get("Message", ""))):
                return
            self._missing(delivery.queue, exc)
            raise

    @unavailable_as_error
    async def release(self, delivery: Delivery, *, delay: float) -> None:
        """Make the message visible again after ``delay`` seconds (ChangeMessageVisibility)."""
        await self._change_visibility(delivery, delay)
        if self._is_fifo(delivery.queue):
            self._fifo.released(delivery, now=self.clock.now(), delay=seconds(delay))

    @unavailable_as_error
    async def extend(self, delivery: Delivery, *, seconds: float) -> None:
        """Keep the message invisible for ``seconds`` from now (ChangeMessageVisibility).

        SQS's timeout is set a second longer (``VISIBILITY_MARGIN``): the runtime's deadline
        is the one that counts.
        """
        await self._change_visibility(delivery, seconds + VISIBILITY_MARGIN)

    @unavailable_as_error
    async def dead_letter(self, delivery: Delivery, *, reason: DeadLetterReason) -> None:
        """Send the message to its dead-letter queue with ``reason``'s headers, then delete it.

        The copy keeps the message's id, body, attributes and first send time. Sent before the
        delete, so a crash in between leaves a duplicate, never a loss.

        Raises:
            UnknownQueueError: If the queue has no dead-letter queue.
        """
        dlq = await self.sqs.dead_letter_of(delivery.queue)
        if dlq is None:
            raise UnknownQueueError(f"queue {delivery.queue!r} has no dead-letter queue")
        copy = dead_lettered(delivery, reason, fifo=self._is_fifo(dlq))
        await self.send(dlq, copy)
        await self.ack(delivery)

    @unavailable_as_error
    async def stats(self, queue: str) -> QueueStats:
        """Return SQS's approximate depth, in-flight and delayed counts, and the DLQ's size.

        Raises:
            UnknownQueueError: If the queue does not exist.
        """
        return await self.sqs.stats(queue)

    @unavailable_as_error
    async def has_receivable(self, queue: str) -> bool:
        """True if a receive on ``queue`` now would return a message (for ``TestApp.drain``).

        SQS counts a FIFO message waiting behind its group's retrying head as visible; those
        this process released behind such a head are not counted here.
        """
        visible = (await self.sqs.counts(queue)).visible
        if visible and self._is_fifo(queue):
            visible -= self._fifo.parked_behind_blocked(queue, self.clock.now())
        return visible > 0

    @unavailable_as_error
    async def purge(self, queue: str) -> int:
        """Delete every message of the queue (PurgeQueue); return how many there were.

        Raises:
            UnknownQueueError: If the queue does not exist.
            FrameworkError: If the queue was purged less than 60 seconds ago (SQS's limit).
        """
        count = await self.sqs.purge(queue)
        self._fifo.forget(queue)
        return count

    @unavailable_as_error
    async def queues(self, prefix: str | None = None) -> Sequence[str]:
        """Return the framework names of the account's queues (ListQueues, with ``prefix``)."""
        return await self.sqs.names(prefix)

    # --- topics ----------------------------------------------------------------------------

    @unavailable_as_error
    async def declare_topic(self, spec: TopicSpec) -> None:
        """Create the SNS topic (idempotent)."""
        await self.sns.declare_topic(spec)

    @unavailable_as_error
    async def subscribe(self, subscription: SubscriptionSpec) -> None:
        """Declare the subscription's queue, let the topic write to it, and subscribe it."""
        if subscription.queue is None:
            raise NotImplementedError("endpoint subscriptions are delivered by the runtime")
        await self.sqs.declare_queue(subscription.queue)
        name = subscription.queue.name
        queue_arn = await self.sqs.arn(name)
        if self.settings.declare:
            topic_arn = await self.sns.arn(subscription.topic)
            await self._client.set_queue_attributes(
                QueueUrl=await self._url(name),
                Attributes={"Policy": queue_policy(queue_arn, [topic_arn])},
            )
        await self.sns.subscribe(subscription, queue_arn=queue_arn)
        if subscription.filter_policy is not None and self.settings.filtering == "subscriber":
            self._filters[name] = subscription
        else:
            self._filters.pop(name, None)

    @unavailable_as_error
    async def publish(self, topic: str, message: Outgoing) -> str:
        """Publish ``message`` to the SNS topic; return its framework message id.

        Raises:
            UnknownTopicError: If the topic does not exist.
            MessageTooLargeError: If the encoded message exceeds SNS's 256 KiB.
            InvalidMessageError: With native filtering, for an attribute SNS cannot carry.
        """
        message_id = message.message_id or str(uuid.uuid4())
        where = f"topic {topic!r}"
        sent_at = message.sent_at or self.clock.wall()
        encoded = encode_checked(where, message, message_id, sent_at, limit=SNS_MAX_MESSAGE_SIZE)
        if encoded.packed and self.settings.filtering == "native":
            raise InvalidMessageError(
                f"{where}: attribute(s) {', '.join(encoded.packed)} cannot be SNS message "
                "attributes (at most 9 besides the framework's, non-empty values, names of "
                "letters, digits, '-', '_' and '.'), so SNS filter policies would not see them"
            )
        kwargs: dict[str, Any] = {
            "Message": encoded.body,
            "MessageAttributes": encoded.attributes,
        }
        spec = self.sns.specs.get(topic)
        if spec.fifo if spec is not None else topic.endswith(".fifo"):
            kwargs.update(fifo_arguments(where, message))
        await self.sns.publish(topic, **kwargs)
        return message_id

    @unavailable_as_error
    async def send_mail(self, mail: OutgoingMail) -> str:
        """Send the mail through SES v2 (raw); return its message id.

        Raises:
            MailError: If SES refuses it.
        """
        if self._mailer is None:
            raise RuntimeError("AWSBackend is not connected: use 'async with backend:'")
        return await self._mailer.send(mail)

    # --- inbound mail ---------------------------------------------------------------------

    @property
    def receipt_rules(self) -> ReceiptRules:
        """The SES receipt rules side (after ``__aenter__``)."""
        if self._receipt is None:
            raise RuntimeError("AWSBackend is not connected: use 'async with backend:'")
        return self._receipt

    @unavailable_as_error
    async def declare_mail_rules(
        self,
        app_name: str,
        rules: Sequence[EmailRule],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Declare the SES receipt rules that deliver received mail to the ``@on_email`` queues.

        Per rule, in order: the topic ``QUEUE-inbound-mail`` that SES may publish to, the
        queue's subscription to it (without raw delivery), and a receipt rule in the rule set
        ``APP-mail-rules`` (see ``receipt.py``). The rule set is not activated: that is the
        operator's step (``aws ses set-active-receipt-rule-set``), account-wide. Nothing is
        done with ``mail_rules=0``.

        Raises:
            MissingResourcesError: With ``declare=0``, listing what does not exist.
        """
        if self.settings.mail_rules and rules:
            await self.receipt_rules.declare(app_name, rules, progress)

    @unavailable_as_error
    async def missing_mail_rules(self, app_name: str, rules: Sequence[EmailRule]) -> list[str]:
        """Return one line per missing inbound-mail topic, subscription, rule set or rule."""
        if not (self.settings.mail_rules and rules):
            return []
        return await self.receipt_rules.missing(app_name, rules)

    # --- checks ----------------------------------------------------------------------------

    @unavailable_as_error
    async def missing(
        self,
        queues: Sequence[QueueSpec],
        topics: Sequence[TopicSpec],
        subscriptions: Sequence[SubscriptionSpec],
    ) -> list[str]:
        """Return the resources that do not exist on AWS; adopt the ones that do.

        Nothing is created (``framework run --no-declare``). What exists is taken over as
        ``declare_queue``, ``declare_topic`` and ``subscribe`` would (specs, and the filter
        policies of ``filtering=subscriber``), so the process behaves the same either way. A
        subscription counts as present when its topic lists its queue's ARN.
        """
        out, present = await missing(self.sqs, self.sns, queues, topics, subscriptions)
        if self.settings.filtering == "subscriber":
            for sub in present:
                if sub.queue is not None and sub.filter_policy is not None:
                    self._filters[sub.queue.name] = sub
        return out
