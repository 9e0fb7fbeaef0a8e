"""Outbound mail through SES v2: the rendered message is sent as raw MIME, unchanged."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from framework.exceptions import MailError
from framework.logs import event
from framework.messages import OutgoingMail

from .sqs import error_code

__all__ = ["SESSender"]

log = logging.getLogger("framework.backends.aws")


class SESSender:
    """Sends ``OutgoingMail`` with SES v2 ``SendEmail`` (raw content)."""

    def __init__(self, client: Any, *, configuration_set: str | None = None) -> None:
        self.client = client
        self.configuration_set = configuration_set

    async def send(self, mail: OutgoingMail) -> str:
        """Send ``mail`` to its recipients; return its framework message id.

        The sender must be a verified identity of the account (and, in the SES sandbox, so
        must the recipients). SES's own message id is logged as ``ses_message_id``.

        Raises:
            MailError: If SES refuses the mail, with SES's reason.
        """
        kwargs: dict[str, Any] = {
            "FromEmailAddress": mail.sender,
            "Destination": {"ToAddresses": list(mail.recipients)},
            "Content": {"Raw": {"Data": mail.message}},
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        try:
            response = await self.client.send_email(**kwargs)
        except ClientError as exc:
            reason = exc.response.get("Error", {}).get("Message", str(exc))
            raise MailError(
                f"SES refused mail {mail.message_id} from {mail.sender!r} to "
                f"{len(mail.recipients)} recipient(s): {error_code(exc)}: {reason} (is the "
                "sender a verified identity? in the SES sandbox, the recipients must be too)"
            ) from None
        event(
            log,
            logging.INFO,
            "mail.sent",
            message_id=mail.message_id,
            ses_message_id=response.get("MessageId"),
            recipients=len(mail.recipients),
        )
        return mail.message_id
