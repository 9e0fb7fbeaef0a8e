"""End-to-end throughput on RabbitMQ: the framework against raw aio-pika and FastStream.

Run from the repository root, with the broker up (``pip install -e '.[dev,bench]'``)::

    python bench/rabbitmq.py [--url amqp://guest:guest@127.0.0.1:5672/] [--messages 20000]
                             [--rounds 3] [--prefetch 100] [--window 100] [--json]

Each round publishes ``--messages`` JSON messages of about 1 KiB to a fresh quorum queue from the
bench's process, with publisher confirms and at most ``--window`` publishes awaiting their
confirm at once, while a consumer **in a child process**, started the way its users start it,
with ``--prefetch`` unacknowledged deliveries, validates each body into a pydantic model, counts
it and acknowledges it. The clock runs from the first publish until the consumer process has
counted the last message (it writes ``time.monotonic()`` to a file at that count). Three sides
do the same work:

* **framework**: ``framework run bench.rabbitmq:app --backend URL --workers-only`` (an
  ``@app.on_queue(queue, concurrency=prefetch)`` handler: the real runtime with its leases,
  receive counts and dead-letter policy); the bench sends with ``app.send`` under
  ``app.run(url, workers=False)``;
* **aio-pika**: a consumer process (``python -m bench.rabbitmq --aio-pika-consumer``: a robust
  connection, ``set_qos(prefetch)``, ``Order.model_validate_json`` and ``message.ack()`` by
  hand); the bench publishes on a confirming channel;
* **faststream**: ``faststream run bench.rabbitmq:faststream_app --factory`` (a ``RabbitBroker``
  with a ``@broker.subscriber`` on the same kind of queue); the bench publishes with
  ``broker.publish``.

All three use quorum queues (the framework needs them for its exact receive counts; the others
get the same queue type, so the broker does the same work for each) and persistent messages.
Each consumer process first handles a warm-up of ``WARMUP_MESSAGES`` that is not timed. Rounds
run the sides in turn (framework, aio-pika, faststream, framework, ...); the ratios of the
medians are the figures to compare. Each round also reports the CPU time per message of the
consumer process and of the bench's own (the publisher). Queues are deleted after each round.
``--only`` runs one side, for a profiler (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aio_pika

from bench.children import FRAMEWORK, Marks, marks_env, serve, tree_cpu_seconds, wait_mark
from bench.orders import Order, make_orders
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


@dataclass(frozen=True)
class Measurement:
    rate: float  # messages/s, from the first publish to the last message counted
    consumer_cpu_us: float  # the consumer process's CPU per message (user + system), µs
    publisher_cpu_us: float  # this process's CPU per message (the publisher), µs


Round = Callable[[Setup, Sequence[Order]], Awaitable[Measurement]]


def fresh_queue(side: str) -> str:
    return f"bench-{side}-{uuid.uuid4().hex[:8]}"


# What the consumer processes read: set by the bench for each round, in their environment.
QUEUE = os.environ.get("BENCH_QUEUE", "bench")
PREFETCH = int(os.environ.get("BENCH_PREFETCH", "100"))


def framework_app() -> App:
    """The framework side's app: ``framework run bench.rabbitmq:app --workers-only``."""
    app = App("bench")
    marks = Marks()

    @app.on_queue(QUEUE, concurrency=PREFETCH)
    async def handle(order: Order) -> None:
        marks.count()

    return app


def faststream_app() -> Any:
    """The FastStream side's app: ``faststream run bench.rabbitmq:faststream_app --factory``."""
    from faststream import FastStream
    from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitQueue

    marks = Marks()
    broker = RabbitBroker(
        os.environ.get("BENCH_URL", DEFAULT_URL),
        default_channel=Channel(prefetch_count=PREFETCH),
        logger=None,
    )

    @broker.subscriber(RabbitQueue(QUEUE, durable=True, queue_type=QueueType.QUORUM))
    async def handle(order: Order) -> None:
        marks.count()

    return FastStream(broker, logger=None)


