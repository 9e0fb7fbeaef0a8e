"""End-to-end throughput on ``sqlite:///``: ``framework run`` workers against a raw sqlite3 loop.

Run from the repository root (``pip install -e '.[dev,bench]'``; the gateway part needs
Debian's ``wrk``)::

    python -m bench.sqlite [--messages 5000] [--rounds 3] [--concurrency 10] [--json]
    python -m bench.sqlite --only framework --rounds 1   # one side, for a profiler
    python -m bench.sqlite --no-gateway                  # skip the HTTP part
    python -m bench.sqlite --smoke                       # a check that it runs, not a measurement

**Queue work.** Each round sends ``--messages`` JSON orders of about 1 KiB, one committed
transaction each, from the bench's process to a fresh database file (WAL,
``synchronous=NORMAL``: the backend's default), while consumers **in child processes** claim
them by lease, validate each into a pydantic model and delete it. The clock runs from the first
send until the bench, polling the file every millisecond from a connection of its own, sees the
queue empty (every message handled and deleted). The sides:

* **framework**: ``framework run bench.sqlite:app --backend sqlite:///FILE --workers-only``
  (an ``@app.on_queue(queue, concurrency=C)`` handler: the real runtime, its leases, receive
  counts, dead-letter policy, and the backend's watcher that sees another process's commits);
  the bench sends with ``app.send`` under ``app.run(url, workers=False)``, at most ``--window``
  sends in flight;
* **framework x2**: the same with ``--processes 2`` (a supervisor and two workers on the file);
* **raw**: ``python -m bench.sqlite --raw-consumer FILE``, the same durable claim-by-lease work
  written on ``sqlite3`` by hand: one ``BEGIN IMMEDIATE`` transaction claims up to 10 visible
  messages with an ``UPDATE ... RETURNING`` that sets a deadline, a receive count and a receipt;
  each message is validated and then deleted by its receipt in a transaction of its own; an
  empty claim sleeps 1 ms. The bench inserts with one ``BEGIN IMMEDIATE`` ... ``INSERT`` ...
  ``COMMIT`` per message from a thread;
* **raw batched**: the same, but the claimed batch's deletes share one transaction, after each
  message of the batch was validated (the framework's acks share a commit when they come
  together: its group commit, docs/backends/sqlite.md);
* **memory**: for reference, ``bench.memory_backend``'s framework round (``app.run("memory://")``,
  sender and handler in the bench's process: ``memory://`` cannot be shared by two processes).

Each consumer process first handles a warm-up of ``WARMUP_MESSAGES`` that is not timed. Rounds
run the sides in turn, the order rotating each round; the ratios of the medians are the figures.
After each round the bench checks that nothing is left in the queue or its dead-letter queue.

**Gateway + workers.** ``framework run bench.sqlite:web --backend sqlite:///FILE --no-smtp``
serves ``POST /orders`` (validate the order, ``await app.send`` it to a queue, answer 202) and
handles that queue in the same app; ``wrk`` posts orders for ``--duration`` seconds, against one
process and against ``--processes 2``, alternating; then the bench waits until the queue is
empty. It reports requests per second and the end-to-end rate (requests / (wrk's time + the
drain)), and the ratio of two processes to one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.children import FRAMEWORK, free_port, run_wrk, serve, tree_cpu_seconds
from bench.orders import Order, make_orders
from framework import App

WARMUP_MESSAGES = 1_000
WRK_WARMUP = 1  # seconds of wrk before each measured gateway run (0: none)
STALL = 60.0  # the queue did not shrink for this long: the round has failed
QUEUE = os.environ.get("BENCH_QUEUE", "bench")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "10"))
BATCH = 10  # the raw claim's LIMIT, as the runtime's receive asks for at most 10


# --- the framework side's apps ----------------------------------------------------------------


def framework_app() -> App:
    """The workers: ``framework run bench.sqlite:app --workers-only``."""
    app = App("bench")

    @app.on_queue(QUEUE, concurrency=CONCURRENCY)
    async def handle(order: Order) -> None:
        pass  # validated into the model by the runtime; deleted when this returns

    return app


def web_app() -> App:
    """Gateway + workers: ``POST /orders`` queues the order, a handler of the same app takes it."""
    app = App("bench")

    @app.route("/orders", methods=["POST"], status_code=202)
    async def create(order: Order) -> dict[str, int]:
        await app.send(QUEUE, order)
        return {"id": order.id}

    @app.on_queue(QUEUE, concurrency=CONCURRENCY)
    async def handle(order: Order) -> None:
        pass

    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return framework_app()
    if name == "web":
        return web_app()
    raise AttributeError(name)


# --- the raw side -----------------------------------------------------------------------------

RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_deadline ON jobs (queue, visible_at, seq);
"""
RAW_CLAIM = """
UPDATE jobs SET visible_at = :until, receive_count = receive_count + 1,
    receipt = seq || '.' || :token
WHERE seq IN (
    SELECT seq FROM jobs WHERE queue = :queue AND visible_at <= :now
    ORDER BY visible_at, seq LIMIT :limit
)
RETURNING seq, body, receipt
"""
LEASE = 30.0


