"""Inbound mail on AWS: the SES receipt rules of an app's ``@on_email`` rules, declared on start.

For each ``@on_email`` rule, in declaration order, the backend declares what
``framework export cloudformation`` writes (the same pure functions of ``cloudformation.py``
build both, so they cannot drift):

- the SNS topic ``QUEUE-inbound-mail`` (``inbound_mail_topic``), whose policy lets SES of this
  account, and only it, publish to it (``mail_topic_policy_document``);
- the rule's queue subscribed to that topic **without** raw delivery (the SES notification,
  envelope and verdicts included, is the SNS message), with a queue policy that lets the topic
  send to it (``queue_policy``);
- a receipt rule named after the queue (``receipt_rule``) in the app's rule set
  ``APP-mail-rules`` (``receipt_rule_set``), after the previous rule, so SES runs them in the
  app's order.

The rule set is never activated here: only one rule set is active per account and region, so
activating it (``SetActiveReceiptRuleSet``) is the operator's decision, not a side effect of
starting a worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from framework.exceptions import MissingResourcesError, UnknownQueueError, UnknownTopicError
from framework.registry import EmailRule, SubscriptionSpec, TopicSpec

from .cloudformation import (
    inbound_mail_topic,
    mail_topic_policy_document,
    receipt_rule,
    receipt_rule_set,
)
from .sns import Topics, queue_policy
from .sqs import Queues, error_code

__all__ = ["ReceiptRules", "mail_subscription"]

_ALREADY_EXISTS = "AlreadyExists"
_NO_RULE_SET = "RuleSetDoesNotExist"


def mail_subscription(rule: EmailRule) -> SubscriptionSpec:
    """The subscription of ``rule``'s queue to its inbound-mail topic: not raw, no filter."""
    return SubscriptionSpec(
        topic=inbound_mail_topic(rule.queue.name), name="ses", queue=rule.queue, raw=False
    )


def _account(topic_arn: str) -> str:
    """The account id in an ARN (``arn:aws:sns:REGION:ACCOUNT:NAME``)."""
    return topic_arn.split(":")[4]


def _differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """True if the stored rule lacks or changes any field the framework sets."""
    return any(current.get(key) != value for key, value in wanted.items())


