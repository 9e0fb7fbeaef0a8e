"""Receive counts stay exact when deliveries never reach a handler: a stop, a lost connection.

The broker's ``x-delivery-count`` counts every delivery that went back unacknowledged, also
those the backend had buffered and no handler saw. A graceful stop gives those back with the
count unchanged; a delivery dropped unseen when its connection went is not counted when it
comes back to the process that dropped it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from framework.backends.rabbitmq import RabbitMQBackend
from framework.messages import Delivery, Outgoing
from framework.registry import QueueSpec

from .proxy import proxy_to

pytestmark = pytest.mark.rabbitmq


def keeping(broker: str, **options: str) -> str:
    """``broker`` without delete_on_exit: the queue outlives this backend (another deletes it)."""
    url = broker.replace("delete_on_exit=1", "delete_on_exit=0")
    return url + "".join(f"&{k}={v}" for k, v in options.items())


async def take_all(backend: RabbitMQBackend, queue: str, n: int) -> list[int]:
    """Receive ``n`` messages with basic.get (no consumer), ack them; return their counts."""
    counts: list[int] = []
    for _ in range(200):
        for delivery in await backend.receive(queue, limit=10, wait=0):
            counts.append(delivery.receive_count)
            await backend.ack(delivery)
        if len(counts) >= n:
            break
        await asyncio.sleep(0.02)
    return counts


async def test_a_graceful_stop_right_after_acknowledgements_counts_no_unseen_receipt(
    backend: RabbitMQBackend, broker: str
) -> None:
    """A consumer that acknowledges until the instant it stops (each ack frees a prefetch slot
    the queue fills at once): after three such stops, each of which left one receipt
    unsettled, the final counts of all messages add up to exactly three earlier receipts."""
    spec = QueueSpec.from_options(f"rq-{uuid.uuid4().hex[:12]}")
    await backend.declare_queue(spec)
    n = 600
    for _ in range(n // 50):
        await asyncio.gather(*(backend.send(spec.name, Outgoing(body=b"x")) for _ in range(50)))
    final: list[int] = []  # the receive count of each message's last, acknowledged receipt
    for round_ in range(1, 4):
        async with RabbitMQBackend.from_url(keeping(broker, prefetch="20")) as stopping:
            while len(final) < 100 * round_:
                for delivery in await stopping.receive(spec.name, limit=5, wait=1):
                    await stopping.ack(delivery)
                    final.append(delivery.receive_count)
            assert len(await stopping.receive(spec.name, limit=1, wait=1)) == 1
        # Leaving the context stopped the consumer right after its last acknowledgements.
    final += await take_all(backend, spec.name, n - len(final))
    assert len(final) == n
    assert sum(c - 1 for c in final) == 3, sorted(final)[-10:]


async def test_deliveries_dropped_unseen_with_the_connection_are_not_counted(
    backend: RabbitMQBackend, broker: str
) -> None:
    """A delivery buffered by the consumer, never handed out, when the connection goes: the
    broker counts it, the backend does not (twice over), and a receipt a handler saw counts."""
    spec = QueueSpec.from_options(f"rq-{uuid.uuid4().hex[:12]}")
    await backend.declare_queue(spec)
    message_id = await backend.send(spec.name, Outgoing(body=b"m"))
    async with proxy_to(broker) as proxy:
        url = keeping(proxy.url(broker), reconnect_interval="0.1")
        async with RabbitMQBackend.from_url(url) as cut:
            inbox = await cut._inbox(spec.name)  # the consumer, as a receive starts it
            for _ in range(2):
                await _until(lambda: inbox.receivable(0))
                assert proxy.cut() == 1  # M was buffered, never handed out
                await _until(lambda: not inbox.receivable(0))
            (first,) = await cut.receive(spec.name, limit=1, wait=10)
            assert (first.message_id, first.receive_count) == (message_id, 1)
            proxy.cut()  # this one was seen: counted
            (second,) = await cut.receive(spec.name, limit=1, wait=10)
            assert (second.message_id, second.receive_count) == (message_id, 2)
            await cut.ack(second)


async def _receive(backend: RabbitMQBackend, queue: str) -> list[Delivery]:
    for _ in range(100):
        got = await backend.receive(queue, limit=1, wait=0)
        if got:
            return list(got)
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing to receive on {queue}")


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> Awaitable[None]:
    async def wait() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not predicate():
            assert loop.time() < end, "timed out"
            await asyncio.sleep(0.01)

    return wait()
