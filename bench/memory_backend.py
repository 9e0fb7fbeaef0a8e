"""End-to-end throughput of ``memory://`` against a raw ``asyncio.Queue`` + pydantic baseline.

Run from the repository root::

    python bench/memory_backend.py [--messages 20000] [--rounds 3] [--concurrency 10] [--json]

Each round sends ``--messages`` JSON messages of about 1 KiB with ``app.send`` to a queue whose
``@app.on_queue`` handler receives the validated model and counts it; the runtime then acks
(deletes) it. The clock runs from the first send to the last message handled. The baseline does
the same work without the framework: bytes from ``model_dump_json`` on an ``asyncio.Queue``,
``--concurrency`` consumer tasks doing ``model_validate_json`` and calling the same kind of
handler. Rounds alternate (framework, raw, framework, raw, ...) so drift on a noisy machine
hits both alike; the figure that matters is the ratio of the medians. A warm-up of 2,000
messages per side runs first and is not reported; ``--only framework`` runs one side, for a
profiler (see bench/README.md).

Then it measures the traced peak memory of ``--memory-messages`` messages queued and not yet
received (tracemalloc), per message, for both.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

from bench.orders import MESSAGE_BYTES, Order, make_order, make_orders, note_for  # bench/orders.py
from framework import App

QUEUE = "bench"
WARMUP_MESSAGES = 2_000


Round = Callable[[Sequence[Order], int], Awaitable[float]]


async def framework_round(orders: Sequence[Order], concurrency: int) -> float:
    """Send, handle and ack every order through ``app.run("memory://")``; return messages/s."""
    app = App("bench")
    total = len(orders)
    handled = 0
    done = asyncio.Event()

    @app.on_queue(QUEUE, concurrency=concurrency)
    async def count(order: Order) -> None:
        nonlocal handled
        handled += 1
        if handled == total:
            done.set()

    async with app.run("memory://") as runtime:
        gc.collect()
        start = time.perf_counter()
        for order in orders:
            await app.send(QUEUE, order)
        await done.wait()
        elapsed = time.perf_counter() - start
        stats = (await runtime.stats())[QUEUE]
    if stats.depth or stats.in_flight or stats.dead_letters:
        raise RuntimeError(f"framework round left messages behind: {stats}")
    return total / elapsed


async def raw_round(orders: Sequence[Order], concurrency: int) -> float:
    """The same work on a bare ``asyncio.Queue`` of bytes; return messages/s."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    total = len(orders)
    handled = 0
    done = asyncio.Event()

    async def count(order: Order) -> None:
        nonlocal handled
        handled += 1
        if handled == total:
            done.set()

    async def consume() -> None:
        while True:
            data = await queue.get()
            await count(Order.model_validate_json(data))

    consumers = [asyncio.create_task(consume()) for _ in range(concurrency)]
    await asyncio.sleep(0)  # the consumers wait on the queue, as the framework's worker does
    gc.collect()
    start = time.perf_counter()
    for order in orders:
        await queue.put(order.model_dump_json().encode())
    await done.wait()
    elapsed = time.perf_counter() - start
    for consumer in consumers:
        consumer.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    return total / elapsed


async def bare_round(orders: Sequence[Order], concurrency: int) -> float:
    """The same orders as objects on an ``asyncio.Queue``: no bytes, no validation."""
    queue: asyncio.Queue[Order] = asyncio.Queue()
    total = len(orders)
    handled = 0
    done = asyncio.Event()

    async def count(order: Order) -> None:
        nonlocal handled
        handled += 1
        if handled == total:
            done.set()

    async def consume() -> None:
        while True:
            await count(await queue.get())

    consumers = [asyncio.create_task(consume()) for _ in range(concurrency)]
    await asyncio.sleep(0)
    gc.collect()
    start = time.perf_counter()
    for order in orders:
        await queue.put(order)
    await done.wait()
    elapsed = time.perf_counter() - start
    for consumer in consumers:
        consumer.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    return total / elapsed


async def framework_memory(count: int) -> float:
    """Return traced peak bytes per message for ``count`` messages queued on ``memory://``."""
    app = App("bench-memory")
    app.queue(QUEUE)
    note = note_for(MESSAGE_BYTES)
    async with app.run("memory://", workers=False):
        return await _traced_per_message(count, lambda i: app.send(QUEUE, make_order(i, note)))


