"""The app's AWS resources as a CloudFormation template: what the decorators say is what deploys.

``framework export cloudformation APP`` prints ``template(app.registry)`` as JSON. The template
holds exactly what ``aws://`` declares on start: every queue with its attributes and its
dead-letter queue's redrive policy, every topic, every queue subscription with its filter policy
and raw delivery, the queue policy that lets the topic deliver, and, for ``@on_email`` rules,
an SES receipt rule set whose rules publish received mail to a topic feeding the rule's queue.

This module builds plain dicts; it imports nothing from aiobotocore, so the export works on a
machine without the ``aws`` extra.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from typing import Any

from framework.registry import EmailRule, QueueSpec, Registry, SubscriptionSpec, TopicSpec

__all__ = [
    "inbound_mail_topic",
    "logical_id",
    "mail_topic_policy_document",
    "native_max_receive_count",
    "queue_policy_document",
    "receipt_rule",
    "receipt_rule_set",
    "template",
]

Json = dict[str, Any]

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")

# SQS's own limits. The framework's max_message_size is checked before sending; every queue
# takes anything up to SQS's, so the backend's x-framework attribute and base64 never make a
# message that fits the framework's limit too large for SQS.
SQS_MAX_MESSAGE_SIZE = 1_048_576
SQS_MAX_RECEIVE_COUNT = 1000


def native_max_receive_count(spec: QueueSpec) -> int:
    """The RedrivePolicy's ``maxReceiveCount``: a backstop one past the framework's own limit.

    The runtime dead-letters a message itself, with the reason attributes, on the delivery
    that would exceed ``max_receive_count``. SQS's own redrive only acts if that never
    happens (a worker killed at the wrong moment, every time), and then still keeps the
    message rather than losing it.
    """
    return min(spec.max_receive_count + 1, SQS_MAX_RECEIVE_COUNT)


def logical_id(kind: str, name: str) -> str:
    """Return a CloudFormation logical id for a resource: letters and digits, unique per name.

    The readable part keeps the name's letters and digits; a short hash of the full name keeps
    ``a.b`` and ``a-b`` apart.
    """
    readable = "".join(part[:1].upper() + part[1:] for part in _NOT_ALNUM.split(name) if part)
    digest = hashlib.sha256(name.encode()).hexdigest()[:6].upper()
    return f"{kind}{readable[:200]}{digest}"


def inbound_mail_topic(queue: str) -> str:
    """The SNS topic an SES receipt rule publishes received mail to, feeding ``queue``."""
    return f"{queue}-inbound-mail"


def receipt_rule_set(app_name: str) -> str:
    """The SES receipt rule set holding an app's ``@on_email`` rules, in declaration order."""
    return f"{_NOT_ALNUM.sub('-', app_name).strip('-') or 'app'}-mail-rules"


def _arn(resource: str) -> Json:
    return {"Fn::GetAtt": [resource, "Arn"]}


def _queue(spec: QueueSpec, physical: Callable[[str], str]) -> Json:
    props: Json = {
        "QueueName": physical(spec.name),
        "VisibilityTimeout": math.ceil(spec.visibility_timeout),
        "MessageRetentionPeriod": math.ceil(spec.retention),
        "DelaySeconds": math.ceil(spec.delay),
        # SQS's own ceiling, as the backend declares it: the framework enforces the spec's
        # limit itself, and SQS counts its reserved x-framework attribute on top of the body.
        "MaximumMessageSize": SQS_MAX_MESSAGE_SIZE,
    }
    if spec.fifo:
        props["FifoQueue"] = True
        props["ContentBasedDeduplication"] = spec.content_based_deduplication
    if spec.dead_letter is not None:
        props["RedrivePolicy"] = {
            "deadLetterTargetArn": _arn(logical_id("Queue", spec.dead_letter)),
            "maxReceiveCount": native_max_receive_count(spec),
        }
    return {"Type": "AWS::SQS::Queue", "Properties": props}


def _topic(spec: TopicSpec, physical: Callable[[str], str]) -> Json:
    props: Json = {"TopicName": physical(spec.name)}
    if spec.fifo:
        props["FifoTopic"] = True
        props["ContentBasedDeduplication"] = spec.content_based_deduplication
    return {"Type": "AWS::SNS::Topic", "Properties": props}


def _subscription(topic_id: str, queue: str, sub: SubscriptionSpec | None) -> Json:
    props: Json = {
        "TopicArn": {"Ref": topic_id},
        "Protocol": "sqs",
        "Endpoint": _arn(logical_id("Queue", queue)),
        "RawMessageDelivery": sub.raw if sub is not None else False,
    }
    if sub is not None and sub.filter_policy:
        props["FilterPolicy"] = dict(sub.filter_policy)
        props["FilterPolicyScope"] = sub.filter_policy_scope
    return {"Type": "AWS::SNS::Subscription", "Properties": props}


def _service_policy(sid: str, service: str, action: str, resource: Any, condition: Json) -> Json:
    """A policy of one statement: ``service`` may do ``action`` on ``resource`` if ``condition``."""
    statement = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": action,
        "Resource": resource,
        "Condition": condition,
    }
    return {"Version": "2012-10-17", "Statement": [statement]}


def queue_policy_document(queue_arn: Any, topic_arns: list[Any]) -> Json:
    """The policy that lets ``topic_arns`` (and only them) send to the queue ``queue_arn``.

    SNS delivers to an SQS queue only if the queue's policy allows ``sqs:SendMessage`` to the
    ``sns.amazonaws.com`` service principal; the ``aws:SourceArn`` condition limits that to
    the queue's own topics, so no other topic (of this account or another) can write to it.
    """
    condition = {"ArnEquals": {"aws:SourceArn": topic_arns}}
    return _service_policy(
        "framework-topic-delivery", "sns.amazonaws.com", "sqs:SendMessage", queue_arn, condition
    )


