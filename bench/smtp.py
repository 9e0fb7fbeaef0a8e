"""Mail throughput: SMTP receiver -> queue -> ``@app.on_email`` handler, against raw aiosmtpd.

Run from the repository root::

    python bench/smtp.py [--messages 2000] [--clients 8] [--rounds 3] [--json]

``--clients`` aiosmtplib connections (eight by default) share ``--messages`` mails of about
2 KiB and send them one after another on their connection, all connections at once. The
**framework** side runs the app with ``app.run("memory://")`` and its ``Receiver`` on a free
loopback port: receipt rules at RCPT, the mail enqueued before the 250, a worker parsing it into
``Email`` and calling the handler, which counts it. The clock stops when the handler has counted
every mail, not when the last 250 arrives. The **raw** side is an aiosmtpd server whose
``handle_DATA`` parses the same bytes with the standard library's modern policy and counts.
Clients, server and handlers share one event loop on both sides. Rounds alternate after a
warm-up; the figure to compare is the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session

from framework import App, Email
from framework.smtp.receiver import Receiver

RECIPIENT = "bench@bench.example"
WARMUP_MESSAGES = 400


def make_mail(index: int) -> bytes:
    """A plain-text mail of about 2 KiB."""
    body = "".join(f"line {n} of mail {index}: the quick brown fox jumps\r\n" for n in range(36))
    return (
        f"From: Sender <sender@example.org>\r\nTo: {RECIPIENT}\r\nSubject: mail {index}\r\n"
        f"Message-ID: <{index}@example.org>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


async def send_all(port: int, mails: list[bytes], clients: int) -> None:
    """Send ``mails`` over ``clients`` connections at once, each sending its share in turn."""

    async def client(share: list[bytes]) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) as smtp:
            for raw in share:
                errors, _ = await smtp.sendmail("sender@example.org", [RECIPIENT], raw)
                assert not errors

    await asyncio.gather(*(client(mails[i::clients]) for i in range(clients)))


async def framework_round(mails: list[bytes], clients: int) -> float:
    """Seconds from the first connection until the handler has counted every mail."""
    app = App("bench-smtp")
    done = asyncio.Event()
    seen = 0

    @app.on_email([RECIPIENT], concurrency=16)
    async def count(mail: Email) -> None:
        nonlocal seen
        seen += 1
        if seen == len(mails):
            done.set()

    async with app.run("memory://") as runtime:
        receiver = Receiver(runtime, port=0)
        port = await receiver.start()
        started = time.perf_counter()
        await send_all(port, mails, clients)
        await done.wait()
        elapsed = time.perf_counter() - started
        await receiver.stop()
        stats = await runtime.stats()
    left = stats["email-count"]
    assert left.depth == left.in_flight == left.dead_letters == 0, left
    return elapsed


class _RawHandler:
    """aiosmtpd's handler: accept every recipient, parse each mail, count it."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen = 0
        self.done = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        message.get_body(("plain",))
        self.seen += 1
        if self.seen == self.expected:
            self.done.set()
        return "250 2.0.0 OK"


async def raw_round(mails: list[bytes], clients: int) -> float:
    """Seconds for raw aiosmtpd to receive and parse every mail."""
    handler = _RawHandler(len(mails))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench", enable_SMTPUTF8=True), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    started = time.perf_counter()
    await send_all(port, mails, clients)
    await handler.done.wait()
    elapsed = time.perf_counter() - started
    server.close()
    await server.wait_closed()
    return elapsed


async def measure(messages: int, clients: int, rounds: int) -> dict[str, Any]:
    """Alternate framework and raw rounds after a warm-up; return rates and their ratio."""
    sides: dict[str, Callable[[list[bytes], int], Awaitable[float]]] = {
        "framework": framework_round,
        "raw": raw_round,
    }
    warmup = [make_mail(i) for i in range(WARMUP_MESSAGES)]
    for run in sides.values():
        await run(warmup, clients)
    mails = [make_mail(i) for i in range(messages)]
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            rates[name].append(messages / await run(mails, clients))
    framework = statistics.median(rates["framework"])
    raw = statistics.median(rates["raw"])
    return {
        "messages": messages,
        "clients": clients,
        "rounds": rounds,
        "framework_msg_per_s": round(framework),
        "raw_msg_per_s": round(raw),
        "ratio": round(framework / raw, 3),
        "framework_rounds": [round(r) for r in rates["framework"]],
        "raw_rounds": [round(r) for r in rates["raw"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = asyncio.run(measure(args.messages, args.clients, args.rounds))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.messages} mails of ~2 KiB over {args.clients} connections, {args.rounds} rounds")
    print(f"framework (receiver -> queue -> handler): {result['framework_msg_per_s']:>8,} msg/s")
    print(f"raw aiosmtpd (parse in handle_DATA):      {result['raw_msg_per_s']:>8,} msg/s")
    rounds = f"{result['framework_rounds']} vs {result['raw_rounds']}"
    print(f"ratio: {result['ratio']:.2f}  (msg/s per round: {rounds})")


if __name__ == "__main__":
    main()
