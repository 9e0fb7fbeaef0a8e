"""Lambda events by shape, and SQS records as the deliveries the dispatcher runs.

Lambda calls one handler with whatever its triggers send; the shape says which trigger it was:

| shape | source |
| --- | --- |
| ``version == "2.0"`` and ``requestContext.http`` | HTTP API, function URL (payload 2.0) |
| ``httpMethod`` and ``requestContext`` | REST API proxy integration (payload 1.0) |
| ``Records[].eventSource == "aws:sqs"`` | an SQS event source mapping |
| ``requestContext.eventType`` ``CONNECT``/``MESSAGE``/``DISCONNECT`` | a WebSocket API route |
| ``type == "REQUEST"``, ``methodArn``, ``eventType == "CONNECT"`` | a ``$connect`` authorizer |

The WebSocket shapes are checked first: API Gateway's WebSocket events may carry REST-like
fields (``httpMethod`` in some senders' fixtures), but ``eventType`` is theirs alone.

An SQS record is the message ``ReceiveMessage`` returned to Lambda's poller, renamed:
``messageId`` for ``MessageId``, ``attributes`` for ``Attributes`` (every value a string),
``messageAttributes`` with ``stringValue``/``binaryValue`` (base64)/``dataType`` for
``StringValue``/``BinaryValue``/``DataType``. ``message_of`` turns it back, so the AWS
backend's own ``decode`` reads it, with its ``x-framework`` attribute, exactly as a worker does.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from framework.backends.aws.wire import decode
from framework.exceptions import FrameworkError
from framework.messages import DLQ_SOURCE, Delivery

__all__ = [
    "WEBSOCKET_EVENT_TYPES",
    "EventKind",
    "UnknownEventError",
    "delivery_of",
    "kind_of",
    "message_of",
    "queue_name_of_arn",
    "unwrap_sns",
]

EventKind = Literal["http-v1", "http-v2", "sqs", "websocket", "websocket-authorizer"]
WEBSOCKET_EVENT_TYPES = ("CONNECT", "MESSAGE", "DISCONNECT")


class UnknownEventError(FrameworkError):
    """Lambda passed an event whose shape the framework does not serve."""


def _describe(event: object) -> str:
    if not isinstance(event, Mapping):
        return f"a {type(event).__name__}"
    keys = ", ".join(sorted(str(k) for k in event)[:12]) or "no keys"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], Mapping):
        source = records[0].get("eventSource") or records[0].get("EventSource")
        return f"Records from {source!r} (keys: {keys})"
    return f"an object with keys {keys}"


def kind_of(event: object) -> EventKind:
    """Return which trigger sent ``event``.

    Raises:
        UnknownEventError: For any other shape, naming what it got.
    """
    if isinstance(event, Mapping):
        context = event.get("requestContext")
        if isinstance(context, Mapping):
            event_type = context.get("eventType")
            if event_type in WEBSOCKET_EVENT_TYPES and "connectionId" in context:
                if event.get("type") == "REQUEST" and "methodArn" in event:
                    return "websocket-authorizer"
                return "websocket"
            if event.get("version") == "2.0" and isinstance(context.get("http"), Mapping):
                return "http-v2"
            if "httpMethod" in event:
                return "http-v1"
        records = event.get("Records")
        if (
            isinstance(records, list)
            and records
            and all(isinstance(r, Mapping) and r.get("eventSource") == "aws:sqs" for r in records)
        ):
            return "sqs"
    raise UnknownEventError(
        f"the Lambda handler cannot serve {_describe(event)}: it serves API Gateway REST "
        "(payload 1.0), HTTP API or function URL (payload 2.0) and WebSocket API events, and "
        "SQS batches; "
        "point only those triggers at this function"
    )


def queue_name_of_arn(arn: str) -> str:
    """The SQS name in a queue ARN (``arn:aws:sqs:REGION:ACCOUNT:NAME``)."""
    return arn.rpartition(":")[2]


def _attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """One message attribute of a Lambda record, as ``ReceiveMessage`` returns it."""
    data_type = str(value.get("dataType", "String"))
    out: dict[str, Any] = {"DataType": data_type}
    if value.get("stringValue") is not None:
        out["StringValue"] = str(value["stringValue"])
    if value.get("binaryValue") is not None:
        try:
            out["BinaryValue"] = base64.b64decode(str(value["binaryValue"]))
        except (binascii.Error, ValueError):
            out["BinaryValue"] = str(value["binaryValue"]).encode()
    return out


def message_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return an SQS record of a Lambda event as ``ReceiveMessage``'s ``Messages`` entry."""
    attributes = record.get("messageAttributes") or {}
    return {
        "MessageId": str(record.get("messageId", "")),
        "ReceiptHandle": str(record.get("receiptHandle", "")),
        "Body": str(record.get("body", "")),
        "Attributes": {str(k): str(v) for k, v in (record.get("attributes") or {}).items()},
        "MessageAttributes": {
            str(name): _attribute(value)
            for name, value in attributes.items()
            if isinstance(value, Mapping)
        },
    }


