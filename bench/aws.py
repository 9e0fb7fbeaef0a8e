"""End-to-end throughput through SQS on moto's server: the framework against raw aiobotocore.

Run from the repository root (``pip install -e '.[dev]'`` brings aiobotocore and moto)::

    python bench/aws.py [--messages 2000] [--rounds 3] [--concurrency 10] [--window 10]
                        [--pollers N] [--stock-moto] [--only framework|raw] [--json]

The bench starts moto's standalone server itself, in a child process on a free 127.0.0.1 port
(so moto's CPU does not share a GIL with the side being measured), waits for it to answer, and
stops it at the end. It never talks to anything but that loopback port, and uses dummy
credentials.

Each round sends ``--messages`` JSON messages of about 1 KiB to a fresh standard queue from the
bench's process, one ``SendMessage`` per message with at most ``--window`` sends in flight,
while a consumer **in a child process**, started the way its users start it, receives each
message, validates it into a pydantic model, counts it and deletes it. The clock runs from the
first send until the consumer process has counted the last message (it writes
``time.monotonic()`` to a file at that count, as in ``rabbitmq.py``). Two sides do the same work:

* **framework**: ``framework run bench.aws:app --backend aws://us-east-1?endpoint_url=...
  --workers-only`` (an ``@app.on_queue(queue, concurrency=C)`` handler: the real runtime with
  its leases, receive counts, dead-letter queue and redrive policy, the backend's
  ``x-framework`` attribute, and its deletes batched by the backend's ``Deleter``); the bench
  sends with ``app.send`` under ``app.run(url, workers=False)``;
* **raw**: ``python -m bench.aws --raw-consumer ENDPOINT``: one aiobotocore SQS client with the
  backend's client settings and ``--pollers`` consumer tasks (default ``C``) each looping over
  ``receive_message(MaxNumberOfMessages=10, WaitTimeSeconds=1)``,
  ``Order.model_validate_json(body)`` and one ``delete_message_batch`` per received batch; the
  bench sends with ``send_message``, the body only, on a client with the same settings.

One framework handler task per unit of ``--concurrency``, but one receive in flight per queue:
that is how the runtime works. The raw side's ``--pollers`` (default ``--concurrency``) each
have their own receive in flight; ``--pollers 1`` gives it the framework's shape.

Moto is slow (milliseconds of CPU per request, in one process), so it is the bottleneck of both
sides: the ratio of the medians says how much the framework adds on top of what SQS costs, here
moto. The CPU time per message of this process (the sender), of the consumer process and of
moto is reported too, and the time at which the last send returned (the rest is the consumer
catching up). The bench patches
three faults of moto 5.2 in its process (``moto_server`` says which; ``--stock-moto`` runs it
as shipped): deletes that race, and sends and receives whose cost grows with the queue's depth.
Rounds alternate (framework, raw, framework, ...); each consumer process first handles a
warm-up of ``WARMUP_MESSAGES`` that is not timed. Queues are deleted after each round, and each
round checks, once its consumer has stopped, that nothing was left in them.
``--only`` runs one side, for a profiler (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from bench.children import (
    FRAMEWORK,
    Marks,
    cpu_seconds,
    free_port,
    marks_env,
    serve,
    tree_cpu_seconds,
    wait_mark,
)
from bench.orders import Order, make_orders
from framework import App

REGION = "us-east-1"
HOST = "127.0.0.1"  # moto listens here only; nothing else is ever contacted
WARMUP_MESSAGES = 200
START_TIMEOUT = 30.0
STALL = 60.0  # the least time a consumer process gets to handle a round's messages
DUMMY = "testing"
# moto's server with werkzeug's access log off (one line per request costs moto CPU).
MOTO_SCRIPT = """
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.WARNING)
if sys.argv.pop(1) == "patched":  # see moto_server
    from moto.core.utils import unix_time, unix_time_millis
    from moto.sqs.models import Queue, SQSBackend

    def messages(self):
        now = unix_time_millis()  # Message.visible and .delayed read it for each message
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    Queue.messages = property(messages)

    unlocked_delete = Queue.delete_message

    def delete_message(self, receipt_handle):
        with self._messages_lock:
            unlocked_delete(self, receipt_handle)

    Queue.delete_message = delete_message

    def retained(self, queue_name, message):
        queue = self.get_queue(queue_name)
        return queue.message_retention_period + message.sent_timestamp / 1000 > unix_time()

    SQSBackend.is_message_valid_based_on_retention_period = retained
    all_attributes = Queue.attributes.fget
    send_code = SQSBackend.send_message.__code__

    def attributes(self):
        if sys._getframe(1).f_code is send_code:  # it reads ContentBasedDeduplication only
            cbd = self.fifo_queue and self.content_based_deduplication
            return {"ContentBasedDeduplication": "true"} if cbd else {}
        return all_attributes(self)

    Queue.attributes = property(attributes)
