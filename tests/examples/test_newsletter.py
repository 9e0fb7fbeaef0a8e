"""The newsletter example end to end: HTTP in, mail out, mail in through the real receiver.

Its sender checks (SPF, DKIM, DMARC) ask the test DNS server of ``tests/mailservices.py``,
whose zone has one domain per outcome: ``pass.test`` (SPF and DMARC pass, p=reject),
``spfonly.test`` (SPF passes, no DMARC policy), ``fail.test`` (SPF fails, p=reject) and
``none.test`` (nothing published).
"""

from __future__ import annotations

import dataclasses
import re
import smtplib
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from examples import newsletter
from framework import App
from framework.smtp import SMTPConfig
from framework.testing import TestApp
from tests.mailservices import (
    EICAR,
    GTUBE,
    ClamdService,
    DNSZone,
    SpamdService,
    clamd,
    dkim_key,
    dns_zone,
    spamd,
)

__all__ = ["clamd", "dkim_key", "dns_zone", "spamd"]  # the fixtures, imported for pytest


@pytest.fixture(autouse=True)
def empty_list() -> Iterator[None]:
    """Start and end each test with no subscriber and no pending confirmation."""
    newsletter.SUBSCRIBERS.clear()
    newsletter.PENDING.clear()
    yield
    newsletter.SUBSCRIBERS.clear()
    newsletter.PENDING.clear()


def on_test_dns(zone: DNSZone, **changes: Any) -> SMTPConfig:
    """The example's receiver config, its DNS checks asking the test zone's server."""
    return dataclasses.replace(
        newsletter.SMTP, dns_servers=[zone.host], dns_port=zone.port, dns_timeout=0.5, **changes
    )


@pytest.fixture
def framework_app(dns_zone: DNSZone, monkeypatch: pytest.MonkeyPatch) -> App:
    """The app the plugin's ``framework_test_app`` fixture runs, on the test DNS server."""
    monkeypatch.setattr(newsletter.app, "smtp", on_test_dns(dns_zone))
    return newsletter.app


@pytest.fixture
def t(framework_test_app: TestApp) -> TestApp:
    """The newsletter running in-process, with its SMTP receiver on a free port."""
    return framework_test_app


async def test_subscribe_sends_a_confirmation(t: TestApp) -> None:
    """POST /subscribe adds the address and mails it a welcome with List-Unsubscribe."""
    response = await t.http.post("/subscribe", json={"email": "Reader@Example.org"})
    assert response.status_code == 202
    assert response.json() == {"subscribed": "reader@example.org"}
    [welcome] = t.outbox
    assert welcome.to == ("reader@example.org",)
    assert welcome.from_ == "news@news.example"
    assert welcome.subject == "Welcome to the newsletter"
    assert welcome.headers["List-Unsubscribe"] == "<mailto:unsubscribe@news.example>"


@pytest.mark.parametrize("address", ["not-an-address", "a@b.example\r\nBcc: x@y.example", ""])
async def test_bad_address_is_422_and_nothing_is_sent(t: TestApp, address: str) -> None:
    """An address that is not one plain user@domain is refused, and no mail goes out."""
    response = await t.http.post("/subscribe", json={"email": address})
    assert response.status_code == 422
    assert t.outbox == []


@pytest.mark.parametrize("address", ["reader@pass.test", "reader@spfonly.test"])
async def test_an_authenticated_unsubscribe_is_done_at_once(t: TestApp, address: str) -> None:
    """A request DMARC vouches for (pass.test), or SPF for the From domain itself (spfonly.test,
    no DMARC policy), removes the subscriber and is answered."""
    await t.http.post("/subscribe", json={"email": address})
    await t.send_email(to="unsubscribe@news.example", from_=f"Reader <{address}>", subject="stop")
    await t.drain()
    assert not newsletter.SUBSCRIBERS
    welcome, goodbye = t.outbox
    assert welcome.subject == "Welcome to the newsletter"
    assert goodbye.to == (address,)
    assert goodbye.subject == "You are unsubscribed"


