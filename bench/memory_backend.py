"""End-to-end throughput of ``memory://`` against a raw and a bare ``asyncio.Queue``.

Run from the repository root::

    python -m bench.memory_backend [--messages 20000] [--rounds 3] [--concurrency 10] [--json]

Each round sends ``--messages`` JSON messages of about 1 KiB to a queue whose ``@app.on_queue``
handler receives the validated model and counts it; the runtime then acks (deletes) it. The
clock runs from the first send to the last message handled. Four sides, in one run:

- ``framework``: ``await app.send(...)`` per message, under ``app.run("memory://")``;
- ``framework_batch``: the same app, sending with ``await app.send_batch(...)`` of ``--batch``
  bodies at a time;
- ``raw``: the same work without the framework: bytes from ``model_dump_json`` on an
  ``asyncio.Queue``, ``--concurrency`` consumer tasks doing ``model_validate_json`` and calling
  the same kind of handler;
- ``bare``: the orders themselves on an ``asyncio.Queue``: no bytes, no validation.

Rounds rotate the order of the sides, so drift on a noisy machine hits all alike; the figures
that matter are the ratios of the medians. A warm-up of 2,000 messages per side runs first and
is not reported; ``--only framework`` runs one side, for a profiler (see bench/README.md).

Then it measures the traced peak memory of ``--memory-messages`` messages queued and not yet
received (tracemalloc), per message, for each side.
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
SIDES = ("framework", "framework_batch", "raw", "bare")
LABELS = {
    "framework": "framework app.send",
    "framework_batch": "framework app.send_batch",
    "raw": "raw asyncio.Queue+pydantic",
    "bare": "bare asyncio.Queue",
}


Round = Callable[[Sequence[Order], int, int], Awaitable[float]]


def _counter(total: int) -> tuple[Callable[[Order], Awaitable[None]], asyncio.Event]:
    """The handler every side calls: it counts, and sets the event at ``total``."""
    handled = 0
    done = asyncio.Event()

    async def count(order: Order) -> None:
        nonlocal handled
        handled += 1
        if handled == total:
            done.set()

    return count, done


async def _framework(orders: Sequence[Order], concurrency: int, batch: int) -> float:
    """Send (one by one, or ``batch`` at a time), handle and ack every order; return msg/s."""
    app = App("bench")
    count, done = _counter(len(orders))
    app.on_queue(QUEUE, concurrency=concurrency)(count)
    async with app.run("memory://") as runtime:
        gc.collect()
        start = time.perf_counter()
        if batch:
            for first in range(0, len(orders), batch):
                await app.send_batch(QUEUE, orders[first : first + batch])
        else:
            for order in orders:
                await app.send(QUEUE, order)
        await done.wait()
        elapsed = time.perf_counter() - start
        stats = (await runtime.stats())[QUEUE]
    if stats.depth or stats.in_flight or stats.dead_letters:
        raise RuntimeError(f"framework round left messages behind: {stats}")
    return len(orders) / elapsed


async def framework_round(orders: Sequence[Order], concurrency: int, batch: int = 0) -> float:
    """``app.send`` per message through ``app.run("memory://")``; return messages/s."""
    return await _framework(orders, concurrency, 0)


async def framework_batch_round(orders: Sequence[Order], concurrency: int, batch: int) -> float:
    """The same with ``app.send_batch`` of ``batch`` bodies at a time."""
    return await _framework(orders, concurrency, batch)


async def _queue_round(
    orders: Sequence[Order],
    concurrency: int,
    put: Callable[[Order], object],
    take: Callable[[object], Order],
) -> float:
    queue: asyncio.Queue[object] = asyncio.Queue()
    count, done = _counter(len(orders))

    async def consume() -> None:
        while True:
            await count(take(await queue.get()))

    consumers = [asyncio.create_task(consume()) for _ in range(concurrency)]
    await asyncio.sleep(0)  # the consumers wait on the queue, as the framework's worker does
    gc.collect()
    start = time.perf_counter()
    for order in orders:
        await queue.put(put(order))
    await done.wait()
    elapsed = time.perf_counter() - start
    for consumer in consumers:
        consumer.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    return len(orders) / elapsed


async def raw_round(orders: Sequence[Order], concurrency: int, batch: int = 0) -> float:
    """The same work on an ``asyncio.Queue`` of encoded bytes, validated by the consumers."""
    return await _queue_round(
        orders,
        concurrency,
        lambda order: order.model_dump_json().encode(),
        Order.model_validate_json,  # type: ignore[arg-type]
    )


async def bare_round(orders: Sequence[Order], concurrency: int, batch: int = 0) -> float:
    """The same orders as objects on an ``asyncio.Queue``: no bytes, no validation."""
    return await _queue_round(orders, concurrency, _same, _same)  # type: ignore[arg-type]


def _same(item: object) -> object:
    return item


ROUNDS: dict[str, Round] = {
    "framework": framework_round,
    "framework_batch": framework_batch_round,
    "raw": raw_round,
    "bare": bare_round,
}


async def framework_memory(count: int, batch: int) -> float:
    """Traced peak bytes per message for ``count`` messages queued on ``memory://``."""
    app = App("bench-memory")
    app.queue(QUEUE)
    note = note_for(MESSAGE_BYTES)
    async with app.run("memory://", workers=False):
        if not batch:
            return await _traced_per_message(
                count, 1, lambda i, n: app.send(QUEUE, make_order(i, note))
            )
        return await _traced_per_message(
            count,
            batch,
            lambda i, n: app.send_batch(QUEUE, [make_order(j, note) for j in range(i, i + n)]),
        )


