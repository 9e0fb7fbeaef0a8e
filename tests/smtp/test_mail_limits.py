"""One mail must not stall the process: every MIME part counts, and big mail parses off the loop."""

from __future__ import annotations

import asyncio
import smtplib
import time
from typing import Any

import pytest

from framework import App, Context, Email
from framework.messages import CONTENT_TYPE, Outgoing
from framework.smtp import parsing
from framework.smtp.parsing import MAIL_FROM, RCPT_TO, parse, too_complex
from framework.testing import TestApp

HEAD = (
    b"From: a@example.org\r\nTo: support@shop.example\r\nSubject: parts\r\n"
    b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
)
# The mail of the report: 40,000 parts, none with a Content-Type header (~400 KB). Before the
# fix only Content-Type headers were counted, so it was parsed in full: seconds on the loop.
MANY_BARE_PARTS = HEAD + b"--B\r\n\r\nx\r\n" * 40_000 + b"--B--\r\n"


def big_but_allowed(parts: int = 250, lines: int = 600) -> bytes:
    """A mail within every limit that still takes the parser a good half second or more."""
    part = (
        b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b'Content-Disposition: attachment; filename="a.txt"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + b"caf=C3=A9 a line of quoted-printable text, long enough to cost something =\r\n"
        * lines
    )
    return HEAD + part * parts + b"--B--\r\n"


def test_parts_without_content_type_count() -> None:
    """Every part counts, headers or not: the 40,000-part mail is over MAX_PARTS, read quickly."""
    assert too_complex(MANY_BARE_PARTS) == f"MIME structure: more than {parsing.MAX_PARTS} parts"
    started = time.perf_counter()
    mail = parse(MANY_BARE_PARTS)
    assert time.perf_counter() - started < 0.5
    assert mail.subject == "parts"
    assert mail.defects[0].startswith("MIME structure: more than")


@pytest.mark.parametrize("newline", [b"\n", b"\r"], ids=["LF", "CR"])
def test_parts_count_whatever_the_line_endings(newline: bytes) -> None:
    """The parser also splits on bare LF and bare CR, and so does the count."""
    raw = MANY_BARE_PARTS.replace(b"\r\n", newline)
    assert too_complex(raw) == f"MIME structure: more than {parsing.MAX_PARTS} parts"
    headers = (b"X-Pad: y" + newline) * 2000
    assert too_complex(b"Subject: s" + newline + headers + newline + b"body") is not None


def test_parts_within_the_limit_are_read() -> None:
    """A mail of 200 bare parts is within limits and parsed in full."""
    raw = HEAD + b"--B\r\n\r\nx\r\n" * 200 + b"--B--\r\n"
    assert too_complex(raw) is None
    assert parse(raw).text == "x"


def test_header_lines_are_bounded() -> None:
    """Thousands of header lines are refused like thousands of parts."""
    raw = b"Subject: s\r\n" + b"X-Pad: y\r\n" * 5000 + b"\r\nbody\r\n"
    reason = too_complex(raw)
    assert reason is not None
    assert "header lines" in reason
    assert too_complex(b"Subject: s\r\n" + b"X-Pad: y\r\n" * 100 + b"\r\nbody\r\n") is None
    # Lines of the body that look like headers are not headers.
    assert too_complex(b"Subject: s\r\n\r\n" + b"Note: y\r\n" * 5000) is None


def test_nesting_is_walked_only_to_max_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts nested deeper than MAX_DEPTH are not walked, and the defect says so."""
    monkeypatch.setattr(parsing, "MAX_DEPTH", 3)
    raw = (
        b"Subject: deep\r\n"
        + b"".join(
            b"Content-Type: multipart/mixed; boundary=B%d\r\n\r\n--B%d\r\n" % (i, i)
            for i in range(6)
        )
        + b"Content-Type: text/plain\r\n\r\nthe body\r\n"
    )
    mail = parse(raw)
    assert mail.text is None
    assert any("nested deeper than 3" in d for d in mail.defects)


def app_with_mail_handler(seen: list[Any]) -> App:
    app = App("limits")

    @app.on_email(["support@shop.example"])
    async def support(message: Email, ctx: Context) -> None:
        seen.append(message)

    @app.on_queue("email-support-dlq")
    async def graveyard(body: bytes, ctx: Context) -> None:
        seen.append(ctx.message.dead_letter)

    @app.route("/ping", methods=["GET"])
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    return app


async def test_receiver_refuses_mail_over_the_part_limit_with_554() -> None:
    """Over SMTP, the 40,000-part mail gets 554 with the reason, and nothing is queued."""
    seen: list[Any] = []
    app = app_with_mail_handler(seen)
    async with TestApp(app) as t:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await t.send_email(to="support@shop.example", raw=MANY_BARE_PARTS)
        await t.drain()
        stats = await t.stats()
    assert refused.value.smtp_code == 554
    assert b"more than 256 parts" in refused.value.smtp_error
    assert seen == []
    assert stats["email-support"].depth == 0


def queued_mail(raw: bytes) -> Outgoing:
    """The mail as the receiver puts it on a rule's queue."""
    return Outgoing(
        body=raw,
        headers={
            CONTENT_TYPE: "message/rfc822",
            MAIL_FROM: "a@example.org",
            RCPT_TO: "support@shop.example",
        },
    )


async def test_queued_mail_over_the_limit_is_dead_lettered_with_the_reason() -> None:
    """Already on the queue, the mail goes to the dead-letter queue at once, not retried."""
    seen: list[Any] = []
    app = app_with_mail_handler(seen)
    async with TestApp(app) as t:
        await t.backend.send("email-support", queued_mail(MANY_BARE_PARTS))
        await t.drain()
    [info] = seen
    assert info.error_type == "MailTooComplex"
    assert "more than 256 parts" in info.error_message
    assert info.receive_count == 1


async def test_loop_keeps_serving_while_a_big_mail_parses() -> None:
    """While a big mail (within limits) is parsed, the loop keeps ticking and HTTP answers.

    A ticker measures the longest gap between its 5 ms sleeps; before the fix the parse ran on
    the loop and the gap was the whole parse (about half a second or more for this mail). The
    bound is half the parse's own time (and at least 0.2 s): a machine loaded enough to stall
    the loop's thread for a moment slows the parse as much, so the bound scales with it, and
    a parse on the loop (a gap as long as the parse) still fails it.
    """
    seen: list[Any] = []
    app = app_with_mail_handler(seen)
    raw = big_but_allowed()
    stall = 0.0
    answered = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal stall
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            stall = max(stall, time.perf_counter() - before - 0.005)

    async with TestApp(app) as t:

        async def client() -> None:
            nonlocal answered
            while not done.is_set():
                response = await t.http.get("/ping")
                assert response.status_code == 200
                answered += 1
                await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(ticker()), asyncio.create_task(client())]
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        await t.backend.send("email-support", queued_mail(raw))
        await t.drain(timeout=30)
        parsed_in = time.perf_counter() - started
        done.set()
        await asyncio.gather(*tasks)
    [mail] = seen
    assert isinstance(mail, Email)
    assert len(mail.attachments) == 250
    bound = max(0.2, parsed_in / 2)
    assert stall < bound, f"the loop stalled {stall:.3f} s while the mail took {parsed_in:.3f} s"
    assert answered >= 5