async def test_a_forgery_its_domain_refuses_is_rejected(t: TestApp) -> None:
    """fail.test publishes SPF -all and DMARC p=reject: a mail claiming to come from it from
    here is refused with 550 5.7.1, and the subscriber stays subscribed."""
    await t.http.post("/subscribe", json={"email": "reader@fail.test"})
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await t.send_email(to="unsubscribe@news.example", from_="reader@fail.test")
    assert refused.value.smtp_code == 550
    assert sorted(newsletter.SUBSCRIBERS) == ["reader@fail.test"]
    [welcome] = t.outbox
    assert welcome.subject == "Welcome to the newsletter"


async def test_an_unauthenticated_unsubscribe_needs_the_mailed_link(t: TestApp) -> None:
    """none.test proves nothing: the From header is not believed. The subscriber is mailed a
    link; only following it (GET shows a button, POST unsubscribes, once) takes them off."""
    await t.http.post("/subscribe", json={"email": "reader@none.test"})
    await t.send_email(to="unsubscribe@news.example", from_="reader@none.test", subject="stop")
    await t.drain()
    assert sorted(newsletter.SUBSCRIBERS) == ["reader@none.test"]
    _, confirm = t.outbox
    assert confirm.to == ("reader@none.test",)
    assert confirm.subject == "Confirm to unsubscribe"
    match = re.search(r"http://127\.0\.0\.1:8000(/unsubscribe/\S+)", confirm.text or "")
    assert match is not None
    link = match.group(1)
    page = await t.http.get(link)
    assert page.status_code == 200
    assert 'method="post"' in page.text
    assert sorted(newsletter.SUBSCRIBERS) == ["reader@none.test"]  # GET changes nothing
    done = await t.http.post(link)
    assert done.json() == {"unsubscribed": "reader@none.test"}
    assert not newsletter.SUBSCRIBERS
    assert t.outbox[-1].subject == "You are unsubscribed"
    assert (await t.http.post(link)).status_code == 404


async def test_unsubscribe_from_a_stranger_gets_no_answer(t: TestApp) -> None:
    """Mail from an address that is not subscribed is accepted but never answered."""
    await t.send_email(to="unsubscribe@news.example", from_="forged@none.test")
    await t.drain()
    assert t.outbox == []


async def test_eicar_and_gtube_are_refused(
    dns_zone: DNSZone, clamd: ClamdService, spamd: SpamdService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With clamd and spamd beside it (NEWSLETTER_CLAMD, NEWSLETTER_SPAMD), the example
    refuses the EICAR test virus and the GTUBE test spam with 550 5.7.1."""
    config = on_test_dns(dns_zone, scanners=newsletter.scanners(clamd.address, spamd.address))
    monkeypatch.setattr(newsletter.app, "smtp", config)
    async with TestApp(newsletter.app) as t:
        refusals = []
        for body in (EICAR.decode(), GTUBE.decode()):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                await t.send_email(to="unsubscribe@news.example", from_="a@pass.test", text=body)
            refusals.append(refused.value.smtp_error)
        await t.send_email(to="unsubscribe@news.example", from_="a@pass.test", text="stop")
    assert refusals == [
        b"5.7.1 Message rejected (virus=FAIL)",
        b"5.7.1 Message rejected (spam=FAIL)",
    ]


async def test_other_recipients_are_refused(t: TestApp) -> None:
    """The receiver is no open relay: any other recipient is refused with 550."""
    with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        await t.send_email(to="editor@news.example", from_="reader@example.org")
    assert caught.value.recipients["editor@news.example"][0] == 550


async def test_receiver_uses_the_example_configuration(t: TestApp) -> None:
    """The configured hostname greets clients and SIZE advertises the 1 MiB limit."""
    assert t.receiver is not None
    port = t.receiver.port

    def ehlo() -> tuple[int, bytes, str | None]:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            code, text = client.ehlo()
            return code, text, client.esmtp_features.get("size")

    code, text, size = await anyio.to_thread.run_sync(ehlo)
    assert code == 250
    assert text.startswith(b"mx.news.example")
    assert size == str(1024 * 1024)
