"""Mail throughput: ``framework run``'s SMTP receiver -> queue -> handler, against raw aiosmtpd.

Run from the repository root::

    python -m bench.smtp [--messages 2000] [--connections 8] [--processes 2] [--rounds 3] [--json]
    python -m bench.smtp --smoke        # one short round of each, to check the bench works

Both servers run in a child process started the way their users start them, and the mail comes
from ``--processes`` client processes (a pool started once), which share ``--connections``
aiosmtplib connections and ``--messages`` mails of about 2 KiB, each connection sending its share
one mail after another, all at once:

* **framework**: ``framework run bench.smtp:app --backend memory:// --no-http --smtp-port PORT``:
  receipt rules at RCPT, the mail enqueued before the 250, a worker parsing it into ``Email``
  and calling an ``@app.on_email`` handler, which counts it;
* **aiosmtpd**: ``python -m aiosmtpd -n -l 127.0.0.1:PORT -c bench.smtp.RawHandler``, aiosmtpd's
  own command, whose ``handle_DATA`` parses the same bytes with the standard library's modern
  policy (``get_body()`` included) and counts.

The clock runs from the moment the clients start until the handler, in the server's process,
has counted every mail (it writes ``time.monotonic()``, one clock for every process on Linux,
to a file at that count), not until the last 250. Each round starts a fresh server, which first
gets a warm-up of mails that is not timed. Rounds alternate the sides; the figure to compare is
the ratio of the medians.
"""

# No `from __future__ import annotations`: the handler in framework_app is annotated with a
# locally imported Email, which the framework resolves from the annotation object itself.
import argparse
import asyncio
import email
import email.policy
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.children import (
    FRAMEWORK,
    Marks,
    free_port,
    idle_connection_bytes,
    marks_env,
    serve,
    smtp_answered,
    wait_mark,
)

RECIPIENT = "bench@bench.example"
WARMUP_MESSAGES = 200
SIDES = ("framework", "aiosmtpd")


def make_mail(index: int) -> bytes:
    """A plain-text mail of about 2 KiB."""
    body = "".join(f"line {n} of mail {index}: the quick brown fox jumps\r\n" for n in range(36))
    return (
        f"From: Sender <sender@example.org>\r\nTo: {RECIPIENT}\r\nSubject: mail {index}\r\n"
        f"Message-ID: <{index}@example.org>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def framework_app() -> Any:
    """The framework side: one ``@app.on_email`` handler that counts (``bench.smtp:app``)."""
    from framework import App, Email

    app = App("bench-smtp")
    marks = Marks()

    @app.on_email([RECIPIENT], concurrency=16)
    async def count(mail: Email) -> None:
        marks.count()

    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # so that the aiosmtpd side's process never imports the framework
        return framework_app()
    raise AttributeError(name)


class RawHandler:
    """aiosmtpd's handler: accept every recipient, parse each mail, count it."""

    def __init__(self) -> None:
        self.marks = Marks()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        message.get_body(("plain",))
        self.marks.count()
        return "250 2.0.0 OK"


def command(side: str, port: int) -> list[str]:
    """The command line that serves ``side`` on ``port``, as its users would type it."""
    if side == "framework":
        return [
            *FRAMEWORK, "run", "bench.smtp:app", "--backend", "memory://", "--no-http",
            "--smtp-port", str(port), "--log-level", "warning",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
        "-c", "bench.smtp.RawHandler",
    ]  # fmt: skip


def send_share(port: int, first: int, count: int, connections: int) -> int:
    """In a client process: send mails ``first .. first+count`` over ``connections``."""
    import aiosmtplib

    mails = [make_mail(i) for i in range(first, first + count)]

    async def client(share: list[bytes]) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) as smtp:
            for raw in share:
                errors, _ = await smtp.sendmail("sender@example.org", [RECIPIENT], raw)
                if errors:
                    raise RuntimeError(f"refused: {errors}")

    async def run() -> None:
        await asyncio.gather(*(client(mails[i::connections]) for i in range(connections)))

    asyncio.run(run())
    return count


