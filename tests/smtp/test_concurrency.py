"""Many concurrent aiosmtplib clients: every accepted mail is handled or dead-lettered."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from framework import App, Email
from framework.messages import Outgoing
from framework.testing import TestApp

CLIENTS = 50
MAILS_PER_CLIENT = 5


async def test_concurrent_clients_lose_no_mail() -> None:
    """50 clients x 5 mails at once: each accepted mail reaches the handler or the DLQ."""
    app = App("busy")
    handled: set[str] = set()

    # One receive: a failing mail goes straight to the dead-letter queue, no clock needed.
    @app.on_email(["inbox@busy.example"], max_receive_count=1, concurrency=16)
    async def inbox(message: Email) -> None:
        if message.subject.endswith("-3"):
            raise RuntimeError("this one fails, to land in the dead-letter queue")
        handled.add(message.subject)

    async with TestApp(app) as t:
        assert t.receiver is not None
        port = t.receiver.port

        async def client(number: int) -> list[str]:
            accepted = []
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=20) as smtp:
                for index in range(MAILS_PER_CLIENT):
                    subject = f"c{number}-{index}"
                    raw = (
                        f"From: c{number}@example.org\r\nTo: inbox@busy.example\r\n"
                        f"Subject: {subject}\r\n\r\nmail {index} of client {number}\r\n"
                    )
                    errors, _ = await smtp.sendmail(
                        f"c{number}@example.org", ["inbox@busy.example"], raw
                    )
                    assert errors == {}
                    accepted.append(subject)
            return accepted

        results = await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        await t.drain()
        stats = await t.stats()
    accepted = {subject for batch in results for subject in batch}
    failing = {s for s in accepted if s.endswith("-3")}
    assert len(accepted) == CLIENTS * MAILS_PER_CLIENT
    assert handled == accepted - failing
    assert stats["email-inbox"].dead_letters == len(failing) == CLIENTS
    assert stats["email-inbox"].depth == stats["email-inbox"].in_flight == 0


async def test_stop_closes_idle_clients_and_refuses_new_ones() -> None:
    """Stopping the receiver closes idle connections; a new connection is then refused."""
    app = App("stopping")

    @app.on_email(["inbox@busy.example"])
    async def inbox(message: Email) -> None:
        pass

    async with TestApp(app) as t:
        assert t.receiver is not None
        port = t.receiver.port
        idle = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5)
        await idle.connect()
        await t.receiver.stop()
        try:
            await idle.noop()
        except aiosmtplib.SMTPServerDisconnected:
            pass
        else:  # pragma: no cover - the assertion below explains the failure
            raise AssertionError("an idle connection survived the receiver's stop")
        fresh = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5)
        try:
            await fresh.connect()
        except aiosmtplib.SMTPConnectError:
            pass
        else:  # pragma: no cover
            await fresh.quit()
            raise AssertionError("the stopped receiver still accepts connections")


async def test_stop_lets_a_mail_being_enqueued_finish_with_250(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mail whose enqueue is under way when the receiver stops still gets its 250."""
    app = App("graceful")

    @app.on_email(["inbox@busy.example"])
    async def inbox(message: Email) -> None:
        pass

    async with TestApp(app, workers=False) as t:
        assert t.receiver is not None
        receiver = t.receiver
        entered, release = asyncio.Event(), asyncio.Event()
        send = t.backend.send

        async def slow_send(queue: str, message: Outgoing) -> str:
            entered.set()
            await release.wait()
            return await send(queue, message)

        monkeypatch.setattr(t.backend, "send", slow_send)
        sending = asyncio.create_task(
            aiosmtplib.send(
                b"Subject: late\r\n\r\nx\r\n",
                sender="a@example.org",
                recipients=["inbox@busy.example"],
                hostname="127.0.0.1",
                port=receiver.port,
                timeout=5,
            )
        )
        await entered.wait()
        stopping = asyncio.create_task(receiver.stop(grace=5))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waiting for the enqueue, not cutting it off
        release.set()
        errors, reply = await sending
        await stopping
        stats = await t.stats()
    assert errors == {}
    assert reply.startswith("2.0.0")
    assert stats["email-inbox"].depth == 1
