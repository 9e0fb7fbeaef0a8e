"""Confirmed publishes: their frames packed here and written together once per turn of the loop.

aio-pika's ``Exchange.publish`` runs aiormq's ``basic_publish`` for every message: a channel
lock, an ``asyncio.timeout``, pamqp's generic property and table encoders for three frames, a
drain future, and one trip through the connection's write queue and writer task, one ``send``
system call, per message. The framework's messages have one shape (a message id, a content
type, text headers, persistent), so ``Publisher`` packs the basic.publish method frame, the
content header and the body frames by hand (pamqp encodes any other header value;
tests/backends/rabbitmq compares the two byte for byte), and the publishes made during one turn
of the loop leave as one payload at its end, as the batched acknowledgements do (acks.py).

Everything downstream is aiormq's, on the channel's own state: the delivery tag is the channel's
counter, and the confirmation future sits where aiormq's reader settles it, so a ``basic.ack``
resolves it, a ``basic.nack`` raises ``DeliveryError``, a returned unroutable message (matched
by its message id) raises ``PublishError``, and a closed channel rejects it. Every publish on
the channel comes through here, and a tag is taken and its frames queued in one step with no
await between, so frames reach the broker in tag order: the broker numbers its confirms by
arrival, which is what makes its numbers these tags. Once a tag is taken its frames are sent
(a gap would shift every later confirm), so a send cancelled while it awaits its confirm may
still be published, as with aiormq once its frame is queued.

Those are aiormq internals (``delivery_tag``, ``confirmations``, ``message_id_delivery_tag``,
``write_queue``, ``max_content_size``): pyproject.toml pins the aiormq versions they were read
from, and tests/backends/rabbitmq/test_publishing.py fails if their shape changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiormq
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import ChannelFrame
from aiormq.exceptions import ChannelInvalidStateError
from pamqp import frame as amqp_frame
from pamqp import header as amqp_header
from pamqp.commands import Basic
from pamqp.exceptions import PAMQPException

from framework.exceptions import InvalidMessageError, MessageTooLargeError

__all__ = ["AmqpMessage", "FrameWriter", "Publisher", "content_header_frame", "publish_frames"]

PERSISTENT = 2
# Frame type 1 (method), channel, payload size; class 60 (basic), method 40 (publish), the
# reserved ticket.
_METHOD = struct.Struct(">BHIHHH")
# Frame type 2 (content header), channel, payload size; class 60, weight 0, body size, flags.
_HEADER = struct.Struct(">BHIHHQH")
_FRAME = struct.Struct(">BHI")  # a frame's type, channel and payload size
_LONG = struct.Struct(">I")
_END = b"\xce"
_CONTENT_TYPE = Basic.Properties.flags["content_type"]
_FLAGS = (
    Basic.Properties.flags["headers"]
    | Basic.Properties.flags["delivery_mode"]
    | Basic.Properties.flags["message_id"]
)
# pamqp truncates longer table keys; such a table is left to pamqp.
_KEY_MAX = 128


@dataclass(slots=True)
class AmqpMessage:
    """A persistent AMQP message as the framework publishes it."""

    body: bytes
    headers: dict[str, Any]
    content_type: str | None
    message_id: str

    def properties(self) -> Basic.Properties:
        """The message's AMQP properties (what pamqp encodes)."""
        return Basic.Properties(
            content_type=self.content_type,
            headers=self.headers,
            delivery_mode=PERSISTENT,
            message_id=self.message_id,
        )


def _short(text: str) -> bytes:
    data = text.encode()
    if len(data) > 255:
        raise ValueError(f"string exceeds maximum length of 255 bytes: {text[:40]!r}...")
    return bytes((len(data),)) + data


def _table(headers: Mapping[str, Any]) -> bytes | None:
    """The field table of text ``headers`` as pamqp encodes it; None for any other value."""
    parts: list[bytes] = []
    for key, value in sorted(headers.items()):
        if type(value) is not str:
            return None
        name = key.encode()
        if len(name) > _KEY_MAX:
            return None
        data = value.encode()
        parts += (bytes((len(name),)), name, b"S", _LONG.pack(len(data)), data)
    table = b"".join(parts)
    return _LONG.pack(len(table)) + table


def content_header_frame(channel: int, message: AmqpMessage, where: str) -> bytes:
    """The encoded content header frame of ``message`` on channel number ``channel``.

    Raises:
        InvalidMessageError: If the properties cannot be encoded (an id over 255 bytes).
    """
    try:
        table = _table(message.headers)
        if table is None:  # numbers, lists, bytes...: pamqp's encoders
            content = amqp_header.ContentHeader(0, len(message.body), message.properties())
            return amqp_frame.marshal(content, channel)
        flags = _FLAGS
        content_type = b""
        if message.content_type is not None:
            flags |= _CONTENT_TYPE
            content_type = _short(message.content_type)
        properties = b"".join((content_type, table, b"\x02", _short(message.message_id)))
        size = 14 + len(properties)
        head = _HEADER.pack(2, channel, size, 60, 0, len(message.body), flags)
        return b"".join((head, properties, _END))
    except (ValueError, TypeError, OverflowError, struct.error, PAMQPException) as exc:
        # Raised here, not in the connection's writer, where it would close the connection.
        raise InvalidMessageError(
            f"message for {where!r} cannot be encoded as AMQP properties: {exc}"
        ) from None


