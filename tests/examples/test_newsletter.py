"""The newsletter example end to end: HTTP in, mail out, mail in through the real receiver."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import anyio
import pytest

from examples import newsletter
from framework import App
from framework.testing import TestApp


@pytest.fixture(autouse=True)
def empty_list() -> Iterator[None]:
    """Start and end each test with no subscriber."""
    newsletter.SUBSCRIBERS.clear()
    yield
    newsletter.SUBSCRIBERS.clear()


@pytest.fixture
def framework_app() -> App:
    """The app the plugin's ``framework_test_app`` fixture runs."""
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


async def test_unsubscribe_by_mail_is_answered_with_a_confirmation(t: TestApp) -> None:
    """A subscriber's mail to unsubscribe@ removes them and is answered automatically."""
    await t.http.post("/subscribe", json={"email": "reader@example.org"})
    await t.send_email(
        to="unsubscribe@news.example", from_="Reader <reader@example.org>", subject="stop"
    )
    await t.drain()
    assert not newsletter.SUBSCRIBERS
    welcome, goodbye = t.outbox
    assert welcome.subject == "Welcome to the newsletter"
    assert goodbye.to == ("reader@example.org",)
    assert goodbye.subject == "You are unsubscribed"


async def test_unsubscribe_from_a_stranger_gets_no_answer(t: TestApp) -> None:
    """Mail from an address that is not subscribed is accepted but never answered."""
    await t.send_email(to="unsubscribe@news.example", from_="forged@victim.example")
    await t.drain()
    assert t.outbox == []


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
