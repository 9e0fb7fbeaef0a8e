"""The hand-packed publish path (publishing.py): its frames are pamqp's, byte for byte, and the
aiormq channel state it shares still behaves as the path relies on (confirms, nacks, returns)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import aiormq
import pytest
from pamqp import frame as amqp_frame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from framework.backends.rabbitmq import RabbitMQBackend
from framework.backends.rabbitmq.publishing import AmqpMessage, Publisher, publish_frames
from framework.backends.rabbitmq.wire import amqp_message
from framework.exceptions import (
    BackendUnavailableError,
    InvalidMessageError,
    MessageTooLargeError,
    UnknownQueueError,
)
from framework.messages import Outgoing
from framework.registry import QueueSpec
from tests.rabbitmq_cleanup import delete_named

from .proxy import proxy_to, send_once_reconnected

FRAME_MAX = 131_072


def pamqp_frames(
    channel: int,
    message: AmqpMessage,
    *,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    frame_max: int,
) -> bytes:
    """What aiormq's basic_publish writes for the same message, through pamqp."""
    chunk = frame_max - 8
    body = message.body
    frames = [
        Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory),
        ContentHeader(0, len(body), message.properties()),
        *(ContentBody(body[i : i + chunk]) for i in range(0, len(body), chunk)),
    ]
    return b"".join(amqp_frame.marshal(frame, channel) for frame in frames)


SENT_AT = datetime(2026, 12, 3, 14, 0, 0, 123456, tzinfo=UTC)

MESSAGES = [
    amqp_message(
        Outgoing(body=b'{"a": 1}', headers={"content-type": "application/json"}),
        message_id=str(uuid.uuid4()),
        sent_at=SENT_AT,
    ),
    amqp_message(  # attributes, a group, a deduplication id, text headers out of order
        Outgoing(
            body="é".encode() * 3000,
            attributes={"n": 1, "flag": True},
            headers={"zz": "last", "content-type": "text/plain; charset=utf-8", "b": "ü€"},
            deduplication_id="d-1",
        ),
        message_id="id-ü",
        sent_at=SENT_AT,
        group_id="g",
    ),
    amqp_message(  # a re-published copy: the receive count is a number (pamqp's table)
        Outgoing(body=b"", headers={}),
        message_id="m",
        sent_at=SENT_AT,
        count=3,
        first_received_at=SENT_AT,
    ),
    AmqpMessage(b"x", {"k" * 200: "long key"}, None, "no-content-type"),  # pamqp truncates
    AmqpMessage(b"\x00" * 300_000, {"list": [1, "a"], "n": 2**40, "f": 1.5}, "b", "big"),
]


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize(
    ("channel", "exchange", "routing_key", "mandatory", "frame_max"),
    [
        (1, "", "orders", True, FRAME_MAX),
        (65535, "events.fifo", "", False, 4096),  # a topic, and bodies over several frames
    ],
)
def test_publish_frames_are_those_aiormq_writes_through_pamqp(
    message: AmqpMessage,
    channel: int,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    frame_max: int,
) -> None:
    """Method frame, content header and body frames, byte for byte pamqp's."""
    options = {
        "exchange": exchange,
        "routing_key": routing_key,
        "mandatory": mandatory,
        "frame_max": frame_max,
    }
    assert publish_frames(channel, message, **options) == pamqp_frames(channel, message, **options)


def test_properties_over_one_frame_or_not_encodable_are_refused_before_the_wire() -> None:
    """A header table over frame_max is MessageTooLargeError naming it; an id over 255 bytes
    is InvalidMessageError; what fits exactly is packed."""
    options = {"exchange": "", "routing_key": "q", "mandatory": True, "frame_max": FRAME_MAX}
    with pytest.raises(MessageTooLargeError, match="131072-byte AMQP frame"):
        publish_frames(1, AmqpMessage(b"", {"big": "x" * FRAME_MAX}, None, "m"), **options)
    with pytest.raises(InvalidMessageError, match="cannot be encoded"):
        publish_frames(1, AmqpMessage(b"", {}, None, "i" * 256), **options)
    with pytest.raises(InvalidMessageError, match="cannot be encoded"):
        publish_frames(1, AmqpMessage(b"", {"n": object()}, None, "m"), **options)
    # The content header frame at exactly frame_max: 8 frame bytes, 14 of class, weight, body
    # size and flags, 1 + 2 for the delivery mode and the id, the table's 4 + 1 + 1 + 1 + 4.
    value = "v" * (FRAME_MAX - 8 - 14 - 3 - 11)
    fits = AmqpMessage(b"", {"k": value}, None, "m")
    header = amqp_frame.marshal(ContentHeader(0, 0, fits.properties()), 1)
    assert len(header) == FRAME_MAX
    assert header in publish_frames(1, fits, **options)
    with pytest.raises(MessageTooLargeError, match=f"take {FRAME_MAX + 1} bytes"):
        publish_frames(1, AmqpMessage(b"", {"k": value + "v"}, None, "m"), **options)


