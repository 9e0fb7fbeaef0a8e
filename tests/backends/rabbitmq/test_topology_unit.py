"""Unit tests of the RabbitMQ mapping that need no broker: URLs, arguments, receive counts."""

from __future__ import annotations

import pytest
from pamqp import frame as amqp_frame
from pamqp.commands import Basic

from framework.backends.rabbitmq.acks import ack_frame
from framework.backends.rabbitmq.settings import RabbitMQSettings
from framework.backends.rabbitmq.topology import (
    DELIVERY_LIMIT,
    delay_milliseconds,
    delay_queue_arguments,
    delay_queue_name,
    queue_arguments,
)
from framework.backends.rabbitmq.wire import (
    DELIVERY_COUNT,
    RECEIVE_COUNT,
    receive_count,
)
from framework.exceptions import ConfigError
from framework.registry import QueueSpec


@pytest.mark.parametrize(
    ("headers", "count"),
    [
        ({}, 1),  # a first delivery: RabbitMQ 3.10 omits x-delivery-count
        ({DELIVERY_COUNT: 0}, 1),  # ... or sends 0 when a delivery limit is set
        ({DELIVERY_COUNT: 2}, 3),  # two broker redeliveries (channel closed, requeue)
        ({RECEIVE_COUNT: 4}, 5),  # a copy re-published by a release after four receipts
        ({RECEIVE_COUNT: 4, DELIVERY_COUNT: 1}, 6),  # ... that the broker redelivered once
        ({RECEIVE_COUNT: b"2", DELIVERY_COUNT: "1"}, 4),  # bytes and strings from other clients
        ({RECEIVE_COUNT: "junk", DELIVERY_COUNT: -3}, 1),  # damaged headers never go below 1
    ],
)
def test_receive_count_adds_released_receipts_broker_redeliveries_and_this_one(
    headers: dict[str, object], count: int
) -> None:
    """The receive count is the header's receipts plus x-delivery-count plus this delivery."""
    assert receive_count(headers) == count


def test_standard_queue_is_a_quorum_queue_with_explicit_limit_and_dead_letter_route() -> None:
    """A queue with a DLQ is quorum, has a delivery limit far above any max_receive_count,
    and dead-letters to its DLQ through the default exchange."""
    args = queue_arguments(QueueSpec.from_options("jobs"))
    assert args == {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "jobs-dlq",
    }
    assert DELIVERY_LIMIT > 1000


def test_queue_arguments_ignore_options_that_may_change() -> None:
    """Changing visibility timeout, retries or delay keeps the arguments, so a redeclare works."""
    before = queue_arguments(QueueSpec.from_options("jobs"))
    after = queue_arguments(
        QueueSpec.from_options(
            "jobs", visibility_timeout=99, max_receive_count=9, retry_delay=3, delay=5
        )
    )
    assert before == after


def test_fifo_queue_has_a_single_active_consumer_and_test_queues_expire() -> None:
    """A FIFO queue gets x-single-active-consumer; queue_expires sets x-expires in ms."""
    args = queue_arguments(QueueSpec.from_options("jobs.fifo"), expires=1.5)
    assert args["x-single-active-consumer"] is True
    assert args["x-dead-letter-routing-key"] == "jobs-dlq.fifo"
    assert args["x-expires"] == 1500


def test_dead_letter_queue_has_no_dead_letter_route() -> None:
    """A DLQ (dead_letter=None) has no route of its own, only the explicit delivery limit."""
    spec = QueueSpec.from_options("jobs").dead_letter_spec()
    assert spec is not None
    assert queue_arguments(spec) == {"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT}


def test_delay_queue_expires_messages_back_to_its_queue() -> None:
    """``NAME.delay.<ms>`` holds messages ``ms`` then dead-letters them to NAME, and deletes
    itself only after more than twice its delay unused."""
    assert delay_milliseconds(1.5) == 1500
    assert delay_milliseconds(0.0001) == 1
    assert delay_queue_name("jobs", 1500) == "jobs.delay.1500"
    args = delay_queue_arguments("jobs", 1500)
    assert args["x-message-ttl"] == 1500
    assert (args["x-dead-letter-exchange"], args["x-dead-letter-routing-key"]) == ("", "jobs")
    assert args["x-queue-type"] == "classic"
    assert args["x-expires"] > 2 * 1500


def test_url_options_are_split_from_the_broker_url() -> None:
    """The backend's options leave the URL aio-pika sees; the broker's own options stay."""
    settings = RabbitMQSettings.from_url(
        "amqp://u:p@host:5673/vh?heartbeat=30&queue_expires=60&lease_grace=2&prefetch=50"
        "&fifo_prefetch=300&connection_name=worker-1&delete_on_exit=1"
    )
    assert settings.url == "amqp://u:p@host:5673/vh?heartbeat=30"
    assert settings.queue_expires == 60
    assert settings.lease_grace == 2
    assert settings.prefetch == 50
    assert settings.fifo_prefetch == 300
    assert settings.connection_name == "worker-1"
    assert settings.delete_on_exit is True
    assert RabbitMQSettings.from_url("amqps://h/").queue_expires is None


@pytest.mark.parametrize(
    "url",
    [
        "amqp://h/?queue_expires=soon",
        "amqp://h/?lease_grace=-1",
        "amqp://h/?prefetch=0",
        "http://h/",
    ],
)
def test_bad_url_option_is_refused_by_name(url: str) -> None:
    """A malformed option, or a URL that is not amqp(s)://, raises ConfigError."""
    with pytest.raises(ConfigError):
        RabbitMQSettings.from_url(url)


def test_packed_ack_frames_are_those_pamqp_encodes() -> None:
    """The batched acks' hand-packed basic.ack frames are byte for byte pamqp's."""
    for channel, tag, multiple in [(1, 1, False), (7, 300, True), (65535, 2**63 - 1, True)]:
        expected = amqp_frame.marshal(Basic.Ack(delivery_tag=tag, multiple=multiple), channel)
        assert ack_frame(channel, tag, multiple=multiple) == expected