def raw_connect(path: str) -> sqlite3.Connection:
    """The raw side's connection: WAL, ``synchronous=NORMAL`` and a busy timeout, as the backend."""
    db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(RAW_SCHEMA)
    return db


def raw_insert(db: sqlite3.Connection, body: bytes) -> None:
    """One message, in one committed transaction."""
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT INTO jobs (queue, body, visible_at) VALUES (?, ?, ?)", (QUEUE, body, time.time())
    )
    db.execute("COMMIT")


def raw_consumer(path: str) -> None:
    """The raw side's consumer process (``python -m bench.sqlite --raw-consumer FILE``).

    ``BENCH_RAW_BATCHED=1``: one transaction deletes the claimed batch, after its validation.
    """
    db = raw_connect(path)
    batched = os.environ.get("BENCH_RAW_BATCHED") == "1"
    token = 0
    while True:
        token += 1
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        rows = db.execute(
            RAW_CLAIM,
            {"until": now + LEASE, "token": token, "queue": QUEUE, "now": now, "limit": BATCH},
        ).fetchall()
        db.execute("COMMIT")
        if not rows:
            time.sleep(0.001)
            continue
        if batched:
            for _seq, body, _receipt in sorted(rows):
                Order.model_validate_json(body)
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "DELETE FROM jobs WHERE seq = ? AND receipt = ?", [(r[0], r[2]) for r in rows]
            )
            db.execute("COMMIT")
            continue
        for _seq, body, receipt in sorted(rows):
            Order.model_validate_json(body)
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM jobs WHERE seq = ? AND receipt = ?", (_seq, receipt))
            db.execute("COMMIT")


# --- timing -----------------------------------------------------------------------------------


