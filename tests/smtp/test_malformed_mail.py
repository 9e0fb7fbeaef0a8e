"""Malformed mail through the real receiver: accepted, never a crash, handled with defects."""

from __future__ import annotations

import email.policy
import time

import pytest

from framework import App, Email
from framework.smtp import parsing
from framework.smtp.parsing import parse
from framework.testing import TestApp

from .conftest import sendmail

HEAD = b"From: a@example.org\r\nTo: support@shop.example\r\nSubject: bad\r\n"

BAD_MAIL = {
    "no boundary": HEAD + b"Content-Type: multipart/mixed\r\n\r\nthe body\r\n",
    "boundary never appears": (
        HEAD + b"Content-Type: multipart/mixed; boundary=ZZ\r\n\r\nthe body\r\n--YY--\r\n"
    ),
    "unterminated multipart": (
        HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: text/plain\r\n\r\nthe body\r\n"
    ),
    "unknown charset": HEAD + b"Content-Type: text/plain; charset=x-klingon\r\n\r\nthe b\xe9dy\r\n",
    "invalid utf-8": HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\nthe body \xff\xfe\r\n",
    "8-bit without 8BITMIME": HEAD + b"X-Note: caf\xe9\r\n\r\nthe body \xe9\r\n",
    "no headers at all": b"the body\r\n",
    "NUL bytes": HEAD + b"X-Nul: a\x00b\r\n\r\nthe body\x00\r\n",
    "broken base64": HEAD + b"Content-Transfer-Encoding: base64\r\n\r\ndGhlIGJv!!ZHk\r\n",
    "broken encoded word": HEAD + b"X-Word: =?utf-8?b?!!!?=\r\n\r\nthe body\r\n",
    "bad date and addresses": (
        b"From: <<<@@@>>>\r\nTo: ,,;;\r\nDate: someday\r\nMessage-ID: <<<>>>\r\n\r\nthe body\r\n"
    ),
    "nested too deep": (
        HEAD
        + b"".join(
            b"Content-Type: multipart/mixed; boundary=B%d\r\n\r\n--B%d\r\n" % (i, i)
            for i in range(2000)
        )
        + b"Content-Type: text/plain\r\n\r\nthe body\r\n"
    ),
}


@pytest.mark.parametrize("raw", list(BAD_MAIL.values()), ids=list(BAD_MAIL))
def test_parse_never_raises_and_keeps_the_body(raw: bytes) -> None:
    """Each malformed mail parses without raising, and its body text is still there."""
    message = parse(raw)
    assert message.text is not None
    assert "the b" in message.text
    assert message.raw == raw


def test_multipart_without_boundary_falls_back_to_the_raw_body() -> None:
    """A multipart mail with no boundary gives its raw body as text and names the defect."""
    message = parse(BAD_MAIL["no boundary"])
    assert message.text == "the body\r\n"
    assert "NoBoundaryInMultipartDefect" in message.defects


def test_mail_of_too_many_parts_keeps_headers_and_names_the_defect() -> None:
    """Past MAX_PARTS parts, headers are read, the body becomes the text, and it is quick."""
    started = time.perf_counter()
    message = parse(BAD_MAIL["nested too deep"])
    assert time.perf_counter() - started < 0.5
    assert message.subject == "bad"
    assert message.defects[0] == "MIME structure: more than 256 parts"


def test_mime_too_deep_for_the_parser_keeps_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even past the parser's recursion limit, headers are read and the body is the text."""
    monkeypatch.setattr(parsing, "MAX_PARTS", 10**6)
    monkeypatch.setattr(parsing, "MAX_HEADER_LINES", 10**6)
    message = parse(BAD_MAIL["nested too deep"])
    assert message.subject == "bad"
    assert message.defects[0] == "MIME structure: RecursionError"


async def test_every_malformed_mail_is_accepted_and_reaches_the_handler() -> None:
    """Sent over SMTP, every malformed mail gets 250 and reaches the handler, parsed."""
    app = App("malformed")
    seen: list[Email] = []

    @app.on_email(["support@shop.example"])
    async def support(message: Email) -> None:
        seen.append(message)

    async with TestApp(app) as t:
        assert t.receiver is not None
        for name, raw in BAD_MAIL.items():
            if name != "nested too deep":  # over MAX_PARTS: refused, see test_mail_limits.py
                assert await sendmail(t.receiver.port, raw) == {}
        await t.drain()
        stats = await t.stats()
    assert len(seen) == len(BAD_MAIL) - 1
    assert all(m.text is not None and "the b" in m.text for m in seen)
    assert stats["email-support"].dead_letters == 0


EQUIVALENT_MAIL = [
    *BAD_MAIL.values(),
    HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
    b'Content-Type: text/plain; charset="ISO-8859-1"\r\nContent-Transfer-Encoding: '
    b"quoted-printable\r\n\r\ncaf=E9\r\n--B\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--B\r\n"
    b"Content-Type: application/pdf; name*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n"
    b'Content-Disposition: attachment; filename="=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--B--\r\n",
    HEAD + b"Content-Type: text/plain; charset=utf-8; format=flowed (a comment)\r\n\r\nhi\r\n",
    HEAD + b"Content-Type: TEXT/PLAIN; CHARSET=UTF-8\r\n\r\nhi\r\n",
    HEAD + b"Content-Type: text/plain; x=" + b"y" * 600 + b"\r\n\r\nlong header, not cached\r\n",
]


@pytest.mark.parametrize("raw", EQUIVALENT_MAIL)
def test_parsing_reads_as_the_modern_policy_does(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy that parses each MIME header value once reads every mail as the plain modern
    policy does: the same fields, parts, attachments and defects, twice in a row (cached)."""
    ours = [parse(raw), parse(raw)]
    monkeypatch.setattr(parsing, "_POLICY", email.policy.default)
    reference = parse(raw)
    assert ours == [reference, reference]
