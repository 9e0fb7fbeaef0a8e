"""``app.mail.send`` through an SMTP relay (aiosmtplib) to a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from framework import App
from framework.exceptions import MailError
from framework.smtp.config import RelayConfig
from framework.smtp.parsing import parse
from framework.testing import TestApp


class Relay:
    """A loopback SMTP relay that records what it receives and refuses nobody@ addresses."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.port = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 2.0.0 queued"


def login(user: str, password: str) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator accepting only ``user``/``password``."""

    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    return check


async def serve(relay: Relay, **options: Any) -> asyncio.Server:
    """Serve ``relay`` with aiosmtpd on a free loopback port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(relay, hostname="relay.test", **options), "127.0.0.1", 0
    )
    relay.port = server.sockets[0].getsockname()[1]
    return server


@pytest.fixture
async def plain_relay() -> AsyncIterator[Relay]:
    """A relay without TLS or AUTH."""
    relay = Relay()
    server = await serve(relay)
    yield relay
    server.close()
    await server.wait_closed()


@pytest.fixture
async def secure_relay(tls_files: tuple[Path, Path]) -> AsyncIterator[Relay]:
    """A relay that requires STARTTLS and AUTH (mailer / app-password)."""
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    relay = Relay()
    server = await serve(
        relay,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=login("mailer", "app-password"),
    )
    yield relay
    server.close()
    await server.wait_closed()


async def test_mail_goes_through_a_plain_relay_with_bcc_in_the_envelope_only(
    plain_relay: Relay,
) -> None:
    """With a relay configured, mail goes to it (not the outbox); Bcc is only in the envelope."""
    relay_config = RelayConfig(host="127.0.0.1", port=plain_relay.port, tls="none")
    app = App("news", mail_from="news@news.example", mail_relay=relay_config)
    async with TestApp(app) as t:
        message_id = await app.mail.send(
            "reader@example.org", "Welcome", text="hello", bcc="audit@news.example"
        )
        assert t.outbox == []
    [envelope] = plain_relay.received
    assert envelope.mail_from == "news@news.example"
    assert envelope.rcpt_tos == ["reader@example.org", "audit@news.example"]
    sent = parse(envelope.original_content or b"")
    assert sent.message_id == message_id
    assert sent.subject == "Welcome"
    assert "Bcc" not in sent.headers


async def test_mail_goes_through_starttls_with_credentials(
    secure_relay: Relay, tls_files: tuple[Path, Path]
) -> None:
    """STARTTLS, the certificate verified against ca_file, then AUTH with the credentials."""
    cert, _ = tls_files
    relay_config = RelayConfig.from_url(
        f"smtp+starttls://mailer:app-password@127.0.0.1:{secure_relay.port}?ca_file={cert}"
    )
    app = App("news", mail_from="news@news.example", mail_relay=relay_config)
    async with TestApp(app):
        await app.mail.send("reader@example.org", "Secure", text="over TLS")
    assert len(secure_relay.received) == 1


async def test_wrong_relay_password_is_a_mail_error_without_the_password(
    secure_relay: Relay, tls_files: tuple[Path, Path]
) -> None:
    """A refused login raises MailError naming the relay, never the password."""
    cert, _ = tls_files
    relay_config = RelayConfig(
        host="127.0.0.1",
        port=secure_relay.port,
        username="mailer",
        password="wrong-secret",
        ca_file=str(cert),
    )
    app = App("news", mail_from="news@news.example", mail_relay=relay_config)
    async with TestApp(app):
        with pytest.raises(MailError, match=re.escape(f"127.0.0.1:{secure_relay.port}")) as caught:
            await app.mail.send("reader@example.org", "x", text="x")
    assert "wrong-secret" not in str(caught.value)
    assert secure_relay.received == []


async def test_untrusted_relay_certificate_is_refused(secure_relay: Relay) -> None:
    """Without the relay's CA, certificate verification fails and nothing is sent."""
    relay_config = RelayConfig(
        host="127.0.0.1", port=secure_relay.port, username="mailer", password="app-password"
    )
    app = App("news", mail_from="news@news.example", mail_relay=relay_config)
    async with TestApp(app):
        with pytest.raises(MailError):
            await app.mail.send("reader@example.org", "x", text="x")
    assert secure_relay.received == []


async def test_relay_refusing_every_recipient_is_a_mail_error(plain_relay: Relay) -> None:
    """A relay that refuses all recipients raises MailError with its reply."""
    app = App(
        "news",
        mail_from="news@news.example",
        mail_relay=RelayConfig(host="127.0.0.1", port=plain_relay.port, tls="none"),
    )
    async with TestApp(app):
        with pytest.raises(MailError, match="no such user"):
            await app.mail.send("nobody@example.org", "x", text="x")


async def test_unreachable_relay_is_a_mail_error() -> None:
    """A relay nobody listens on raises MailError naming it."""
    app = App(
        "news",
        mail_from="news@news.example",
        mail_relay=RelayConfig(host="127.0.0.1", port=1, tls="none", timeout=2),
    )
    async with TestApp(app):
        with pytest.raises(MailError, match=re.escape("127.0.0.1:1")):
            await app.mail.send("reader@example.org", "x", text="x")


async def test_without_a_relay_mail_stays_in_the_memory_outbox() -> None:
    """The default, for development and tests: mail is kept in the outbox, not sent."""
    app = App("news", mail_from="news@news.example")
    async with TestApp(app) as t:
        await app.mail.send("reader@example.org", "kept", text="x")
        assert [m.subject for m in t.outbox] == ["kept"]
