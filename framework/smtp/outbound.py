"""Outgoing mail: ``app.mail.send`` renders a message and hands it to the backend's transport."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.to_thread

from framework.exceptions import MailError
from framework.messages import OutgoingMail

if TYPE_CHECKING:
    from framework.smtp.config import RelayConfig
    from framework.smtp.transport import SMTPTransport

__all__ = ["MailTransport", "Mailer", "default_sender"]

# One plain ASCII address (RFC 5322 dot-atom local part, a dotted or local domain). Matched with
# fullmatch: '$' would also match before a trailing newline, which ends a header block.
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# Every character the email package treats as a line break, not just CR and LF.
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_PROTECTED = {"from", "to", "cc", "bcc", "subject", "reply-to", "message-id", "date"}


def check_address(address: str) -> str:
    """Return ``address`` if it is one plain mail address; raise MailError otherwise."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise MailError(f"{address!r} is not a valid mail address (one plain user@domain)")
    return address


def _addresses(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [check_address(a) for a in items]


def _no_newlines(name: str, value: str) -> str:
    if not _LINE_BREAKS.isdisjoint(value):
        raise MailError(f"mail header {name!r} contains a line break (header injection refused)")
    return value


def default_sender(app_name: str) -> str:
    """The From address of an app without ``mail_from``: its name as a local part, at localhost."""
    local_part = re.sub(r"[^A-Za-z0-9._-]+", "-", app_name).strip("-.") or "app"
    return f"{local_part}@localhost"


class MailTransport(Protocol):
    """**Protocol**: what hands a rendered mail on (a backend, or the SMTP relay)."""

    async def send_mail(self, mail: OutgoingMail) -> str:
        """Send ``mail``; return its message id."""


class Mailer:
    """Sends mail through an SMTP relay when one is configured, else the running app's backend
    (SES on AWS, the outbox on memory).

    Args:
        transport: Returns what sends mail when there is no relay: the running app's backend
            (called per mail, so a mailer made before the app starts finds it).
        sender: The default From address.
        relay: An SMTP relay, used instead of the backend's transport.
    """

    def __init__(
        self,
        transport: Callable[[], MailTransport],
        *,
        sender: str,
        relay: RelayConfig | None = None,
    ) -> None:
        self._backend = transport
        self.sender = sender
        self.relay = relay
        self._transport: SMTPTransport | None = None

    async def send(
        self,
        to: str | Sequence[str],
        subject: str,
        *,
        text: str | None = None,
        html: str | None = None,
        attachments: Sequence[tuple[str, str, bytes]] = (),
        cc: str | Sequence[str] | None = None,
        bcc: str | Sequence[str] | None = None,
        reply_to: str | Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        sender: str | None = None,
    ) -> str:
        """Send a mail; return its Message-ID.

        Args:
            to: One address or several.
            subject: The subject line (no line breaks).
            text: The plain-text body.
            html: The HTML body (sent as an alternative to ``text``).
            attachments: ``(filename, content type, bytes)`` triples.
            cc: Carbon-copy addresses.
            bcc: Blind-copy addresses: in the envelope, never in the headers.
            reply_to: Reply-To addresses.
            headers: Extra headers; they cannot replace the ones above.
            sender: The From address (default: the app's ``mail_from``).

        Raises:
            MailError: For a bad address, a line break in a header, or no body.
            ConfigError: When the relay's DKIM key cannot be read or used.
        """
        recipients_to = _addresses(to)
        if not recipients_to:
            raise MailError("mail has no recipient")
        cc_list, bcc_list = _addresses(cc), _addresses(bcc)
        from_ = check_address(sender or self.sender)
        if text is None and html is None:
            raise MailError("mail needs text=... or html=...")
        message = EmailMessage()
        message["From"] = from_
        message["To"] = ", ".join(recipients_to)
        if cc_list:
            message["Cc"] = ", ".join(cc_list)
        if reply_to is not None:
            message["Reply-To"] = ", ".join(_addresses(reply_to))
        message["Subject"] = _no_newlines("Subject", subject)
        message["Date"] = formatdate(localtime=False)
        message_id = make_msgid(domain=from_.rpartition("@")[2])
        message["Message-ID"] = message_id
        for name, value in (headers or {}).items():
            if name.lower() in _PROTECTED or not _HEADER_NAME.fullmatch(name):
                raise MailError(f"mail header {name!r} cannot be set through headers=")
            message[name] = _no_newlines(name, value)
        message.set_content(text if text is not None else "")
        if html is not None:
            if text is None:
                message.clear_content()
                message.set_content(html, subtype="html")
            else:
                message.add_alternative(html, subtype="html")
        for filename, content_type, data in attachments:
            maintype, _, subtype = content_type.partition("/")
            message.add_attachment(
                data,
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=_no_newlines("filename", filename),
            )
        rendered = bytes(message)
        if self.relay is not None and self.relay.dkim is not None:
            # Signed as sent: CRLF line endings, so no relay rewrites what the signature covers.
            crlf = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
            rendered = await anyio.to_thread.run_sync(self.relay.dkim.sign, crlf)
        mail = OutgoingMail(
            sender=from_,
            recipients=tuple(recipients_to + cc_list + bcc_list),
            message=rendered,
            message_id=message_id,
        )
        if self.relay is None:
            return await self._backend().send_mail(mail)
        if self._transport is None:
            # Imported here so that ``import framework`` does not load aiosmtplib.
            from framework.smtp.transport import SMTPTransport

            self._transport = SMTPTransport(self.relay)
        return await self._transport.send_mail(mail)