async def queue_memory(count: int, encoded: bool) -> float:
    """Traced peak bytes per message for ``count`` orders on an asyncio.Queue (bytes or not)."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    note = note_for(MESSAGE_BYTES)

    def item(i: int) -> object:
        order = make_order(i, note)
        return order.model_dump_json().encode() if encoded else order

    return await _traced_per_message(count, 1, lambda i, n: queue.put(item(i)))


async def _traced_per_message(
    count: int, step: int, put: Callable[[int, int], Awaitable[object]]
) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for i in range(0, count, step):
            await put(i, min(step, count - i))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - baseline) / count


@dataclass
class Results:
    messages: int
    message_bytes: float
    concurrency: int
    batch: int
    rounds: list[dict[str, float]]
    medians: dict[str, float]
    ratios: dict[str, float]
    framework_median: float | None
    raw_median: float | None
    ratio: float | None
    memory_messages: int
    bytes_per_message: dict[str, float]
    figures: dict[str, str]


def ratios_of(medians: dict[str, float]) -> dict[str, float]:
    """Each framework side over each baseline that ran."""
    out: dict[str, float] = {}
    for side in ("framework", "framework_batch"):
        for twin in ("raw", "bare"):
            if side in medians and twin in medians:
                name = "framework" if side == "framework" else "framework send_batch"
                out[f"{name}/{twin}"] = medians[side] / medians[twin]
    return out


async def measure(args: argparse.Namespace) -> Results:
    orders = make_orders(args.messages)
    names = list(args.only or SIDES)
    for name in names:
        await ROUNDS[name](orders[:WARMUP_MESSAGES], args.concurrency, args.batch)
    size = statistics.fmean(len(o.model_dump_json().encode()) for o in orders)
    if not args.json:
        print(
            f"memory backend, {args.messages:,} messages of {size / 1024:.1f} KiB, "
            f"concurrency {args.concurrency}, send_batch of {args.batch}, {args.rounds} rounds"
        )
    rounds: list[dict[str, float]] = []
    for number in range(args.rounds):
        turn = number % len(names)
        order = names[turn:] + names[:turn]  # rotate, so no side always runs first
        rates = {name: await ROUNDS[name](orders, args.concurrency, args.batch) for name in order}
        rounds.append({name: rates[name] for name in names})
        if not args.json:
            print(f"round {number + 1}: {_rates(rounds[-1])}")
    medians = {name: statistics.median(r[name] for r in rounds) for name in names}
    ratios = ratios_of(medians)
    memory: dict[str, float] = {}
    if args.memory_messages:
        n = args.memory_messages
        if "framework" in names:
            memory["framework"] = await framework_memory(n, 0)
        if "framework_batch" in names:
            memory["framework_batch"] = await framework_memory(n, args.batch)
        if "raw" in names:
            memory["raw"] = await queue_memory(n, encoded=True)
        if "bare" in names:
            memory["bare"] = await queue_memory(n, encoded=False)
    if not args.json:
        print(f"median: {_rates(medians)}")
        for name, value in ratios.items():
            print(f"ratio {name}: {value:.2f}")
        if memory:
            print(
                f"memory, {args.memory_messages:,} queued messages (tracemalloc peak, "
                f"encoded body {size:,.0f} bytes): "
                + ", ".join(f"{LABELS[k]} {v:,.0f} bytes/message" for k, v in memory.items())
            )
    return Results(
        messages=args.messages,
        message_bytes=size,
        concurrency=args.concurrency,
        batch=args.batch,
        rounds=rounds,
        medians=medians,
        ratios=ratios,
        framework_median=medians.get("framework"),
        raw_median=medians.get("raw"),
        ratio=ratios.get("framework/raw"),
        memory_messages=args.memory_messages,
        bytes_per_message=memory,
        figures={
            **{f"{LABELS[name]} msg/s": f"{rate:,.0f}" for name, rate in medians.items()},
            **{
                f"{LABELS[name]} memory per queued message": f"{size:,.0f} bytes"
                for name, size in memory.items()
            },
        },
    )


def _rates(rates: dict[str, float]) -> str:
    return "   ".join(f"{LABELS[name]} {rate:,.0f} msg/s" for name, rate in rates.items())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side")
    parser.add_argument("--concurrency", type=int, default=10, help="handlers in flight")
    parser.add_argument(
        "--batch", type=int, default=100, help="bodies per app.send_batch call (framework_batch)"
    )
    parser.add_argument(
        "--memory-messages",
        type=int,
        default=100_000,
        help="messages queued for the memory measurement (0 skips it)",
    )
    parser.add_argument(
        "--only", choices=SIDES, action="append", help="run these sides only (for profiling)"
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
    if (
        args.messages < 1
        or args.rounds < 1
        or args.concurrency < 1
        or args.batch < 1
        or args.memory_messages < 0
    ):
        parser.error(
            "--messages, --rounds, --concurrency and --batch must be positive, "
            "--memory-messages at least 0"
        )
    results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(asdict(results)))


if __name__ == "__main__":
    main()
