"""A release or dead letter whose copy cannot be published gives the message back at once.

Both re-publish a copy and then acknowledge the original. When the publish fails (the DLQ
was deleted, the broker refused the message, a delay queue cannot be declared), the original
must not stay unacknowledged and unwatched on a live channel: that hides it from every
consumer until the channel closes (the broker's consumer timeout, 30 minutes by default) and
holds one of the consumer's prefetch slots meanwhile.
"""

from __future__ import annotations

import uuid

import pytest

from framework.backends.rabbitmq import RabbitMQBackend
from framework.exceptions import BackendUnavailableError, UnknownQueueError
from framework.messages import DeadLetterReason, Outgoing
from framework.registry import QueueSpec

pytestmark = pytest.mark.rabbitmq


async def declared(backend: RabbitMQBackend) -> QueueSpec:
    """Declare a fresh queue and its DLQ; return the queue's spec."""
    spec = QueueSpec.from_options(f"rq-{uuid.uuid4().hex[:12]}")
    await backend.declare_queue(spec)
    dlq = spec.dead_letter_spec()
    assert dlq is not None
    await backend.declare_queue(dlq)
    return spec


async def test_a_release_that_cannot_publish_returns_the_message(
    backend: RabbitMQBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publish fails: the error propagates (as BackendUnavailableError, the client
    library's errors never escape), and the message is received again, counted."""
    spec = await declared(backend)
    message_id = await backend.send(spec.name, Outgoing(body=b"x"))
    (first,) = await backend.receive(spec.name, limit=1, wait=2)

    async def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionError("the broker refused a message")

    with monkeypatch.context() as patched:
        patched.setattr(backend, "_publish", refuse)
        with pytest.raises(BackendUnavailableError, match="the broker refused a message"):
            await backend.release(first, delay=0)
    (again,) = await backend.receive(spec.name, limit=1, wait=2)
    assert (again.message_id, again.receive_count) == (message_id, 2)
    await backend.ack(again)


async def test_a_dead_letter_to_a_deleted_dlq_returns_the_message(
    backend: RabbitMQBackend,
) -> None:
    """The DLQ was deleted under the app: dead-lettering raises UnknownQueueError naming it,
    and the message is back in its queue, counted, instead of held until the channel closes."""
    spec = await declared(backend)
    assert spec.dead_letter is not None
    message_id = await backend.send(spec.name, Outgoing(body=b"x"))
    (first,) = await backend.receive(spec.name, limit=1, wait=2)
    assert backend.connection is not None
    channel = await backend.connection.channel()
    await channel.queue_delete(spec.dead_letter)
    await channel.close()
    reason = DeadLetterReason(spec.name, 1, "ValueError", "bad", first.first_received_at)
    with pytest.raises(UnknownQueueError, match=spec.dead_letter):
        await backend.dead_letter(first, reason=reason)
    (again,) = await backend.receive(spec.name, limit=1, wait=2)
    assert (again.message_id, again.receive_count) == (message_id, 2)
    await backend.ack(again)