def publish_frames(
    channel: int,
    message: AmqpMessage,
    *,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    frame_max: int,
) -> bytes:
    """The basic.publish, content header and body frames of ``message``, as one payload.

    Raises:
        MessageTooLargeError: If the properties (headers, attributes) take more than one frame
            of ``frame_max`` bytes: the body may span frames, the properties may not, and a
            larger frame makes the broker close the whole connection.
        InvalidMessageError: If the properties cannot be encoded.
    """
    where = exchange or routing_key
    header = content_header_frame(channel, message, where)
    if len(header) > frame_max:
        raise MessageTooLargeError(
            f"message for {where!r}: its attributes and headers take {len(header)} bytes "
            f"encoded, over the {frame_max}-byte AMQP frame this RabbitMQ broker negotiated "
            "(frame_max): on RabbitMQ, attributes and headers must fit in one frame (the body "
            "may be larger); put large values in the body"
        )
    names = _short(exchange) + _short(routing_key)
    method = _METHOD.pack(1, channel, 7 + len(names), 60, 40, 0)
    parts = [method, names, b"\x01" if mandatory else b"\x00", _END, header]
    body = message.body
    chunk = frame_max - 8  # a body frame's own bytes: type, channel, size, end
    for start in range(0, len(body), chunk):
        piece = body[start : start + chunk]
        parts += (_FRAME.pack(3, channel, len(piece)), piece, _END)
    return b"".join(parts)


class FrameWriter:
    """Queues payloads on a connection's write queue, in order, without waiting for room.

    A payload the full queue refuses waits in a backlog that a task feeds in, and every later
    one queues behind it, so the broker sees them in the order they were made.
    """

    __slots__ = ("_backlog", "_task", "queue")

    def __init__(self, queue: asyncio.Queue[ChannelFrame]) -> None:
        self.queue = queue
        self._backlog: deque[ChannelFrame] = deque()
        self._task: asyncio.Task[None] | None = None

    def write(self, payload: bytes) -> None:
        """Queue ``payload`` behind everything written before it."""
        frame = ChannelFrame(payload=payload, should_close=False)
        if not self._backlog:
            try:
                self.queue.put_nowait(frame)
                return
            except asyncio.QueueFull:
                pass
        self._backlog.append(frame)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._backlog:
                with contextlib.suppress(Exception):  # a closed connection: nothing to send
                    await self.queue.put(self._backlog[0])
                self._backlog.popleft()
        finally:
            self._task = None


class Publisher:
    """Confirmed publishes on one robust channel (opened with ``publisher_confirms=True``)."""

    __slots__ = ("_channel", "_parts", "_target", "_writer", "robust")

    def __init__(self, robust: AbstractRobustChannel) -> None:
        self.robust = robust
        self._channel: aiormq.Channel | None = None  # the one ``_writer`` writes for
        self._writer: FrameWriter | None = None
        self._target: aiormq.Channel | None = None  # the channel ``_parts`` are for
        self._parts: list[bytes] = []

    async def publish(
        self, message: AmqpMessage, *, exchange: str, routing_key: str, mandatory: bool
    ) -> None:
        """Publish ``message`` and wait for the broker's confirm.

        Raises:
            PublishError: If the broker returned it (``mandatory``, and no queue took it).
            DeliveryError: If the broker refused it (``basic.nack``).
            ChannelInvalidStateError: If the channel is closed (or closes before the confirm).
            MessageTooLargeError, InvalidMessageError: Before anything is sent.
        """
        robust = self.robust
        if robust.is_closed:
            raise ChannelInvalidStateError(f"{robust!r} closed")
        channel = cast(aiormq.Channel, await robust.get_underlay_channel())
        if channel.is_closed:
            raise ChannelInvalidStateError(f"{channel!r} closed")
        payload = publish_frames(
            channel.number,
            message,
            exchange=exchange,
            routing_key=routing_key,
            mandatory=mandatory,
            frame_max=channel.max_content_size + aiormq.Channel.CONTENT_FRAME_SIZE,
        )
        # From here to the end of _add, no await: the tag and the frames' place go together.
        tag = channel.delivery_tag + 1
        channel.delivery_tag = tag
        confirmation = channel.create_future()
        channel.confirmations[tag] = confirmation
        ids = channel.message_id_delivery_tag
        message_id = message.message_id
        ids[message_id] = tag  # how aiormq matches a basic.return to its publish
        self._add(channel, payload)
        try:
            await confirmation
        finally:
            if ids.get(message_id) == tag:
                del ids[message_id]

    def _add(self, channel: aiormq.Channel, payload: bytes) -> None:
        if self._target is not channel:
            self.flush()
            self._target = channel
        parts = self._parts
        parts.append(payload)
        if len(parts) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write the publishes queued in this turn of the loop, as one payload."""
        channel, parts = self._target, self._parts
        if not parts or channel is None:
            return
        self._parts = []
        if channel.is_closed:  # its confirmations are rejected with the channel
            return
        if self._channel is not channel or self._writer is None:
            self._channel = channel
            self._writer = FrameWriter(channel.write_queue)
        self._writer.write(parts[0] if len(parts) == 1 else b"".join(parts))