from moto.server import main
main(sys.argv[1:])
"""


# --- moto ------------------------------------------------------------------------------------


@contextlib.contextmanager
def moto_server(*, stock: bool) -> Iterator[tuple[str, int]]:
    """Run ``moto.server`` in a child process on a free loopback port; yield (endpoint, pid).

    Unless ``stock``, moto 5.2 is patched in that process, keeping every answer the same:

    * Deleting a message takes the queue's lock. As shipped, a delete rebuilds the queue's
      message list without it, unlocked, while other requests run in other threads: two
      deletes at once can bring one deleted message back, and a send during a delete can be
      lost (a round would then never end).
    * Two look-ups are made direct: the retention check that a receive makes for every
      message it returns, and the content-based-deduplication check of every send. As
      shipped, both build the queue's whole ``GetQueueAttributes`` answer, whose approximate
      counts walk every message in the queue (the retention check does it twice), so each
      send and each received message costs time in proportion to the queue's depth, which
      SQS's do not: a side whose queue grows would pay for it again.
    * The visible messages are listed with one clock read, not two per message in the queue
      (each about 5 µs), which every receive does at least once. It still walks the whole
      queue, as do deletes (twice per receipt): those costs still grow with the depth.
    """
    port = free_port()
    mode = "stock" if stock else "patched"
    process = subprocess.Popen(
        [sys.executable, "-c", MOTO_SCRIPT, mode, "-H", HOST, "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto's server exited at start (code {process.returncode})")
            try:
                with socket.create_connection((HOST, port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not answer on {HOST}:{port}") from None
                time.sleep(0.05)
        yield f"http://{HOST}:{port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client_config() -> AioConfig:
    """The aws:// backend's client settings (framework/backends/aws/backend.py)."""
    return AioConfig(
        max_pool_connections=50,
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )


def client_options(endpoint: str) -> dict[str, Any]:
    return {
        "region_name": REGION,
        "endpoint_url": endpoint,
        "aws_access_key_id": DUMMY,
        "aws_secret_access_key": DUMMY,
    }


# --- the consumer processes ------------------------------------------------------------------

# What the consumer processes read: set by the bench for each round, in their environment.
QUEUE = os.environ.get("BENCH_QUEUE", "bench")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "10"))
POLLERS = int(os.environ.get("BENCH_POLLERS", "10"))


def framework_app() -> App:
    """The framework side's workers: ``framework run bench.aws:app --workers-only``."""
    app = App("bench")
    marks = Marks()

    @app.on_queue(QUEUE, concurrency=CONCURRENCY)
    async def handle(order: Order) -> None:
        marks.count()

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return framework_app()
    raise AttributeError(name)


