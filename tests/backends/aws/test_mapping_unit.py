"""The AWS backend's pure parts: URL options, names, attribute packing, policies. No server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

pytest.importorskip("aiobotocore", reason="the aws extra is not installed")

from framework.backends.aws.settings import AWSSettings, physical_name
from framework.backends.aws.sns import queue_policy, subscription_attributes
from framework.backends.aws.sqs import (
    is_stale_receipt,
    queue_attributes,
    redrive_policy,
    seconds,
)
from framework.backends.aws.wire import META, decode, encode
from framework.exceptions import ConfigError, InvalidMessageError
from framework.messages import AttributeValue, Outgoing
from framework.registry import QueueSpec, SubscriptionSpec

SENT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def received(message: Outgoing, **system: str) -> dict[str, Any]:
    """What ReceiveMessage returns for ``message`` sent through ``encode``."""
    encoded = encode(message, message_id="m-1", sent_at=SENT)
    return {
        "MessageId": "sqs-1",
        "ReceiptHandle": "r-1",
        "Body": encoded.body,
        "MessageAttributes": encoded.attributes,
        "Attributes": {"ApproximateReceiveCount": "2", **system},
    }


def test_url_gives_region_endpoint_and_options() -> None:
    """``aws://REGION?endpoint_url=...&declare=0&filtering=subscriber`` is parsed whole."""
    s = AWSSettings.from_url(
        "aws://eu-west-1?endpoint_url=http://127.0.0.1:5000&declare=0&filtering=subscriber"
    )
    assert (s.region, s.endpoint_url, s.declare, s.filtering) == (
        "eu-west-1",
        "http://127.0.0.1:5000",
        False,
        "subscriber",
    )


@pytest.mark.parametrize(
    "url",
    ["aws://nowhere", "aws://us-east-1?colour=red", "aws://us-east-1?filtering=sometimes"],
)
def test_bad_url_is_refused_with_config_error(url: str) -> None:
    """A bad region, an unknown option or a bad value raises ConfigError."""
    with pytest.raises(ConfigError):
        AWSSettings.from_url(url)


