"""End-to-end throughput on RabbitMQ: the framework against raw aio-pika and FastStream.

Run from the repository root, with the broker up (``pip install -e '.[dev,bench]'``)::

    python bench/rabbitmq.py [--url amqp://guest:guest@127.0.0.1:5672/] [--messages 20000]
                             [--rounds 3] [--prefetch 100] [--window 100] [--json]

Each round publishes ``--messages`` JSON messages of about 1 KiB to a fresh quorum queue, with
publisher confirms and at most ``--window`` publishes awaiting their confirm at once, while a
consumer with ``--prefetch`` unacknowledged deliveries validates each body into a pydantic model,
calls a handler that counts it, and acknowledges it. The clock runs from the first publish to
the last message handled. Three sides do the same work:

* **framework**: ``@app.on_queue(queue, concurrency=prefetch)`` under ``app.run(url)``, messages
  sent with ``app.send``: the real runtime with its leases, receive counts and dead-letter policy;
* **aio-pika**: a robust connection, a confirming channel for publishing and a consuming channel
  with ``set_qos(prefetch)``, ``Order.model_validate_json`` and ``message.ack()`` by hand;
* **faststream**: ``RabbitBroker`` with a ``@broker.subscriber`` on the same kind of queue and
  ``broker.publish``.

All three use quorum queues (the framework needs them for its exact receive counts; the others
get the same queue type, so the broker does the same work for each) and persistent messages.
Rounds alternate (framework, aio-pika, faststream, framework, ...) after a 2,000-message warm-up
of each side; the ratios of the medians are the figures to compare. Queues are deleted after
each round. ``--only`` runs one side, for a profiler (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

import aio_pika

from bench.orders import Counter, Order, make_orders  # bench/orders.py, next to this script
from framework import App

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
WARMUP_MESSAGES = 2_000
QUORUM = {"x-queue-type": "quorum"}


async def publish_windowed(
    publish: Callable[[Order], Awaitable[object]], orders: Sequence[Order], window: int
) -> None:
    """Publish every order with at most ``window`` confirms outstanding, as all sides do."""
    for start in range(0, len(orders), window):
        await asyncio.gather(*(publish(order) for order in orders[start : start + window]))


@dataclass(frozen=True)
class Setup:
    url: str
    prefetch: int
    window: int


Round = Callable[[Setup, Sequence[Order]], Awaitable[float]]


def fresh_queue(side: str) -> str:
    return f"bench-{side}-{uuid.uuid4().hex[:8]}"


async def framework_round(setup: Setup, orders: Sequence[Order]) -> float:
    """Send, handle and ack every order through ``app.run(url)``; return messages/s."""
    app = App("bench")
    queue = fresh_queue("framework")
    counter = Counter(len(orders))

    @app.on_queue(queue, concurrency=setup.prefetch)
    async def handle(order: Order) -> None:
        counter.count(order)

    url = setup.url + ("&" if "?" in setup.url else "?") + "delete_on_exit=1"
    async with app.run(url) as runtime:
        gc.collect()
        start = time.perf_counter()
        await publish_windowed(lambda order: app.send(queue, order), orders, setup.window)
        await counter.done.wait()
        elapsed = time.perf_counter() - start
        stats = (await runtime.stats())[queue]
    if stats.depth or stats.dead_letters:
        raise RuntimeError(f"framework round left messages behind: {stats}")
    return len(orders) / elapsed


async def aio_pika_round(setup: Setup, orders: Sequence[Order]) -> float:
    """The same work written directly on aio-pika; return messages/s."""
    queue_name = fresh_queue("aiopika")
    counter = Counter(len(orders))
    connection = await aio_pika.connect_robust(setup.url)
    try:
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel(publisher_confirms=False)
        await consumer.set_qos(prefetch_count=setup.prefetch)
        queue = await consumer.declare_queue(queue_name, durable=True, arguments=QUORUM)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            counter.count(Order.model_validate_json(message.body))
            await message.ack()

        tag = await queue.consume(on_message)

        async def publish(order: Order) -> None:
            await publisher.default_exchange.publish(
                aio_pika.Message(
                    order.model_dump_json().encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(uuid.uuid4()),
                ),
                routing_key=queue_name,
            )

        gc.collect()
        start = time.perf_counter()
        await publish_windowed(publish, orders, setup.window)
        await counter.done.wait()
        elapsed = time.perf_counter() - start
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return len(orders) / elapsed


async def faststream_round(setup: Setup, orders: Sequence[Order]) -> float:
    """The same work with FastStream's RabbitBroker; return messages/s."""
    from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitQueue

    queue = RabbitQueue(fresh_queue("faststream"), durable=True, queue_type=QueueType.QUORUM)
    counter = Counter(len(orders))
    broker = RabbitBroker(
        setup.url,
        default_channel=Channel(prefetch_count=setup.prefetch),
        logger=None,
    )

    @broker.subscriber(queue)
    async def handle(order: Order) -> None:
        counter.count(order)

    async with broker:
        await broker.start()
        gc.collect()
        start = time.perf_counter()
        await publish_windowed(
            lambda order: broker.publish(order, queue=queue, persist=True), orders, setup.window
        )
        await counter.done.wait()
        elapsed = time.perf_counter() - start
    connection = await aio_pika.connect(setup.url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue.name)
    return len(orders) / elapsed


