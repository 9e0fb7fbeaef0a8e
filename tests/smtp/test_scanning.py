"""Scanning as SES does it: verdicts reach the handler, reject and drop actions, DKIM (dkimpy)."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Mapping

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from framework import App, Email
from framework.exceptions import ConfigError
from framework.smtp import SMTPConfig
from framework.smtp.parsing import Envelope
from framework.smtp.scanners import dkim as dkim_scanner
from framework.smtp.scanning import Verdict, Verdicts, scan
from framework.testing import TestApp

from .conftest import in_thread, mail, sendmail

dkim = pytest.importorskip("dkim")

ENVELOPE = Envelope("a@example.org", ("support@shop.example",), "127.0.0.1")


async def clean(raw: bytes, envelope: Envelope) -> Mapping[str, str]:
    """A spam and virus scanner that passes everything."""
    return {"spam": "PASS", "virus": "PASS"}


# --8<-- [start:scanner]
async def eicar(raw: bytes, envelope: Envelope) -> Mapping[str, str]:
    """A virus scanner that fails mail containing the word EICAR, and spam-fails 'viagra'."""
    return {
        "virus": "FAIL" if b"EICAR" in raw else "PASS",
        "spam": "FAIL" if b"viagra" in raw else "PASS",
    }


# --8<-- [end:scanner]


async def broken(raw: bytes, envelope: Envelope) -> Mapping[str, str]:
    """A scanner that crashes."""
    raise RuntimeError("scanner down")


def test_verdicts_travel_as_a_header_and_back() -> None:
    """Verdicts render to one header value and read back the same; junk stays DISABLED."""
    verdicts = Verdicts(spam=Verdict.PASS, dkim=Verdict.GRAY)
    assert Verdicts.from_header(verdicts.to_header()) == verdicts
    assert Verdicts.from_header("spam=MAYBE;bogus=PASS;;virus") == Verdicts()


async def test_later_scanner_wins_and_a_crash_loses_nothing() -> None:
    """Scanners run in order; one that raises is skipped; a non-verdict is PROCESSING_FAILED."""

    async def odd(raw: bytes, envelope: Envelope) -> Mapping[str, object]:
        return {"spf": "maybe", "colour": "PASS", "virus": Verdict.FAIL}

    verdicts = await scan((clean, broken, odd), b"x", ENVELOPE)  # type: ignore[arg-type]
    assert verdicts == Verdicts(
        spam=Verdict.PASS, virus=Verdict.FAIL, spf=Verdict.PROCESSING_FAILED
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scanners": [clean], "reject_on": {"colour": ["FAIL"]}}, "unknown check 'colour'"),
        ({"scanners": [clean], "drop_on": {"spam": ["NOPE"]}}, "unknown verdict"),
        ({"reject_on": {"virus": ["FAIL"]}}, "give scanners"),
    ],
)
def test_bad_actions_are_refused_when_built(options: dict[str, object], message: str) -> None:
    """An action on an unknown check or verdict, or without a scanner, is a ConfigError."""
    with pytest.raises(ConfigError, match=message):
        SMTPConfig(**options)  # type: ignore[arg-type]


# --8<-- [start:config]
def scanned_app(**options: object) -> tuple[App, list[Email]]:
    """An app whose receiver runs the EICAR scanner, with ``options`` as actions."""
    app = App("scanned", smtp=SMTPConfig(scanners=[eicar], **options))  # type: ignore[arg-type]
    seen: list[Email] = []

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None:
        seen.append(message)

    return app, seen


# --8<-- [end:config]
async def test_verdicts_reach_the_handler() -> None:
    """The handler reads the scanners' verdicts as mail.verdicts; unscanned checks are DISABLED."""
    app, seen = scanned_app()
    async with TestApp(app) as t:
        await t.send_email(to="support@shop.example", text="hello")
        await t.send_email(to="support@shop.example", text="EICAR test")
        await t.drain()
    assert [(m.verdicts.virus, m.verdicts.spam, m.verdicts.dkim) for m in seen] == [
        (Verdict.PASS, Verdict.PASS, Verdict.DISABLED),
        (Verdict.FAIL, Verdict.PASS, Verdict.DISABLED),
    ]