def test_emulator_without_credentials_gets_dummy_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an endpoint and no credentials in the environment, the ``testing`` pair is used."""
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(variable, raising=False)
    options = AWSSettings.from_url(
        "aws://us-east-1?endpoint_url=http://127.0.0.1:1"
    ).client_options()
    assert options["aws_access_key_id"] == "testing"
    assert "aws_access_key_id" not in AWSSettings.from_url("aws://us-east-1").client_options()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    options = AWSSettings.from_url(
        "aws://us-east-1?endpoint_url=http://127.0.0.1:1"
    ).client_options()
    assert "aws_access_key_id" not in options


@pytest.mark.parametrize(
    ("name", "physical"),
    [
        ("orders", "orders"),
        ("orders.billing", "orders_billing"),
        ("orders.billing-dlq", "orders_billing-dlq"),
        ("orders.billing.fifo", "orders_billing.fifo"),
        ("orders-dlq.fifo", "orders-dlq.fifo"),
    ],
)
def test_dots_become_underscores_and_the_fifo_suffix_stays(name: str, physical: str) -> None:
    """SQS and SNS names have no dots: each one before ``.fifo`` becomes ``_``."""
    assert physical_name(name) == physical


def test_attributes_round_trip_with_their_python_types() -> None:
    """str, int, float, bool and list attributes come back equal and of the same types."""
    attributes: dict[str, AttributeValue] = {
        "s": "x",
        "i": 3,
        "f": 2.5,
        "whole": 1.0,
        "b": True,
        "l": ["a", 1, False],
    }
    delivery = decode("q", received(Outgoing(body=b"{}", attributes=attributes)), now=SENT)
    assert delivery.attributes == attributes
    assert [type(v) for v in delivery.attributes.values()] == [type(v) for v in attributes.values()]
    assert (delivery.message_id, delivery.receive_count, delivery.sent_at) == ("m-1", 2, SENT)


def test_user_attributes_are_native_and_framework_data_is_one_attribute() -> None:
    """Each user attribute is an SQS attribute of its type; the rest is packed in x-framework."""
    message = Outgoing(
        body=b"{}",
        attributes={"type": "created", "n": 2, "tags": ["a"]},
        headers={"content-type": "application/json"},
    )
    encoded = encode(message, message_id="m-1", sent_at=SENT)
    assert encoded.attributes["type"] == {"DataType": "String", "StringValue": "created"}
    assert encoded.attributes["n"] == {"DataType": "Number", "StringValue": "2"}
    assert encoded.attributes["tags"] == {"DataType": "String.Array", "StringValue": '["a"]'}
    meta = json.loads(encoded.attributes[META]["StringValue"])
    assert meta == {
        "id": "m-1",
        "sent": SENT.isoformat(),
        "h": {"content-type": "application/json"},
    }
    assert encoded.packed == ()


def test_ten_user_attributes_fit_by_packing_the_tenth() -> None:
    """SQS takes ten attributes: nine user ones stay native, the tenth travels packed."""
    attributes: dict[str, AttributeValue] = {f"a{n}": n for n in range(10)}
    encoded = encode(Outgoing(body=b"x", attributes=attributes), message_id="m", sent_at=SENT)
    assert len(encoded.attributes) == 10
    assert encoded.packed == ("a9",)
    delivery = decode("q", received(Outgoing(body=b"x", attributes=attributes)), now=SENT)
    assert delivery.attributes == attributes


def test_attributes_sqs_cannot_carry_travel_packed() -> None:
    """An empty string, a name SQS refuses and an exponent number are packed, and come back."""
    attributes: dict[str, AttributeValue] = {"empty": "", "AWS.reserved": "x", "tiny": 1e-9}
    encoded = encode(Outgoing(body=b"x", attributes=attributes), message_id="m", sent_at=SENT)
    assert set(encoded.packed) == set(attributes)
    delivery = decode("q", received(Outgoing(body=b"x", attributes=attributes)), now=SENT)
    assert delivery.attributes == attributes


@pytest.mark.parametrize("body", [b"\x00\xffraw", b"", b"\x01control", b"\xef\xbf\xbe"])
def test_bodies_sqs_cannot_take_as_text_go_base64(body: bytes) -> None:
    """Binary, empty and control-character bodies are sent base64 and come back unchanged."""
    encoded = encode(Outgoing(body=body), message_id="m", sent_at=SENT)
    assert json.loads(encoded.attributes[META]["StringValue"])["enc"] == "base64"
    assert encoded.body
    assert decode("q", received(Outgoing(body=body)), now=SENT).body == body


def test_text_bodies_are_sent_as_they_are() -> None:
    """A UTF-8 body is the SQS body unchanged, so SNS's MessageBody filters can read it."""
    body = '{"name":"é"}'.encode()
    encoded = encode(Outgoing(body=body), message_id="m", sent_at=SENT)
    assert encoded.body == '{"name":"é"}'
    assert "enc" not in json.loads(encoded.attributes[META]["StringValue"])


def test_reserved_attribute_name_is_refused() -> None:
    """A user attribute named x-framework raises InvalidMessageError."""
    with pytest.raises(InvalidMessageError, match=META):
        encode(Outgoing(body=b"x", attributes={META: "mine"}), message_id="m", sent_at=SENT)


def test_message_from_another_sender_keeps_the_sqs_id() -> None:
    """A message without x-framework is read as UTF-8 bytes with SQS's own id and send time."""
    message = {
        "MessageId": "sqs-9",
        "ReceiptHandle": "r",
        "Body": "plain",
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767323045000"},
    }
    delivery = decode("q", message, now=SENT)
    assert (delivery.message_id, delivery.body, delivery.headers) == ("sqs-9", b"plain", {})
    assert delivery.sent_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_size_counts_utf8_bytes_of_body_names_types_and_values() -> None:
    """``Encoded.size`` is what SQS counts: UTF-8 bytes of the body and every attribute part."""
    encoded = encode(
        Outgoing(body="é".encode(), attributes={"k": "v"}), message_id="m", sent_at=SENT
    )
    meta = encoded.attributes[META]["StringValue"]
    expected = 2 + len("k") + len("String") + len("v") + len(META) + len("String")
    assert encoded.size() == expected + len(meta.encode())


