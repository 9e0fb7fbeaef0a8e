"""Tests for framework.smtp.outbound: ``app.mail.send`` on the memory backend's outbox."""

from __future__ import annotations

import pytest

from framework import App, AppNotRunningError, MailError
from framework.backends.memory import MemoryBackend
from framework.messages import OutgoingMail
from framework.testing import TestApp


@pytest.fixture
def framework_app() -> App:
    """The app under test: ``shop``, sending as ``shop@shop.example``."""
    return App("shop", mail_from="shop@shop.example")


@pytest.fixture
def running(framework_test_app: TestApp) -> TestApp:
    """The app running on memory through the plugin's ``framework_test_app`` fixture."""
    return framework_test_app


def sent(t: TestApp) -> list[OutgoingMail]:
    """Return the raw mails the memory backend captured."""
    assert isinstance(t.backend, MemoryBackend)
    return t.backend.outbox


async def test_plain_mail_reaches_the_outbox(running: TestApp) -> None:
    """A text mail is captured with its sender, recipient, subject and body."""
    message_id = await running.app.mail.send(to="ops@shop.example", subject="hi", text="body")
    (mail,) = running.outbox
    assert mail.from_ == "shop@shop.example"
    assert mail.to == ("ops@shop.example",)
    assert mail.subject == "hi"
    assert mail.text is not None
    assert mail.text.strip() == "body"
    assert mail.html is None
    assert mail.message_id == message_id
    assert message_id.endswith("@shop.example>")


async def test_default_sender_is_app_name_at_localhost() -> None:
    """Without ``mail_from`` the sender is ``NAME@localhost``."""
    async with TestApp(App("shop")) as t:
        await t.app.mail.send(to="a@b.example", subject="s", text="t")
        assert t.outbox[0].from_ == "shop@localhost"


async def test_sender_argument_overrides_the_default(running: TestApp) -> None:
    """``sender=`` sets the From address and the envelope sender."""
    await running.app.mail.send(to="a@b.example", subject="s", text="t", sender="x@shop.example")
    assert running.outbox[0].from_ == "x@shop.example"
    assert sent(running)[0].sender == "x@shop.example"


async def test_html_with_text_is_a_multipart_alternative(running: TestApp) -> None:
    """``text`` and ``html`` together are sent as multipart/alternative with both parts."""
    await running.app.mail.send(to="a@b.example", subject="s", text="plain", html="<b>rich</b>")
    mail = running.outbox[0]
    assert mail.text is not None
    assert "plain" in mail.text
    assert mail.html is not None
    assert "<b>rich</b>" in mail.html
    assert "multipart/alternative" in mail.headers["Content-Type"]


async def test_html_only_mail_has_no_text_part(running: TestApp) -> None:
    """An HTML-only mail is text/html without an empty text part."""
    await running.app.mail.send(to="a@b.example", subject="s", html="<p>only</p>")
    mail = running.outbox[0]
    assert mail.text is None
    assert mail.html is not None
    assert "<p>only</p>" in mail.html


async def test_attachments_are_sent_with_name_type_and_content(running: TestApp) -> None:
    """Attachments arrive with their filename, content type and exact bytes."""
    pdf = b"%PDF-1.4\x00\xff binary"
    await running.app.mail.send(
        to="a@b.example",
        subject="s",
        text="see attached",
        attachments=[("report.pdf", "application/pdf", pdf), ("data.csv", "text/csv", b"a,b\n")],
    )
    mail = running.outbox[0]
    assert [(a.filename, a.content_type, a.content) for a in mail.attachments] == [
        ("report.pdf", "application/pdf", pdf),
        ("data.csv", "text/csv", b"a,b\n"),
    ]
    assert mail.text is not None
    assert "see attached" in mail.text


async def test_bcc_is_in_the_envelope_but_not_in_the_headers(running: TestApp) -> None:
    """Blind copies are recipients of the transaction, never visible in the message."""
    await running.app.mail.send(
        to="a@b.example", subject="s", text="t", cc="c@b.example", bcc=["hidden@b.example"]
    )
    (raw,) = sent(running)
    assert raw.recipients == ("a@b.example", "c@b.example", "hidden@b.example")
    assert b"hidden@b.example" not in raw.message
    mail = running.outbox[0]
    assert "Bcc" not in mail.headers
    assert mail.cc == ("c@b.example",)


async def test_reply_to_and_extra_headers_are_set(running: TestApp) -> None:
    """``reply_to`` and ``headers`` appear in the sent message."""
    await running.app.mail.send(
        to="a@b.example",
        subject="s",
        text="t",
        reply_to="help@shop.example",
        headers={"X-Ticket": "42"},
    )
    mail = running.outbox[0]
    assert mail.reply_to == ("help@shop.example",)
    assert mail.headers["X-Ticket"] == "42"


async def test_several_recipients_are_all_in_to(running: TestApp) -> None:
    """A list of recipients is one To header and each is an envelope recipient."""
    await running.app.mail.send(to=["a@b.example", "c@d.example"], subject="s", text="t")
    assert running.outbox[0].to == ("a@b.example", "c@d.example")
    assert sent(running)[0].recipients == ("a@b.example", "c@d.example")


