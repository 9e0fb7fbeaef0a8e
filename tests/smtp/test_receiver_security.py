"""STARTTLS and AUTH on the receiver, with smtplib over loopback; secrets never logged."""

from __future__ import annotations

import base64
import logging
import smtplib
from pathlib import Path

import pytest

from framework import App, Email
from framework.smtp.config import SMTPConfig
from framework.testing import TestApp

from .conftest import client_tls, in_thread, mail

PASSWORD = "correct-horse-battery"


def secured_app(cert: Path, key: Path, **options: object) -> tuple[App, list[Email]]:
    """An app whose receiver offers STARTTLS and AUTH for robot / PASSWORD."""
    config = SMTPConfig(tls_cert=cert, tls_key=key, auth={"robot": PASSWORD}, **options)  # type: ignore[arg-type]
    app = App("secured", smtp=config)
    seen: list[Email] = []

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None:
        seen.append(message)

    return app, seen


async def test_starttls_then_auth_then_mail_is_accepted(tls_files: tuple[Path, Path]) -> None:
    """STARTTLS is offered; after it, AUTH with the right password lets the mail through."""
    cert, key = tls_files
    app, seen = secured_app(cert, key, auth_required=True)
    async with TestApp(app) as t:
        assert t.receiver is not None

        def secure(client: smtplib.SMTP) -> tuple[bool, bool]:
            client.ehlo()
            offered_tls = client.has_extn("starttls")
            offered_auth_in_clear = client.has_extn("auth")
            client.starttls(context=client_tls(cert))
            client.ehlo()
            client.login("robot", PASSWORD)
            client.sendmail("a@example.org", ["support@shop.example"], mail())
            return offered_tls, offered_auth_in_clear

        offered_tls, offered_auth_in_clear = await in_thread(t.receiver.port, secure)
        await t.drain()
    assert offered_tls
    assert not offered_auth_in_clear  # AUTH only after STARTTLS: no password in clear text
    assert len(seen) == 1


async def test_wrong_password_is_refused_with_535(tls_files: tuple[Path, Path]) -> None:
    """A wrong password gets 535, and mail without AUTH then gets 530."""
    cert, key = tls_files
    app, seen = secured_app(cert, key, auth_required=True)
    async with TestApp(app) as t:
        assert t.receiver is not None

        def wrong(client: smtplib.SMTP) -> tuple[int, int]:
            client.starttls(context=client_tls(cert))
            client.ehlo()
            try:
                client.login("robot", "guess")
            except smtplib.SMTPAuthenticationError as exc:
                auth_code = exc.smtp_code
            code, _ = client.mail("a@example.org")
            return auth_code, code

        auth_code, mail_code = await in_thread(t.receiver.port, wrong)
        await t.drain()
    assert (auth_code, mail_code) == (535, 530)
    assert seen == []


async def test_require_tls_refuses_mail_in_clear_text(tls_files: tuple[Path, Path]) -> None:
    """With require_tls, a client that has not issued STARTTLS cannot start a transaction."""
    cert, key = tls_files
    app, _ = secured_app(cert, key, require_tls=True)
    async with TestApp(app) as t:
        assert t.receiver is not None

        def clear(client: smtplib.SMTP) -> int:
            client.ehlo()
            code, _ = client.mail("a@example.org")
            return code

        code = await in_thread(t.receiver.port, clear)
    assert code == 530


async def test_callable_authenticator_decides(tls_files: tuple[Path, Path]) -> None:
    """A callable auth= gets the user name and password and decides."""
    cert, key = tls_files
    calls: list[str] = []

    def check(username: str, password: str) -> bool:
        calls.append(username)
        return password == "from-vault"

    app = App("cb", smtp=SMTPConfig(tls_cert=cert, tls_key=key, auth=check, auth_required=True))

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None:
        pass

    async with TestApp(app) as t:
        assert t.receiver is not None

        def login(client: smtplib.SMTP) -> None:
            client.starttls(context=client_tls(cert))
            client.login("svc", "from-vault")

        await in_thread(t.receiver.port, login)
    assert calls == ["svc"]


async def test_auth_secrets_never_reach_the_logs(
    tls_files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """At debug level, neither the password nor its base64 form appears in any log record."""
    cert, key = tls_files
    app, _ = secured_app(cert, key)
    caplog.set_level(logging.DEBUG)
    async with TestApp(app) as t:
        assert t.receiver is not None

        # One client per mechanism: smtplib refuses a second AUTH on an authenticated session.
        def login_plain(client: smtplib.SMTP) -> None:
            client.starttls(context=client_tls(cert))
            client.login("robot", PASSWORD)

        def login_login(client: smtplib.SMTP) -> None:
            client.starttls(context=client_tls(cert))
            client.ehlo()
            client.user, client.password = "robot", PASSWORD
            client.auth("LOGIN", client.auth_login)

        await in_thread(t.receiver.port, login_plain)
        await in_thread(t.receiver.port, login_login)
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    plain = base64.b64encode(f"\0robot\0{PASSWORD}".encode()).decode()
    text = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "mail.auth" in text  # the attempt is logged, with the user name
    for secret in (PASSWORD, encoded, plain):
        assert secret not in text
