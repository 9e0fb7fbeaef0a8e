"""The shipped mail checks against the real components: clamd, spamd and a DNS server.

Each test names the component it needs through its fixture (``clamd``, ``spamd``,
``dns_zone``; see ``tests/mailservices.py``): missing, the test skips, or fails in CI
(``FRAMEWORK_TEST_MAIL_SERVICES=1``).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import threading
import time
from email.message import EmailMessage
from typing import Any

import anyio
import pytest

from framework import App, Email
from framework.exceptions import ConfigError
from framework.smtp import RelayConfig, SMTPConfig
from framework.smtp.config import DKIMSigning, SMTPTable
from framework.smtp.parsing import Envelope
from framework.smtp.scanners import (
    Resolver,
    clamav,
    dkim,
    dmarc,
    dnsbl,
    spamassassin,
    spf,
)
from framework.smtp.scanning import Findings, Scanner, Verdict, Verdicts, scan
from framework.testing import TestApp
from tests.mailservices import (
    EICAR,
    GTUBE,
    ClamdService,
    DKIMKey,
    DNSZone,
    SpamdService,
    clamd,
    dkim_key,
    dns_zone,
    spamd,
)

__all__ = ["clamd", "dkim_key", "dns_zone", "spamd"]  # the fixtures, imported for pytest

pytest.importorskip("spf")
pytest.importorskip("dkim")
pytest.importorskip("authheaders")

INBOX = "inbox@shop.example"


def message(
    sender: str = "a@pass.test", body: str = "hello", attachment: bytes | None = None
) -> bytes:
    """A mail from ``sender`` to the inbox, CRLF line endings, optionally with an attachment."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = INBOX
    mail["Subject"] = "test"
    mail.set_content(body)
    if attachment is not None:
        mail.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename="x.com"
        )
    return mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))


def signed(key: DKIMKey, raw: bytes, domain: str = "pass.test") -> bytes:
    """``raw`` DKIM-signed by ``domain`` with selector ``sel``."""
    import dkim as dkimpy

    signature: bytes = dkimpy.sign(raw, b"sel", domain.encode(), key.private)
    return signature + raw


def resolver(zone: DNSZone) -> Resolver:
    """A resolver asking the test zone's server, with a short timeout."""
    return Resolver([zone.host], zone.port, timeout=0.5)


async def verdicts_of(
    scanners: list[Scanner], raw: bytes, mail_from: str, peer: str = "127.0.0.1"
) -> tuple[Verdicts, Findings]:
    """Scan ``raw`` as if received from ``peer`` with MAIL FROM ``mail_from``."""
    findings = Findings(helo="client.example")
    verdicts = await scan(scanners, raw, Envelope(mail_from, (INBOX,), peer), findings=findings)
    return verdicts, findings


def scanned_app(config: SMTPConfig, **rule: Any) -> tuple[App, list[Email]]:
    """An app with one inbox rule (``rule``: its reject_on / drop_on) under ``config``."""
    app = App("secure", smtp=config)
    seen: list[Email] = []

    @app.on_email([INBOX], **rule)
    async def inbox(mail: Email) -> None:
        seen.append(mail)

    @app.route("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    return app, seen


async def send(
    port: int, raw: bytes, sender: str = "a@pass.test", source: str = "127.0.0.1"
) -> None:
    """Send ``raw`` to the inbox from ``source`` (a loopback address) with smtplib."""

    def run() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as client:
            client.sendmail(sender, [INBOX], raw)

    await anyio.to_thread.run_sync(run)


# --- SPF ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "verdict", "result"),
    [
        ("pass.test", Verdict.PASS, "pass"),
        ("fail.test", Verdict.FAIL, "fail"),
        ("softfail.test", Verdict.GRAY, "softfail"),
        ("neutral.test", Verdict.GRAY, "neutral"),
        ("none.test", Verdict.GRAY, "none"),
        ("servfail.test", Verdict.PROCESSING_FAILED, "temperror"),
    ],
)
async def test_spf_verdicts(dns_zone: DNSZone, domain: str, verdict: Verdict, result: str) -> None:
    """pyspf's result for each sender domain of the test zone, as SES's verdict."""
    verdicts, findings = await verdicts_of(
        [spf(resolver=resolver(dns_zone))], message(f"a@{domain}"), f"a@{domain}"
    )
    assert verdicts.spf is verdict
    assert findings.spf.result == result