async def raw_consumer(endpoint: str) -> None:
    """The raw side's consumer process (``python -m bench.aws --raw-consumer ENDPOINT``)."""
    marks = Marks()
    session = AioSession()
    async with session.create_client(
        "sqs", config=client_config(), **client_options(endpoint)
    ) as client:
        url = (await client.get_queue_url(QueueName=QUEUE))["QueueUrl"]
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)

        async def consume() -> None:
            # On SIGTERM each poller ends after its current receive (at most 1 s) and the
            # delete of what it received: nothing handled is left in flight.
            while not stopping.is_set():
                response = await client.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                messages = response.get("Messages") or ()
                if not messages:
                    continue
                for message in messages:
                    Order.model_validate_json(message["Body"])
                    marks.count()
                response = await client.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
                if response.get("Failed"):
                    raise RuntimeError(f"raw delete failed: {response['Failed']}")

        await asyncio.gather(*(consume() for _ in range(POLLERS)))


def consumer_command(side: str, endpoint: str) -> list[str]:
    """How each side's consumer is started, as its users start it."""
    if side == "framework":
        return [
            *FRAMEWORK, "run", "bench.aws:app", "--backend", backend_url(endpoint),
            "--workers-only", "--log-level", "warning",
        ]  # fmt: skip
    return [sys.executable, "-m", "bench.aws", "--raw-consumer", endpoint]


def backend_url(endpoint: str) -> str:
    return f"aws://{REGION}?endpoint_url={endpoint}"


# --- the rounds ------------------------------------------------------------------------------


async def send_windowed(
    send: Callable[[Order], Awaitable[object]], orders: Sequence[Order], window: int
) -> None:
    """Send every order, one call each, with at most ``window`` calls in flight (both sides)."""
    pending = iter(orders)

    async def sender() -> None:
        for order in pending:
            await send(order)

    await asyncio.gather(*(sender() for _ in range(window)))


@dataclass(frozen=True)
class Setup:
    endpoint: str
    moto_pid: int
    concurrency: int
    window: int
    pollers: int  # the raw side's consumer tasks
    admin: Any  # an SQS client for creating, checking and deleting queues, outside the timing


@dataclass
class Measurement:
    rate: float  # messages/s
    sent_s: float  # seconds from the first send until every send had returned
    client_cpu_us: float  # this process's CPU per message (the sender), µs
    consumer_cpu_us: float  # the consumer process's CPU per message, µs
    moto_cpu_us: float  # moto's CPU per message, µs


class Timer:
    """Wall time and the CPU time of this process, of the consumer and of moto."""

    def __init__(self, moto_pid: int, consumer_pid: int) -> None:
        self.moto_pid = moto_pid
        self.consumer_pid = consumer_pid

    def start(self) -> None:
        gc.collect()
        self.cpu = time.process_time()
        self.moto = cpu_seconds(self.moto_pid)
        self.consumer = tree_cpu_seconds(self.consumer_pid)
        self.wall = time.monotonic()
        self.sent = float("nan")

    def all_sent(self) -> None:
        self.sent = time.monotonic() - self.wall

    def stop(self, done: float, count: int) -> Measurement:
        cpu = time.process_time() - self.cpu
        moto = cpu_seconds(self.moto_pid) - self.moto
        consumer = tree_cpu_seconds(self.consumer_pid) - self.consumer
        return Measurement(
            count / (done - self.wall),
            self.sent,
            cpu / count * 1e6,
            consumer / count * 1e6,
            moto / count * 1e6,
        )


def fresh_queue(side: str) -> str:
    return f"bench-{side}-{uuid.uuid4().hex[:8]}"


