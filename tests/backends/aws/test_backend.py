"""The AWS backend against moto's server: what the conformance suite cannot see from outside."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

pytest.importorskip("aiobotocore", reason="the aws extra is not installed")

from framework.backends.aws import AWSBackend
from framework.backends.aws.wire import META
from framework.exceptions import (
    DeclarationError,
    InvalidMessageError,
    MailError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.messages import (
    DLQ_ERROR_TYPE,
    DLQ_SOURCE,
    AttributeValue,
    DeadLetterReason,
    Delivery,
    Outgoing,
    OutgoingMail,
)
from framework.registry import QueueSpec, Registry, SubscriptionSpec, TopicSpec


async def declared(backend: AWSBackend, name: str, **options: object) -> QueueSpec:
    """Declare queue ``name`` and its DLQ, as the runtime does; return the queue's spec."""
    spec = QueueSpec.from_options(name, **options)
    await backend.declare_queue(spec)
    dlq = spec.dead_letter_spec()
    assert dlq is not None
    await backend.declare_queue(dlq)
    return spec


async def subscribed(
    backend: AWSBackend, topic: str, name: str, policy: dict[str, object] | None = None
) -> SubscriptionSpec:
    """Declare ``topic`` and a subscription ``name`` to it with ``policy``."""
    await backend.declare_topic(TopicSpec.from_options(topic))
    queue = QueueSpec.from_options(SubscriptionSpec.queue_name(topic, name), visibility_timeout=1)
    sub = SubscriptionSpec(topic=topic, name=name, queue=queue, filter_policy=policy)
    await backend.subscribe(sub)
    return sub


async def test_declaring_again_with_other_options_updates_the_queue(
    backend: AWSBackend, name: str
) -> None:
    """A redeclare is idempotent, and a changed option reaches the existing queue."""
    await declared(backend, name, visibility_timeout=5)
    await declared(backend, name, visibility_timeout=5)
    await declared(backend, name, visibility_timeout=7, max_receive_count=2)
    url = await backend.sqs.url(name)
    response = await backend.sqs.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    attributes = response["Attributes"]
    assert attributes["VisibilityTimeout"] == "7"
    policy = json.loads(attributes["RedrivePolicy"])
    assert policy["maxReceiveCount"] == 3
    assert policy["deadLetterTargetArn"].endswith(f":{name}-dlq")


async def test_subscription_queue_lets_its_topic_deliver(backend: AWSBackend, name: str) -> None:
    """The subscription queue's policy allows exactly its topic to send; delivery is raw."""
    sub = await subscribed(backend, name, "audit", {"type": ["created"]})
    assert sub.queue is not None
    url = await backend.sqs.url(sub.queue.name)
    assert url.endswith(f"/{name}_audit")
    response = await backend.sqs.client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["Policy", "QueueArn"]
    )
    policy = json.loads(response["Attributes"]["Policy"])
    topic_arn = await backend.sns.arn(name)
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == response["Attributes"]["QueueArn"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": [topic_arn]}}
    subs = await backend.sns.client.list_subscriptions_by_topic(TopicArn=topic_arn)
    [arn] = [s["SubscriptionArn"] for s in subs["Subscriptions"]]
    got = (await backend.sns.client.get_subscription_attributes(SubscriptionArn=arn))["Attributes"]
    assert got["RawMessageDelivery"] == "true"
    assert json.loads(got["FilterPolicy"]) == {"type": ["created"]}


async def test_dead_letter_carries_the_reason_as_attributes(backend: AWSBackend, name: str) -> None:
    """dead_letter() sends the message to the DLQ with the reason headers, then deletes it."""
    spec = await declared(backend, name, visibility_timeout=5)
    message_id = await backend.send(name, Outgoing(body=b"x", attributes={"tenant": "acme"}))
    (delivery,) = await backend.receive(name, limit=1, wait=1)
    reason = DeadLetterReason(name, 1, "ValueError", "bad", datetime.now(UTC))
    await backend.dead_letter(delivery, reason=reason)
    assert spec.dead_letter is not None
    raw = await backend.sqs.client.receive_message(
        QueueUrl=await backend.sqs.url(spec.dead_letter), MessageAttributeNames=["All"]
    )
    [message] = raw["Messages"]
    assert message["MessageAttributes"]["tenant"]["StringValue"] == "acme"
    meta = json.loads(message["MessageAttributes"][META]["StringValue"])
    assert meta["id"] == message_id
    assert meta["h"][DLQ_SOURCE] == name
    assert meta["h"][DLQ_ERROR_TYPE] == "ValueError"
    stats = await backend.stats(name)
    assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 1)


