"""Raw RFC 5322 mail to ``Email``, with the standard library's modern policy (``_Policy``).

Parsing never raises on malformed mail: whatever can be read reaches the handler, and the
defects the parser noticed are listed in ``Email.defects``.
"""

from __future__ import annotations

import asyncio
import codecs
import email
import email.parser
import email.policy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.headerregistry import BaseHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache
from weakref import WeakKeyDictionary

from framework.smtp.scanning import MAIL_FROM, PEER, RCPT_TO, VERDICTS, Envelope, Verdicts

__all__ = [
    "MAIL_FROM",
    "PEER",
    "RCPT_TO",
    "VERDICTS",
    "Attachment",
    "Email",
    "Envelope",
    "parse",
    "parse_off_loop",
    "too_complex",
]

# A line break that folds a header: unfolding removes it and keeps the whitespace after it.
_FOLD = re.compile(r"\r?\n(?=[ \t])")

# The work one mail may cost. The standard library's modern parser spends about a millisecond
# per MIME part (with or without a Content-Type header) and some microseconds per header line;
# ``too_complex`` counts both before anything is parsed, so a crafted mail of thousands of tiny
# parts, or of thousands of headers, is refused at the receiver (554) and dead-lettered if it
# is already on a queue. Nesting deeper than MAX_DEPTH is not walked. Decoding never grows a
# part (base64 and quoted-printable shrink), so the decoded size is bounded by the mail's size,
# which SMTPConfig.max_size and the queue's max_message_size bound.
MAX_PARTS = 256
MAX_DEPTH = 32
MAX_HEADER_LINES = 1000

# A mail this small (and with this few parts) parses in well under a millisecond: on the loop.
# Anything bigger is parsed in a worker thread, at most MAX_CONCURRENT_PARSES at once.
_INLINE_BYTES = 64 * 1024
_INLINE_PARTS = 4
MAX_CONCURRENT_PARSES = 2

_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.IGNORECASE)
_EOL = re.compile(rb"[\r\n]")

# The MIME headers the parser and the reading of each part ask for again and again: the
# feedparser alone reads a part's Content-Type four times, and the modern policy parses the
# header anew each time (about a third of a simple mail's parse). These, when short, are
# parsed once per distinct value and the parsed header reused; header objects are immutable.
_MIME_HEADERS = frozenset(("content-type", "content-transfer-encoding", "content-disposition"))
_CACHED_VALUE = 512  # characters; longer values are parsed each time, as before
_MODERN = email.policy.default


@lru_cache(maxsize=512)
def _mime_header(name: str, value: str) -> BaseHeader:
    header: BaseHeader = _MODERN.header_fetch_parse(name, value)
    return header


class _Policy(EmailPolicy):
    """``email.policy.default``, with each short MIME header value parsed once (above)."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        if (
            len(value) <= _CACHED_VALUE
            and name.lower() in _MIME_HEADERS
            and not hasattr(value, "name")  # a header object already
        ):
            return _mime_header(name, value)
        return super().header_fetch_parse(name, value)  # type: ignore[no-any-return]


_POLICY = _Policy()


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

    @property
    def verdicts(self) -> Verdicts:
        """The scanners' verdicts on this mail: spam, virus, SPF, DKIM, DMARC."""
        return self.envelope.verdicts


def _addresses(values: list[str]) -> tuple[str, ...]:
    if not values:
        return ()
    try:
        return tuple(addr for _, addr in getaddresses(values) if addr)
    except Exception:  # a header the parser could not fold into addresses
        return ()


def _decode(payload: object, charset: str) -> str | None:
    if isinstance(payload, str):
        return payload
    if not isinstance(payload, bytes):
        return None
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # a charset Python does not know: UTF-8 is the likeliest guess
        return payload.decode("utf-8", "replace")


def _content_type(part: EmailMessage) -> tuple[str, str | None]:
    """The part's content type and charset, from one parse of its header.

    ``get_content_type`` and ``get_content_charset`` each parse the header again, and that
    parse is the dearest step of reading a simple mail; this follows their rules in one.
    """
    try:
        header = part.get("content-type")
    except Exception:  # a header even the modern policy cannot parse: take the default
        header = None
    if header is None:
        return part.get_default_type(), None
    content_type = str(header).partition(";")[0].strip().lower()
    if content_type.count("/") != 1:
        return "text/plain", None  # RFC 2045 5.2: an invalid type means text/plain
    charset = getattr(header, "params", {}).get("charset")
    return content_type, str(charset).lower() if charset else None


def _text(part: EmailMessage, charset: str | None, defects: list[str]) -> str | None:
    payload = part.get_payload(decode=True)
    charset = charset or "us-ascii"
    try:
        codecs.lookup(charset)
    except LookupError:
        defects.append(f"unknown charset {charset[:40]!r}")
        charset = "utf-8"
    return _decode(payload, charset)


