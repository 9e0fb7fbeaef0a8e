"""Raw RFC 5322 mail to ``Email``, with the standard library's modern policy.

Parsing never raises on malformed mail: whatever can be read reaches the handler, and the
defects the parser noticed are listed in ``Email.defects``.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime

__all__ = ["Attachment", "Email", "Envelope", "parse"]

# Headers carrying the SMTP envelope beside the raw mail on the queue.
MAIL_FROM = "mail-from"
RCPT_TO = "mail-rcpt-to"
PEER = "mail-peer"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a mail."""

    filename: str | None
    content_type: str
    content: bytes

    @property
    def size(self) -> int:
        """The attachment's size in bytes."""
        return len(self.content)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope: who the transaction said it was from and to, and the peer's address."""

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    peer: str = ""


@dataclass(frozen=True, slots=True)
class Email:
    """A received mail, parsed as far as it could be."""

    from_: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    date: datetime | None
    message_id: str | None
    text: str | None
    html: str | None
    headers: Mapping[str, str]
    attachments: tuple[Attachment, ...]
    envelope: Envelope
    raw: bytes = field(repr=False)
    defects: tuple[str, ...] = ()


def _addresses(message: EmailMessage, name: str) -> tuple[str, ...]:
    try:
        values = [str(v) for v in message.get_all(name, [])]
    except Exception:  # a header the parser could not fold into addresses
        return ()
    return tuple(addr for _, addr in getaddresses(values) if addr)


def _text(part: EmailMessage) -> str | None:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    return content if isinstance(content, str) else None


def parse(raw: bytes, envelope: Envelope | None = None) -> Email:
    """Parse raw mail bytes into an ``Email``; malformed parts are skipped, not fatal."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    headers: dict[str, str] = {}
    defects = [type(d).__name__ for d in message.defects]
    for key in message:
        try:
            headers.setdefault(key, str(message[key]))
        except Exception as exc:  # an undecodable header: keep going
            defects.append(f"{key}: {type(exc).__name__}")
    text = html = None
    attachments: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        assert isinstance(part, EmailMessage)
        if part.is_attachment():
            payload = part.get_payload(decode=True)
            attachments.append(
                Attachment(
                    part.get_filename(),
                    part.get_content_type(),
                    payload if isinstance(payload, bytes) else b"",
                )
            )
        elif part.get_content_type() == "text/plain" and text is None:
            text = _text(part)
        elif part.get_content_type() == "text/html" and html is None:
            html = _text(part)
    try:
        date = parsedate_to_datetime(headers["Date"]) if "Date" in headers else None
    except (TypeError, ValueError):
        date = None
    froms = _addresses(message, "From")
    return Email(
        from_=froms[0] if froms else (envelope.mail_from if envelope else ""),
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        reply_to=_addresses(message, "Reply-To"),
        subject=headers.get("Subject", ""),
        date=date,
        message_id=headers.get("Message-ID"),
        text=text,
        html=html,
        headers=headers,
        attachments=tuple(attachments),
        envelope=envelope or Envelope(),
        raw=raw,
        defects=tuple(defects),
    )


def envelope_from_headers(headers: Mapping[str, str]) -> Envelope:
    """Read the SMTP envelope the receiver stored beside the raw mail."""
    rcpt = headers.get(RCPT_TO, "")
    return Envelope(
        mail_from=headers.get(MAIL_FROM, ""),
        rcpt_to=tuple(r for r in rcpt.split(",") if r),
        peer=headers.get(PEER, ""),
    )
