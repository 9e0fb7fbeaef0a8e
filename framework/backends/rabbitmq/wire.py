"""Framework messages <-> AMQP messages: properties, headers, and the exact receive count.

Everything a framework message carries beyond its body travels in AMQP properties (message id,
content type) or in headers under the ``x-framework-`` prefix, so a copy re-published by a
release, a dead-letter or a redrive is the same message on any process that receives it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from framework.clock import parse_utc
from framework.messages import CONTENT_TYPE, AttributeValue, Delivery, Outgoing

from .consuming import AmqpDelivery
from .publishing import AmqpMessage

__all__ = [
    "ATTRIBUTES",
    "DEDUPLICATION_ID",
    "DELIVERY_COUNT",
    "FIRST_RECEIVED_AT",
    "GROUP_ID",
    "RECEIVE_COUNT",
    "SENT_AT",
    "Received",
    "amqp_message",
    "copy_key",
    "copy_of",
    "decode_attributes",
    "receive_count",
]

# Receipts before this copy was published: bumped by every explicit release, which re-publishes.
RECEIVE_COUNT = "x-framework-receive-count"
FIRST_RECEIVED_AT = "x-framework-first-received-at"
# AMQP's timestamp property has one-second resolution; the framework's sent_at is exact.
SENT_AT = "x-framework-sent-at"
GROUP_ID = "x-framework-group-id"
DEDUPLICATION_ID = "x-framework-deduplication-id"
# JSON keeps attribute types (str, int, float, bool, lists) exactly; AMQP field tables do not
# (bools and floats come back as other types depending on the client).
ATTRIBUTES = "x-framework-attributes"
# Set by quorum queues: broker-side redeliveries (channel closed, consumer timeout, requeue).
DELIVERY_COUNT = "x-delivery-count"


def _int(value: object) -> int:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, int | str):
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def receive_count(headers: Mapping[str, Any]) -> int:
    """Return the receive count of a delivery with ``headers``: counted receipts plus this one.

    ``x-framework-receive-count`` counts the receipts before the copy was re-published (each
    explicit release re-publishes); ``x-delivery-count`` counts the broker's own redeliveries
    of this copy (absent, or 0, on its first delivery).
    """
    return _int(headers.get(RECEIVE_COUNT)) + _int(headers.get(DELIVERY_COUNT)) + 1


def copy_key(message: AmqpDelivery) -> tuple[str, int, int] | None:
    """Return ``(message id, counted receipts, broker redeliveries)`` of a delivery.

    The first two name one copy of a message (a release re-publishes a new copy with more
    receipts counted); the third is how often the broker has delivered that copy again.
    """
    if not message.message_id:
        return None
    headers = message.headers
    return message.message_id, _int(headers.get(RECEIVE_COUNT)), _int(headers.get(DELIVERY_COUNT))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def decode_attributes(value: object) -> dict[str, AttributeValue]:
    """Return the attributes carried in the JSON header (empty for a missing or damaged one)."""
    if value is None:
        return {}
    try:
        parsed = json.loads(_text(value))
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def amqp_message(
    message: Outgoing,
    *,
    message_id: str,
    sent_at: datetime,
    group_id: str | None = None,
    count: int = 0,
    first_received_at: datetime | None = None,
) -> AmqpMessage:
    """Return the persistent AMQP message that carries ``message``.

    Args:
        message: The framework message.
        message_id: Its id (the AMQP ``message_id`` property).
        sent_at: When it was first sent (aware UTC).
        group_id: The FIFO group it belongs to, if any.
        count: Receipts already counted (0 for a new message).
        first_received_at: When it was first received, for a re-published copy.
    """
    headers: dict[str, Any] = {
        key: value for key, value in message.headers.items() if key != CONTENT_TYPE
    }
    if any(key.startswith("x-") for key in headers):
        bad = sorted(key for key in headers if key.startswith("x-"))
        raise ValueError(f"framework headers {bad} use the 'x-' prefix reserved for AMQP")
    headers[SENT_AT] = sent_at.isoformat()
    if message.attributes:
        headers[ATTRIBUTES] = json.dumps(dict(message.attributes), separators=(",", ":"))
    if group_id is not None:
        headers[GROUP_ID] = group_id
    if message.deduplication_id is not None:
        headers[DEDUPLICATION_ID] = message.deduplication_id
    if count:
        headers[RECEIVE_COUNT] = count
    if first_received_at is not None:
        headers[FIRST_RECEIVED_AT] = first_received_at.isoformat()
    # No ``timestamp`` property: the exact send time travels in x-framework-sent-at, and
    # encoding and decoding a second copy cost a few percent of a message's CPU time.
    return AmqpMessage(message.body, headers, message.headers.get(CONTENT_TYPE), message_id)


class Received:
    """The framework's reading of one AMQP delivery."""

    __slots__ = ("delivery", "group_id", "message", "message_id")

    def __init__(
        self,
        queue: str,
        message: AmqpDelivery,
        *,
        receipt: str,
        now: datetime,
        uncounted: int = 0,
    ) -> None:
        self.message = message
        raw = message.headers
        self.message_id = message.message_id or f"amqp-{message.delivery_tag}"
        group = raw.get(GROUP_ID)
        self.group_id = _text(group) if group is not None else None
        dedup = raw.get(DEDUPLICATION_ID)
        headers = {
            key: _text(value)
            for key, value in raw.items()
            if not key.startswith("x-") and value is not None
        }
        if message.content_type:
            headers[CONTENT_TYPE] = message.content_type
        sent_at = parse_utc(raw.get(SENT_AT)) or message.timestamp or now
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=UTC)
        self.delivery = Delivery(
            queue=queue,
            message_id=self.message_id,
            body=message.body,
            attributes=decode_attributes(raw.get(ATTRIBUTES)),
            headers=headers,
            # ``uncounted``: broker redeliveries of copies this process dropped unseen.
            receive_count=max(1, receive_count(raw) - uncounted),
            sent_at=sent_at,
            # A copy re-published by a release knows its first receipt; a broker redelivery
            # after a crash cannot, and starts again from now.
            first_received_at=parse_utc(raw.get(FIRST_RECEIVED_AT)) or now,
            receipt=receipt,
            group_id=self.group_id,
            deduplication_id=_text(dedup) if dedup is not None else None,
        )


def copy_of(
    delivery: Delivery,
    *,
    count: int,
    headers: Mapping[str, str] | None = None,
    keep_first_received: bool = True,
) -> AmqpMessage:
    """Return a copy of a delivered message to re-publish, with ``count`` receipts counted.

    Broker bookkeeping (``x-death`` from delay queues, ``x-delivery-count``) is left behind, so
    a message does not grow on every pass through a delay queue: the count that matters
    travels in ``x-framework-receive-count``.
    """
    outgoing = Outgoing(
        body=delivery.body,
        attributes=delivery.attributes,
        headers=dict(headers if headers is not None else delivery.headers),
        deduplication_id=delivery.deduplication_id,
    )
    return amqp_message(
        outgoing,
        message_id=delivery.message_id,
        sent_at=delivery.sent_at,
        group_id=delivery.group_id,
        count=count,
        first_received_at=delivery.first_received_at if keep_first_received else None,
    )