# --- DKIM -----------------------------------------------------------------------------------


async def test_dkim_pass_and_fail_after_a_body_change(dns_zone: DNSZone, dkim_key: DKIMKey) -> None:
    """A signature whose key is in DNS passes; the same mail with its body changed fails."""
    check = dkim(resolver=resolver(dns_zone))
    good = signed(dkim_key, message(body="pay 10 euros"))
    tampered = good.replace(b"pay 10 euros", b"pay 99 euros")
    assert (await verdicts_of([check], good, "a@pass.test"))[0].dkim is Verdict.PASS
    assert (await verdicts_of([check], tampered, "a@pass.test"))[0].dkim is Verdict.FAIL
    assert (await verdicts_of([check], message(), "a@pass.test"))[0].dkim is Verdict.GRAY


async def test_dkim_with_its_key_server_failing_is_processing_failed(
    dns_zone: DNSZone, dkim_key: DKIMKey
) -> None:
    """A key lookup the DNS server answers with SERVFAIL is PROCESSING_FAILED, not FAIL."""
    raw = signed(dkim_key, message("a@servfail.test"), domain="servfail.test")
    verdicts, _ = await verdicts_of([dkim(resolver=resolver(dns_zone))], raw, "a@servfail.test")
    assert verdicts.dkim is Verdict.PROCESSING_FAILED


# --- DMARC ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "verdict", "policy"),
    [
        ("fail.test", Verdict.FAIL, "reject"),
        ("softfail.test", Verdict.FAIL, "quarantine"),
        ("neutral.test", Verdict.FAIL, "none"),
        ("none.test", Verdict.GRAY, None),
        ("pass.test", Verdict.PASS, None),  # SPF passes, aligned with From
    ],
)
async def test_dmarc_verdict_and_policy(
    dns_zone: DNSZone, domain: str, verdict: Verdict, policy: str | None
) -> None:
    """DMARC's verdict and, on a failure, the From domain's published policy (SES's names)."""
    r = resolver(dns_zone)
    verdicts, _ = await verdicts_of(
        [spf(resolver=r), dkim(resolver=r), dmarc(resolver=r)],
        message(f"a@{domain}"),
        f"a@{domain}",
    )
    assert (verdicts.dmarc, verdicts.dmarc_policy) == (verdict, policy)


async def test_dmarc_passes_on_an_aligned_dkim_signature_alone(
    dns_zone: DNSZone, dkim_key: DKIMKey
) -> None:
    """SPF says nothing for the envelope's domain, but From's domain signed: DMARC passes."""
    r = resolver(dns_zone)
    raw = signed(dkim_key, message("a@pass.test"))
    verdicts, _ = await verdicts_of(
        [spf(resolver=r), dkim(resolver=r), dmarc(resolver=r)], raw, "bounce@none.test"
    )
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc) == (
        Verdict.GRAY,
        Verdict.PASS,
        Verdict.PASS,
    )


async def test_dmarc_fails_when_spf_passes_for_another_domain(dns_zone: DNSZone) -> None:
    """SPF passes for pass.test, but the From header says fail.test: not aligned, FAIL."""
    r = resolver(dns_zone)
    verdicts, _ = await verdicts_of(
        [spf(resolver=r), dmarc(resolver=r)], message("ceo@fail.test"), "a@pass.test"
    )
    assert (verdicts.spf, verdicts.dmarc, verdicts.dmarc_policy) == (
        Verdict.PASS,
        Verdict.FAIL,
        "reject",
    )


