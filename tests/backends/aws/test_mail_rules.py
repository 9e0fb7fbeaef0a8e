"""Inbound mail on AWS: the SES receipt rules, topics and subscriptions ``@on_email`` declares.

moto stores receipt rules but never runs them, so the rules are checked as stored, and the
path from SES on is played by publishing SES's "Received" notification to the rule's topic,
as SES's SNS action would: it must reach the handler through the rule's queue.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import anyio
import pytest

pytest.importorskip("aiobotocore", reason="the aws extra is not installed")

from framework import App, Email, MissingResourcesError
from framework.backends.aws import AWSBackend
from framework.backends.aws.cloudformation import (
    inbound_mail_topic,
    mail_topic_policy_document,
    receipt_rule,
    receipt_rule_set,
    template,
)
from framework.backends.aws.settings import physical_name
from framework.registry import EmailRule
from framework.runtime import Runtime


def mail_app(token: str, received: list[Email] | None = None) -> App:
    """An app named ``mail-TOKEN`` with two rules: orders (stop) and the whole domain."""
    app = App(f"mail-{token}")

    async def orders(mail: Email) -> None:
        if received is not None:
            received.append(mail)

    async def everything(mail: Email) -> None: ...

    # Handler names make the queue names (email-FUNCTION): fresh ones per test.
    orders.__name__ = f"orders_{token}"
    everything.__name__ = f"everything_{token}"
    app.on_email(["orders@shop.example"], stop=True, visibility_timeout=5)(orders)
    app.on_email(["shop.example", ".shop.example"])(everything)
    return app


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex[:10]


async def topic_arn(backend: AWSBackend, rule: EmailRule) -> str:
    return await backend.sns.arn(inbound_mail_topic(rule.queue.name))


async def test_rules_topics_and_subscriptions_are_declared_in_order(
    backend: AWSBackend, token: str
) -> None:
    """Each rule gets its topic (SES may publish to it), its queue subscribed without raw
    delivery (the topic may send to it), and a receipt rule in the app's rule set, in the
    app's order, the same rule as the CloudFormation export's; the set is not activated."""
    app = mail_app(token)
    lines: list[str] = []
    runtime = app.run(backend, workers=False)
    await runtime.declare(lines.append)
    rules = app.registry.email_rules
    rule_set = receipt_rule_set(app.name)
    assert lines[-2:] == [
        f"mail rule {r.queue.name!r} of SES rule set {rule_set!r} "
        f"(topic {inbound_mail_topic(r.queue.name)!r})"
        for r in rules
    ]

    ses: Any = backend.receipt_rules.ses
    stored = (await ses.describe_receipt_rule_set(RuleSetName=rule_set))["Rules"]
    arns = [await topic_arn(backend, rule) for rule in rules]
    assert stored == [receipt_rule(rule, arn) for rule, arn in zip(rules, arns, strict=True)]
    assert [r["Name"] for r in stored] == [f"email-orders_{token}", f"email-everything_{token}"]
    assert stored[0]["Actions"][1] == {"StopAction": {"Scope": "RuleSet"}}
    assert len(stored[1]["Actions"]) == 1
    # The same rules as the template's, but for the topic reference.
    exported = template(app.registry, app_name=app.name, physical=physical_name)["Resources"]
    in_template = [r["Properties"]["Rule"] for r in exported.values() if r["Type"].endswith("Rule")]
    for mine, theirs in zip(stored, in_template, strict=True):
        assert {k: v for k, v in mine.items() if k != "Actions"} == {
            k: v for k, v in theirs.items() if k != "Actions"
        }
    active = await ses.describe_active_receipt_rule_set()
    assert active.get("Metadata", {}).get("Name") != rule_set

    sns: Any = backend.sns.client
    sqs: Any = backend.sqs.client
    for rule, arn in zip(rules, arns, strict=True):
        attributes = (await sns.get_topic_attributes(TopicArn=arn))["Attributes"]
        assert json.loads(attributes["Policy"]) == mail_topic_policy_document(
            arn, arn.split(":")[4]
        )
        queue_arn = await backend.sqs.arn(rule.queue.name)
        subs = (await sns.list_subscriptions_by_topic(TopicArn=arn))["Subscriptions"]
        [sub] = [s for s in subs if s["Endpoint"] == queue_arn]
        got = (await sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"]))[
            "Attributes"
        ]
        assert got["RawMessageDelivery"] == "false"
        policy = json.loads(
            (
                await sqs.get_queue_attributes(
                    QueueUrl=await backend.sqs.url(rule.queue.name), AttributeNames=["Policy"]
                )
            )["Attributes"]["Policy"]
        )
        [statement] = policy["Statement"]
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": [arn]}}


async def test_declaring_again_converges(backend: AWSBackend, token: str) -> None:
    """A second start keeps one rule per handler, and brings changed recipients up to date."""
    await mail_app(token).run(backend, workers=False).declare()
    changed = mail_app(token)
    changed.registry.email_rules[1] = EmailRule(
        ("other.example",), changed.registry.email_rules[1].queue
    )
    await changed.run(backend, workers=False).declare()
    ses: Any = backend.receipt_rules.ses
    rule_set = receipt_rule_set(changed.name)
    stored = (await ses.describe_receipt_rule_set(RuleSetName=rule_set))["Rules"]
    assert [r["Recipients"] for r in stored] == [["orders@shop.example"], ["other.example"]]


async def test_no_declare_lists_missing_mail_resources(
    aws_url: str, backend: AWSBackend, token: str
) -> None:
    """``--no-declare`` lists the missing topics, subscriptions, rule set and rules; after a
    declaration the same check passes."""
    app = mail_app(token)
    async with AWSBackend.from_url(aws_url) as checker:
        with pytest.raises(MissingResourcesError) as caught:
            await app.run(checker, workers=False, declare=False).check_declared()
    queues = [rule.queue.name for rule in app.registry.email_rules]
    rule_set = receipt_rule_set(app.name)
    mail_lines = [line for line in caught.value.missing if not line.startswith("queue ")]
    assert mail_lines == [
        f"topic '{queues[0]}-inbound-mail'",
        f"subscription of queue '{queues[0]}' to topic '{queues[0]}-inbound-mail'",
        f"topic '{queues[1]}-inbound-mail'",
        f"subscription of queue '{queues[1]}' to topic '{queues[1]}-inbound-mail'",
        f"SES receipt rule set '{rule_set}'",
        f"SES receipt rule '{queues[0]}' of rule set '{rule_set}'",
        f"SES receipt rule '{queues[1]}' of rule set '{rule_set}'",
    ]
    await app.run(backend, workers=False).declare()
    async with AWSBackend.from_url(aws_url) as checker:
        await app.run(checker, workers=False, declare=False).check_declared()


async def test_mail_rules_0_declares_no_mail_resources(aws_url: str, token: str) -> None:
    """With ``mail_rules=0`` the queues are declared, SES and the mail topics are left alone."""
    app = mail_app(token)
    async with AWSBackend.from_url(f"{aws_url}&mail_rules=0") as backend:
        await app.run(backend, workers=False).declare()
        assert await backend.missing_mail_rules(app.name, app.registry.email_rules) == []
    async with AWSBackend.from_url(aws_url) as plain:
        absent = await plain.missing_mail_rules(app.name, app.registry.email_rules)
    assert f"SES receipt rule set '{receipt_rule_set(app.name)}'" in absent


def ses_notification(raw: bytes, *, source: str, recipients: list[str], rule: str) -> str:
    """SES's "Received" notification with the whole mail, base64-encoded (SNS action)."""
    return json.dumps(
        {
            "notificationType": "Received",
            "mail": {
                "timestamp": "2026-01-01T00:00:00.000Z",
                "source": source,
                "messageId": uuid.uuid4().hex,
                "destination": recipients,
            },
            "receipt": {
                "recipients": recipients,
                "spamVerdict": {"status": "PASS"},
                "virusVerdict": {"status": "PASS"},
                "spfVerdict": {"status": "GRAY"},
                "dkimVerdict": {"status": "PASS"},
                "dmarcVerdict": {"status": "FAIL"},
                "action": {"type": "SNS", "topicArn": rule, "encoding": "BASE64"},
            },
            "content": base64.b64encode(raw).decode("ascii"),
        }
    )


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await anyio.sleep(0.1)


