"""Which deliveries does a quorum queue count when its consumer is cancelled? (raw aio-pika)

    python scripts/rabbitmq_cancel_experiment.py ack now 30      # cancel right after acks
    python scripts/rabbitmq_cancel_experiment.py ack still 30    # cancel once deliveries stop
    python scripts/rabbitmq_cancel_experiment.py publish now 30  # a producer runs meanwhile

Each round opens a consumer (prefetch 50; 1000 in "publish" mode) on a quorum queue, lets deliveries flow for 50 ms,
then cancels it ("now"; or "still": it stops acknowledging and cancels only once no delivery
arrived for 60 ms), acknowledges every delivery it got, and closes. In "ack" mode the queue
has a backlog and the consumer acknowledges each delivery as it arrives until the cancel; in
"publish" mode nothing is acknowledged before the cancel and another connection publishes
all along. The script wraps aiormq's consumer table to count deliveries that reached the
client after its cancel-ok (aiormq drops those). At the end every message left in the queue
is fetched: one with ``x-delivery-count`` was counted by the broker for a delivery the client
never received (its id is not among those the consumer got).

Measured on RabbitMQ 3.10.8 here (docs/backends/rabbitmq.md, "Receive count"): such counts
appear in "ack now" and "publish now", none reached the client after cancel-ok, and "ack
still" shows none.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

import aio_pika

URL = "amqp://guest:guest@127.0.0.1:5672/"
# A window the backlog fills at once ("ack"), and one the producer never fills ("publish").
PREFETCH = {"ack": 50, "publish": 1000}


class Consumers(dict[str, Any]):
    """aiormq's consumer table, counting lookups of a tag it no longer has."""

    misses = 0

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        value = super().get(key, default)
        if value is None:
            Consumers.misses += 1
        return value


async def one_round(queue: str, mode: str, when: str, seen: set[str]) -> None:
    connection = await aio_pika.connect(URL, client_properties={"connection_name": "cancel-exp"})
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH[mode])
    amqp_queue = await channel.declare_queue(queue, passive=True)
    held: list[aio_pika.abc.AbstractIncomingMessage] = []
    acking = mode == "ack"
    last = [time.monotonic()]

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        last[0] = time.monotonic()
        seen.add(message.message_id or "")
        if acking:
            await message.ack()
        else:
            held.append(message)

    tag = await amqp_queue.consume(on_message)
    underlay = await channel.get_underlay_channel()
    underlay.consumers = Consumers(underlay.consumers)
    await asyncio.sleep(0.05)
    acking = False
    if when == "still":
        # A timestamp the callback moves, not an event: polling it is the measurement.
        while time.monotonic() - last[0] < 0.06:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await amqp_queue.cancel(tag)
    await asyncio.sleep(0.05)
    for message in held:
        await message.ack()
    await asyncio.sleep(0.05)
    await connection.close()


async def main(mode: str, when: str, rounds: int) -> None:
    queue = f"cancel-exp-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(URL, client_properties={"connection_name": "cancel-exp-p"})
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(
        queue, durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 50}
    )
    published = 0

    async def publish(n: int) -> None:
        nonlocal published
        ids = range(published, published + n)
        published += n
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(b"x", message_id=str(i)), routing_key=queue
                )
                for i in ids
            )
        )

    stop = asyncio.Event()

    async def produce() -> None:
        while not stop.is_set():
            await publish(20)
            await asyncio.sleep(0.002)

    seen: set[str] = set()
    try:
        if mode == "ack":
            for _ in range(rounds * 2):
                await publish(250)
            producer = None
        else:
            producer = asyncio.create_task(produce())
        for _ in range(rounds):
            await one_round(queue, mode, when, seen)
        stop.set()
        if producer is not None:
            await producer
        getter = await connection.channel()
        left_queue = await getter.declare_queue(queue, passive=True)
        left = counted = counted_seen = 0
        while (message := await left_queue.get(no_ack=True, fail=False)) is not None:
            left += 1
            if (message.headers or {}).get("x-delivery-count"):
                counted += 1
                counted_seen += message.message_id in seen
        print(  # noqa: T201
            f"{mode} {when}: rounds={rounds} published={published} left={left} "
            f"counted={counted} (of which the client had received {counted_seen}) "
            f"deliveries after cancel-ok={Consumers.misses}"
        )
    finally:
        await channel.queue_delete(queue)
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