# --- through the receiver: the shared resolver, Authentication-Results, actions -------------


def dns_config(zone: DNSZone, **options: Any) -> SMTPConfig:
    """An SMTPConfig whose DNS checks all ask the test zone's server."""
    return SMTPConfig(
        hostname="mx.shop.example",
        dns_servers=[zone.host],
        dns_port=zone.port,
        dns_timeout=0.5,
        **options,
    )


async def test_receiver_adds_authentication_results_and_honours_dmarc_reject(
    dns_zone: DNSZone, dkim_key: DKIMKey
) -> None:
    """With the receiver's resolver set once, SPF/DKIM/DMARC verdicts reach the handler with an
    RFC 8601 header; ``reject_on={"dmarc_policy": ["reject"]}`` refuses a forged From (550)."""
    config = dns_config(
        dns_zone, scanners=[spf(), dkim(), dmarc()], reject_on={"dmarc_policy": ["reject"]}
    )
    app, seen = scanned_app(config)
    async with TestApp(app) as t:
        assert t.receiver is not None
        await send(t.receiver.port, signed(dkim_key, message("a@pass.test")))
        await send(t.receiver.port, message("b@softfail.test"), sender="b@softfail.test")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await send(t.receiver.port, message("ceo@fail.test"), sender="ceo@fail.test")
        await t.drain()
    assert refused.value.smtp_code == 550
    assert b"5.7.1 Message rejected (dmarc_policy=reject)" in refused.value.smtp_error
    good, quarantined = seen
    assert (good.verdicts.spf, good.verdicts.dkim, good.verdicts.dmarc) == (
        Verdict.PASS,
        Verdict.PASS,
        Verdict.PASS,
    )
    results = good.headers["Authentication-Results"]
    assert results.startswith("mx.shop.example;")
    assert "spf=pass" in results
    assert "dkim=pass header.d=pass.test" in results
    assert "dmarc=pass" in results
    assert "header.from=pass.test" in results
    # Quarantine: delivered, with the policy for the handler to act on.
    assert (quarantined.verdicts.dmarc, quarantined.verdicts.dmarc_policy) == (
        Verdict.FAIL,
        "quarantine",
    )
    assert "spf=softfail" in quarantined.headers["Authentication-Results"]


async def test_sender_text_cannot_add_a_header_to_the_stored_mail() -> None:
    """A result value with a line break (sender-controlled, as a DKIM tag; authres quotes only
    some values) stays inside the one Authentication-Results line of the stored mail."""
    from authres import SPFAuthenticationResult

    async def sly(raw: bytes, envelope: Envelope) -> dict[str, str]:
        findings = Findings.current()
        assert findings is not None
        findings.results.append(
            SPFAuthenticationResult(result="fail", smtp_mailfrom="a@x.test\r\nX-Injected: yes")
        )
        return {"spf": "FAIL"}

    app, seen = scanned_app(SMTPConfig(scanners=[sly]))
    async with TestApp(app) as t:
        assert t.receiver is not None
        await send(t.receiver.port, message())
        await t.drain()
    [mail] = seen
    assert "X-Injected" not in mail.headers
    assert "X-Injected: yes" in mail.headers["Authentication-Results"]  # as text, not a header
    assert b"\r\nX-Injected" not in mail.raw


def test_dns_setting_from_pyproject() -> None:
    """``[tool.framework.smtp]`` sets the resolver: servers, port and timeout."""
    table = SMTPTable.read(
        {"dns_servers": ["127.0.0.1"], "dns_port": 5353, "dns_timeout": 0.5}, where="t"
    )
    config = table.build()
    assert config.resolver == Resolver(("127.0.0.1",), 5353, 0.5)
    with pytest.raises(ConfigError, match="dns_servers must be an array of addresses"):
        SMTPTable.read({"dns_servers": [53]}, where="t")
    with pytest.raises(ConfigError, match="not a port"):
        SMTPConfig(dns_port=0)


