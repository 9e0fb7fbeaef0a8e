"""Records of every source an app's handlers read: plain queues, topics, mail rules, DLQs."""

from __future__ import annotations

import json
from email.message import EmailMessage
from typing import Any

import pytest

from framework import App, Context, Email
from framework.aws.local import LambdaContext
from framework.exceptions import UnknownQueueError
from framework.registry import SubscriptionSpec
from tests.aws_lambda.conftest import SQS
from tests.aws_lambda.shapes import (
    documented_sqs_record,
    http_event,
    queue_arn,
    ses_received,
    sns_notification,
)


def test_the_documented_record_reaches_a_queue_handler(start: Any, prefix: str) -> None:
    """Lambda's documented example record (sent by hand, not by us): body and attribute."""
    app = App(f"lambda-{prefix}")
    seen: list[tuple[str, Any, int]] = []

    @app.on_queue(f"{prefix}-plain")
    async def plain(body: str, ctx: Context) -> None:
        seen.append((body, dict(ctx.message.attributes), ctx.message.receive_count))

    handler = start(app)
    event = {"Records": [documented_sqs_record(f"{prefix}-plain")]}
    assert handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert seen == [("Test message.", {"myAttribute": "myValue"}, 1)]


def test_topic_subscription_queue_with_raw_delivery(start: Any, sqs: SQS, prefix: str) -> None:
    """A message published by the app reaches the subscription queue's handler as published."""
    app = App(f"lambda-{prefix}")
    topic = f"{prefix}-events"
    seen: list[tuple[Any, Any]] = []

    @app.route("/publish", methods=["POST"])
    async def publish() -> dict[str, str]:
        await app.publish(topic, {"id": "o-1"}, attributes={"type": "created", "n": 3})
        return {"ok": "yes"}

    @app.on_topic(topic, filter_policy={"type": ["created"]})
    async def audit(body: dict[str, Any], ctx: Context) -> None:
        seen.append((body, dict(ctx.message.attributes)))

    handler = start(app)
    assert handler(http_event("POST", "/publish"), LambdaContext())["statusCode"] == 200
    queue = SubscriptionSpec.queue_name(topic, "audit")
    event = sqs.event(queue)
    assert len(event["Records"]) == 1
    assert handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert seen == [({"id": "o-1"}, {"type": "created", "n": 3})]


def test_sns_notification_body_is_unwrapped_for_a_topic_handler(start: Any, prefix: str) -> None:
    """A subscription without raw delivery: the handler still gets the message and attributes."""
    app = App(f"lambda-{prefix}")
    topic = f"{prefix}-news"
    seen: list[tuple[str, Any]] = []

    @app.on_topic(topic)
    async def reader(body: str, ctx: Context) -> None:
        seen.append((body, dict(ctx.message.attributes)))

    handler = start(app)
    record = documented_sqs_record(f"{topic}_reader")
    record["body"] = sns_notification(topic, "hello", {"type": "created"})
    record["messageAttributes"] = {}
    assert handler({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    assert seen == [("hello", {"type": "created"})]


def test_ses_notification_reaches_the_mail_handler(start: Any, prefix: str) -> None:
    """A mail rule's queue gets SES's notification inside SNS's: the handler gets the Email."""
    app = App(f"lambda-{prefix}")
    mails: list[Email] = []

    @app.on_email(recipients=["support@shop.example"])
    async def support(mail: Email, ctx: Context) -> None:
        mails.append(mail)

    handler = start(app)
    message = EmailMessage()
    message["From"] = "ann@example.org"
    message["To"] = "support@shop.example"
    message["Subject"] = "help"
    message.set_content("my order is late")
    notification = ses_received(
        bytes(message), sender="ann@example.org", recipients=["support@shop.example"]
    )
    record = documented_sqs_record("email-support")
    record["body"] = sns_notification("email-support-inbound-mail", notification, {})
    record["messageAttributes"] = {}
    assert handler({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    (mail,) = mails
    assert (mail.from_, mail.subject) == ("ann@example.org", "help")
    assert "my order is late" in (mail.text or "")


def test_record_from_a_dead_letter_queue_knows_its_source(start: Any, prefix: str) -> None:
    """A record moved by SQS's redrive has DeadLetterQueueSourceArn: the handler sees it."""
    app = App(f"lambda-{prefix}")
    app.queue(f"{prefix}-orders")
    seen: list[Any] = []

    @app.on_queue(f"{prefix}-orders-dlq", dead_letter=None)
    async def inspect(body: str, ctx: Context) -> None:
        seen.append(ctx.message.dead_letter)

    handler = start(app)
    record = documented_sqs_record(f"{prefix}-orders-dlq")
    record["attributes"]["DeadLetterQueueSourceArn"] = queue_arn(f"{prefix}-orders")
    record["attributes"]["ApproximateReceiveCount"] = "7"
    assert handler({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    (info,) = seen
    assert info is not None
    assert info.source_queue == f"{prefix}-orders"


def test_batch_from_a_queue_without_a_handler_is_refused(start: Any, prefix: str) -> None:
    """Records of a queue the app does not handle raise an error naming the queue."""
    app = App(f"lambda-{prefix}")

    @app.on_queue(f"{prefix}-mine")
    async def mine(body: str) -> None:
        pass

    handler = start(app)
    event = {"Records": [documented_sqs_record("someone-elses")]}
    with pytest.raises(UnknownQueueError, match="someone-elses"):
        handler(event, LambdaContext())


def test_attribute_values_are_strings_as_aws_sends_them(start: Any, sqs: SQS, prefix: str) -> None:
    """The event built from ReceiveMessage has string attributes and the documented keys."""
    app = App(f"lambda-{prefix}")

    @app.on_queue(f"{prefix}-s")
    async def s(body: str) -> None:
        pass

    start(app)
    sqs.send(
        f"{prefix}-s",
        "x",
        MessageAttributes={"n": {"DataType": "Number", "StringValue": "5"}},
    )
    (record,) = sqs.event(f"{prefix}-s")["Records"]
    assert set(record) >= {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert all(isinstance(v, str) for v in record["attributes"].values())
    assert record["messageAttributes"]["n"] == {
        "stringValue": "5",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Number",
    }
    assert json.dumps(record)  # JSON, as Lambda sends it


def test_a_sync_handler_runs_in_a_thread_under_the_kept_loop(start: Any, prefix: str) -> None:
    """A plain ``def`` handler runs (in a worker thread) as under ``framework run``."""
    app = App(f"lambda-{prefix}")
    seen: list[str] = []

    @app.on_queue(f"{prefix}-sync")
    def sync(body: str) -> None:
        seen.append(body)

    handler = start(app)
    for _ in range(2):  # the second invocation reuses the loop and its thread pool
        event = {"Records": [documented_sqs_record(f"{prefix}-sync")]}
        assert handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert seen == ["Test message.", "Test message."]