async def raw_memory(count: int) -> float:
    """Return traced peak bytes per message for ``count`` encoded orders on an asyncio.Queue."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    note = note_for(MESSAGE_BYTES)
    return await _traced_per_message(
        count, lambda i: queue.put(make_order(i, note).model_dump_json().encode())
    )


async def _traced_per_message(count: int, put: Callable[[int], Awaitable[object]]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            await put(i)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - baseline) / count


@dataclass
class Results:
    messages: int
    message_bytes: float
    concurrency: int
    rounds: list[dict[str, float]]
    framework_median: float | None
    raw_median: float | None
    ratio: float | None
    memory_messages: int
    framework_bytes_per_message: float | None
    raw_bytes_per_message: float | None


async def measure(args: argparse.Namespace) -> Results:
    orders = make_orders(args.messages)
    sides: dict[str, Round] = {
        "framework": framework_round,
        "raw": raw_round,
        "bare": bare_round,
    }
    if args.only:
        sides = {args.only: sides[args.only]}
    warmup = orders[:WARMUP_MESSAGES]
    for run in sides.values():
        await run(warmup, args.concurrency)
    size = statistics.fmean(len(o.model_dump_json().encode()) for o in orders)
    if not args.json:
        print(
            f"memory backend, {args.messages:,} messages of {size / 1024:.1f} KiB, "
            f"concurrency {args.concurrency}, {args.rounds} rounds"
        )
    rounds: list[dict[str, float]] = []
    for number in range(1, args.rounds + 1):
        rates = {name: await run(orders, args.concurrency) for name, run in sides.items()}
        rounds.append(rates)
        if not args.json:
            print(f"round {number}: {_rates(rates)}")
    medians = {name: statistics.median(r[name] for r in rounds) for name in sides}
    ratio = None
    if "framework" in medians and "raw" in medians:
        ratio = medians["framework"] / medians["raw"]
    if not args.json:
        parts = [f"{name} {rate:,.0f} msg/s" for name, rate in medians.items()]
        print(f"median: {', '.join(parts)}" + (f", ratio {ratio:.2f}" if ratio else ""))
    framework_bytes = raw_bytes = None
    if args.memory_messages:
        framework_bytes = await framework_memory(args.memory_messages)
        raw_bytes = await raw_memory(args.memory_messages)
        if not args.json:
            print(
                f"memory, {args.memory_messages:,} queued messages (tracemalloc peak): "
                f"framework {framework_bytes:,.0f} bytes/message, "
                f"raw asyncio.Queue {raw_bytes:,.0f} bytes/message "
                f"(encoded body {size:,.0f} bytes)"
            )
    return Results(
        messages=args.messages,
        message_bytes=size,
        concurrency=args.concurrency,
        rounds=rounds,
        framework_median=medians.get("framework"),
        raw_median=medians.get("raw"),
        ratio=ratio,
        memory_messages=args.memory_messages,
        framework_bytes_per_message=framework_bytes,
        raw_bytes_per_message=raw_bytes,
    )


def _rates(rates: dict[str, float]) -> str:
    labels = {
        "framework": "framework",
        "raw": "raw asyncio.Queue+pydantic",
        "bare": "bare asyncio.Queue",
    }
    return "   ".join(f"{labels[name]} {rate:,.0f} msg/s" for name, rate in rates.items())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side")
    parser.add_argument("--concurrency", type=int, default=10, help="handlers in flight")
    parser.add_argument(
        "--memory-messages",
        type=int,
        default=100_000,
        help="messages queued for the memory measurement (0 skips it)",
    )
    parser.add_argument(
        "--only", choices=("framework", "raw", "bare"), help="run one side only (for profiling)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="1 round of 300 messages, a short warm-up"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.smoke:  # a check that the bench works, not a measurement
        global WARMUP_MESSAGES
        WARMUP_MESSAGES = 100
        args.messages, args.rounds = 300, 1
        args.memory_messages = min(args.memory_messages, 1_000)
    if args.messages < 1 or args.rounds < 1 or args.concurrency < 1 or args.memory_messages < 0:
        parser.error(
            "--messages, --rounds and --concurrency must be positive, --memory-messages at least 0"
        )
    results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(asdict(results)))


if __name__ == "__main__":
    main()