def send_all(pool: ProcessPoolExecutor, port: int, messages: int, connections: int) -> None:
    """Spread ``messages`` and ``connections`` over the pool's processes; wait for every 250."""
    processes = pool._max_workers
    jobs = []
    for p in range(processes):
        count = messages // processes + (1 if p < messages % processes else 0)
        share = connections // processes + (1 if p < connections % processes else 0)
        if count and share:
            first = p * (messages // processes) + min(p, messages % processes)
            jobs.append(pool.submit(send_share, port, first, count, share))
    if sum(job.result() for job in jobs) != messages:
        raise RuntimeError("the clients did not send every mail")


IDLE = 500  # connections left open after EHLO on each fresh server, for its memory per one
GREETED = [(b"", smtp_answered), (b"EHLO client.example.org\r\n", smtp_answered)]


def one_round(
    pool: ProcessPoolExecutor, side: str, messages: int, connections: int, idle: int
) -> tuple[float, float]:
    """Start ``side``, warm it up, time ``messages`` mails until handled.

    Returns:
        Mails per second, and the server's memory per idle connection (greeted, after EHLO),
        measured first on the fresh server.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as marks:
        env = marks_env(marks, WARMUP_MESSAGES, WARMUP_MESSAGES + messages)
        with serve(command(side, port), port, env=env) as process:
            memory = idle_connection_bytes(process.pid, port, GREETED, idle)
            send_all(pool, port, WARMUP_MESSAGES, connections)
            wait_mark(marks, WARMUP_MESSAGES, process)
            started = time.monotonic()
            send_all(pool, port, messages, connections)
            done = wait_mark(marks, WARMUP_MESSAGES + messages, process)
    return messages / (done - started), memory


def measure(
    messages: int, connections: int, processes: int, rounds: int, idle: int = IDLE
) -> dict[str, Any]:
    """Alternate the sides; return the rates, their medians and the ratio."""
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    memory: dict[str, list[float]] = {side: [] for side in SIDES}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        for round_ in range(rounds):
            for side in SIDES[round_ % 2 :] + SIDES[: round_ % 2]:
                rate, size = one_round(pool, side, messages, connections, idle)
                rates[side].append(rate)
                memory[side].append(size)
    framework = statistics.median(rates["framework"])
    raw = statistics.median(rates["aiosmtpd"])
    idle_bytes = {side: round(statistics.median(sizes)) for side, sizes in memory.items()}
    return {
        "figures": {
            **{f"{side} mails/s": f"{statistics.median(rates[side]):,.0f}" for side in SIDES},
            **{
                f"{side} memory per idle connection": f"{size / 1024:.1f} KiB"
                for side, size in idle_bytes.items()
            },
        },
        "idle_bytes_per_connection": idle_bytes,
        "messages": messages,
        "connections": connections,
        "processes": processes,
        "rounds": rounds,
        "framework_msg_per_s": round(framework),
        "aiosmtpd_msg_per_s": round(raw),
        "ratios": {"framework/aiosmtpd": round(framework / raw, 3)},
        "framework_rounds": [round(r) for r in rates["framework"]],
        "aiosmtpd_rounds": [round(r) for r in rates["aiosmtpd"]],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="1 round of 300 mails")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.smoke:
        args.messages, args.rounds = 300, 1
    idle = 50 if args.smoke else IDLE
    result = measure(args.messages, args.connections, args.processes, args.rounds, idle)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.messages} mails of ~2 KiB over {args.connections} connections from "
        f"{args.processes} processes, {args.rounds} rounds"
    )
    print(
        f"framework run (receiver -> queue -> handler): {result['framework_msg_per_s']:>8,} msg/s"
    )
    print(f"aiosmtpd (parse in handle_DATA):             {result['aiosmtpd_msg_per_s']:>8,} msg/s")
    rounds = f"{result['framework_rounds']} vs {result['aiosmtpd_rounds']}"
    print(f"ratio: {result['ratios']['framework/aiosmtpd']:.2f}  (msg/s per round: {rounds})")
    for side, size in result["idle_bytes_per_connection"].items():
        print(f"{side} memory per idle connection: {size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