# --- DNSBL ----------------------------------------------------------------------------------


async def test_a_client_listed_by_a_dnsbl_is_refused_at_connect(
    dns_zone: DNSZone, caplog: pytest.LogCaptureFixture
) -> None:
    """127.0.0.2 (listed by bl.test) gets 554 before the greeting; the zone is only logged."""
    app, seen = scanned_app(dns_config(dns_zone, scanners=[dnsbl(["bl.test"])]))
    async with TestApp(app) as t:
        assert t.receiver is not None
        with (
            caplog.at_level(logging.INFO, "framework.smtp"),
            pytest.raises(smtplib.SMTPConnectError) as refused,
        ):
            await send(t.receiver.port, message(), source="127.0.0.2")
        await send(t.receiver.port, message(), source="127.0.0.1")
        await t.drain()
    assert refused.value.smtp_code == 554
    assert b"bl.test" not in refused.value.smtp_error
    assert len(seen) == 1
    [logged] = [r for r in caplog.records if r.getMessage() == "mail.connection_refused"]
    assert logged.fields == {"peer": "127.0.0.2", "dnsbl": "bl.test"}  # type: ignore[attr-defined]


async def test_a_dnsbl_that_cannot_answer_defers_the_client(dns_zone: DNSZone) -> None:
    """A blocklist whose server fails gets the client a 421 (try later), never a 220."""
    app, _ = scanned_app(dns_config(dns_zone, scanners=[dnsbl(["servfail.test"])]))
    async with TestApp(app) as t:
        assert t.receiver is not None
        with pytest.raises(smtplib.SMTPConnectError) as deferred:
            await send(t.receiver.port, message())
    assert deferred.value.smtp_code == 421


# --- ClamAV ---------------------------------------------------------------------------------


async def test_clamav_finds_eicar_over_tcp_and_the_unix_socket(clamd: ClamdService) -> None:
    """clamd's INSTREAM: EICAR (attached) is FAIL, a clean mail PASS, on both sockets."""
    for address in (clamd.address, f"unix:{clamd.socket}"):
        check = clamav(address, timeout=5)
        infected, findings = await verdicts_of([check], message(attachment=EICAR), "a@x.example")
        assert infected.virus is Verdict.FAIL
        assert findings.details["virus"].startswith("Framework.Test.EICAR")
        assert (await verdicts_of([check], message(), "a@x.example"))[0].virus is Verdict.PASS


async def test_clamav_down_too_slow_or_too_large_is_processing_failed(
    clamd: ClamdService,
) -> None:
    """No clamd, a clamd that never answers, a mail over the size limit: PROCESSING_FAILED."""
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        hanging = f"127.0.0.1:{silent.getsockname()[1]}"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            nobody = f"127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
            started = time.perf_counter()
            for check in (
                clamav(nobody, timeout=1),
                clamav(hanging, timeout=0.3),
                clamav(clamd.address, max_size=100),
            ):
                verdicts, _ = await verdicts_of([check], message(attachment=EICAR), "a@x.example")
                assert verdicts.virus is Verdict.PROCESSING_FAILED, check
            assert time.perf_counter() - started < 2


async def test_eicar_rejected_with_reject_on_and_dropped_with_drop_on(clamd: ClamdService) -> None:
    """Receiver-wide ``reject_on`` refuses EICAR with 550 5.7.1; a rule's ``drop_on`` drops it."""
    rejecting, seen = scanned_app(
        SMTPConfig(scanners=[clamav(clamd.address)], reject_on={"virus": ["FAIL"]})
    )
    async with TestApp(rejecting) as t:
        assert t.receiver is not None
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await send(t.receiver.port, message(attachment=EICAR))
        await send(t.receiver.port, message())
        await t.drain()
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        550,
        b"5.7.1 Message rejected (virus=FAIL)",
    )
    [clean] = seen
    assert clean.verdicts.virus is Verdict.PASS
    assert clean.headers["X-SES-Virus-Verdict"] == "PASS"

    dropping, dropped = scanned_app(
        SMTPConfig(scanners=[clamav(clamd.address)]), drop_on={"virus": ["FAIL"]}
    )
    async with TestApp(dropping) as t:
        assert t.receiver is not None
        await send(t.receiver.port, message(attachment=EICAR))  # 250: the sender is not told
        await t.drain()
    assert dropped == []


