"""The receiver's limits and IP rules, driven by real smtplib clients over loopback."""

from __future__ import annotations

import smtplib

import pytest

from framework import App, Email
from framework.smtp.config import SMTPConfig
from framework.testing import TestApp

from .conftest import in_thread, mail


def support_app(config: SMTPConfig | None = None) -> tuple[App, list[Email]]:
    """An app with one rule for support@shop.example, recording what its handler gets."""
    app = App("limits", smtp=config)
    seen: list[Email] = []

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None:
        seen.append(message)

    return app, seen


async def test_accepted_mail_reaches_the_handler_with_its_envelope() -> None:
    """A mail to a rule's address is answered 250 and handled with the SMTP envelope."""
    app, seen = support_app()
    async with TestApp(app) as t:
        assert t.receiver is not None
        reply = await in_thread(
            t.receiver.port,
            lambda c: c.sendmail("a@example.org", ["Support@Shop.example"], mail()),
        )
        assert reply == {}
        await t.drain()
    [message] = seen
    assert message.subject == "hi"
    assert message.envelope.mail_from == "a@example.org"
    assert message.envelope.rcpt_to == ("Support@Shop.example",)
    assert message.envelope.peer == "127.0.0.1"


async def test_unknown_recipient_is_refused_with_550() -> None:
    """A recipient no rule matches is refused at RCPT with 550, so nothing is relayed."""
    app, seen = support_app()
    async with TestApp(app) as t:
        assert t.receiver is not None

        def refused(client: smtplib.SMTP) -> tuple[int, bytes]:
            client.ehlo()
            client.mail("a@example.org")
            return client.rcpt("victim@elsewhere.example")

        code, text = await in_thread(t.receiver.port, refused)
        await t.drain()
    assert code == 550
    assert b"5.1.1" in text
    assert seen == []


async def test_blocked_address_is_refused_with_554_at_connect() -> None:
    """A peer in a blocked range gets 554 5.7.1 instead of the greeting."""
    app, _ = support_app(SMTPConfig(block=["127.0.0.0/8"]))
    async with TestApp(app) as t:
        assert t.receiver is not None
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            await in_thread(t.receiver.port, lambda c: None)
    assert caught.value.smtp_code == 554
    assert b"5.7.1" in caught.value.smtp_error


async def test_address_outside_the_allow_list_is_refused_with_554() -> None:
    """With an allow list that does not cover loopback, a loopback client is refused."""
    app, _ = support_app(SMTPConfig(allow=["192.0.2.0/24"]))
    async with TestApp(app) as t:
        assert t.receiver is not None
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            await in_thread(t.receiver.port, lambda c: None)
    assert caught.value.smtp_code == 554


async def test_block_list_wins_over_an_allow_list_covering_the_same_peer() -> None:
    """A peer both allowed and blocked is refused."""
    app, _ = support_app(SMTPConfig(allow=["127.0.0.0/8"], block=["127.0.0.1/32"]))
    async with TestApp(app) as t:
        assert t.receiver is not None
        with pytest.raises(smtplib.SMTPConnectError):
            await in_thread(t.receiver.port, lambda c: None)


async def test_allowed_peer_can_send() -> None:
    """A peer inside the allow list is greeted and its mail accepted."""
    app, seen = support_app(SMTPConfig(allow=["127.0.0.0/8"], block=["192.0.2.0/24"]))
    async with TestApp(app) as t:
        await t.send_email(to="support@shop.example", subject="allowed")
        await t.drain()
    assert [m.subject for m in seen] == ["allowed"]


async def test_size_limit_is_advertised_and_enforced_with_552() -> None:
    """SIZE is advertised in EHLO; a bigger message is refused with 552 and never handled."""
    app, seen = support_app(SMTPConfig(max_size=2000))
    async with TestApp(app) as t:
        assert t.receiver is not None

        def oversize(client: smtplib.SMTP) -> tuple[str | None, tuple[int, bytes]]:
            client.ehlo()
            advertised = client.esmtp_features.get("size")
            # Without SIZE= in MAIL FROM the server only finds out during DATA.
            client.mail("a@example.org")
            client.rcpt("support@shop.example")
            return advertised, client.data(mail(body=("x" * 70 + "\r\n") * 60))

        advertised, (code, _) = await in_thread(t.receiver.port, oversize)
        await t.drain()
    assert advertised == "2000"
    assert code == 552
    assert seen == []


async def test_declared_size_over_the_limit_is_refused_at_mail_from() -> None:
    """A client declaring SIZE= above the limit is refused with 552 before sending data."""
    app, _ = support_app(SMTPConfig(max_size=2000))
    async with TestApp(app) as t:
        assert t.receiver is not None
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            await in_thread(
                t.receiver.port,
                lambda c: c.sendmail("a@example.org", ["support@shop.example"], b"x" * 5000),
            )
    assert caught.value.smtp_code == 552


async def test_recipients_past_the_limit_get_452_and_the_rest_is_delivered() -> None:
    """Past max_recipients, RCPT is answered 452 4.5.3; the accepted ones get the mail."""
    app, seen = support_app(SMTPConfig(max_recipients=2))
    async with TestApp(app) as t:
        assert t.receiver is not None

        def many(client: smtplib.SMTP) -> list[tuple[int, bytes]]:
            client.ehlo()
            client.mail("a@example.org")
            replies = [client.rcpt("support@shop.example") for _ in range(3)]
            client.data(mail())
            return replies

        replies = await in_thread(t.receiver.port, many)
        await t.drain()
    assert [code for code, _ in replies] == [250, 250, 452]
    assert replies[2][1] == b"4.5.3 Too many recipients"
    [message] = seen
    assert message.envelope.rcpt_to == ("support@shop.example", "support@shop.example")


async def test_line_over_the_limit_is_refused_with_500() -> None:
    """A message line longer than max_line_length is refused with 500, and not handled."""
    app, seen = support_app(SMTPConfig(max_line_length=200))
    async with TestApp(app) as t:
        assert t.receiver is not None

        def long_line(client: smtplib.SMTP) -> tuple[int, bytes]:
            client.ehlo()
            client.mail("a@example.org")
            client.rcpt("support@shop.example")
            return client.data(mail(body="y" * 500))

        code, text = await in_thread(t.receiver.port, long_line)
        await t.drain()
    assert code == 500
    assert b"too long" in text.lower()
    assert seen == []


async def test_hostname_is_used_in_the_greeting() -> None:
    """The configured hostname opens the greeting and the EHLO answer."""
    app, _ = support_app(SMTPConfig(hostname="mx.shop.example"))
    async with TestApp(app) as t:
        assert t.receiver is not None
        code, text = await in_thread(t.receiver.port, lambda c: c.ehlo())
    assert code == 250
    assert text.startswith(b"mx.shop.example")
