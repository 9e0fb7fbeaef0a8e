"""Outgoing mail over SMTP through aiosmtplib: the transport `app.mail.send` uses with a relay."""

from __future__ import annotations

import logging
import ssl

import aiosmtplib

from framework.exceptions import MailError
from framework.logs import event
from framework.messages import OutgoingMail
from framework.smtp.config import RelayConfig

__all__ = ["SMTPTransport"]

log = logging.getLogger("framework.smtp")


class SMTPTransport:
    """Hands each mail to an SMTP relay, one connection per mail.

    A connection per mail keeps the transport stateless, so a relay that drops idle
    connections or restarts never leaves a broken session behind.

    Args:
        relay: Where to send, how to secure the connection, and the credentials.
    """

    def __init__(self, relay: RelayConfig) -> None:
        self.relay = relay

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.relay.tls == "none":
            return None
        context = ssl.create_default_context(cafile=self.relay.ca_file)
        if not self.relay.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def send_mail(self, mail: OutgoingMail) -> str:
        """Send ``mail`` through the relay; return its Message-ID.

        Raises:
            MailError: If the relay refuses the mail or cannot be reached; the error names the
                relay and the SMTP reply, never the credentials.
        """
        relay = self.relay
        context = self._tls_context()
        try:
            errors, _reply = await aiosmtplib.send(
                mail.message,
                sender=mail.sender,
                recipients=list(mail.recipients),
                hostname=relay.host,
                port=relay.port,
                username=relay.username,
                password=relay.password,
                use_tls=relay.tls == "tls",
                start_tls=relay.tls == "starttls",
                tls_context=context,
                timeout=relay.timeout,
            )
        except aiosmtplib.SMTPException as exc:
            raise MailError(
                f"the mail relay {relay.host}:{relay.port} refused {mail.message_id}: {exc}"
            ) from None
        except OSError as exc:
            raise MailError(
                f"cannot reach the mail relay {relay.host}:{relay.port}: {exc.strerror or exc}"
            ) from None
        event(
            log,
            logging.INFO,
            "mail.sent",
            relay=f"{relay.host}:{relay.port}",
            message_id=mail.message_id,
            recipients=len(mail.recipients) - len(errors),
            refused=sorted(errors),
        )
        return mail.message_id