async def test_an_ses_notification_on_the_topic_reaches_the_handler(
    aws_url: str, token: str
) -> None:
    """What SES's SNS action publishes to the rule's topic arrives, in its SNS envelope, on the
    rule's queue; the handler gets the parsed mail, SES's envelope and verdicts."""
    received: list[Email] = []
    app = mail_app(token, received)
    message = EmailMessage()
    message["From"] = "Ann <ann@customer.example>"
    message["To"] = "orders@shop.example"
    message["Subject"] = "Order 42"
    message.set_content("Two boxes, please.")
    raw = message.as_bytes()
    async with Runtime(
        app.registry,
        AWSBackend.from_url(aws_url),
        events=app.events,
        app=app,
        poll_wait=1.0,
        grace=1.0,
    ) as runtime:
        backend = runtime.backend
        assert isinstance(backend, AWSBackend)
        [rule, _] = app.registry.email_rules
        arn = await topic_arn(backend, rule)
        body = ses_notification(
            raw, source="bounce@customer.example", recipients=["orders@shop.example"], rule=arn
        )
        await backend.sns.client.publish(TopicArn=arn, Message=body)
        await until(lambda: bool(received), 15, "the mail to reach its handler")
    [mail] = received
    assert (mail.from_, mail.to, mail.subject) == (
        "ann@customer.example",
        ("orders@shop.example",),
        "Order 42",
    )
    assert mail.text is not None
    assert mail.text.strip() == "Two boxes, please."
    assert mail.envelope.mail_from == "bounce@customer.example"
    assert mail.envelope.rcpt_to == ("orders@shop.example",)
    assert (mail.verdicts.spam.value, mail.verdicts.dmarc.value) == ("PASS", "FAIL")
    assert mail.raw == raw