def test_the_aiormq_channel_state_the_publisher_shares_is_as_it_was_read() -> None:
    """publishing.py writes to these aiormq internals (a pinned version range): if a new aiormq
    renames or retypes them, this fails before a publish goes wrong."""
    assert aiormq.Channel.CONTENT_FRAME_SIZE == 8
    annotations = aiormq.Channel.__annotations__
    assert "confirmations" in annotations
    init = aiormq.Channel.__init__.__code__.co_names
    for name in (
        "confirmations",
        "message_id_delivery_tag",
        "delivery_tag",
        "write_queue",
        "max_content_size",
    ):
        assert name in init, name
    for method in ("_on_confirm_frame", "_on_return_frame", "_confirm_delivery", "create_future"):
        assert callable(getattr(aiormq.Channel, method)), method


@pytest.mark.rabbitmq
async def test_confirms_nacks_and_returns_reach_the_right_publish(broker: str) -> None:
    """On a live channel: 300 concurrent publishes are each confirmed, a publish the broker
    refuses (a full queue that rejects publishes) raises with 'nack' while the publishes around
    it succeed, and one no queue takes is returned and raises UnknownQueueError."""
    full = f"rq-full-{uuid.uuid4().hex[:8]}"
    spec = QueueSpec.from_options(f"rq-pub-{uuid.uuid4().hex[:8]}")
    try:
        async with RabbitMQBackend.from_url(broker) as backend:
            await backend.declare_queue(spec)
            assert backend.connection is not None
            channel = await backend.connection.channel()
            await channel.declare_queue(
                full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
            )
            await backend.topology.ensure_queue(full)
            sends = [backend.send(spec.name, Outgoing(body=b"%d" % i)) for i in range(300)]
            refused = backend.send(full, Outgoing(body=b"refused"))
            results = await asyncio.gather(
                *sends[:150], refused, *sends[150:], return_exceptions=True
            )
            assert isinstance(results[150], BackendUnavailableError)
            assert "nack" in str(results[150])
            assert [r for r in results if isinstance(r, BaseException)] == [results[150]]
            # Returned: the queue is gone behind the backend's back.
            gone = f"rq-gone-{uuid.uuid4().hex[:8]}"
            await channel.declare_queue(gone)
            await backend.topology.ensure_queue(gone)
            await channel.queue_delete(gone)
            with pytest.raises(UnknownQueueError, match="does not exist"):
                await backend.send(gone, Outgoing(body=b"lost"))
            await backend.send(spec.name, Outgoing(body=b"after"))  # the channel is fine
            await asyncio.sleep(0.1)
            assert (await backend.stats(spec.name)).depth == 301
            publisher = backend._publisher
            assert isinstance(publisher, Publisher)
            underlay = await publisher.robust.get_underlay_channel()
            assert isinstance(underlay, aiormq.Channel)
            assert underlay.delivery_tag == 303  # every publish took one tag
            assert not underlay.confirmations
            assert not underlay.message_id_delivery_tag
            await channel.close()
    finally:
        await delete_named(broker, [spec.name, full], [])


@pytest.mark.rabbitmq
async def test_publishes_awaiting_their_confirm_when_the_connection_drops_raise_unavailable(
    broker: str,
) -> None:
    """200 sends written together, the connection cut before their confirms: every one that
    was not confirmed raises BackendUnavailableError (none hangs, none raises the client
    library's errors or a cancellation), and sends work again after the reconnect."""
    spec = QueueSpec.from_options(f"rq-cut-{uuid.uuid4().hex[:8]}")
    async with (
        proxy_to(broker) as proxy,
        RabbitMQBackend.from_url(f"{proxy.url(broker)}&reconnect_interval=0.2") as backend,
    ):
        await backend.declare_queue(spec)
        sends = [
            asyncio.ensure_future(backend.send(spec.name, Outgoing(body=b"%d" % i)))
            for i in range(200)
        ]
        await asyncio.sleep(0)  # every send has queued its frames
        proxy.cut()
        results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 20)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert failed
        assert [r for r in failed if not isinstance(r, BackendUnavailableError)] == []
        await send_once_reconnected(backend, spec.name)
