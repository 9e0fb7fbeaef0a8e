"""SQS queues: names, declaration with native attributes and redrive policy, lookups and counts.

``Queues`` knows how framework queue specs become SQS queues; the message primitives (send,
receive, delete, change visibility) live in ``backend.py``, which calls the client directly.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from framework.exceptions import DeclarationError, FrameworkError, UnknownQueueError
from framework.messages import QueueStats
from framework.registry import QueueSpec

from .cloudformation import SQS_MAX_MESSAGE_SIZE, native_max_receive_count
from .settings import physical_name
from .wire import error_code

__all__ = [
    "NAME_TAG",
    "QueueStatsRaw",
    "Queues",
    "error_code",
    "is_missing_queue",
    "is_stale_receipt",
    "queue_attributes",
    "redrive_policy",
    "seconds",
]

# Every queue the backend creates carries its framework name in this tag, so a queue whose
# SQS name lost its dots (``t_sub`` for ``t.sub``) can be listed under its own name again.
NAME_TAG = "framework-name"
_PURGE_IN_PROGRESS = {"PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress"}
_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}


def is_missing_queue(exc: ClientError) -> bool:
    """True if ``exc`` says the queue does not exist."""
    error = exc.response.get("Error", {})
    return bool({str(error.get("Code", "")), str(error.get("QueryErrorCode", ""))} & _MISSING)


def is_stale_receipt(code: str, message: str) -> bool:
    """True if an error (``code``, ``message``) says a receipt handle is no longer valid.

    The message was deleted, or received again since: for the backend contract acting on it
    is a no-op (the next receipt decides), not an error. SQS reports some of these as
    ``InvalidParameterValue``, which also means a bad timeout: only those that name the
    receipt handle count.
    """
    code = code.removeprefix("AWS.SimpleQueueService.")
    if code in ("ReceiptHandleIsInvalid", "MessageNotInflight"):
        return True
    return code == "InvalidParameterValue" and "receipt" in message.lower()


def seconds(value: float) -> int:
    """Round a duration up to SQS's whole seconds: never shorter than asked for."""
    return max(0, math.ceil(value - 1e-6))