SIDES: dict[str, Round] = {
    "framework": framework_round,
    "aio-pika": aio_pika_round,
    "faststream": faststream_round,
}


@dataclass
class Results:
    messages: int
    message_bytes: float
    prefetch: int
    window: int
    rounds: list[dict[str, float]]
    medians: dict[str, float]
    ratios: dict[str, float]


def _ratios(medians: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    if "framework" in medians:
        for other in ("aio-pika", "faststream"):
            if other in medians:
                out[f"framework/{other}"] = medians["framework"] / medians[other]
    return out


async def measure(args: argparse.Namespace) -> Results:
    setup = Setup(url=args.url, prefetch=args.prefetch, window=args.window)
    orders = make_orders(args.messages)
    sides = {args.only: SIDES[args.only]} if args.only else SIDES
    for run in sides.values():
        await run(setup, orders[:WARMUP_MESSAGES])
    size = statistics.fmean(len(o.model_dump_json().encode()) for o in orders)
    if not args.json:
        print(
            f"rabbitmq, {args.messages:,} messages of {size / 1024:.2f} KiB, prefetch "
            f"{args.prefetch}, {args.window} publishes in flight, {args.rounds} rounds"
        )
    rounds: list[dict[str, float]] = []
    for number in range(1, args.rounds + 1):
        rates = {name: await run(setup, orders) for name, run in sides.items()}
        rounds.append(rates)
        if not args.json:
            print(f"round {number}: " + ", ".join(f"{k} {v:,.0f} msg/s" for k, v in rates.items()))
    medians = {name: statistics.median(r[name] for r in rounds) for name in sides}
    return Results(
        messages=args.messages,
        message_bytes=size,
        prefetch=args.prefetch,
        window=args.window,
        rounds=rounds,
        medians=medians,
        ratios=_ratios(medians),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--only", choices=sorted(SIDES))
    parser.add_argument(
        "--smoke", action="store_true", help="1 round of 300 messages, a short warm-up"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:  # a check that the bench works, not a measurement
        global WARMUP_MESSAGES
        WARMUP_MESSAGES = 100
        args.messages, args.rounds = 300, 1
    results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(asdict(results)))
        return
    print("medians: " + ", ".join(f"{k} {v:,.0f} msg/s" for k, v in results.medians.items()))
    for name, ratio in results.ratios.items():
        print(f"{name}: {ratio:.2f}")


if __name__ == "__main__":
    main()