class ReceiptRules:
    """Declares and checks the SES receipt rules, topics and subscriptions of ``@on_email``."""

    def __init__(self, ses: Any, sqs: Queues, sns: Topics, *, declare: bool = True) -> None:
        self.ses = ses
        self.sqs = sqs
        self.sns = sns
        self.declare_resources = declare

    async def declare(
        self,
        app_name: str,
        rules: Sequence[EmailRule],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Create (or converge) the topic, subscription and receipt rule of every rule.

        The queues must exist already (the runtime declares queues first). A rule that exists
        with other recipients, actions or stop is updated; one out of the app's order is moved
        after its predecessor. Rules of the set the app no longer declares are left alone.

        Args:
            app_name: The app's name; it names the rule set (``receipt_rule_set``).
            rules: The app's ``@on_email`` rules, in declaration order.
            progress: Called with one line per rule once it is declared.

        Raises:
            MissingResourcesError: With ``declare=0``, listing what does not exist.
        """
        if not self.declare_resources:
            absent = await self.missing(app_name, rules)
            if absent:
                raise MissingResourcesError(absent)
            return
        rule_set = receipt_rule_set(app_name)
        topics = [await self._topic_feeding(rule) for rule in rules]
        try:
            await self.ses.create_receipt_rule_set(RuleSetName=rule_set)
        except ClientError as exc:
            if error_code(exc) != _ALREADY_EXISTS:
                raise
        stored = await self._stored_rules(rule_set)
        order = [str(r.get("Name")) for r in stored]
        by_name = {str(r.get("Name")): r for r in stored}
        previous: str | None = None
        for rule, topic_arn in zip(rules, topics, strict=True):
            wanted = receipt_rule(rule, topic_arn)
            name = str(wanted["Name"])
            current = by_name.get(name)
            if current is None:
                await self._create(rule_set, wanted, previous)
                order.insert(order.index(previous) + 1 if previous is not None else 0, name)
            else:
                if _differs(current, wanted):
                    await self.ses.update_receipt_rule(RuleSetName=rule_set, Rule=wanted)
                if previous is not None and order.index(name) < order.index(previous):
                    await self.ses.set_receipt_rule_position(
                        RuleSetName=rule_set, RuleName=name, After=previous
                    )
                    order.remove(name)
                    order.insert(order.index(previous) + 1, name)
            previous = name
            if progress is not None:
                progress(
                    f"mail rule {name!r} of SES rule set {rule_set!r} "
                    f"(topic {inbound_mail_topic(rule.queue.name)!r})"
                )

    async def _topic_feeding(self, rule: EmailRule) -> str:
        """Declare ``rule``'s inbound-mail topic with SES's policy, subscribe the queue to it."""
        subscription = mail_subscription(rule)
        topic_arn = await self.sns.declare_topic(TopicSpec.from_options(subscription.topic))
        policy = mail_topic_policy_document(topic_arn, _account(topic_arn))
        await self.sns.client.set_topic_attributes(
            TopicArn=topic_arn,
            AttributeName="Policy",
            AttributeValue=json.dumps(policy, separators=(",", ":")),
        )
        queue = rule.queue.name
        queue_arn = await self.sqs.arn(queue)
        await self.sqs.client.set_queue_attributes(
            QueueUrl=await self.sqs.url(queue),
            Attributes={"Policy": queue_policy(queue_arn, [topic_arn])},
        )
        await self.sns.subscribe(subscription, queue_arn=queue_arn)
        return topic_arn

    async def _create(self, rule_set: str, rule: Mapping[str, Any], after: str | None) -> None:
        """Create ``rule`` after ``after`` (else first); update it if it appeared meanwhile."""
        kwargs: dict[str, Any] = {"RuleSetName": rule_set, "Rule": rule}
        if after is not None:
            kwargs["After"] = after
        try:
            await self.ses.create_receipt_rule(**kwargs)
        except ClientError as exc:
            if error_code(exc) != _ALREADY_EXISTS:
                raise
            # Another process starting at the same moment created it first.
            await self.ses.update_receipt_rule(RuleSetName=rule_set, Rule=rule)

    async def _stored_rules(self, rule_set: str) -> list[Mapping[str, Any]]:
        """The rules of ``rule_set`` in SES's order (empty if the set does not exist)."""
        try:
            response = await self.ses.describe_receipt_rule_set(RuleSetName=rule_set)
        except ClientError as exc:
            if error_code(exc) != _NO_RULE_SET:
                raise
            return []
        return list(response.get("Rules") or ())

    async def missing(self, app_name: str, rules: Sequence[EmailRule]) -> list[str]:
        """Return one line per inbound-mail resource that does not exist; create nothing.

        The topics, the subscriptions of the rules' queues to them, the rule set and each
        rule (by name; its content is not compared).
        """
        out: list[str] = []
        for rule in rules:
            subscription = mail_subscription(rule)
            try:
                await self.sns.arn(subscription.topic)
            except UnknownTopicError:
                out.append(f"topic {subscription.topic!r}")
            try:
                queue_arn = await self.sqs.arn(rule.queue.name)
                await self.sns.subscription_of(subscription, queue_arn=queue_arn)
            except (UnknownQueueError, UnknownTopicError):
                out.append(
                    f"subscription of queue {rule.queue.name!r} to topic {subscription.topic!r}"
                )
        rule_set = receipt_rule_set(app_name)
        try:
            response = await self.ses.describe_receipt_rule_set(RuleSetName=rule_set)
        except ClientError as exc:
            if error_code(exc) != _NO_RULE_SET:
                raise
            out.append(f"SES receipt rule set {rule_set!r}")
            response = {}
        stored = {str(r.get("Name")) for r in response.get("Rules") or ()}
        out.extend(
            f"SES receipt rule {rule.queue.name!r} of rule set {rule_set!r}"
            for rule in rules
            if rule.queue.name not in stored
        )
        return out
