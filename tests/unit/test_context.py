"""Tests for framework.context: the envelope a handler sees and the dead-letter info it carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from framework.context import DeadLetterInfo, Message
from framework.messages import (
    CONTENT_TYPE,
    DLQ_RECEIVE_COUNT,
    DLQ_SOURCE,
    DLQ_TIME,
    DeadLetterReason,
    Delivery,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def delivery(headers: dict[str, str]) -> Delivery:
    """Build a delivery from ``jobs-dlq`` with ``headers``."""
    return Delivery(
        queue="jobs-dlq",
        message_id="m-1",
        body=b"{}",
        attributes={"a": 1},
        headers=headers,
        receive_count=2,
        sent_at=NOW - timedelta(minutes=5),
        first_received_at=NOW,
        receipt="r",
        group_id="g",
        deduplication_id="d",
    )


def test_message_without_dead_letter_headers_has_no_dead_letter_info() -> None:
    """A message that was never dead-lettered says so with ``dead_letter=None``."""
    message = Message.from_delivery(delivery({CONTENT_TYPE: "application/json"}))
    assert message.dead_letter is None
    assert message.content_type == "application/json"


def test_message_copies_the_delivery_envelope() -> None:
    """The envelope carries id, body, attributes, counts, times, group and dedup ids."""
    d = delivery({})
    message = Message.from_delivery(d)
    assert (message.id, message.body, message.attributes) == ("m-1", b"{}", {"a": 1})
    assert (message.receive_count, message.queue) == (2, "jobs-dlq")
    assert (message.sent_at, message.first_received_at) == (d.sent_at, d.first_received_at)
    assert (message.group_id, message.deduplication_id) == ("g", "d")
    assert message.content_type == "application/octet-stream"


def test_dead_letter_headers_round_trip_into_dead_letter_info() -> None:
    """The headers written at dead-lettering read back as the same reason."""
    reason = DeadLetterReason("jobs", 5, "ValueError", "bad total", NOW)
    info = Message.from_delivery(delivery(reason.headers())).dead_letter
    assert info == DeadLetterInfo("jobs", 5, "ValueError", "bad total", NOW)


def test_partial_dead_letter_headers_fill_in_defaults() -> None:
    """Missing count, type and message read as 0 and empty strings."""
    info = DeadLetterInfo.from_headers({DLQ_SOURCE: "jobs", DLQ_TIME: NOW.isoformat()})
    assert info == DeadLetterInfo("jobs", 0, "", "", NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {DLQ_SOURCE: "jobs"},
        {DLQ_SOURCE: "jobs", DLQ_TIME: "yesterday"},
        {DLQ_SOURCE: "jobs", DLQ_TIME: NOW.isoformat(), DLQ_RECEIVE_COUNT: "many"},
    ],
)
def test_malformed_dead_letter_headers_do_not_stop_delivery(headers: dict[str, str]) -> None:
    """A message with incomplete or garbled dead-letter headers still becomes a Message."""
    message = Message.from_delivery(delivery(headers))
    assert message.dead_letter is not None
    assert message.dead_letter.source_queue == "jobs"