def test_redrive_policy_is_a_backstop_one_receive_later() -> None:
    """The native RedrivePolicy moves a message one receive after the framework would."""
    spec = QueueSpec.from_options("q", max_receive_count=3)
    policy = json.loads(redrive_policy("arn:aws:sqs:us-east-1:1:q-dlq", spec))
    assert policy == {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:q-dlq", "maxReceiveCount": 4}
    most = QueueSpec.from_options("q", max_receive_count=1000)
    assert json.loads(redrive_policy("arn", most))["maxReceiveCount"] == 1000  # SQS's ceiling


def test_queue_attributes_follow_the_spec() -> None:
    """Visibility, retention, delay, FIFO and deduplication map to SQS attributes, rounded up."""
    spec = QueueSpec.from_options(
        "q.fifo", visibility_timeout=1.5, delay=2, content_based_deduplication=True
    )
    attributes = queue_attributes(spec, dead_letter_arn="arn:dlq")
    assert attributes["VisibilityTimeout"] == "2"
    assert attributes["DelaySeconds"] == "2"
    assert attributes["MessageRetentionPeriod"] == str(4 * 24 * 3600)
    assert (attributes["FifoQueue"], attributes["ContentBasedDeduplication"]) == ("true", "true")
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 6
    assert (seconds(0), seconds(1.0), seconds(1.2)) == (0, 1, 2)


def test_queue_policy_lets_only_the_topic_send() -> None:
    """The queue policy allows sqs:SendMessage to SNS for this topic's ARN, and nothing more."""
    policy = json.loads(
        queue_policy("arn:aws:sqs:us-east-1:1:t_sub", ["arn:aws:sns:us-east-1:1:t"])
    )
    assert policy["Version"] == "2012-10-17"
    [statement] = policy["Statement"]
    assert statement == {
        "Sid": "framework-topic-delivery",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": "arn:aws:sqs:us-east-1:1:t_sub",
        "Condition": {"ArnEquals": {"aws:SourceArn": ["arn:aws:sns:us-east-1:1:t"]}},
    }


def test_subscription_is_raw_with_its_filter_policy_and_scope() -> None:
    """Native filtering puts the policy and its scope on the subscription; subscriber does not."""
    sub = SubscriptionSpec(
        topic="t",
        name="s",
        queue=QueueSpec.from_options("t.s"),
        filter_policy={"order": {"status": ["paid"]}},
        filter_policy_scope="MessageBody",
    )
    native = subscription_attributes(sub, filtering="native")
    assert native == {
        "RawMessageDelivery": "true",
        "FilterPolicy": '{"order":{"status":["paid"]}}',
        "FilterPolicyScope": "MessageBody",
    }
    assert subscription_attributes(sub, filtering="subscriber") == {"RawMessageDelivery": "true"}


@pytest.mark.parametrize(
    ("code", "message", "stale"),
    [
        ("ReceiptHandleIsInvalid", "", True),
        ("AWS.SimpleQueueService.MessageNotInflight", "", True),
        ("InvalidParameterValue", "Value x for parameter ReceiptHandle is invalid.", True),
        ("InvalidParameterValue", "Value 50000 for parameter VisibilityTimeout is invalid.", False),
        ("AccessDenied", "", False),
    ],
)
def test_only_errors_about_the_receipt_count_as_stale(code: str, message: str, stale: bool) -> None:
    """A stale receipt is a no-op; a bad timeout or a refusal is an error."""
    assert is_stale_receipt(code, message) is stale