@pytest.mark.parametrize(
    "subject", ["hi\r\nBcc: victim@evil.example", "hi\nBcc: victim@evil.example", "hi\r"]
)
async def test_line_break_in_subject_is_refused(running: TestApp, subject: str) -> None:
    """A subject with CR or LF is refused as header injection, and nothing is sent."""
    with pytest.raises(MailError, match="'Subject' contains a line break"):
        await running.app.mail.send(to="a@b.example", subject=subject, text="t")
    assert sent(running) == []


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0b"])
async def test_unicode_line_separator_in_subject_is_refused_as_mail_error(
    running: TestApp, separator: str
) -> None:
    """Any character Python's email package treats as a line break is refused as MailError."""
    with pytest.raises(MailError, match="line break"):
        await running.app.mail.send(to="a@b.example", subject=f"hi{separator}x", text="t")


async def test_line_break_in_extra_header_value_is_refused(running: TestApp) -> None:
    """A header value with a line break is refused as header injection."""
    with pytest.raises(MailError, match="'X-Ticket' contains a line break"):
        await running.app.mail.send(
            to="a@b.example",
            subject="s",
            text="t",
            headers={"X-Ticket": "1\r\nBcc: v@evil.example"},
        )
    assert sent(running) == []


@pytest.mark.parametrize("name", ["Bcc", "to", "FROM", "Subject", "Message-ID", "Date"])
async def test_protected_headers_cannot_be_set_through_headers(running: TestApp, name: str) -> None:
    """Headers the mailer sets itself cannot be replaced through ``headers=``, in any case."""
    with pytest.raises(MailError, match="cannot be set through headers="):
        await running.app.mail.send(to="a@b.example", subject="s", text="t", headers={name: "x"})


@pytest.mark.parametrize("name", ["X Ticket", "X-Ticket:", "X-\r\nBcc", ""])
async def test_malformed_header_names_are_refused(running: TestApp, name: str) -> None:
    """Header names with spaces, colons or line breaks are refused."""
    with pytest.raises(MailError, match="cannot be set through headers="):
        await running.app.mail.send(to="a@b.example", subject="s", text="t", headers={name: "x"})


@pytest.mark.parametrize(
    "address",
    [
        "not-an-address",
        "a@b.example, c@d.example",
        "Name <a@b.example>",
        "a@@b.example",
        "a b@c.example",
        "a@b.example\r\nRCPT TO:<v@evil.example>",
        "",
    ],
)
async def test_bad_recipient_address_is_refused(running: TestApp, address: str) -> None:
    """Anything but one plain user@domain address is refused as a recipient."""
    with pytest.raises(MailError, match="is not a valid mail address"):
        await running.app.mail.send(to=address, subject="s", text="t")
    assert sent(running) == []


@pytest.mark.parametrize("field", ["cc", "bcc", "reply_to", "sender"])
async def test_bad_address_in_any_address_field_is_refused(running: TestApp, field: str) -> None:
    """cc, bcc, reply_to and sender are validated like recipients."""
    with pytest.raises(MailError, match="is not a valid mail address"):
        await running.app.mail.send(
            to="a@b.example",
            subject="s",
            text="t",
            **{field: "x@y.example>, v@evil.example"},  # type: ignore[arg-type]
        )


@pytest.mark.parametrize("field", ["to", "cc", "bcc", "sender"])
async def test_address_with_trailing_newline_is_refused(running: TestApp, field: str) -> None:
    """An address ending in a newline is refused rather than ending the header block early."""
    kwargs: dict[str, str] = {"to": "a@b.example", field: "v@b.example\n"}
    with pytest.raises(MailError, match="is not a valid mail address"):
        await running.app.mail.send(subject="s", text="t", **kwargs)  # type: ignore[arg-type]
    assert sent(running) == []


async def test_header_name_with_trailing_newline_is_refused(running: TestApp) -> None:
    """A header name ending in a newline is refused."""
    with pytest.raises(MailError, match="cannot be set through headers="):
        await running.app.mail.send(
            to="a@b.example", subject="s", text="t", headers={"X-Ticket\n": "x"}
        )


async def test_non_ascii_local_part_is_refused(running: TestApp) -> None:
    """An address with a non-ASCII local part is refused, like a non-ASCII domain is."""
    with pytest.raises(MailError, match="is not a valid mail address"):
        await running.app.mail.send(to="zoë@example.com", subject="s", text="t")


async def test_non_ascii_domain_is_refused(running: TestApp) -> None:
    """An internationalised domain is refused as an address (no IDNA encoding is done)."""
    with pytest.raises(MailError, match="is not a valid mail address"):
        await running.app.mail.send(to="a@exämple.com", subject="s", text="t")


async def test_mail_without_recipient_is_refused(running: TestApp) -> None:
    """An empty recipient list is refused."""
    with pytest.raises(MailError, match="no recipient"):
        await running.app.mail.send(to=[], subject="s", text="t")


async def test_mail_without_body_is_refused(running: TestApp) -> None:
    """A mail with neither text nor html is refused."""
    with pytest.raises(MailError, match=r"text=\.\.\. or html=\.\.\."):
        await running.app.mail.send(to="a@b.example", subject="s")


async def test_line_break_in_attachment_filename_is_refused(running: TestApp) -> None:
    """An attachment filename with a line break is refused."""
    with pytest.raises(MailError, match="'filename' contains a line break"):
        await running.app.mail.send(
            to="a@b.example", subject="s", text="t", attachments=[("a\r\nb.txt", "text/plain", b"")]
        )


async def test_mail_on_a_stopped_app_raises_app_not_running() -> None:
    """``app.mail.send`` on an app that is not running raises AppNotRunningError."""
    app = App("shop")
    with pytest.raises(AppNotRunningError):
        await app.mail.send(to="a@b.example", subject="s", text="t")