def _sns_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """An SNS notification's message attribute (``Type``/``Value``) in SQS's form."""
    data_type = str(value.get("Type", "String"))
    text = str(value.get("Value", ""))
    if data_type.startswith("Binary"):
        try:
            return {"DataType": data_type, "BinaryValue": base64.b64decode(text)}
        except (binascii.Error, ValueError):
            return {"DataType": "String", "StringValue": text}
    return {"DataType": data_type, "StringValue": text}


def unwrap_sns(message: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``message`` with an SNS notification body replaced by what was published.

    A subscription without raw delivery wraps each published message in a JSON notification
    (``Type``, ``TopicArn``, ``Message``, ``MessageAttributes`` as ``Type``/``Value``). The
    framework subscribes its queues with raw delivery, but a subscription made by hand may not
    be: the handler must see the same body and attributes either way. Any other body is
    returned unchanged.
    """
    body = str(message.get("Body", ""))
    if not body.lstrip().startswith("{"):
        return dict(message)
    try:
        notification = json.loads(body)
    except ValueError:
        return dict(message)
    if not (
        isinstance(notification, dict)
        and notification.get("Type") == "Notification"
        and "TopicArn" in notification
        and isinstance(notification.get("Message"), str)
    ):
        return dict(message)
    attributes = notification.get("MessageAttributes") or {}
    return {
        **message,
        "Body": notification["Message"],
        "MessageAttributes": {
            str(k): _sns_attribute(v) for k, v in attributes.items() if isinstance(v, Mapping)
        },
    }


def delivery_of(
    queue: str,
    record: Mapping[str, Any],
    *,
    now: datetime,
    unwrap: bool = False,
    names: Mapping[str, str] | None = None,
) -> Delivery:
    """Return the delivery of one SQS record of a Lambda event.

    Args:
        queue: The framework name of the record's queue.
        record: One entry of the event's ``Records``.
        now: When the message was received, if SQS did not say.
        unwrap: Replace an SNS notification body by the published message (topic
            subscriptions; not mail-rule queues: the caller unwraps SES's notification
            with ``unwrap_mail``).
        names: Framework queue names by SQS name (``orders_audit`` -> ``orders.audit``).

    A record that SQS's own redrive moved to a dead-letter queue carries
    ``DeadLetterQueueSourceArn``; when the framework's reason headers are absent, its source
    queue is taken from there, so ``ctx.message.dead_letter`` and redrive still know it.
    """
    message = message_of(record)
    if unwrap:
        message = unwrap_sns(message)
    delivery = decode(queue, message, now=now)
    source_arn = message["Attributes"].get("DeadLetterQueueSourceArn")
    if source_arn and DLQ_SOURCE not in delivery.headers:
        physical = queue_name_of_arn(source_arn)
        source = (names or {}).get(physical, physical)
        headers = {**delivery.headers, DLQ_SOURCE: source}
        return Delivery(
            queue=delivery.queue,
            message_id=delivery.message_id,
            body=delivery.body,
            attributes=delivery.attributes,
            headers=headers,
            receive_count=delivery.receive_count,
            sent_at=delivery.sent_at,
            first_received_at=delivery.first_received_at,
            receipt=delivery.receipt,
            group_id=delivery.group_id,
            deduplication_id=delivery.deduplication_id,
        )
    return delivery
