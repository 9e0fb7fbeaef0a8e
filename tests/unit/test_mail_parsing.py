"""Tests for framework.smtp.parsing.parse: raw mail to Email, never raising on malformed input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from framework.smtp.parsing import Envelope, envelope_from_headers, parse

PLAIN = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: support@shop.example, Bob <bob@shop.example>\r\n"
    b"Cc: carol@example.org\r\n"
    b"Reply-To: replies@example.org\r\n"
    b"Subject: Where is my order?\r\n"
    b"Date: Wed, 01 May 2024 12:00:00 +0000\r\n"
    b"Message-ID: <abc@example.org>\r\n"
    b"X-Custom: yes\r\n"
    b"\r\n"
    b"Order 42 has not arrived.\r\n"
)

ALTERNATIVE = (
    b"From: alice@example.org\r\n"
    b"To: support@shop.example\r\n"
    b"Subject: both\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="XX"\r\n'
    b"\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"plain version\r\n"
    b"--XX\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>html version</p>\r\n"
    b"--XX--\r\n"
)

WITH_ATTACHMENT = (
    b"From: alice@example.org\r\n"
    b"To: support@shop.example\r\n"
    b"Subject: invoice\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="B"\r\n'
    b"\r\n"
    b"--B\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"see attached\r\n"
    b"--B\r\n"
    b"Content-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK/w==\r\n"
    b"--B\r\n"
    b"Content-Type: text/plain\r\n"
    b'Content-Disposition: attachment; filename="notes.txt"\r\n'
    b"\r\n"
    b"not the body\r\n"
    b"--B--\r\n"
)


def test_plain_mail_is_parsed_into_fields() -> None:
    """A plain mail yields its addresses, subject, date, id, text and headers."""
    mail = parse(PLAIN)
    assert mail.from_ == "alice@example.org"
    assert mail.to == ("support@shop.example", "bob@shop.example")
    assert mail.cc == ("carol@example.org",)
    assert mail.reply_to == ("replies@example.org",)
    assert mail.subject == "Where is my order?"
    assert mail.date == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert mail.message_id == "<abc@example.org>"
    assert mail.text is not None
    assert "Order 42 has not arrived." in mail.text
    assert mail.html is None
    assert mail.headers["X-Custom"] == "yes"
    assert mail.attachments == ()
    assert mail.raw == PLAIN
    assert mail.defects == ()


def test_multipart_alternative_gives_text_and_html() -> None:
    """Both parts of a multipart/alternative mail are read."""
    mail = parse(ALTERNATIVE)
    assert mail.text is not None
    assert "plain version" in mail.text
    assert mail.html is not None
    assert "<p>html version</p>" in mail.html


def test_attachments_are_decoded_and_not_taken_as_the_body() -> None:
    """Attachments keep filename, type and decoded bytes; a text attachment is not the text body."""
    mail = parse(WITH_ATTACHMENT)
    assert mail.text is not None
    assert "see attached" in mail.text
    assert "not the body" not in mail.text
    pdf, notes = mail.attachments
    assert (pdf.filename, pdf.content_type, pdf.content) == (
        "invoice.pdf",
        "application/pdf",
        b"%PDF-1.4\n\xff",
    )
    assert pdf.size == len(pdf.content)
    assert notes.filename == "notes.txt"
    assert notes.content.strip() == b"not the body"


def test_encoded_subject_is_decoded() -> None:
    """An RFC 2047 encoded subject is returned as text."""
    raw = b"From: a@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nx\r\n"
    assert parse(raw).subject == "café"


def test_envelope_is_kept_and_supplies_a_missing_sender() -> None:
    """The SMTP envelope is kept, and its sender stands in for a missing From header."""
    envelope = Envelope(mail_from="bounce@example.org", rcpt_to=("a@shop.example",), peer="1.2.3.4")
    mail = parse(b"Subject: no from\r\n\r\nbody\r\n", envelope)
    assert mail.envelope == envelope
    assert mail.from_ == "bounce@example.org"


def test_envelope_is_read_back_from_queue_headers() -> None:
    """The receiver's envelope headers turn back into an Envelope."""
    headers = {"mail-from": "a@x.org", "mail-rcpt-to": "b@y.org,c@y.org", "mail-peer": "::1"}
    assert envelope_from_headers(headers) == Envelope("a@x.org", ("b@y.org", "c@y.org"), "::1")
    assert envelope_from_headers({}) == Envelope()


