"""Mail received by Amazon SES, as it reaches an ``@on_email`` queue on AWS.

On AWS the SMTP receiver is SES itself: a receipt rule (``framework export cloudformation``
writes one per ``@on_email`` rule) publishes each mail to an SNS topic with the ``Base64``
encoding, and the rule's SQS queue subscribes to that topic without raw delivery. What arrives
on the queue is then an SNS notification whose ``Message`` is SES's "Received" notification:
the envelope (``mail.source``, ``receipt.recipients``), SES's scan verdicts and the whole mail,
base64-encoded, in ``content``. ``from_notification`` turns it back into the raw mail and the
same ``Envelope`` the framework's own receiver stores, and ``unwrap_mail`` hands the dispatcher
a delivery of the very shape the receiver queues (the raw mail, ``message/rfc822``, with the
envelope in headers), so one handler serves both and the runtime knows no AWS format.

See https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-contents.html
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import replace
from typing import Any

from framework.messages import CONTENT_TYPE, Delivery
from framework.smtp.scanning import (
    DMARC_POLICIES,
    MAIL_FROM,
    PEER,
    RCPT_TO,
    VERDICTS,
    Envelope,
    Verdict,
    Verdicts,
)

__all__ = ["from_notification", "unwrap_mail"]

MAIL = "message/rfc822"

# SES's receipt verdict fields, by the framework's check names.
_VERDICTS = {
    "spam": "spamVerdict",
    "virus": "virusVerdict",
    "spf": "spfVerdict",
    "dkim": "dkimVerdict",
    "dmarc": "dmarcVerdict",
}


def _ses_notification(body: bytes) -> dict[str, Any] | None:
    """Return the SES notification in ``body`` (bare, or wrapped in an SNS envelope)."""
    if not body.lstrip().startswith(b"{"):
        return None
    try:
        outer = json.loads(body)
        if isinstance(outer, dict) and outer.get("Type") == "Notification":
            outer = json.loads(outer.get("Message", ""))
    except (ValueError, TypeError):
        return None
    if not isinstance(outer, dict) or outer.get("notificationType") != "Received":
        return None
    return outer


def _verdicts(receipt: dict[str, Any]) -> Verdicts:
    found: dict[str, Any] = {}
    for check, field in _VERDICTS.items():
        status = (receipt.get(field) or {}).get("status")
        if isinstance(status, str) and status in Verdict.__members__:
            found[check] = Verdict(status)
    # SES sets dmarcPolicy (none, quarantine, reject) only when the mail failed DMARC.
    policy = receipt.get("dmarcPolicy")
    if isinstance(policy, dict):
        policy = policy.get("status")
    if isinstance(policy, str) and policy.lower() in DMARC_POLICIES:
        found["dmarc_policy"] = policy.lower()
    return Verdicts(**found)


def from_notification(body: bytes) -> tuple[bytes, Envelope] | None:
    """Return the raw mail and its envelope from an SES "Received" notification.

    Args:
        body: A queue message's body: the SNS notification, or SES's notification itself.

    Returns:
        ``(raw, envelope)``, or None when ``body`` is not an SES notification with the mail's
        content (an SES rule publishing without content sends only the headers: that mail
        is refused as not delivered by the framework's rules).
    """
    notification = _ses_notification(body)
    if notification is None:
        return None
    content = notification.get("content")
    if not isinstance(content, str):
        return None
    encoding = str((notification.get("receipt") or {}).get("action", {}).get("encoding", ""))
    try:
        raw = (
            content.encode("utf-8")
            if encoding.upper() == "UTF8"
            else base64.b64decode(content, validate=False)
        )
    except (binascii.Error, ValueError):
        return None
    mail = notification.get("mail") or {}
    receipt = notification.get("receipt") or {}
    recipients = receipt.get("recipients") or mail.get("destination") or []
    envelope = Envelope(
        mail_from=str(mail.get("source", "")),
        rcpt_to=tuple(str(r) for r in recipients),
        peer="",
        verdicts=_verdicts(receipt),
    )
    return raw, envelope


def unwrap_mail(delivery: Delivery) -> Delivery:
    """Return ``delivery`` as the SMTP receiver would have queued it, if SES's notification.

    A delivery that is not one (already a raw mail, say, redriven from a dead-letter queue)
    is returned unchanged; the dispatcher then refuses what is not a mail as poison.
    """
    if delivery.content_type == MAIL:
        return delivery
    received = from_notification(delivery.body)
    if received is None:
        return delivery
    raw, envelope = received
    headers = {
        **delivery.headers,
        CONTENT_TYPE: MAIL,
        MAIL_FROM: envelope.mail_from,
        RCPT_TO: ",".join(envelope.rcpt_to),
        PEER: envelope.peer,
        VERDICTS: envelope.verdicts.to_header(),
    }
    return replace(delivery, body=raw, headers=headers)