class Emptiness:
    """Looks at the file from a connection of its own: is the queue empty yet?"""

    def __init__(self, path: str, sql: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self.sql = sql

    def empty(self) -> bool:
        return not self.db.execute(self.sql, (QUEUE,)).fetchone()[0]

    async def wait(self, sent: asyncio.Future[None] | asyncio.Task[None]) -> float:
        """Wait until ``sent`` is done and the queue is empty; return when (monotonic)."""
        last, since = -1, time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            if sent.done():
                sent.result()  # raises what the sender raised
                if self.empty():
                    return time.monotonic()
            depth = self.db.execute(self.depth_sql, (QUEUE,)).fetchone()[0]
            if depth != last:
                last, since = depth, time.monotonic()
            elif time.monotonic() - since > STALL:
                raise RuntimeError(f"the queue stayed at {depth} messages for {STALL:.0f} s")

    @property
    def depth_sql(self) -> str:
        table = "jobs" if "jobs" in self.sql else "messages"
        return f"SELECT COUNT(*) FROM {table} WHERE queue = ?"

    def close(self) -> None:
        self.db.close()


FRAMEWORK_EMPTY = "SELECT EXISTS (SELECT 1 FROM messages WHERE queue = ?)"
RAW_EMPTY = "SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = ?)"


@dataclass(frozen=True)
class Setup:
    concurrency: int
    window: int
    directory: str


@dataclass
class Measurement:
    rate: float  # messages/s
    sender_cpu_us: float  # CPU per message of the bench's process (the sender), µs
    consumer_cpu_us: float  # CPU per message of the consumer's processes, µs


class Timer:
    """Wall time and the CPU time of this process and of the consumer's process tree."""

    def __init__(self, consumer: int | None) -> None:
        self.consumer = consumer

    def start(self) -> float:
        gc.collect()
        self.cpu = time.process_time()
        self.child = tree_cpu_seconds(self.consumer) if self.consumer else 0.0
        self.wall = time.monotonic()
        return self.wall

    def stop(self, done: float, count: int) -> Measurement:
        cpu = time.process_time() - self.cpu
        child = tree_cpu_seconds(self.consumer) - self.child if self.consumer else float("nan")
        return Measurement(count / (done - self.wall), cpu / count * 1e6, child / count * 1e6)


Round = Callable[[Setup, Sequence[Order]], Awaitable[Measurement]]


async def send_windowed(
    send: Callable[[Order], Awaitable[object]], orders: Sequence[Order], window: int
) -> None:
    """Send every order with at most ``window`` sends in flight."""
    for start in range(0, len(orders), window):
        await asyncio.gather(*(send(order) for order in orders[start : start + window]))


def fresh_file(setup: Setup, side: str) -> str:
    return os.path.join(setup.directory, f"{side}-{uuid.uuid4().hex[:8]}.db")


def framework_command(url: str, processes: int) -> list[str]:
    command = [*FRAMEWORK, "run", "bench.sqlite:app", "--backend", url, "--workers-only"]
    if processes > 1:
        command += ["--processes", str(processes)]
    return [*command, "--log-level", "warning"]


def child_env(setup: Setup) -> dict[str, str]:
    return {"BENCH_QUEUE": QUEUE, "BENCH_CONCURRENCY": str(setup.concurrency)}


async def framework_round(setup: Setup, orders: Sequence[Order], processes: int = 1) -> Measurement:
    """``app.send`` here, ``framework run --workers-only`` (``processes`` of them) handles."""
    path = fresh_file(setup, f"framework{processes}")
    url = f"sqlite:///{path}"
    app = App("bench")

    @app.on_queue(QUEUE, concurrency=setup.concurrency)
    async def unused(order: Order) -> None:  # declares the queue as the workers' app does
        raise AssertionError("the bench's process runs no workers")

    async with app.run(url, workers=False) as runtime:
        watch = Emptiness(path, FRAMEWORK_EMPTY)
        try:
            with serve(framework_command(url, processes), None, env=child_env(setup)) as child:
                warm = orders[: min(WARMUP_MESSAGES, len(orders))]
                sending = asyncio.ensure_future(
                    send_windowed(lambda o: app.send(QUEUE, o), warm, setup.window)
                )
                await watch.wait(sending)
                timer = Timer(child.pid)
                timer.start()
                sending = asyncio.ensure_future(
                    send_windowed(lambda o: app.send(QUEUE, o), orders, setup.window)
                )
                measured = timer.stop(await watch.wait(sending), len(orders))
        finally:
            watch.close()
        stats = await runtime.stats()
    left = {name: s for name, s in stats.items() if s.depth or s.in_flight or s.dead_letters}
    if left:
        raise RuntimeError(f"framework round left messages behind: {left}")
    return measured


async def framework2_round(setup: Setup, orders: Sequence[Order]) -> Measurement:
    return await framework_round(setup, orders, processes=2)


async def raw_round(setup: Setup, orders: Sequence[Order], batched: bool = False) -> Measurement:
    """Inserts from a thread here, the hand-written consumer in a child process."""
    path = fresh_file(setup, "raw")
    bodies = [order.model_dump_json().encode() for order in orders]
    db = raw_connect(path)
    watch = Emptiness(path, RAW_EMPTY)

    def insert_all(chunk: Sequence[bytes]) -> None:
        for body in chunk:
            raw_insert(db, body)

    try:
        command = [sys.executable, "-m", "bench.sqlite", "--raw-consumer", path]
        env = {**child_env(setup), "BENCH_RAW_BATCHED": "1" if batched else "0"}
        with serve(command, None, env=env) as child:
            warm = bodies[: min(WARMUP_MESSAGES, len(bodies))]
            await watch.wait(asyncio.ensure_future(asyncio.to_thread(insert_all, warm)))
            timer = Timer(child.pid)
            timer.start()
            done = await watch.wait(asyncio.ensure_future(asyncio.to_thread(insert_all, bodies)))
            measured = timer.stop(done, len(orders))
    finally:
        watch.close()
        db.close()
    return measured


async def raw_batched_round(setup: Setup, orders: Sequence[Order]) -> Measurement:
    return await raw_round(setup, orders, batched=True)


async def memory_round(setup: Setup, orders: Sequence[Order]) -> Measurement:
    """For reference: the same handler on ``memory://``, in this process (bench.memory_backend)."""
    from bench import memory_backend

    await memory_backend.framework_round(orders[:WARMUP_MESSAGES], setup.concurrency)
    cpu = time.process_time()
    rate = await memory_backend.framework_round(orders, setup.concurrency)
    used = (time.process_time() - cpu) / len(orders) * 1e6
    return Measurement(rate, used, 0.0)


SIDES: dict[str, Round] = {
    "framework": framework_round,
    "framework x2": framework2_round,
    "raw": raw_round,
    "raw batched": raw_batched_round,
    "memory": memory_round,
}


# --- gateway + workers ------------------------------------------------------------------------


def wrk_post(url: str, body: str, duration: float, connections: int) -> tuple[int, float, float]:
    """POST ``body`` with wrk; return (requests, seconds, requests per second)."""
    script = (
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = run_wrk(url, script, duration=duration, connections=connections, threads=1)
    match = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", out)
    if match is None:
        raise RuntimeError(f"{url}: wrk reported no duration:\n{out}")
    requests = int(match.group(1))
    seconds = float(match.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(3)]
    return requests, seconds, requests / seconds


@dataclass
class WebRound:
    rps: float
    end_to_end: float  # requests / (wrk's seconds + the time until the queue was empty)


def web_round(
    setup: Setup, processes: int, body: str, duration: float, connections: int
) -> WebRound:
    path = fresh_file(setup, f"web{processes}")
    port = free_port()
    command = [
        *FRAMEWORK, "run", "bench.sqlite:web", "--backend", f"sqlite:///{path}", "--no-smtp",
        "--http-port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    if processes > 1:
        command += ["--processes", str(processes)]
    url = f"http://127.0.0.1:{port}/orders"
    with serve(command, port, env=child_env(setup)):
        if WRK_WARMUP:  # imports, first validations, caches: not measured
            wrk_post(url, body, WRK_WARMUP, connections)
        watch = Emptiness(path, FRAMEWORK_EMPTY)
        try:
            deadline = time.monotonic() + STALL
            while not watch.empty():
                if time.monotonic() > deadline:
                    raise RuntimeError("the warm-up's messages were not handled")
                time.sleep(0.005)
            gc.collect()
            requests, seconds, rps = wrk_post(url, body, duration, connections)
            drained_from = time.monotonic()
            deadline = drained_from + STALL
            while not watch.empty():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{requests} queued orders were not handled in {STALL} s")
                time.sleep(0.001)
            drain = time.monotonic() - drained_from
        finally:
            watch.close()
    return WebRound(rps, requests / (seconds + drain))


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Results:
    messages: int
    message_bytes: float
    concurrency: int
    window: int
    rounds: list[dict[str, Measurement]]
    medians: dict[str, float]
    sender_cpu_us: dict[str, float]
    consumer_cpu_us: dict[str, float]
    web: dict[str, Any] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)


def _line(measured: dict[str, Measurement]) -> str:
    return ", ".join(
        f"{name} {m.rate:,.0f} msg/s (CPU/msg: sender {m.sender_cpu_us:,.0f} µs, "
        f"consumer {m.consumer_cpu_us:,.0f} µs)"
        for name, m in measured.items()
    )


def _ratios(medians: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for mine in ("framework", "framework x2"):
        for other in ("raw", "raw batched", "memory"):
            if mine in medians and other in medians:
                key = f"{mine.replace(' ', '')}/{other.replace(' ', '')}"
                out[key] = medians[mine] / medians[other]
    return out


@contextlib.contextmanager
def scratch() -> Iterator[str]:
    """A folder for the round's database files, on the disk the repository is on."""
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-", dir=Path.cwd()) as directory:
        yield directory


async def measure(args: argparse.Namespace) -> Results:
    orders = make_orders(args.messages)
    # The smoke run leaves out the queue work on two processes (the gateway part has them).
    names = args.only or [n for n in SIDES if not (args.smoke and n == "framework x2")]
    size = statistics.fmean(len(o.model_dump_json().encode()) for o in orders)
    rounds: list[dict[str, Measurement]] = []
    web_rounds: dict[str, list[WebRound]] = {}
    with scratch() as directory:
        setup = Setup(args.concurrency, args.window, directory)
        if not args.json:
            print(
                f"sqlite, {args.messages:,} messages of {size / 1024:.2f} KiB, concurrency "
                f"{args.concurrency}, {args.window} sends in flight, {args.rounds} rounds"
            )
        for number in range(args.rounds):
            turn = number % len(names)
            measured_round = {
                name: await SIDES[name](setup, orders) for name in names[turn:] + names[:turn]
            }
            rounds.append(measured_round)
            if not args.json:
                print(f"round {number + 1}: {_line(measured_round)}")
            if args.gateway:
                body = orders[0].model_dump_json()
                layouts = [1, 2] if number % 2 == 0 else [2, 1]
                for processes in layouts:
                    measured = await asyncio.to_thread(
                        web_round, setup, processes, body, args.duration, args.connections
                    )
                    web_rounds.setdefault(f"processes={processes}", []).append(measured)
                    if not args.json:
                        print(
                            f"  gateway + workers, {processes} process(es): {measured.rps:,.0f} "
                            f"req/s, {measured.end_to_end:,.0f} handled/s end to end"
                        )

    def median(name: str, field: str) -> float:
        return float(statistics.median(getattr(r[name], field) for r in rounds))

    medians = {name: median(name, "rate") for name in names}
    ratios = _ratios(medians)
    web: dict[str, Any] = {}
    for key, runs in web_rounds.items():
        web[key] = {
            "rps": statistics.median(r.rps for r in runs),
            "end_to_end": statistics.median(r.end_to_end for r in runs),
            "rps_runs": [round(r.rps) for r in runs],
        }
    if len(web) == 2:
        ratios["gateway+workers processes 2/1 (req/s)"] = (
            web["processes=2"]["rps"] / web["processes=1"]["rps"]
        )
        ratios["gateway+workers processes 2/1 (end to end)"] = (
            web["processes=2"]["end_to_end"] / web["processes=1"]["end_to_end"]
        )
    return Results(
        messages=args.messages,
        message_bytes=size,
        concurrency=args.concurrency,
        window=args.window,
        rounds=rounds,
        medians=medians,
        sender_cpu_us={name: median(name, "sender_cpu_us") for name in names},
        consumer_cpu_us={name: median(name, "consumer_cpu_us") for name in names},
        web=web,
        ratios=ratios,
        figures={
            **{
                f"{name} msg/s (CPU per message: sender, consumer)": (
                    f"{rate:,.0f} ({median(name, 'sender_cpu_us'):,.0f} µs, "
                    f"{median(name, 'consumer_cpu_us'):,.0f} µs)"
                )
                for name, rate in medians.items()
                if name != "memory"
            },
            **{
                f"{name} msg/s (one process)": f"{rate:,.0f}"
                for name, rate in medians.items()
                if name == "memory"
            },
            **{
                f"gateway+workers, {key.replace('=', ' ')}: req/s, handled/s": (
                    f"{value['rps']:,.0f}, {value['end_to_end']:,.0f}"
                )
                for key, value in web.items()
            },
        },
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--raw-consumer", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--window", type=int, default=10, help="framework sends in flight")
    parser.add_argument("--only", choices=list(SIDES), action="append")
    parser.add_argument("--no-gateway", dest="gateway", action="store_false")
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--smoke", action="store_true", help="1 round of 300 messages")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.raw_consumer:
        with contextlib.suppress(KeyboardInterrupt):
            raw_consumer(args.raw_consumer)
        return
    if args.smoke:  # a check that the bench works, not a measurement
        global WARMUP_MESSAGES, WRK_WARMUP
        WARMUP_MESSAGES, WRK_WARMUP = 100, 0
        args.messages, args.rounds, args.duration = 300, 1, 1
    if args.gateway and shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (or pass --no-gateway)")
    results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(asdict(results)))
        return
    print(
        "medians: "
        + ", ".join(
            f"{name} {rate:,.0f} msg/s (CPU/msg: sender {results.sender_cpu_us[name]:,.0f} µs, "
            f"consumer {results.consumer_cpu_us[name]:,.0f} µs)"
            for name, rate in results.medians.items()
        )
    )
    for name, ratio in results.ratios.items():
        print(f"{name}: {ratio:.2f}")


if __name__ == "__main__":
    main()
