"""What tests declare on the shared broker is deleted even when they fail."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity

from tests.rabbitmq_cleanup import sweep

pytestmark = pytest.mark.rabbitmq


async def _exists(url: str, name: str, *, exchange: bool = False) -> bool:
    connection = await aio_pika.connect(url.split("?", 1)[0])
    async with connection:
        channel = await connection.channel()
        try:
            if exchange:
                await channel.declare_exchange(name, passive=True)
            else:
                await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            return False
        return True


async def test_the_sweep_deletes_every_queue_and_exchange_under_a_handed_out_name(
    broker: str,
) -> None:
    """Queues, delay queues and a topic exchange left under a test's name are all deleted;
    a name under another prefix is left alone."""
    prefix = f"q-{uuid.uuid4().hex[:12]}"
    other = f"q-{uuid.uuid4().hex[:12]}"
    connection = await aio_pika.connect(broker.split("?", 1)[0])
    async with connection:
        channel = await connection.channel()
        for name in (prefix, f"{prefix}-dlq", f"{prefix}.delay.500", other):
            await channel.declare_queue(name, durable=False, auto_delete=False)
        await channel.declare_exchange(f"{prefix}.topic", aio_pika.ExchangeType.FANOUT)
    try:
        queues, exchanges = await asyncio.to_thread(sweep, broker, {prefix})
        assert sorted(queues) == sorted([prefix, f"{prefix}-dlq", f"{prefix}.delay.500"])
        assert exchanges == [f"{prefix}.topic"]
        assert not await _exists(broker, prefix)
        assert not await _exists(broker, f"{prefix}.topic", exchange=True)
        assert await _exists(broker, other)
    finally:
        await asyncio.to_thread(sweep, broker, {prefix, other})