def _headers(
    message: EmailMessage, defects: list[str]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Every header's first value, decoded, and all raw values by lower-case name."""
    headers: dict[str, str] = {}
    raw_values: dict[str, list[str]] = {}
    for key, value in message.raw_items():
        raw_values.setdefault(key.lower(), []).append(_FOLD.sub("", str(value)))
        if key in headers:
            continue
        if value.isascii() and "=?" not in value:
            # Plain ASCII without encoded words reads the same under the modern policy, and
            # unfolding it here skips the header registry, the dearest step of parsing a mail.
            headers[key] = _FOLD.sub("", value).strip()
            continue
        try:
            header = message[key]
            headers[key] = str(header)
        except Exception as exc:
            # A header the modern policy cannot decode: keep its raw text rather than lose it.
            defects.append(f"{key}: {type(exc).__name__}")
            headers[key] = str(value)
        else:
            defects.extend(f"{key}: {type(d).__name__}" for d in header.defects)
    return headers, raw_values


def _walk(message: EmailMessage, defects: list[str]) -> list[EmailMessage]:
    """Every part, depth first, as ``walk`` would, but not below MAX_DEPTH levels of nesting."""
    found: list[EmailMessage] = []
    stack: list[tuple[EmailMessage, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        found.append(part)
        if not part.is_multipart():
            continue
        if depth >= MAX_DEPTH:
            defects.append(f"MIME structure: nested deeper than {MAX_DEPTH}, not read")
            continue
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend(
                (child, depth + 1)
                for child in reversed(children)
                if isinstance(child, EmailMessage)  # the modern policy makes every part one
            )
    return found


def _body(
    message: EmailMessage, defects: list[str]
) -> tuple[str | None, str | None, list[Attachment]]:
    text = html = None
    attachments: list[Attachment] = []
    for part in _walk(message, defects):
        if part is not message:
            defects.extend(type(d).__name__ for d in part.defects)
        if part.is_multipart():
            continue
        assert isinstance(part, EmailMessage)
        content_type = "unknown"
        try:
            content_type, charset = _content_type(part)
            if part.get_content_disposition() == "attachment":
                payload = part.get_payload(decode=True)
                attachments.append(
                    Attachment(
                        part.get_filename(),
                        content_type,
                        payload if isinstance(payload, bytes) else b"",
                    )
                )
            elif content_type == "text/plain" and text is None:
                text = _text(part, charset, defects)
            elif content_type == "text/html" and html is None:
                html = _text(part, charset, defects)
        except Exception as exc:  # one unreadable part must not hide the others
            defects.append(f"{content_type}: {type(exc).__name__}")
    # A multipart mail whose boundary is missing or never appears: the parser leaves the body
    # as one string, which is the best text there is.
    # (The content type is read last: each read parses the header again.)
    if (
        text is None
        and html is None
        and not message.is_multipart()
        and message.get_content_maintype() == "multipart"
    ):
        text = _decode(message.get_payload(decode=True), "utf-8")
    return text, html, attachments


def _date(headers: Mapping[str, str], defects: list[str]) -> datetime | None:
    if "Date" not in headers:
        return None
    try:
        return parsedate_to_datetime(headers["Date"])
    except (TypeError, ValueError):
        defects.append("Date: unparseable")
        return None


def _build(
    raw: bytes, message: EmailMessage, envelope: Envelope | None, *, headers_only: bool
) -> Email:
    found: list[str] = []
    headers, raw_values = _headers(message, found)
    if headers_only:
        text = _decode(message.get_payload(decode=False), "utf-8")
        html, attachments = None, list[Attachment]()
    else:
        text, html, attachments = _body(message, found)
    # Read last: decoding the body adds to the message's own defects (bad base64, say).
    defects = [type(d).__name__ for d in message.defects] + found
    froms = _addresses(raw_values.get("from", []))
    return Email(
        from_=froms[0] if froms else (envelope.mail_from if envelope else ""),
        to=_addresses(raw_values.get("to", [])),
        cc=_addresses(raw_values.get("cc", [])),
        reply_to=_addresses(raw_values.get("reply-to", [])),
        subject=headers.get("Subject", ""),
        date=_date(headers, defects),
        message_id=headers.get("Message-ID"),
        text=text,
        html=html,
        headers=headers,
        attachments=tuple(attachments),
        envelope=envelope or Envelope(),
        raw=raw,
        defects=tuple(defects),
    )


def _count(raw: bytes) -> tuple[int, int]:
    """The MIME parts and header lines the parser would see, counted without parsing.

    A part starts at each delimiter line of a declared boundary (``--BOUNDARY``; the parser
    splits on nothing else), whether or not it has headers of its own. Header lines are those
    of the top header block and of each part's, continuation lines included. Lines end as the
    parser ends them: CRLF, LF or a lone CR. Only ``find``, short searches and short slices:
    each step is a short C call, so a thread doing this yields the GIL.
    """
    lower = raw.lower()
    boundaries: set[bytes] = set()
    at = lower.find(b"boundary")
    while at != -1:
        match = _BOUNDARY.match(raw, at)
        if match is not None:
            boundaries.add(match.group(1) or match.group(2))
            if len(boundaries) > MAX_PARTS:  # each needs a multipart part of its own
                return len(boundaries), 0
        at = lower.find(b"boundary", at + 8)
    parts, headers = 1, _header_lines(raw, 0, MAX_HEADER_LINES)
    if not boundaries:
        return parts, headers
    # The next "--" at a line start after LF and after CR, each searched again only once used.
    after_lf, after_cr = raw.find(b"\n--"), raw.find(b"\r--")
    at = 0 if raw.startswith(b"--") else _first(after_lf, after_cr)
    while at != -1 and parts <= MAX_PARTS:
        start = at + (2 if at == 0 and raw.startswith(b"--") else 3)
        end, following = _line_end(raw, start)
        rest = raw[start:end].rstrip(b" \t")
        if rest in boundaries:
            parts += 1
            headers += _header_lines(raw, following, MAX_HEADER_LINES - headers)
        if after_lf != -1 and after_lf < end:
            after_lf = raw.find(b"\n--", end)
        if after_cr != -1 and after_cr < end:
            after_cr = raw.find(b"\r--", end)
        at = _first(after_lf, after_cr)
    return parts, headers


def _first(*positions: int) -> int:
    """The smallest of ``positions`` that is not -1, else -1."""
    found = [p for p in positions if p != -1]
    return min(found) if found else -1


def _line_end(raw: bytes, at: int) -> tuple[int, int]:
    """Where the line at ``at`` ends, and where the next one starts."""
    match = _EOL.search(raw, at)
    if match is None:
        return len(raw), len(raw)
    end = match.start()
    return end, end + (2 if raw.startswith(b"\r\n", end) else 1)


def _header_lines(raw: bytes, start: int, budget: int) -> int:
    """Lines of the header block at ``start`` (up to a blank line), counting to ``budget`` + 1."""
    lines, at = 0, start
    while lines <= budget and at < len(raw):
        end, following = _line_end(raw, at)
        if end == at:  # a blank line ends the block
            return lines
        lines += 1
        at = following
    return lines


def too_complex(raw: bytes) -> str | None:
    """Why parsing ``raw`` would cost more than one mail may, or None if it is within limits.

    Cheap (a scan of the lines that start with ``--``), so it runs before any parse: at the
    receiver, whose client then gets a 554, and before a queued mail reaches a handler, which
    dead-letters it rather than retrying.
    """
    parts, headers = _count(raw)
    if parts > MAX_PARTS:
        return f"MIME structure: more than {MAX_PARTS} parts"
    if headers > MAX_HEADER_LINES:
        return f"MIME structure: more than {MAX_HEADER_LINES} header lines"
    return None


def parse(raw: bytes, envelope: Envelope | None = None) -> Email:
    """Parse raw mail bytes into an ``Email``; never raises on malformed mail.

    Unreadable parts are skipped and named in ``Email.defects``. A mail over the limits
    (``too_complex``), or whose MIME structure defeats the parser, has its headers read and
    its whole body as ``text``; failing even that, ``text`` is the raw bytes as UTF-8.
    """
    reason = too_complex(raw)
    if reason is None:
        try:
            message = email.message_from_bytes(raw, policy=_POLICY)
            assert isinstance(message, EmailMessage)
            return _build(raw, message, envelope, headers_only=False)
        except (Exception, RecursionError) as exc:
            reason = f"MIME structure: {type(exc).__name__}"
    try:
        parser = email.parser.BytesParser(policy=_POLICY)
        message = parser.parsebytes(raw, headersonly=True)
        assert isinstance(message, EmailMessage)
        mail = _build(raw, message, envelope, headers_only=True)
        return replace(mail, defects=(reason, *mail.defects))
    except Exception as exc:
        return Email(
            from_=envelope.mail_from if envelope else "",
            to=(),
            cc=(),
            reply_to=(),
            subject="",
            date=None,
            message_id=None,
            text=raw.decode("utf-8", "replace"),
            html=None,
            headers={},
            attachments=(),
            envelope=envelope or Envelope(),
            raw=raw,
            defects=(reason, f"headers: {type(exc).__name__}"),
        )


_limiters: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = WeakKeyDictionary()


async def parse_off_loop(raw: bytes, envelope: Envelope | None = None) -> Email:
    """``parse``, in a worker thread unless the mail is tiny, at most two parses at once.

    The parser is pure Python, so the thread yields the interpreter every few milliseconds
    and the event loop keeps serving HTTP, SMTP and other handlers while a big mail parses.
    """
    # Any "--" may start a part (after LF, CR or CRLF): few of them, few parts.
    if len(raw) <= _INLINE_BYTES and raw.count(b"--") <= _INLINE_PARTS:
        return parse(raw, envelope)
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = asyncio.Semaphore(MAX_CONCURRENT_PARSES)
    async with limiter:
        return await asyncio.to_thread(parse, raw, envelope)


def envelope_from_headers(headers: Mapping[str, str]) -> Envelope:
    """Read the SMTP envelope the receiver stored beside the raw mail."""
    rcpt = headers.get(RCPT_TO, "")
    return Envelope(
        mail_from=headers.get(MAIL_FROM, ""),
        rcpt_to=tuple(r for r in rcpt.split(",") if r),
        peer=headers.get(PEER, ""),
        verdicts=Verdicts.from_header(headers.get(VERDICTS, "")),
    )