def test_mail_without_headers_is_parsed_with_empty_fields() -> None:
    """A mail with no headers at all still parses, with empty sender, recipients and subject."""
    mail = parse(b"\r\njust a body\r\n")
    assert mail.from_ == ""
    assert mail.to == ()
    assert mail.subject == ""
    assert mail.date is None
    assert mail.message_id is None
    assert mail.text is not None
    assert "just a body" in mail.text


def test_body_without_header_separator_is_parsed_and_defect_recorded() -> None:
    """A first line that is not a header is kept as body and the defect is listed."""
    mail = parse(b"this is not a header\r\nsecond line\r\n")
    assert mail.text is not None
    assert "this is not a header" in mail.text
    assert mail.defects


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        pytest.param(
            b'Content-Type: multipart/mixed; boundary="nope"\r\n\r\n--other\r\nhi\r\n--other--\r\n',
            "StartBoundaryNotFoundDefect",
            id="boundary-never-appears",
        ),
        pytest.param(
            b"Content-Type: multipart/alternative\r\n\r\nhello\r\n",
            "NoBoundaryInMultipartDefect",
            id="no-boundary-parameter",
        ),
        pytest.param(
            b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
            b"Content-Type: text/plain\r\n\r\nunterminated\r\n",
            "CloseBoundaryNotFoundDefect",
            id="no-closing-boundary",
        ),
    ],
)
def test_bad_mime_boundary_is_parsed_without_raising(raw: bytes, defect: str) -> None:
    """A broken multipart structure parses, and the parser's defect is listed, not raised."""
    mail = parse(raw)
    assert mail.raw == raw
    assert defect in mail.defects


def test_unterminated_multipart_still_yields_its_text() -> None:
    """A text part before a missing closing boundary still reaches the handler."""
    raw = (
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
        b"Content-Type: text/plain\r\n\r\nunterminated\r\n"
    )
    assert parse(raw).text == "unterminated"


def test_unknown_charset_falls_back_to_utf8_with_replacement() -> None:
    """A text part in a charset Python does not know is decoded as UTF-8, replacing bad bytes."""
    raw = (
        b"From: a@example.org\r\n"
        b'Content-Type: text/plain; charset="x-no-such-charset"\r\n'
        b"\r\n"
        b"caf\xc3\xa9 \xff\r\n"
    )
    mail = parse(raw)
    assert mail.text is not None
    assert mail.text.startswith("café \ufffd")


def test_undecodable_bytes_in_declared_charset_are_replaced() -> None:
    """Bytes invalid in the declared charset do not stop parsing."""
    raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\nbad \xff\xfe bytes\r\n"
    mail = parse(raw)
    assert mail.text is not None
    assert "bad" in mail.text
    assert "bytes" in mail.text


def test_malformed_date_is_none() -> None:
    """A Date header that is not a date gives ``date=None`` instead of an error."""
    mail = parse(b"Date: the day after tomorrow\r\nSubject: s\r\n\r\nx\r\n")
    assert mail.date is None
    assert mail.subject == "s"


def test_malformed_address_header_does_not_raise() -> None:
    """A From header that is not an address gives no sender rather than an error."""
    mail = parse(b"From: <<<@@@>>>\r\nTo: ,,,\r\n\r\nx\r\n")
    assert mail.to == ()
    assert mail.from_ == ""


def test_raw_8bit_header_does_not_raise() -> None:
    """Undeclared 8-bit bytes in a header are tolerated."""
    mail = parse(b"Subject: caf\xe9 \xff\r\nFrom: a@example.org\r\n\r\nx\r\n")
    assert mail.from_ == "a@example.org"
    assert "caf" in mail.subject


def test_broken_base64_attachment_does_not_raise() -> None:
    """An attachment with invalid base64 is kept (possibly empty or partial) without raising."""
    raw = (
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="x.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"!!!not base64@@@\r\n--B--\r\n"
    )
    (attachment,) = parse(raw).attachments
    assert attachment.filename == "x.bin"
    assert isinstance(attachment.content, bytes)