async def check_empty(admin: Any, side: str, name: str) -> None:
    """Raise if queue ``name`` still holds messages, visible, in flight or delayed."""
    url = (await admin.get_queue_url(QueueName=name))["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    names.append("ApproximateNumberOfMessagesDelayed")
    response = await admin.get_queue_attributes(QueueUrl=url, AttributeNames=names)
    counts = {n.removeprefix("ApproximateNumberOf"): int(response["Attributes"][n]) for n in names}
    if any(counts.values()):
        raise RuntimeError(f"{side} round left messages in {name}: {counts}")


async def delete_queues(admin: Any, *names: str) -> None:
    for name in names:
        with contextlib.suppress(Exception):  # never created (the round failed early)
            url = (await admin.get_queue_url(QueueName=name))["QueueUrl"]
            await admin.delete_queue(QueueUrl=url)


async def timed(
    side: str,
    setup: Setup,
    queue: str,
    orders: Sequence[Order],
    send: Callable[[Order], Awaitable[object]],
) -> Measurement:
    """Start ``side``'s consumer process, warm it up (untimed), then time ``orders``."""
    warm = list(orders[: min(WARMUP_MESSAGES, len(orders))])
    total = len(warm) + len(orders)
    timeout = max(STALL, len(orders) / 5)
    with tempfile.TemporaryDirectory() as marks:
        env = {
            **marks_env(marks, len(warm), total),
            "BENCH_QUEUE": queue,
            "BENCH_CONCURRENCY": str(setup.concurrency),
            "BENCH_POLLERS": str(setup.pollers),
        }
        with serve(consumer_command(side, setup.endpoint), None, env=env) as process:
            await send_windowed(send, warm, setup.window)
            await asyncio.to_thread(wait_mark, marks, len(warm), process, timeout)
            timer = Timer(setup.moto_pid, process.pid)
            timer.start()
            await send_windowed(send, orders, setup.window)
            timer.all_sent()
            done = await asyncio.to_thread(wait_mark, marks, total, process, timeout)
            return timer.stop(done, len(orders))
        # Leaving serve stops the consumer with SIGTERM: its handlers' deletes are done.


async def framework_round(setup: Setup, orders: Sequence[Order]) -> Measurement:
    """``app.send`` here, a ``framework run --workers-only`` child handles and deletes."""
    app = App("bench")
    queue = fresh_queue("framework")

    @app.on_queue(queue, concurrency=setup.concurrency)
    async def unused(order: Order) -> None:  # declares the queue as the workers' app does
        raise AssertionError("the bench's process runs no workers")

    try:
        async with app.run(backend_url(setup.endpoint), workers=False):
            measured = await timed(
                "framework", setup, queue, orders, lambda order: app.send(queue, order)
            )
        for name in (queue, f"{queue}-dlq"):
            await check_empty(setup.admin, "framework", name)
    finally:
        await delete_queues(setup.admin, queue, f"{queue}-dlq")
    return measured


async def raw_round(setup: Setup, orders: Sequence[Order]) -> Measurement:
    """The same work written directly on aiobotocore: sends here, a consumer process."""
    name = fresh_queue("raw")
    session = AioSession()
    try:
        async with session.create_client(
            "sqs", config=client_config(), **client_options(setup.endpoint)
        ) as client:
            url = (await client.create_queue(QueueName=name))["QueueUrl"]

            async def send(order: Order) -> None:
                await client.send_message(QueueUrl=url, MessageBody=order.model_dump_json())

            measured = await timed("raw", setup, name, orders, send)
            await check_empty(setup.admin, "raw", name)
    finally:
        await delete_queues(setup.admin, name)
    return measured


Round = Callable[[Setup, Sequence[Order]], Awaitable[Measurement]]
SIDES: dict[str, Round] = {"framework": framework_round, "raw": raw_round}


@dataclass
class Results:
    messages: int
    message_bytes: float
    concurrency: int
    window: int
    pollers: int
    stock_moto: bool
    rounds: list[dict[str, Measurement]]
    medians: dict[str, float]
    client_cpu_us: dict[str, float]
    consumer_cpu_us: dict[str, float]
    moto_cpu_us: dict[str, float]
    ratio: float | None
    figures: dict[str, str]


def _line(measurements: dict[str, Measurement]) -> str:
    return "   ".join(
        f"{name} {m.rate:,.0f} msg/s (all sent at {m.sent_s:.1f} s; CPU/msg: sender "
        f"{m.client_cpu_us:,.0f} µs, consumer {m.consumer_cpu_us:,.0f} µs, moto "
        f"{m.moto_cpu_us:,.0f} µs)"
        for name, m in measurements.items()
    )


async def measure(args: argparse.Namespace) -> Results:
    orders = make_orders(args.messages)
    sides = {args.only: SIDES[args.only]} if args.only else SIDES
    size = statistics.fmean(len(o.model_dump_json().encode()) for o in orders)
    with moto_server(stock=args.stock_moto) as (endpoint, pid):
        session = AioSession()
        async with session.create_client(
            "sqs", config=client_config(), **client_options(endpoint)
        ) as admin:
            setup = Setup(endpoint, pid, args.concurrency, args.window, args.pollers, admin)
            if not args.json:
                print(
                    f"aws:// on moto (pid {pid}, {endpoint}), {args.messages:,} messages of "
                    f"{size / 1024:.2f} KiB, concurrency {args.concurrency}, "
                    f"{args.window} sends in flight, {args.pollers} raw pollers, "
                    f"{args.rounds} rounds"
                )
            rounds: list[dict[str, Measurement]] = []
            for number in range(1, args.rounds + 1):
                measured = {name: await run(setup, orders) for name, run in sides.items()}
                rounds.append(measured)
                if not args.json:
                    print(f"round {number}: {_line(measured)}")

    def median(name: str, field: str) -> float:
        return float(statistics.median(getattr(r[name], field) for r in rounds))

    medians = {name: median(name, "rate") for name in sides}
    ratio = medians["framework"] / medians["raw"] if len(medians) == 2 else None
    return Results(
        messages=args.messages,
        message_bytes=size,
        concurrency=args.concurrency,
        window=args.window,
        pollers=args.pollers,
        stock_moto=args.stock_moto,
        rounds=rounds,
        medians=medians,
        client_cpu_us={name: median(name, "client_cpu_us") for name in sides},
        consumer_cpu_us={name: median(name, "consumer_cpu_us") for name in sides},
        moto_cpu_us={name: median(name, "moto_cpu_us") for name in sides},
        ratio=ratio,
        figures={
            f"{name} msg/s (CPU per message: sender, consumer)": (
                f"{rate:,.0f} ({median(name, 'client_cpu_us'):,.0f} µs, "
                f"{median(name, 'consumer_cpu_us'):,.0f} µs)"
            )
            for name, rate in medians.items()
        },
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--raw-consumer", metavar="ENDPOINT", help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=2_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="handlers (framework), consumer tasks (raw)"
    )
    parser.add_argument("--window", type=int, default=10, help="sends in flight at once")
    parser.add_argument(
        "--pollers",
        type=int,
        help="raw side: consumer tasks, each with its own receive loop (default: --concurrency)",
    )
    parser.add_argument(
        "--stock-moto",
        action="store_true",
        help="run moto as shipped, whose receives slow down as the queue grows (see moto_server)",
    )
    parser.add_argument("--only", choices=sorted(SIDES), help="run one side only (to profile it)")
    parser.add_argument(
        "--smoke", action="store_true", help="1 round of 300 messages, a short warm-up"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.smoke:  # a check that the bench works, not a measurement
        global WARMUP_MESSAGES
        WARMUP_MESSAGES = 100
        args.messages, args.rounds = 300, 1
    if args.pollers is None:
        args.pollers = args.concurrency
    if min(args.messages, args.rounds, args.concurrency, args.window, args.pollers) < 1:
        parser.error("--messages, --rounds, --concurrency, --window and --pollers must be positive")
    # Dummy credentials for the framework's clients too: nothing here may use real ones.
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        os.environ.pop(variable, None)
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = DUMMY
    if args.raw_consumer:  # the raw side's consumer process
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(raw_consumer(args.raw_consumer))
        return
    results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(asdict(results)))
        return
    print(
        "medians: "
        + ", ".join(
            f"{name} {rate:,.0f} msg/s (CPU/msg: sender {results.client_cpu_us[name]:,.0f} µs, "
            f"consumer {results.consumer_cpu_us[name]:,.0f} µs, "
            f"moto {results.moto_cpu_us[name]:,.0f} µs)"
            for name, rate in results.medians.items()
        )
    )
    if results.ratio is not None:
        print(f"framework/raw: {results.ratio:.2f}")


if __name__ == "__main__":
    main()
