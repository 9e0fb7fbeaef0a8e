"""Mail received by SES: the AWS backend unwraps SES's notification into the receiver's shape."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from email.message import EmailMessage

from framework.backends.aws.notifications import from_notification, unwrap_mail
from framework.messages import Delivery
from framework.smtp.parsing import envelope_from_headers, parse
from framework.smtp.scanning import Verdict


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


def test_the_backend_hands_over_the_mail_as_the_smtp_receiver_stores_it() -> None:
    """``unwrap_mail`` turns SES's notification into the receiver's shape: the raw mail as
    ``message/rfc822`` with the envelope in headers, so the dispatcher parses both alike."""
    now = datetime.now(UTC)
    delivery = Delivery(
        queue="email-support",
        message_id="m-1",
        body=sns_wrapped(ses_received(raw_mail(), spam="FAIL")),
        attributes={},
        headers={},
        receive_count=1,
        sent_at=now,
        first_received_at=now,
        receipt="r-1",
    )
    stored = unwrap_mail(delivery)
    assert stored.content_type == "message/rfc822"
    assert stored.body == raw_mail()
    mail = parse(stored.body, envelope_from_headers(stored.headers))
    assert mail.subject == "Printer on fire"
    assert mail.from_ == "ann@example.org"
    assert mail.envelope.rcpt_to == ("support@example.com",)
    assert mail.envelope.mail_from == "bounce@example.org"
    assert mail.verdicts.spam is Verdict.FAIL
    assert mail.text is not None
    assert mail.text.strip() == "It is on fire."
    assert unwrap_mail(stored) is stored  # a raw mail (redriven, say) is left as it is


def test_a_body_that_is_no_ses_notification_is_left_for_the_dispatcher_to_refuse() -> None:
    """Anything else on a mail queue comes through unchanged, for the dispatcher to handle."""
    now = datetime.now(UTC)
    delivery = Delivery("email-support", "m-2", b'{"a": 1}', {}, {}, 1, now, now, "r-2")
    assert unwrap_mail(delivery) is delivery


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