async def test_receive_count_is_sqs_approximate_receive_count(
    backend: AWSBackend, name: str
) -> None:
    """Each receive after a release counts one more; the id stays the framework's."""
    await declared(backend, name, visibility_timeout=5)
    message_id = await backend.send(name, Outgoing(body=b"x"))
    counts = []
    for _ in range(3):
        (delivery,) = await backend.receive(name, limit=1, wait=1)
        counts.append(delivery.receive_count)
        assert delivery.message_id == message_id
        await backend.release(delivery, delay=0)
    assert counts == [1, 2, 3]


async def test_stats_count_visible_in_flight_and_delayed(backend: AWSBackend, name: str) -> None:
    """stats() reports SQS's three counts; purge() deletes them all and says how many."""
    await declared(backend, name, visibility_timeout=5)
    for body in (b"a", b"b"):
        await backend.send(name, Outgoing(body=body))
    await backend.send(name, Outgoing(body=b"later", delay=60))
    await backend.receive(name, limit=1, wait=1)
    stats = await backend.stats(name)
    assert (stats.depth, stats.in_flight, stats.delayed) == (1, 1, 1)
    assert await backend.purge(name) == 3
    stats = await backend.stats(name)
    assert (stats.depth, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_many_acks_at_once_delete_every_message(backend: AWSBackend, name: str) -> None:
    """Acks issued together (batched into DeleteMessageBatch) delete every message."""
    await declared(backend, name, visibility_timeout=5)
    for n in range(15):
        await backend.send(name, Outgoing(body=str(n).encode()))
    deliveries: list[Delivery] = []
    while len(deliveries) < 15:
        deliveries += await backend.receive(name, limit=10, wait=1)
    await asyncio.gather(*(backend.ack(d) for d in deliveries))
    await backend.ack(deliveries[0])  # a stale receipt: a no-op
    stats = await backend.stats(name)
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_queues_are_listed_by_framework_name(backend: AWSBackend, name: str) -> None:
    """queues(prefix) lists dotted subscription queues under their framework names."""
    await subscribed(backend, name, "audit")
    async with AWSBackend.from_url(backend_url(backend)) as other:
        assert await other.queues(name) == [f"{name}.audit", f"{name}.audit-dlq"]


def backend_url(backend: AWSBackend) -> str:
    """The URL ``backend`` was built from."""
    return f"aws://{backend.settings.region}?endpoint_url={backend.settings.endpoint_url}"


async def test_names_that_meet_on_sqs_are_refused(backend: AWSBackend, name: str) -> None:
    """Two framework names that map to one SQS name raise DeclarationError naming both."""
    await declared(backend, f"{name}.a")
    with pytest.raises(DeclarationError, match=f"{name}_a"):
        await declared(backend, f"{name}_a")


async def test_unknown_queue_and_topic_are_named(backend: AWSBackend, name: str) -> None:
    """Send to a missing queue and publish to a missing topic raise errors naming them."""
    with pytest.raises(UnknownQueueError, match=name):
        await backend.send(name, Outgoing(body=b"x"))
    with pytest.raises(UnknownTopicError, match=name):
        await backend.publish(name, Outgoing(body=b"x"))


async def test_publish_with_attributes_sns_cannot_filter_is_refused(
    backend: AWSBackend, name: str
) -> None:
    """With native filtering, ten user attributes (one is packed) raise InvalidMessageError."""
    await subscribed(backend, name, "all")
    attributes: dict[str, AttributeValue] = {f"a{n}": n for n in range(10)}
    with pytest.raises(InvalidMessageError, match="a9"):
        await backend.publish(name, Outgoing(body=b"x", attributes=attributes))


async def test_subscriber_filtering_matches_what_moto_cannot(aws_url: str, name: str) -> None:
    """With filtering=subscriber every operator works, upper-case equals-ignore-case included."""
    async with AWSBackend.from_url(f"{aws_url}&filtering=subscriber") as backend:
        sub = await subscribed(
            backend,
            name,
            "gold",
            {"tier": [{"equals-ignore-case": "GOLD"}], "n": [{"exists": True}]},
        )
        assert sub.queue is not None
        attributes: dict[str, AttributeValue] = {f"a{n}": n for n in range(9)}
        await backend.publish(name, Outgoing(body=b"1", attributes={"tier": "gold", **attributes}))
        await backend.publish(name, Outgoing(body=b"2", attributes={"tier": "gold", "n": 1}))
        await backend.publish(name, Outgoing(body=b"3", attributes={"tier": "silver", "n": 1}))
        got = await backend.receive(sub.queue.name, limit=10, wait=1)
        assert [d.body for d in got] == [b"2"]
        stats = await backend.stats(sub.queue.name)
        assert (stats.depth, stats.in_flight) == (0, 1)


async def test_declare_0_creates_nothing_and_names_what_is_missing(aws_url: str, name: str) -> None:
    """With declare=0 a missing queue raises, and missing() lists every absent resource."""
    registry = Registry()
    registry.add_queue(QueueSpec.from_options(name))
    topic = TopicSpec.from_options(f"{name}-t")
    registry.add_topic(topic)
    queue = QueueSpec.from_options(SubscriptionSpec.queue_name(topic.name, "s"))
    registry.add_queue(queue)
    sub = SubscriptionSpec(topic=topic.name, name="s", queue=queue, filter_policy={"k": ["v"]})
    everything = (list(registry.queues.values()), [topic], [sub])
    async with AWSBackend.from_url(f"{aws_url}&declare=0") as backend:
        with pytest.raises(UnknownQueueError, match=name):
            await backend.declare_queue(registry.queues[name])
        assert await backend.missing(*everything) == [
            f"queue {name!r}",
            f"queue {name + '-dlq'!r}",
            f"queue {queue.name!r}",
            f"queue {queue.name + '-dlq'!r}",
            f"topic {topic.name!r}",
            f"subscription 's' of topic {topic.name!r}",
        ]
    async with AWSBackend.from_url(aws_url) as backend:
        for spec in registry.queues.values():
            await backend.declare_queue(spec)
        await backend.declare_topic(topic)
        assert await backend.missing(*everything) == [f"subscription 's' of topic {topic.name!r}"]
        await backend.subscribe(sub)
    async with AWSBackend.from_url(f"{aws_url}&declare=0&filtering=subscriber") as backend:
        assert await backend.missing(*everything) == []
        await backend.publish(topic.name, Outgoing(body=b"no", attributes={"k": "w"}))
        await backend.publish(topic.name, Outgoing(body=b"yes", attributes={"k": "v"}))
        # Subscribed natively above: SNS dropped "no"; the adopted policy would have too.
        assert [d.body for d in await backend.receive(queue.name, limit=10, wait=1)] == [b"yes"]


def test_cloudformation_export_needs_no_aws_client() -> None:
    """framework.backends.aws.cloudformation and .settings import without aiobotocore loaded."""
    code = (
        "import sys; sys.modules['aiobotocore'] = None; "
        "import framework.backends.aws.cloudformation, framework.backends.aws.settings; "
        "from framework.backends.aws import AWSBackend"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert "MissingDependencyError" in result.stderr
    assert "framework[aws]" in result.stderr


def rendered(sender: str, to: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "hello"
    message.set_content("hi")
    return bytes(message)


async def test_mail_goes_out_through_ses_v2(backend: AWSBackend, name: str) -> None:
    """send_mail sends the raw message with SES v2 from a verified identity."""
    sender = f"{name}@example.com"
    ses = backend._mailer.client if backend._mailer is not None else None
    assert ses is not None
    await ses.create_email_identity(EmailIdentity=sender)
    mail = OutgoingMail(sender, ("ops@example.org",), rendered(sender, "ops@example.org"), "m-1")
    assert await backend.send_mail(mail) == "m-1"


async def test_mail_from_an_unverified_sender_is_refused(backend: AWSBackend, name: str) -> None:
    """SES refusing a mail raises MailError with SES's reason."""
    sender = f"{name}@unverified.example"
    mail = OutgoingMail(sender, ("ops@example.org",), rendered(sender, "ops@example.org"), "m-2")
    with pytest.raises(MailError, match="verified"):
        await backend.send_mail(mail)
