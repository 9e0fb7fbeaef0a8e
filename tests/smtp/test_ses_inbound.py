"""Mail received by SES reaches the same ``@on_email`` handler through SNS and the rule's queue."""

from __future__ import annotations

import base64
import json
from email.message import EmailMessage

from framework import App, Email
from framework.smtp.scanning import Verdict
from framework.smtp.ses import from_notification
from framework.testing import TestApp


def raw_mail() -> bytes:
    message = EmailMessage()
    message["From"] = "Ann <ann@example.org>"
    message["To"] = "support@example.com"
    message["Subject"] = "Printer on fire"
    message.set_content("It is on fire.\n")
    return bytes(message)


def ses_received(raw: bytes, *, encoding: str = "BASE64", spam: str = "PASS") -> dict[str, object]:
    """SES's "Received" notification, as its documentation shows it."""
    content = raw.decode() if encoding == "UTF8" else base64.b64encode(raw).decode()
    return {
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-11-27T12:00:00.000Z",
            "source": "bounce@example.org",
            "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
            "destination": ["support@example.com", "other@example.com"],
        },
        "receipt": {
            "recipients": ["support@example.com"],
            "spamVerdict": {"status": spam},
            "virusVerdict": {"status": "PASS"},
            "spfVerdict": {"status": "GRAY"},
            "dkimVerdict": {"status": "FAIL"},
            "dmarcVerdict": {"status": "PROCESSING_FAILED"},
            "action": {"type": "SNS", "topicArn": "arn:aws:sns:...", "encoding": encoding},
        },
        "content": content,
    }


def sns_wrapped(notification: dict[str, object]) -> bytes:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "5a5f6e5c-0000-0000-0000-000000000000",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:email-support-inbound-mail",
            "Subject": "Amazon SES Email Receipt Notification",
            "Message": json.dumps(notification),
        }
    ).encode()


def test_the_raw_mail_and_envelope_come_back_from_the_sns_notification() -> None:
    raw = raw_mail()
    received = from_notification(sns_wrapped(ses_received(raw)))
    assert received is not None
    mail, envelope = received
    assert mail == raw
    assert envelope.mail_from == "bounce@example.org"
    assert envelope.rcpt_to == ("support@example.com",)
    assert envelope.verdicts.spam is Verdict.PASS
    assert envelope.verdicts.spf is Verdict.GRAY
    assert envelope.verdicts.dkim is Verdict.FAIL
    assert envelope.verdicts.dmarc is Verdict.PROCESSING_FAILED


def test_utf8_encoded_content_and_a_bare_ses_notification_are_read_too() -> None:
    raw = raw_mail()
    received = from_notification(json.dumps(ses_received(raw, encoding="UTF8")).encode())
    assert received is not None
    assert received[0] == raw


def test_anything_else_is_not_an_ses_notification() -> None:
    assert from_notification(raw_mail()) is None
    assert from_notification(b"{not json") is None
    assert from_notification(json.dumps({"Type": "Notification", "Message": "{}"}).encode()) is None
    without_content = ses_received(raw_mail())
    del without_content["content"]
    assert from_notification(json.dumps(without_content).encode()) is None


async def test_the_on_email_handler_gets_mail_that_ses_published() -> None:
    app = App("ses-inbound")
    seen: list[Email] = []

    @app.on_email(["support@example.com"])
    async def support(mail: Email) -> None:
        seen.append(mail)

    async with TestApp(app) as test:
        await app.send("email-support", sns_wrapped(ses_received(raw_mail(), spam="FAIL")))
        await test.drain()
    (mail,) = seen
    assert mail.subject == "Printer on fire"
    assert mail.from_ == "ann@example.org"
    assert mail.envelope.rcpt_to == ("support@example.com",)
    assert mail.verdicts.spam is Verdict.FAIL
    assert mail.text is not None
    assert mail.text.strip() == "It is on fire."


def test_ses_dmarc_policy_comes_with_a_dmarc_failure() -> None:
    """SES's receipt.dmarcPolicy ("reject", present on a DMARC FAIL) is verdicts.dmarc_policy."""
    notification = ses_received(raw_mail())
    receipt = notification["receipt"]
    assert isinstance(receipt, dict)
    receipt["dmarcVerdict"] = {"status": "FAIL"}
    receipt["dmarcPolicy"] = "reject"
    received = from_notification(json.dumps(notification).encode())
    assert received is not None
    verdicts = received[1].verdicts
    assert (verdicts.dmarc, verdicts.dmarc_policy) == (Verdict.FAIL, "reject")
    assert from_notification(sns_wrapped(ses_received(raw_mail())))[1].verdicts.dmarc_policy is None  # type: ignore[index]
