"""The CloudFormation export: the template holds exactly what the decorators declare."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from framework import App, Email
from framework.backends.aws.cloudformation import (
    inbound_mail_topic,
    logical_id,
    native_max_receive_count,
    template,
)


class Order(BaseModel):
    id: int


def shop() -> App:
    app = App("shop")

    @app.on_queue("orders", visibility_timeout=12.5, max_receive_count=3, delay=2)
    async def orders(order: Order) -> None: ...

    @app.on_queue("ledger.fifo", content_based_deduplication=True)
    async def ledger(order: Order) -> None: ...

    app.topic("order-events")

    @app.on_topic("order-events", name="audit", filter_policy={"kind": ["paid"]})
    async def audit(order: Order) -> None: ...

    @app.on_email(["support@example.com", ".example.org"], stop=True)
    async def support(mail: Email) -> None: ...

    @app.on_email(["example.com"])
    async def catch_all(mail: Email) -> None: ...

    return app


def resources(app: App) -> dict[str, Any]:
    out: dict[str, Any] = template(app.registry, app_name=app.name)["Resources"]
    return out


def of_type(app: App, kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in resources(app).values() if r["Type"] == kind]


def test_every_declared_queue_and_its_dead_letter_queue_is_in_the_template() -> None:
    app = shop()
    names = {q["QueueName"] for q in of_type(app, "AWS::SQS::Queue")}
    assert names == set(app.registry.queues)
    assert {"orders", "orders-dlq", "ledger.fifo", "ledger-dlq.fifo"} <= names


def test_queue_attributes_follow_the_spec_rounded_up_to_whole_seconds() -> None:
    props = resources(shop())[logical_id("Queue", "orders")]["Properties"]
    assert props["VisibilityTimeout"] == 13
    assert props["DelaySeconds"] == 2
    assert props["MessageRetentionPeriod"] == 4 * 24 * 3600
    assert props["MaximumMessageSize"] == 1_048_576  # SQS's ceiling; the framework enforces 256 KiB
    assert "FifoQueue" not in props


def test_redrive_policy_points_at_the_dlq_one_past_the_frameworks_own_limit() -> None:
    app = shop()
    props = resources(app)[logical_id("Queue", "orders")]["Properties"]
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [logical_id("Queue", "orders-dlq"), "Arn"]},
        "maxReceiveCount": 4,
    }
    assert native_max_receive_count(app.registry.queues["orders"]) == 4
    dlq = resources(app)[logical_id("Queue", "orders-dlq")]["Properties"]
    assert "RedrivePolicy" not in dlq


def test_fifo_queues_keep_content_based_deduplication() -> None:
    props = resources(shop())[logical_id("Queue", "ledger.fifo")]["Properties"]
    assert props["FifoQueue"] is True
    assert props["ContentBasedDeduplication"] is True


def test_subscription_delivers_raw_with_its_filter_policy_and_a_policy_lets_the_topic_send() -> (
    None
):
    app = shop()
    res = resources(app)
    topic_id = logical_id("Topic", "order-events")
    queue_id = logical_id("Queue", "order-events.audit")
    sub = res[logical_id("Subscription", "order-events/audit")]["Properties"]
    assert sub == {
        "TopicArn": {"Ref": topic_id},
        "Protocol": "sqs",
        "Endpoint": {"Fn::GetAtt": [queue_id, "Arn"]},
        "RawMessageDelivery": True,
        "FilterPolicy": {"kind": ["paid"]},
        "FilterPolicyScope": "MessageAttributes",
    }
    policy = res[logical_id("QueuePolicy", "order-events.audit")]["Properties"]
    assert policy["Queues"] == [{"Ref": queue_id}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": [{"Ref": topic_id}]}}


def test_queues_no_topic_feeds_get_no_policy() -> None:
    res = resources(shop())
    assert logical_id("QueuePolicy", "orders") not in res


def test_email_rules_become_ses_receipt_rules_in_order_each_feeding_its_queue() -> None:
    app = shop()
    res = resources(app)
    rules = {
        r["Properties"]["Rule"]["Name"]: r
        for r in res.values()
        if r["Type"] == "AWS::SES::ReceiptRule"
    }
    assert list(rules) == ["email-support", "email-catch_all"]
    first = rules["email-support"]["Properties"]["Rule"]
    assert first["Recipients"] == ["support@example.com", ".example.org"]
    assert first["ScanEnabled"] is True
    topic_id = logical_id("Topic", inbound_mail_topic("email-support"))
    assert first["Actions"] == [
        {"SNSAction": {"TopicArn": {"Ref": topic_id}, "Encoding": "Base64"}},
        {"StopAction": {"Scope": "RuleSet"}},
    ]
    second = rules["email-catch_all"]["Properties"]
    assert second["After"] == "email-support"
    assert len(second["Rule"]["Actions"]) == 1  # no stop: later rules still run
    sub = res[logical_id("Subscription", inbound_mail_topic("email-support"))]["Properties"]
    assert sub["Endpoint"] == {"Fn::GetAtt": [logical_id("Queue", "email-support"), "Arn"]}
    assert sub["RawMessageDelivery"] is False  # the SES notification carries the envelope
    topic_policy = res[logical_id("TopicPolicy", inbound_mail_topic("email-support"))]
    (statement,) = topic_policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "ses.amazonaws.com"}


def test_logical_ids_are_alphanumeric_and_keep_similar_names_apart() -> None:
    a, b = logical_id("Queue", "a.b"), logical_id("Queue", "a-b")
    assert a != b
    assert a.isalnum()
    assert b.isalnum()


def test_template_is_json_and_names_every_queue_url_in_its_outputs() -> None:
    app = shop()
    doc = json.loads(json.dumps(template(app.registry, app_name=app.name)))
    assert doc["AWSTemplateFormatVersion"] == "2010-09-09"
    assert len(doc["Outputs"]) == len(app.registry.queues)


def test_physical_names_can_be_mapped() -> None:
    app = shop()
    doc = template(app.registry, physical=lambda name: "prod-" + name)
    names = [
        r["Properties"]["QueueName"]
        for r in doc["Resources"].values()
        if r["Type"] == "AWS::SQS::Queue"
    ]
    assert all(name.startswith("prod-") for name in names)