async def test_a_scanner_that_hangs_does_not_stall_other_clients(clamd: ClamdService) -> None:
    """While one mail waits on a clamd that never answers, another client is served at once;
    the waiting mail then gets PROCESSING_FAILED and, with reject_on, a 550: never accepted."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        config = SMTPConfig(
            scanners=[clamav(f"127.0.0.1:{silent.getsockname()[1]}", timeout=1)],
            reject_on={"virus": ["PROCESSING_FAILED", "FAIL"]},
        )
        app, seen = scanned_app(config)
        async with TestApp(app) as t:
            assert t.receiver is not None
            port = t.receiver.port
            outcome: list[BaseException] = []

            def slow() -> None:
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                        client.sendmail("a@x.example", [INBOX], message())
                except BaseException as exc:
                    outcome.append(exc)

            waiting = threading.Thread(target=slow)
            waiting.start()
            await asyncio.sleep(0.2)  # the first mail is now at DATA, waiting on "clamd"

            def greet() -> float:
                started = time.perf_counter()
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                    client.ehlo()
                return time.perf_counter() - started

            assert await anyio.to_thread.run_sync(greet) < 0.3
            await anyio.to_thread.run_sync(waiting.join)
            await t.drain()
    [error] = outcome
    assert isinstance(error, smtplib.SMTPDataError)
    assert error.smtp_code == 550
    assert b"virus=PROCESSING_FAILED" in error.smtp_error
    assert seen == []


# --- SpamAssassin ---------------------------------------------------------------------------


async def test_spamassassin_finds_gtube(spamd: SpamdService) -> None:
    """spamd scores GTUBE over its required score (FAIL); a plain mail passes."""
    check = spamassassin(spamd.address, timeout=10)
    spam, findings = await verdicts_of([check], message(body=GTUBE.decode()), "a@x.example")
    assert spam.spam is Verdict.FAIL
    assert findings.details["spam"].startswith("score=1000")
    assert (await verdicts_of([check], message(), "a@x.example"))[0].spam is Verdict.PASS


async def test_spamassassin_down_is_processing_failed() -> None:
    """No spamd at the address: PROCESSING_FAILED, quickly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        check = spamassassin(f"127.0.0.1:{probe.getsockname()[1]}", timeout=1)
        verdicts, _ = await verdicts_of([check], message(), "a@x.example")
    assert verdicts.spam is Verdict.PROCESSING_FAILED


async def test_gtube_rejected_with_reject_on_and_dropped_with_drop_on(
    spamd: SpamdService,
) -> None:
    """A rule's ``reject_on`` refuses GTUBE with 550 5.7.1; the receiver's ``drop_on`` drops it."""
    rejecting, seen = scanned_app(
        SMTPConfig(scanners=[spamassassin(spamd.address)]), reject_on={"spam": ["FAIL"]}
    )
    async with TestApp(rejecting) as t:
        assert t.receiver is not None
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await send(t.receiver.port, message(body=GTUBE.decode()))
        await send(t.receiver.port, message())
        await t.drain()
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        550,
        b"5.7.1 Message rejected (spam=FAIL)",
    )
    assert [m.verdicts.spam for m in seen] == [Verdict.PASS]

    dropping, dropped = scanned_app(
        SMTPConfig(scanners=[spamassassin(spamd.address)], drop_on={"spam": ["FAIL"]})
    )
    async with TestApp(dropping) as t:
        assert t.receiver is not None
        await send(t.receiver.port, message(body=GTUBE.decode()))
        await t.drain()
    assert dropped == []


