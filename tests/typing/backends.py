"""Static checks of the backend contract: ``mypy --strict tests/typing/backends.py``. Never run.

Backends do not subclass :class:`Backend`; these assignments prove structurally that they
match it. A ``# type: ignore[code]`` line is a negative check: under ``--strict`` an ignore that
is not needed is itself an error (``warn_unused_ignores``), so each one proves mypy refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence

from framework.backends import Backend, DeadLetterReason, Delivery, Outgoing, QueueStats, from_url
from framework.backends.aws import AWSBackend
from framework.backends.base import CanCheckDeclared
from framework.backends.memory import MemoryBackend
from framework.backends.rabbitmq import RabbitMQBackend
from framework.backends.sqlite import SQLiteBackend
from framework.clock import Clock
from framework.messages import OutgoingMail
from framework.registry import QueueSpec, SubscriptionSpec, TopicSpec
from framework.testing import VirtualClock

b: Backend = MemoryBackend.from_url("memory://")
by_url: Backend = from_url("memory://")
memory: MemoryBackend = MemoryBackend.from_url("memory://")  # from_url returns Self
rabbitmq: Backend = RabbitMQBackend.from_url("amqp://guest:guest@127.0.0.1:5672/")
aws: Backend = AWSBackend.from_url("aws://us-east-1")
sqlite: Backend = SQLiteBackend.from_url("sqlite:///app.db")
# --no-declare: every backend can say what is missing.
checks: list[CanCheckDeclared] = [
    memory,
    SQLiteBackend.from_url("sqlite:///app.db"),
    RabbitMQBackend.from_url("amqp://"),
    AWSBackend.from_url("aws://us-east-1"),
]
clock: Clock = VirtualClock()
b.clock = clock


async def round_trip(backend: Backend, spec: QueueSpec) -> tuple[str, int]:
    """Declare, send, receive and settle one message through the protocol only."""
    async with backend as connected:
        entered: Backend = connected
        await entered.declare_queue(spec)
        message_id: str = await entered.send(spec.name, Outgoing(body=b"x", attributes={"n": 1}))
        deliveries: Sequence[Delivery] = await entered.receive(spec.name, limit=10, wait=0.0)
        for delivery in deliveries:
            count: int = delivery.receive_count
            await entered.extend(delivery, seconds=10.0)
            await entered.release(delivery, delay=count * 2.0)
        stats: QueueStats = await entered.stats(spec.name)
        purged: int = await entered.purge(spec.name)
        names: Sequence[str] = await entered.queues()
        return message_id, stats.depth + purged + len(names)


async def dead_letter(backend: Backend, delivery: Delivery, reason: DeadLetterReason) -> None:
    """Dead-letter and acknowledge through the protocol."""
    await backend.dead_letter(delivery, reason=reason)
    await backend.ack(delivery)


async def fan_out(backend: Backend, topic: TopicSpec, sub: SubscriptionSpec) -> str:
    """Declare a topic, subscribe and publish through the protocol."""
    await backend.declare_topic(topic)
    await backend.subscribe(sub)
    return await backend.publish(topic.name, Outgoing(body=b"{}"))


async def mail(backend: Backend) -> str:
    """Send a rendered mail through the protocol."""
    return await backend.send_mail(
        OutgoingMail(
            sender="a@b.example", recipients=("c@d.example",), message=b"", message_id="<1@b>"
        )
    )


async def misuse(backend: Backend, spec: QueueSpec) -> None:
    """Calls the protocol refuses; each ignore must be needed, or mypy --strict fails."""
    await backend.send(spec.name, b"raw bytes")  # type: ignore[arg-type]
    await backend.declare_queue(spec.name)  # type: ignore[arg-type]
    await backend.receive(spec.name, limit="ten", wait=0.0)  # type: ignore[arg-type]
    await backend.release(spec, delay=1.0)  # type: ignore[arg-type]
    not_a_count: str = await backend.purge(spec.name)  # type: ignore[assignment]
    del not_a_count


class Incomplete:
    """A would-be backend missing almost every primitive."""

    clock: Clock

    async def send(self, queue: str, message: Outgoing) -> str:
        """Pretend to send."""
        return ""


not_a_backend: Backend = Incomplete()  # type: ignore[assignment]