def redrive_policy(dead_letter_arn: str, spec: QueueSpec) -> str:
    """Return the RedrivePolicy of ``spec``'s queue, its dead letters going to
    ``dead_letter_arn``: a backstop one receipt past the framework's own limit
    (``native_max_receive_count`` says why)."""
    return json.dumps(
        {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": native_max_receive_count(spec)},
        separators=(",", ":"),
    )


def queue_attributes(spec: QueueSpec, *, dead_letter_arn: str | None = None) -> dict[str, str]:
    """Return the SQS attributes that implement ``spec`` (as ``CreateQueue`` takes them).

    The queue's VisibilityTimeout is the spec's, rounded up to whole seconds; the backend's own
    receives ask for one second more (see ``VISIBILITY_MARGIN`` in backend.py).
    """
    attributes = {
        "VisibilityTimeout": str(seconds(spec.visibility_timeout)),
        "MessageRetentionPeriod": str(seconds(spec.retention)),
        "DelaySeconds": str(seconds(spec.delay)),
        "MaximumMessageSize": str(SQS_MAX_MESSAGE_SIZE),
    }
    if spec.fifo:
        attributes["FifoQueue"] = "true"
        attributes["ContentBasedDeduplication"] = (
            "true" if spec.content_based_deduplication else "false"
        )
    if dead_letter_arn is not None:
        attributes["RedrivePolicy"] = redrive_policy(dead_letter_arn, spec)
    return attributes


@dataclass(frozen=True, slots=True)
class QueueStatsRaw:
    """SQS's approximate counts of one queue."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        """Every message in the queue, whatever its state."""
        return self.visible + self.in_flight + self.delayed


class Queues:
    """SQS queues by framework name: URLs and ARNs cached, specs declared idempotently."""

    def __init__(self, client: Any, *, declare: bool = True) -> None:
        self.client = client
        self.declare = declare
        self.specs: dict[str, QueueSpec] = {}
        self._urls: dict[str, str] = {}
        self._arns: dict[str, str] = {}
        self._names: dict[str, str] = {}  # SQS name -> framework name

    def _claim(self, name: str) -> str:
        physical = physical_name(name)
        owner = self._names.setdefault(physical, name)
        if owner != name:
            raise DeclarationError(
                f"queues {owner!r} and {name!r} are both {physical!r} on SQS, which has no dots "
                "in names; rename one of them"
            )
        return physical

    async def url(self, name: str) -> str:
        """Return the queue URL of framework queue ``name``.

        Raises:
            UnknownQueueError: If the queue does not exist, naming it.
        """
        url = self._urls.get(name)
        if url is not None:
            return url
        physical = physical_name(name)
        try:
            response = await self.client.get_queue_url(QueueName=physical)
        except ClientError as exc:
            if not is_missing_queue(exc):
                raise
            shown = name if physical == name else f"{name} (SQS name {physical})"
            raise UnknownQueueError(
                f"queue {shown!r} does not exist on SQS; declare it with @app.on_queue(...) "
                "or app.queue(...) and start the app once, or create it"
            ) from None
        url = self._urls[name] = str(response["QueueUrl"])
        self._names.setdefault(physical, name)
        return url

    def forget(self, name: str) -> None:
        """Drop the cached URL of ``name`` (the queue was deleted meanwhile)."""
        self._urls.pop(name, None)
        self._arns.pop(name, None)

    async def arn(self, name: str) -> str:
        """Return the ARN of framework queue ``name``."""
        arn = self._arns.get(name)
        if arn is None:
            response = await self.client.get_queue_attributes(
                QueueUrl=await self.url(name), AttributeNames=["QueueArn"]
            )
            arn = self._arns[name] = str(response["Attributes"]["QueueArn"])
        return arn

    async def declare_queue(self, spec: QueueSpec) -> str:
        """Create the queue of ``spec`` (and its dead-letter queue first), or bring an existing
        one to ``spec``'s attributes; return its URL.

        With ``declare=0`` nothing is created or changed: a missing queue raises.

        Raises:
            UnknownQueueError: With ``declare=0``, if the queue or its dead-letter queue is missing.
            DeclarationError: If two framework names map to one SQS name.
        """
        physical = self._claim(spec.name)
        self.specs[spec.name] = spec
        if not self.declare:
            if spec.dead_letter is not None:
                await self.url(spec.dead_letter)
            return await self.url(spec.name)
        dead_letter_arn = None
        if spec.dead_letter is not None:
            dead_letter_arn = await self._ensure_dead_letter_queue(spec)
        attributes = queue_attributes(spec, dead_letter_arn=dead_letter_arn)
        try:
            response = await self.client.create_queue(
                QueueName=physical, Attributes=attributes, tags={NAME_TAG: spec.name}
            )
            url = str(response["QueueUrl"])
        except ClientError as exc:
            if error_code(exc) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            # It exists with other attributes (an earlier version of the app): converge.
            self._urls.pop(spec.name, None)
            url = await self.url(spec.name)
            changeable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
            await self.client.set_queue_attributes(QueueUrl=url, Attributes=changeable)
        self._urls[spec.name] = url
        return url

    async def _ensure_dead_letter_queue(self, spec: QueueSpec) -> str:
        """Create ``spec``'s dead-letter queue if it is missing; return its ARN.

        SQS refuses a redrive policy whose target does not exist, so the dead-letter queue is
        created before its source, with the implied spec; the app declares it again later (with
        its own options, if it has a handler), which brings its attributes up to date.
        """
        dlq = spec.dead_letter_spec()
        name = spec.dead_letter
        assert dlq is not None
        assert name is not None
        try:
            await self.url(name)
        except UnknownQueueError:
            self._claim(name)
            response = await self.client.create_queue(
                QueueName=physical_name(name),
                Attributes=queue_attributes(dlq),
                tags={NAME_TAG: name},
            )
            self._urls[name] = str(response["QueueUrl"])
        return await self.arn(name)

    async def counts(self, name: str) -> QueueStatsRaw:
        """Return the queue's visible, in-flight and delayed counts as SQS reports them."""
        response = await self.client.get_queue_attributes(
            QueueUrl=await self.url(name),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        attributes: Mapping[str, str] = response.get("Attributes", {})
        return QueueStatsRaw(
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    async def dead_letter_of(self, name: str) -> str | None:
        """Return the framework name of the queue's dead-letter queue, if it has one.

        From the spec when this process declared the queue, else from its RedrivePolicy.
        """
        spec = self.specs.get(name)
        if spec is not None:
            return spec.dead_letter
        response = await self.client.get_queue_attributes(
            QueueUrl=await self.url(name), AttributeNames=["RedrivePolicy"]
        )
        policy = response.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            return None
        arn = str(json.loads(policy).get("deadLetterTargetArn", ""))
        physical = arn.rpartition(":")[2]
        return self._names.get(physical) or await self._framework_name(physical)

    async def _framework_name(self, physical: str) -> str:
        """Return the framework name of the SQS queue ``physical``, from its tag if it has one."""
        known = self._names.get(physical)
        if known is not None:
            return known
        if "_" not in physical:
            return physical  # only dots change: a name without '_' is its own
        try:
            url = (await self.client.get_queue_url(QueueName=physical))["QueueUrl"]
            tags = (await self.client.list_queue_tags(QueueUrl=url)).get("Tags") or {}
        except ClientError:
            return physical
        name = str(tags.get(NAME_TAG) or physical)
        if physical_name(name) != physical:
            name = physical
        self._names[physical] = name
        return name

    async def names(self, prefix: str | None = None) -> Sequence[str]:
        """Return the framework names of the account's queues (starting with ``prefix``)."""
        found: set[str] = set()
        kwargs: dict[str, Any] = {"MaxResults": 1000}
        if prefix:
            kwargs["QueueNamePrefix"] = physical_name(prefix)
        while True:
            response = await self.client.list_queues(**kwargs)
            for url in response.get("QueueUrls") or ():
                found.add(await self._framework_name(str(url).rstrip("/").rpartition("/")[2]))
            token = response.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        return sorted(found)

    async def stats(self, name: str) -> QueueStats:
        """Return the queue's counts and the total of its dead-letter queue."""
        counts = await self.counts(name)
        dlq = await self.dead_letter_of(name)
        dead = 0
        if dlq is not None:
            with contextlib.suppress(UnknownQueueError):
                dead = (await self.counts(dlq)).total
        return QueueStats(
            name=name,
            depth=counts.visible,
            in_flight=counts.in_flight,
            delayed=counts.delayed,
            dead_letters=dead,
            dead_letter_queue=dlq,
        )

    async def purge(self, name: str) -> int:
        """Count the queue's messages, then PurgeQueue; return the count.

        Raises:
            UnknownQueueError: If the queue does not exist.
            FrameworkError: If the queue was purged less than 60 seconds ago (SQS's limit).
        """
        count = (await self.counts(name)).total
        try:
            await self.client.purge_queue(QueueUrl=await self.url(name))
        except ClientError as exc:
            if error_code(exc) in _PURGE_IN_PROGRESS:
                raise FrameworkError(
                    f"queue {name!r} was purged less than 60 seconds ago; SQS allows one "
                    "purge a minute: try again in a minute"
                ) from None
            if is_missing_queue(exc):
                self.forget(name)
                raise UnknownQueueError(f"queue {name!r} does not exist on SQS") from None
            raise
        return count