async def test_reject_on_a_verdict_refuses_the_mail_with_550() -> None:
    """With reject_on={'virus': ['FAIL']}, an infected mail gets 550 5.7.1 and is not handled."""
    app, seen = scanned_app(reject_on={"virus": ["FAIL"]})
    async with TestApp(app) as t:
        assert t.receiver is not None
        with pytest.raises(smtplib.SMTPDataError) as caught:
            await sendmail(t.receiver.port, mail(body="EICAR"))
        assert await sendmail(t.receiver.port, mail(body="fine")) == {}
        await t.drain()
    assert caught.value.smtp_code == 550
    assert b"virus=FAIL" in caught.value.smtp_error
    assert len(seen) == 1


async def test_drop_on_a_verdict_accepts_and_delivers_nowhere() -> None:
    """With drop_on={'spam': ['FAIL']}, spam gets 250 but reaches no handler."""
    app, seen = scanned_app(drop_on={"spam": ["FAIL"]})
    async with TestApp(app) as t:
        assert t.receiver is not None
        assert await sendmail(t.receiver.port, mail(body="cheap viagra")) == {}
        await t.drain()
        stats = await t.stats()
    assert seen == []
    assert stats["email-support"].depth == 0


# --- DKIM -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> tuple[bytes, bytes]:
    """An RSA key: the PEM private key, and the DNS TXT record publishing its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def signed(private: bytes, body: str = "hello") -> bytes:
    """A mail signed by sender.example with selector 'sel'."""
    raw = mail(body=body).replace(b"a@example.org", b"a@sender.example")
    signature: bytes = dkim.sign(raw, b"sel", b"sender.example", private)
    return signature + raw


async def test_dkim_verdicts(signing_key: tuple[bytes, bytes]) -> None:
    """PASS when the signature verifies, FAIL when the body changed, GRAY when unsigned."""
    private, record = signing_key
    published = {b"sel._domainkey.sender.example.": record}

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        return published.get(name)

    check = dkim_scanner(dnsfunc=txt)
    good = signed(private)
    tampered = good.replace(b"hello", b"HELLO")
    assert await check(good, ENVELOPE) == {"dkim": Verdict.PASS}
    assert await check(tampered, ENVELOPE) == {"dkim": Verdict.FAIL}
    assert await check(mail(), ENVELOPE) == {"dkim": Verdict.GRAY}


async def test_dkim_lookup_failure_is_processing_failed(signing_key: tuple[bytes, bytes]) -> None:
    """A key lookup that raises (DNS down) gives PROCESSING_FAILED, not FAIL."""
    private, _ = signing_key

    def down(name: bytes, timeout: float = 5) -> bytes | None:
        raise OSError("no route to the resolver")

    check = dkim_scanner(dnsfunc=down)
    assert await check(signed(private), ENVELOPE) == {"dkim": Verdict.PROCESSING_FAILED}


# --8<-- [start:dkim]
async def test_dkim_verdict_reaches_the_handler_through_the_receiver(
    signing_key: tuple[bytes, bytes],
) -> None:
    """A signed mail sent over SMTP reaches the handler with mail.verdicts.dkim == PASS."""
    private, record = signing_key

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name == b"sel._domainkey.sender.example." else None

    app = App("dkim", smtp=SMTPConfig(scanners=[dkim_scanner(dnsfunc=txt)]))
    seen: list[Email] = []

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None:
        seen.append(message)

    async with TestApp(app) as t:
        assert t.receiver is not None
        await in_thread(
            t.receiver.port,
            lambda c: c.sendmail("a@sender.example", ["support@shop.example"], signed(private)),
        )
        await t.drain()
    [message] = seen
    assert message.verdicts.dkim is Verdict.PASS


# --8<-- [end:dkim]
