"""SNS topics: declaration, SQS subscriptions with raw delivery and filter policies, publishing.

A subscription is an SQS queue (``TOPIC.SUBSCRIPTION``, declared like any queue) subscribed to
the topic with ``RawMessageDelivery``, so the queue receives the published body and attributes
as they were sent, and a queue policy that lets the topic, and only it, send to the queue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from framework.exceptions import DeclarationError, UnknownQueueError, UnknownTopicError
from framework.registry import QueueSpec, SubscriptionSpec, TopicSpec

from .cloudformation import queue_policy_document
from .settings import Filtering, physical_name
from .sqs import Queues, error_code

__all__ = ["Topics", "missing", "queue_policy", "subscription_attributes"]


def queue_policy(queue_arn: str, topic_arns: list[str]) -> str:
    """Return the SQS queue policy (JSON) that lets the topics ``topic_arns`` send to the queue.

    The same document as the CloudFormation export's (``queue_policy_document``).
    """
    document = {
        "Id": f"{queue_arn}/framework-subscriptions",
        **queue_policy_document(queue_arn, sorted(set(topic_arns))),
    }
    return json.dumps(document, separators=(",", ":"))


def subscription_attributes(
    subscription: SubscriptionSpec, *, filtering: Filtering
) -> dict[str, str]:
    """Return the SNS subscription attributes of ``subscription``.

    With ``filtering="native"`` the filter policy (and its scope) is SNS's; with
    ``"subscriber"`` SNS delivers every copy and the backend drops unwanted ones on receipt.
    Raw delivery follows ``subscription.raw``: the queue of an ``@on_email`` rule is
    subscribed without it, since the SES notification is in the SNS envelope.
    """
    attributes = {"RawMessageDelivery": "true" if subscription.raw else "false"}
    if subscription.filter_policy is not None and filtering == "native":
        attributes["FilterPolicy"] = json.dumps(
            subscription.filter_policy, separators=(",", ":"), ensure_ascii=False
        )
        attributes["FilterPolicyScope"] = subscription.filter_policy_scope
    return attributes


class Topics:
    """SNS topics by framework name: ARNs cached, subscriptions kept as declared."""

    def __init__(self, client: Any, *, declare: bool = True, filtering: Filtering = "native"):
        self.client = client
        self.declare = declare
        self.filtering: Filtering = filtering
        self.specs: dict[str, TopicSpec] = {}
        self._arns: dict[str, str] = {}

    async def declare_topic(self, spec: TopicSpec) -> str:
        """Create the topic (idempotent) and return its ARN.

        Raises:
            UnknownTopicError: With ``declare=0``, if the topic does not exist.
        """
        self.specs[spec.name] = spec
        if not self.declare:
            return await self.arn(spec.name)
        attributes: dict[str, str] = {}
        if spec.fifo:
            attributes["FifoTopic"] = "true"
            attributes["ContentBasedDeduplication"] = (
                "true" if spec.content_based_deduplication else "false"
            )
        response = await self.client.create_topic(
            Name=physical_name(spec.name),
            Attributes=attributes,
            Tags=[{"Key": "framework-name", "Value": spec.name}],
        )
        arn = self._arns[spec.name] = str(response["TopicArn"])
        return arn

    async def arn(self, name: str) -> str:
        """Return the ARN of topic ``name``, looked up among the account's topics once.

        Raises:
            UnknownTopicError: If there is no such topic, naming it.
        """
        arn = self._arns.get(name)
        if arn is not None:
            return arn
        physical = physical_name(name)
        kwargs: dict[str, str] = {}
        while True:
            response = await self.client.list_topics(**kwargs)
            for topic in response.get("Topics") or ():
                candidate = str(topic["TopicArn"])
                if candidate.rpartition(":")[2] == physical:
                    self._arns[name] = candidate
                    return candidate
            token = response.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        raise UnknownTopicError(
            f"topic {name!r} does not exist on SNS; declare it with @app.on_topic(...) or "
            "app.topic(...) and start the app once, or create it"
        )

    def forget(self, name: str) -> None:
        """Drop the cached ARN of ``name`` (the topic was deleted meanwhile)."""
        self._arns.pop(name, None)

    async def subscribe(self, subscription: SubscriptionSpec, *, queue_arn: str) -> str:
        """Subscribe the queue to the topic with raw delivery and its filter policy.

        The caller has given the queue its policy (``queue_policy``) first.

        Subscribing is idempotent on SNS (the same topic, protocol and endpoint return the
        same subscription); the attributes are set again, so a changed policy takes effect.

        Raises:
            UnknownTopicError: If the topic does not exist.
            DeclarationError: For an endpoint subscription (delivered by the runtime).
        """
        if subscription.queue is None:
            raise DeclarationError(
                f"subscription {subscription.name!r}: endpoint subscriptions are delivered by "
                "the runtime, not by SNS"
            )
        topic_arn = await self.arn(subscription.topic)
        attributes = subscription_attributes(subscription, filtering=self.filtering)
        if not self.declare:
            return await self.subscription_of(subscription, queue_arn=queue_arn)
        response = await self.client.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )
        subscription_arn = str(response["SubscriptionArn"])
        current = await self._attributes(subscription_arn)
        for key, value in attributes.items():
            if current.get(key) != value:
                await self._set(subscription_arn, key, value)
        if "FilterPolicy" not in attributes and current.get("FilterPolicy"):
            await self._set(subscription_arn, "FilterPolicy", "{}")
        return subscription_arn

    async def _attributes(self, subscription_arn: str) -> Mapping[str, str]:
        response = await self.client.get_subscription_attributes(SubscriptionArn=subscription_arn)
        return dict(response.get("Attributes") or {})

    async def _set(self, subscription_arn: str, key: str, value: str) -> None:
        await self.client.set_subscription_attributes(
            SubscriptionArn=subscription_arn, AttributeName=key, AttributeValue=value
        )

    async def subscription_of(self, subscription: SubscriptionSpec, *, queue_arn: str) -> str:
        """Return the ARN of the existing SNS subscription of ``queue_arn`` to the topic.

        Raises:
            UnknownTopicError: If the topic does not exist, or the queue is not subscribed.
        """
        kwargs: dict[str, str] = {"TopicArn": await self.arn(subscription.topic)}
        while True:
            response = await self.client.list_subscriptions_by_topic(**kwargs)
            for sub in response.get("Subscriptions") or ():
                if sub.get("Endpoint") == queue_arn:
                    return str(sub["SubscriptionArn"])
            token = response.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        raise UnknownTopicError(
            f"queue {subscription.queue.name if subscription.queue else '?'!r} is not "
            f"subscribed to topic {subscription.topic!r} (declare=0 creates nothing)"
        )

    async def publish(self, topic: str, **kwargs: Any) -> str:
        """Publish to ``topic`` with ``Publish``'s other arguments; return SNS's message id.

        Raises:
            UnknownTopicError: If the topic does not exist (or was deleted meanwhile).
        """
        arn = await self.arn(topic)
        try:
            response = await self.client.publish(TopicArn=arn, **kwargs)
        except ClientError as exc:
            if error_code(exc) not in ("NotFound", "NotFoundException"):
                raise
            self.forget(topic)
            raise UnknownTopicError(f"topic {topic!r} does not exist on SNS") from None
        return str(response.get("MessageId", ""))


async def missing(
    sqs: Queues,
    sns: Topics,
    queues: Sequence[QueueSpec],
    topics: Sequence[TopicSpec],
    subscriptions: Sequence[SubscriptionSpec],
) -> tuple[list[str], list[SubscriptionSpec]]:
    """Return the resources that do not exist (one line each), and the subscriptions that do.

    Creates nothing. The specs of the queues and topics that exist are recorded, as declaring
    them would.
    """
    out: list[str] = []
    for spec in queues:
        try:
            await sqs.url(spec.name)
        except UnknownQueueError:
            out.append(f"queue {spec.name!r}")
            continue
        sqs.specs[spec.name] = spec
    for topic in topics:
        try:
            await sns.arn(topic.name)
        except UnknownTopicError:
            out.append(f"topic {topic.name!r}")
            continue
        sns.specs[topic.name] = topic
    present: list[SubscriptionSpec] = []
    for sub in subscriptions:
        if sub.queue is None:
            continue
        try:
            await sns.subscription_of(sub, queue_arn=await sqs.arn(sub.queue.name))
        except (UnknownQueueError, UnknownTopicError):
            out.append(f"subscription {sub.name!r} of topic {sub.topic!r}")
            continue
        present.append(sub)
    return out, present