def mail_topic_policy_document(topic_arn: Any, account: Any) -> Json:
    """The policy that lets SES of the account ``account`` (and only it) publish to the topic.

    SES delivers received mail to an SNS topic only if the topic's policy allows
    ``sns:Publish`` to the ``ses.amazonaws.com`` service principal; the ``aws:SourceAccount``
    condition keeps the receipt rules of other accounts out. Shared by the template (with
    references) and the backend (with the real ARN and account), so the two cannot drift.
    """
    condition = {"StringEquals": {"aws:SourceAccount": account}}
    return _service_policy(
        "framework-ses-publish", "ses.amazonaws.com", "sns:Publish", topic_arn, condition
    )


def receipt_rule(rule: EmailRule, topic_arn: Any) -> Json:
    """The SES receipt rule of an ``@on_email`` rule, as ``CreateReceiptRule`` takes it.

    Named after the rule's queue; the recipient conditions are the rule's; spam and virus
    scanning on; an SNS action publishing the whole mail, base64-encoded, to ``topic_arn``;
    and SES's stop action when the rule has ``stop=True``, so later rules do not see its mail.
    """
    actions: list[Json] = [{"SNSAction": {"TopicArn": topic_arn, "Encoding": "Base64"}}]
    if rule.stop:
        actions.append({"StopAction": {"Scope": "RuleSet"}})
    return {
        "Name": rule.queue.name,
        "Enabled": True,
        "ScanEnabled": True,
        "Recipients": list(rule.recipients),
        "Actions": actions,
    }


def _topic_policy(topic_id: str) -> Json:
    """Let SES of this account (and only it) publish received mail to the topic."""
    return {
        "Type": "AWS::SNS::TopicPolicy",
        "Properties": {
            "Topics": [{"Ref": topic_id}],
            "PolicyDocument": mail_topic_policy_document(
                {"Ref": topic_id}, {"Ref": "AWS::AccountId"}
            ),
        },
    }


def _mail_rules(app_name: str, rules: list[EmailRule], physical: Callable[[str], str]) -> Json:
    """SES receipt rules in the app's order, each publishing to a topic feeding its queue.

    SES runs every matching rule in order and stops after one with a stop action, as the
    SMTP receiver does; one topic per rule keeps each rule's mail on its own queue.
    """
    rule_set = receipt_rule_set(app_name)
    rule_set_id = logical_id("ReceiptRuleSet", rule_set)
    resources: Json = {
        rule_set_id: {"Type": "AWS::SES::ReceiptRuleSet", "Properties": {"RuleSetName": rule_set}}
    }
    previous: str | None = None
    for rule in rules:
        topic_name = inbound_mail_topic(rule.queue.name)
        topic_id = logical_id("Topic", topic_name)
        resources[topic_id] = {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": physical(topic_name)},
        }
        resources[logical_id("TopicPolicy", topic_name)] = _topic_policy(topic_id)
        resources[logical_id("Subscription", topic_name)] = _subscription(
            topic_id, rule.queue.name, None
        )
        rule_props = receipt_rule(rule, {"Ref": topic_id})
        props: Json = {"RuleSetName": {"Ref": rule_set_id}, "Rule": rule_props}
        resource: Json = {"Type": "AWS::SES::ReceiptRule", "Properties": props}
        if previous is not None:
            props["After"] = previous
            resource["DependsOn"] = logical_id("ReceiptRule", previous)
        resources[logical_id("ReceiptRule", rule.queue.name)] = resource
        previous = rule.queue.name
    return resources


def template(
    registry: Registry,
    *,
    app_name: str = "app",
    physical: Callable[[str], str] = lambda name: name,
) -> Json:
    """Return the CloudFormation template of everything ``registry`` declares.

    Args:
        registry: The app's declarations (``app.registry``).
        app_name: Names the SES receipt rule set.
        physical: Maps a framework queue or topic name to its AWS name.

    Returns:
        A template dict, ready for ``json.dumps``.
    """
    resources: Json = {}
    outputs: Json = {}
    for spec in registry.queues.values():
        queue_id = logical_id("Queue", spec.name)
        resources[queue_id] = _queue(spec, physical)
        outputs[queue_id + "Url"] = {
            "Description": f"URL of queue {spec.name}",
            "Value": {"Ref": queue_id},
        }
    senders: dict[str, list[str]] = {}
    for topic in registry.topics.values():
        resources[logical_id("Topic", topic.name)] = _topic(topic, physical)
    for sub in registry.subscriptions:
        if sub.queue is None:
            continue  # HTTP and mailto endpoints are delivered by the framework itself
        topic_id = logical_id("Topic", sub.topic)
        resources[logical_id("Subscription", f"{sub.topic}/{sub.name}")] = _subscription(
            topic_id, sub.queue.name, sub
        )
        senders.setdefault(sub.queue.name, []).append(topic_id)
    if registry.email_rules:
        resources.update(_mail_rules(app_name, registry.email_rules, physical))
        for rule in registry.email_rules:
            topic_id = logical_id("Topic", inbound_mail_topic(rule.queue.name))
            senders.setdefault(rule.queue.name, []).append(topic_id)
    for queue, topic_ids in senders.items():
        queue_id = logical_id("Queue", queue)
        resources[logical_id("QueuePolicy", queue)] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": queue_id}],
                "PolicyDocument": queue_policy_document(
                    _arn(queue_id), [{"Ref": t} for t in topic_ids]
                ),
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Queues, topics and mail rules of the framework app {app_name!r}",
        "Resources": resources,
        "Outputs": outputs,
    }