# --- all of them, and the metrics -----------------------------------------------------------


async def test_a_clean_mail_passes_every_check_and_each_scanner_is_timed(
    dns_zone: DNSZone, dkim_key: DKIMKey, clamd: ClamdService, spamd: SpamdService
) -> None:
    """A signed, clean mail from an authorised address passes all six checks, and /metrics
    has each scanner's run time."""
    # --8<-- [start:all]
    config = dns_config(
        dns_zone,
        scanners=[
            dnsbl(["bl.test"]),
            spf(),
            dkim(),
            dmarc(),
            clamav(clamd.address),
            spamassassin(spamd.address),
        ],
        reject_on={c: ["FAIL", "PROCESSING_FAILED"] for c in ("spam", "virus", "spf", "dkim")},
    )
    # --8<-- [end:all]
    app, seen = scanned_app(config)
    async with TestApp(app) as t:
        assert t.receiver is not None
        await send(t.receiver.port, signed(dkim_key, message()))
        await t.drain()
        metrics = (await t.http.get("/metrics")).text
    [mail] = seen
    assert mail.verdicts == Verdicts(
        spam=Verdict.PASS,
        virus=Verdict.PASS,
        spf=Verdict.PASS,
        dkim=Verdict.PASS,
        dmarc=Verdict.PASS,
    )
    for scanner in ("dnsbl", "spf", "dkim", "dmarc", "clamav", "spamassassin"):
        assert f'framework_mail_scan_duration_seconds_count{{scanner="{scanner}"}} 1.0' in metrics


# --- outbound DKIM --------------------------------------------------------------------------


@pytest.fixture
def key_in_env(dkim_key: DKIMKey, monkeypatch: pytest.MonkeyPatch) -> str:
    """The signing key in the environment variable TEST_DKIM_KEY."""
    monkeypatch.setenv("TEST_DKIM_KEY", dkim_key.private.decode())
    return "TEST_DKIM_KEY"


async def test_outbound_mail_is_dkim_signed_and_verifies_on_receipt(
    dns_zone: DNSZone,
    dkim_key: DKIMKey,
    key_in_env: str,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``RelayConfig(dkim=...)`` signs what ``app.mail.send`` relays; the receiver's ``dkim()``
    verifies it (and DMARC passes on it); the key is in no repr and no log line."""
    receiving, seen = scanned_app(dns_config(dns_zone, scanners=[dkim(), dmarc()]))
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(dkim_key.private)
    async with TestApp(receiving) as t:
        assert t.receiver is not None
        for signing in (
            DKIMSigning(domain="pass.test", selector="sel", key_env=key_in_env),
            DKIMSigning(domain="pass.test", selector="sel", key_file=key_file),
        ):
            # --8<-- [start:signing]
            relay = RelayConfig("127.0.0.1", t.receiver.port, tls="none", dkim=signing)
            # --8<-- [end:signing]
            sender = App("sender", mail_from="news@pass.test", mail_relay=relay)
            with caplog.at_level(logging.DEBUG):
                await sender.mail.send(INBOX, "signed", text="hello\n")
            secret = dkim_key.private.decode().splitlines()[1]
            assert secret not in repr(relay)
            assert secret not in caplog.text
        await t.drain()
    assert [(m.verdicts.dkim, m.verdicts.dmarc) for m in seen] == [
        (Verdict.PASS, Verdict.PASS),
        (Verdict.PASS, Verdict.PASS),
    ]


def test_dkim_signing_needs_one_readable_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing file, an unset variable, or both sources: a ConfigError naming the setting."""
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    for options, match in (
        ({"key_file": "/nonexistent.pem"}, "no file"),
        ({"key_env": "NO_SUCH_KEY"}, "NO_SUCH_KEY is unset"),
        ({}, "exactly one"),
    ):
        with pytest.raises(ConfigError, match=match):
            DKIMSigning(domain="pass.test", selector="sel", **options)
