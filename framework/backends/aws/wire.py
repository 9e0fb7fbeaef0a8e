"""Framework messages <-> SQS/SNS messages: body encoding and the message-attribute mapping.

SQS and SNS carry at most ten message attributes, and the framework needs room beside the
user's: its own data (message id, first send time, headers such as ``content-type`` and the
dead-letter reason) travels packed as JSON in one attribute, ``x-framework``. The user's
attributes stay native (``String`` or ``Number``, lists as ``String.Array``), so SNS filter
policies and the AWS console see them; one that SQS cannot carry natively (an empty string, a
name SQS refuses, an eleventh attribute) travels packed in ``x-framework`` instead.

Bodies are sent as text. A body that is not UTF-8 text SQS accepts (bytes such as
``b"\\x00\\xff"``, or an empty body) is sent base64-encoded, and ``x-framework`` says so.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from framework.clock import parse_utc
from framework.exceptions import InvalidMessageError, MessageTooLargeError
from framework.messages import AttributeValue, Delivery, Outgoing

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

__all__ = [
    "MAX_ATTRIBUTES",
    "META",
    "Encoded",
    "decode",
    "encode",
    "encode_checked",
    "error_code",
    "fifo_arguments",
]

META = "x-framework"
MAX_ATTRIBUTES = 10
# SQS accepts these characters in bodies and string attribute values (its XML 1.0 subset).
_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTRIBUTE_NAME = re.compile(
    r"^(?!(?i:aws\.|amazon\.))(?!\.)(?!.*\.\.)[A-Za-z0-9_.-]{1,256}(?<!\.)$"
)
_NUMBER = re.compile(r"^-?\d{1,38}(\.\d{1,38})?$")


@dataclass(frozen=True, slots=True)
class Encoded:
    """A message ready for ``SendMessage`` or ``Publish``: body text and message attributes."""

    body: str
    attributes: dict[str, dict[str, str]]
    packed: tuple[str, ...] = field(default=())

    def size(self) -> int:
        """Return the bytes SQS and SNS count: the body plus attribute names, types and values."""
        total = len(self.body.encode())
        for name, value in self.attributes.items():
            total += len(name.encode()) + len(value["DataType"].encode())
            total += len(value["StringValue"].encode())
        return total


def _body_text(body: bytes) -> str | None:
    """The body as text SQS accepts unchanged, or None if it must be base64-encoded."""
    if not body:
        return None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    return None if _ILLEGAL.search(text) else text


def _number_text(value: int | float) -> str | None:
    text = str(value) if isinstance(value, int) else repr(value)
    return text if _NUMBER.match(text) else None


def _native(name: str, value: AttributeValue) -> dict[str, str] | None:
    """The SQS/SNS form of one user attribute, or None if it must travel packed."""
    if not _ATTRIBUTE_NAME.match(name):
        return None
    if isinstance(value, bool):
        return {"DataType": "String", "StringValue": "true" if value else "false"}
    if isinstance(value, int | float):
        number = _number_text(value)
        return None if number is None else {"DataType": "Number", "StringValue": number}
    if isinstance(value, str):
        if not value or _ILLEGAL.search(value):
            return None
        return {"DataType": "String", "StringValue": value}
    if isinstance(value, list) and value:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return {"DataType": "String.Array", "StringValue": text}
    return None


def encode(message: Outgoing, *, message_id: str, sent_at: datetime) -> Encoded:
    """Return the SQS/SNS form of ``message``.

    Args:
        message: The framework message.
        message_id: Its framework id, kept across redeliveries, dead-lettering and redrive.
        sent_at: When it was first sent (aware UTC).

    Raises:
        InvalidMessageError: If a user attribute is named ``x-framework``.
    """
    if META in message.attributes:
        raise InvalidMessageError(f"attribute name {META!r} is reserved by the aws:// backend")
    meta: dict[str, Any] = {"id": message_id, "sent": sent_at.isoformat()}
    if message.headers:
        meta["h"] = dict(message.headers)
    text = _body_text(message.body)
    if text is None:
        meta["enc"] = "base64"
        text = base64.b64encode(message.body).decode("ascii") or "="
    attributes: dict[str, dict[str, str]] = {}
    packed: dict[str, AttributeValue] = {}
    bools: list[str] = []
    for name, value in message.attributes.items():
        native = _native(name, value) if len(attributes) < MAX_ATTRIBUTES - 1 else None
        if native is None:
            packed[name] = value
            continue
        attributes[name] = native
        if isinstance(value, bool):
            bools.append(name)
    if packed:
        meta["a"] = packed
    if bools:
        meta["b"] = bools
    attributes[META] = {
        "DataType": "String",
        "StringValue": json.dumps(meta, separators=(",", ":"), ensure_ascii=False),
    }
    return Encoded(body=text, attributes=attributes, packed=tuple(packed))


def encode_checked(
    where: str, message: Outgoing, message_id: str, sent_at: datetime, *, limit: int
) -> Encoded:
    """Encode ``message`` as ``encode`` does, and check it against AWS's size ``limit``.

    The framework has checked the body and the user's attributes against the queue's or
    topic's ``max_message_size``; this counts what AWS counts, ``x-framework`` and base64
    included.

    Raises:
        MessageTooLargeError: If the message as sent exceeds ``limit`` bytes.
    """
    encoded = encode(message, message_id=message_id, sent_at=sent_at)
    size = encoded.size()
    if size > limit:
        raise MessageTooLargeError(
            f"message of {size} bytes as sent to {where} (body, base64 for binary bodies, "
            f"and attributes, the framework's {META} included) exceeds AWS's limit of "
            f"{limit} bytes; store the payload elsewhere and send a reference"
        )
    return encoded


def fifo_arguments(where: str, message: Outgoing) -> dict[str, str]:
    """Return ``MessageGroupId`` (and ``MessageDeduplicationId``) for a FIFO queue or topic.

    Raises:
        InvalidMessageError: If the message has no group id.
    """
    if not message.group_id:
        raise InvalidMessageError(f"{where} is FIFO: pass group_id=... to send to it")
    arguments = {"MessageGroupId": message.group_id}
    if message.deduplication_id is not None:
        arguments["MessageDeduplicationId"] = message.deduplication_id
    return arguments


def _decode_value(value: Mapping[str, Any]) -> AttributeValue:
    data_type = str(value.get("DataType", "String"))
    text = str(value.get("StringValue", ""))
    if data_type.startswith("Number"):
        try:
            number = float(text)
        except ValueError:
            return text
        return int(text) if re.fullmatch(r"-?\d+", text) else number
    if data_type == "String.Array":
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        return parsed if isinstance(parsed, list) else text
    if data_type.startswith("Binary"):
        raw = value.get("BinaryValue", b"")
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text


def _timestamp(value: object) -> datetime | None:
    try:
        millis = float(str(value))
    except ValueError:
        return None
    return None if math.isnan(millis) else datetime.fromtimestamp(millis / 1000, UTC)


def _meta(attributes: Mapping[str, Any]) -> dict[str, Any]:
    raw = attributes.get(META)
    if raw is None:
        return {}
    try:
        parsed = json.loads(str(raw.get("StringValue", "")))
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def decode(queue: str, message: Mapping[str, Any], *, now: datetime) -> Delivery:
    """Return the delivery of one message from ``ReceiveMessage``.

    A message that did not come from the framework (no ``x-framework`` attribute) keeps its
    SQS message id, its body as UTF-8 bytes and no content type.

    Args:
        queue: The framework name of the queue it came from.
        message: One entry of ``ReceiveMessage``'s ``Messages``.
        now: The time to use when SQS did not say when it was sent or first received.
    """
    native: Mapping[str, Any] = message.get("MessageAttributes") or {}
    system: Mapping[str, Any] = message.get("Attributes") or {}
    meta = _meta(native)
    text = str(message.get("Body", ""))
    body = text.encode()
    if meta.get("enc") == "base64":
        try:
            body = base64.b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
        except (binascii.Error, ValueError):
            body = text.encode()
    bools = set(meta.get("b") or ())
    attributes: dict[str, AttributeValue] = {}
    for name, value in native.items():
        if name == META:
            continue
        decoded = _decode_value(value)
        attributes[name] = decoded == "true" if name in bools else decoded
    packed = meta.get("a")
    if isinstance(packed, dict):
        attributes.update(packed)
    headers = meta.get("h")
    sent_at = parse_utc(meta.get("sent")) or _timestamp(system.get("SentTimestamp")) or now
    first = _timestamp(system.get("ApproximateFirstReceiveTimestamp")) or now
    try:
        count = max(1, int(system.get("ApproximateReceiveCount", 1)))
    except ValueError:
        count = 1
    return Delivery(
        queue=queue,
        message_id=str(meta.get("id") or message.get("MessageId", "")),
        body=body,
        attributes=attributes,
        headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {},
        receive_count=count,
        sent_at=sent_at,
        first_received_at=max(first, sent_at),
        receipt=str(message["ReceiptHandle"]),
        group_id=system.get("MessageGroupId"),
        deduplication_id=system.get("MessageDeduplicationId"),
    )


def error_code(exc: ClientError) -> str:
    """Return the error code of a botocore ``ClientError`` (query and JSON protocols alike)."""
    error = exc.response.get("Error", {})
    return str(error.get("QueryErrorCode") or error.get("Code") or "")