def __getattr__(name: str) -> Any:
    if name == "app":
        return framework_app()
    raise AttributeError(name)


async def aio_pika_consumer(url: str) -> None:
    """The aio-pika side's consumer process (``python -m bench.rabbitmq --aio-pika-consumer``)."""
    marks = Marks()
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(QUEUE, durable=True, arguments=QUORUM)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            Order.model_validate_json(message.body)
            marks.count()
            await message.ack()

        await queue.consume(on_message)
        await asyncio.Future()  # until SIGTERM


def consumer_command(side: str, url: str) -> list[str]:
    """How each side's consumer is started, as its users start it."""
    if side == "framework":
        return [
            *FRAMEWORK, "run", "bench.rabbitmq:app", "--backend", url, "--workers-only",
            "--log-level", "warning",
        ]  # fmt: skip
    if side == "faststream":
        return [
            sys.executable, "-m", "faststream", "run", "bench.rabbitmq:faststream_app", "--factory",
        ]  # fmt: skip
    return [sys.executable, "-m", "bench.rabbitmq", "--aio-pika-consumer", "--url", url]


@contextlib.asynccontextmanager
async def consumer(
    side: str, setup: Setup, queue: str, warmup: int, total: int
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``side``'s consumer process on ``queue``; yield its marks folder and process."""
    with tempfile.TemporaryDirectory() as marks:
        env = {
            **marks_env(marks, warmup, total),
            "BENCH_QUEUE": queue, "BENCH_PREFETCH": str(setup.prefetch), "BENCH_URL": setup.url,
        }  # fmt: skip
        with serve(consumer_command(side, setup.url), None, env=env) as process:
            yield marks, process


async def timed(
    side: str,
    setup: Setup,
    queue: str,
    orders: Sequence[Order],
    publish: Callable[[Order], Awaitable[object]],
) -> Measurement:
    """Warm the consumer up with a few orders (untimed), then time ``orders``.

    CPU times are read when the consumer's last mark is seen (within a millisecond of it);
    on a shared machine they vary less than the rate does.
    """
    warm = list(orders[: min(WARMUP_MESSAGES, len(orders))])
    async with consumer(side, setup, queue, len(warm), len(warm) + len(orders)) as (marks, proc):
        await publish_windowed(publish, warm, setup.window)
        await asyncio.to_thread(wait_mark, marks, len(warm), proc)
        gc.collect()
        consumer_cpu, publisher_cpu = tree_cpu_seconds(proc.pid), time.process_time()
        start = time.monotonic()
        await publish_windowed(publish, orders, setup.window)
        done = await asyncio.to_thread(wait_mark, marks, len(warm) + len(orders), proc)
        consumer_cpu = tree_cpu_seconds(proc.pid) - consumer_cpu
        publisher_cpu = time.process_time() - publisher_cpu
    count = len(orders)
    return Measurement(
        count / (done - start), consumer_cpu / count * 1e6, publisher_cpu / count * 1e6
    )


async def framework_round(setup: Setup, orders: Sequence[Order]) -> Measurement:
    """``app.send`` here, a ``framework run --workers-only`` child handles; messages/s."""
    app = App("bench")
    queue = fresh_queue("framework")
    url = setup.url + ("&" if "?" in setup.url else "?") + "delete_on_exit=1"

    @app.on_queue(queue, concurrency=setup.prefetch)
    async def unused(order: Order) -> None:  # declares the queue as the workers' app does
        raise AssertionError("the bench's process runs no workers")

    async with app.run(url, workers=False) as runtime:
        measured = await timed(
            "framework", setup, queue, orders, lambda order: app.send(queue, order)
        )
        stats = (await runtime.stats())[queue]
    if stats.depth or stats.dead_letters:
        raise RuntimeError(f"framework round left messages behind: {stats}")
    return measured


async def aio_pika_round(setup: Setup, orders: Sequence[Order]) -> Measurement:
    """aio-pika publishing here, an aio-pika consumer process; messages/s."""
    queue_name = fresh_queue("aiopika")
    connection = await aio_pika.connect_robust(setup.url)
    try:
        publisher = await connection.channel(publisher_confirms=True)
        queue = await publisher.declare_queue(queue_name, durable=True, arguments=QUORUM)

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

        try:
            return await timed("aio-pika", setup, queue_name, orders, publish)
        finally:
            await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


async def faststream_round(setup: Setup, orders: Sequence[Order]) -> Measurement:
    """FastStream's ``broker.publish`` here, a ``faststream run`` child; messages/s."""
    from faststream.rabbit import QueueType, RabbitBroker, RabbitQueue

    queue = RabbitQueue(fresh_queue("faststream"), durable=True, queue_type=QueueType.QUORUM)
    broker = RabbitBroker(setup.url, logger=None)
    try:
        async with broker:
            await broker.start()
            await broker.declare_queue(queue)
            return await timed(
                "faststream", setup, queue.name, orders,
                lambda order: broker.publish(order, queue=queue, persist=True),
            )  # fmt: skip
    finally:
        connection = await aio_pika.connect(setup.url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue.name)


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
    consumer_cpu_us: dict[str, float]  # medians, per message
    publisher_cpu_us: dict[str, float]
    figures: dict[str, str]


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
    size = statistics.fmean(len(o.model_dump_json().encode()) for o in orders)
    if not args.json:
        print(
            f"rabbitmq, {args.messages:,} messages of {size / 1024:.2f} KiB, prefetch "
            f"{args.prefetch}, {args.window} publishes in flight, {args.rounds} rounds"
        )
    measured: list[dict[str, Measurement]] = []
    for number in range(1, args.rounds + 1):
        measured.append({name: await run(setup, orders) for name, run in sides.items()})
        if not args.json:
            print(f"round {number}: " + ", ".join(
                f"{k} {m.rate:,.0f} msg/s (CPU/msg: consumer {m.consumer_cpu_us:,.0f} µs, "
                f"publisher {m.publisher_cpu_us:,.0f} µs)"
                for k, m in measured[-1].items()
            ))  # fmt: skip

    def median(name: str, field: str) -> float:
        return float(statistics.median(getattr(r[name], field) for r in measured))

    rounds = [{name: m.rate for name, m in r.items()} for r in measured]
    medians = {name: median(name, "rate") for name in sides}
    return Results(
        messages=args.messages,
        message_bytes=size,
        prefetch=args.prefetch,
        window=args.window,
        rounds=rounds,
        medians=medians,
        ratios=_ratios(medians),
        consumer_cpu_us={name: median(name, "consumer_cpu_us") for name in sides},
        publisher_cpu_us={name: median(name, "publisher_cpu_us") for name in sides},
        figures={
            f"{name} msg/s (CPU per message: consumer, publisher)": (
                f"{rate:,.0f} ({median(name, 'consumer_cpu_us'):,.0f} µs, "
                f"{median(name, 'publisher_cpu_us'):,.0f} µs)"
            )
            for name, rate in medians.items()
        },
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--aio-pika-consumer", action="store_true", help=argparse.SUPPRESS)
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
    if args.aio_pika_consumer:  # the aio-pika side's consumer process
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(aio_pika_consumer(args.url))
        return
    if args.smoke:  # a check that the bench works, not a measurement
        global WARMUP_MESSAGES
        WARMUP_MESSAGES = 100
        args.messages, args.rounds = 300, 1
    results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(asdict(results)))
        return
    print("medians: " + ", ".join(
        f"{k} {v:,.0f} msg/s (CPU/msg: consumer {results.consumer_cpu_us[k]:,.0f} µs, "
        f"publisher {results.publisher_cpu_us[k]:,.0f} µs)"
        for k, v in results.medians.items()
    ))  # fmt: skip
    for name, ratio in results.ratios.items():
        print(f"{name}: {ratio:.2f}")


if __name__ == "__main__":
    main()
