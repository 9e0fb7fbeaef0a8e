"""Tests for the pure decisions of framework.semantics: retry, FIFO dedup, redrive and fan-out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from framework.codec import JSON, OCTETS, TEXT
from framework.exceptions import UnknownQueueError
from framework.messages import (
    CONTENT_TYPE,
    DLQ_ERROR_MESSAGE,
    DLQ_ERROR_TYPE,
    DLQ_HEADERS,
    DLQ_RECEIVE_COUNT,
    DLQ_SOURCE,
    DLQ_TIME,
    DeadLetterReason,
    Delivery,
)
from framework.registry import QueueSpec, SubscriptionSpec
from framework.semantics.fanout import matching
from framework.semantics.fifo import (
    DEDUPLICATION_WINDOW,
    DeduplicationWindow,
    content_deduplication_id,
)
from framework.semantics.redrive import dead_lettered, redriven, target_of
from framework.semantics.retry import (
    DeadLetter,
    Redeliver,
    after_failure,
    before_handling,
    poison,
)
from framework.semantics.visibility import expired

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SENT = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)


def delivery(receive_count: int = 1, **changes: Any) -> Delivery:
    """Build a delivery from queue ``jobs`` with ``receive_count`` and any field changed."""
    base = Delivery(
        queue="jobs",
        message_id="m-1",
        body=b'{"a":1}',
        attributes={"kind": "x"},
        headers={CONTENT_TYPE: JSON},
        receive_count=receive_count,
        sent_at=SENT,
        first_received_at=SENT,
        receipt="r-1",
    )
    return replace(base, **changes)


# --- retry ----------------------------------------------------------------------------------


def test_failure_before_the_last_receive_is_redelivered_after_retry_delay() -> None:
    """A failure with receives left is redelivered after the queue's retry delay."""
    queue = QueueSpec.from_options("jobs", max_receive_count=3, retry_delay=lambda n: 10.0 * n)
    assert after_failure(delivery(2), queue, RuntimeError("x"), NOW) == Redeliver(delay=20.0)


def test_failure_on_the_last_allowed_receive_is_dead_lettered_now() -> None:
    """The failure on receive ``max_receive_count`` dead-letters with the error's type and text."""
    queue = QueueSpec.from_options("jobs", max_receive_count=3)
    outcome = after_failure(delivery(3), queue, ValueError("bad total"), NOW)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == DeadLetterReason(
        source_queue="jobs",
        receive_count=3,
        error_type="ValueError",
        error_message="bad total",
        time=NOW,
    )


def test_error_without_text_is_described_by_its_type() -> None:
    """An exception with an empty message is recorded by its type name."""
    queue = QueueSpec.from_options("jobs", max_receive_count=1)
    outcome = after_failure(delivery(1), queue, TimeoutError(), NOW)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason.error_message == "TimeoutError"


def test_handler_that_outlived_its_visibility_timeout_is_redelivered_at_once() -> None:
    """A visibility timeout is not a reported failure: the message is visible again now."""
    queue = QueueSpec.from_options("jobs", max_receive_count=3, retry_delay=60)
    outcome = after_failure(delivery(1), queue, expired(30), NOW)
    assert outcome == Redeliver(delay=0.0)


def test_visibility_timeout_on_the_last_receive_is_dead_lettered() -> None:
    """A handler that times out on its last allowed receive is dead-lettered with the timeout."""
    queue = QueueSpec.from_options("jobs", max_receive_count=3)
    outcome = after_failure(delivery(3), queue, expired(30), NOW)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason.error_type == "VisibilityTimeoutError"
    assert "30s" in outcome.reason.error_message


def test_queue_without_dead_letter_queue_always_redelivers() -> None:
    """Without a dead-letter queue a failing message is redelivered however often it failed."""
    queue = QueueSpec(name="jobs", dead_letter=None, max_receive_count=2, visibility_timeout=7)
    assert after_failure(delivery(50), queue, RuntimeError(), NOW) == Redeliver(delay=7.0)


def test_delivery_within_max_receive_count_is_handled() -> None:
    """``before_handling`` lets deliveries up to ``max_receive_count`` reach the handler."""
    queue = QueueSpec.from_options("jobs", max_receive_count=3)
    assert before_handling(delivery(3), queue, NOW) is None


def test_delivery_beyond_max_receive_count_is_dead_lettered_before_handling() -> None:
    """A delivery received more often than allowed (a lost verdict) is dead-lettered unhandled."""
    queue = QueueSpec.from_options("jobs", max_receive_count=3)
    outcome = before_handling(delivery(4), queue, NOW)
    assert outcome is not None
    assert outcome.reason.error_type == "MaxReceiveCountExceeded"
    assert "received 4 times" in outcome.reason.error_message


def test_poison_is_dead_lettered_on_the_first_receive() -> None:
    """A poison body is dead-lettered at once with the decoding error's type and message."""
    outcome = poison(delivery(1), "ValidationError", "total: Field required", NOW)
    assert outcome.reason.receive_count == 1
    assert outcome.reason.error_type == "ValidationError"
    assert outcome.reason.error_message == "total: Field required"


def test_dead_letter_reason_headers_carry_every_field() -> None:
    """A reason becomes the framework's dead-letter headers, the message capped at 1024 chars."""
    reason = DeadLetterReason("jobs", 3, "ValueError", "x" * 2000, NOW)
    headers = reason.headers()
    assert headers[DLQ_SOURCE] == "jobs"
    assert headers[DLQ_RECEIVE_COUNT] == "3"
    assert headers[DLQ_ERROR_TYPE] == "ValueError"
    assert len(headers[DLQ_ERROR_MESSAGE]) == 1024
    assert datetime.fromisoformat(headers[DLQ_TIME]) == NOW


# --- FIFO -----------------------------------------------------------------------------------


def test_dedup_id_seen_within_the_window_is_dropped() -> None:
    """A deduplication id seen less than 300 s ago is refused."""
    window = DeduplicationWindow()
    assert window.accept("d1", now=0.0)
    assert not window.accept("d1", now=299.999)


def test_dedup_window_expires_exactly_at_300_seconds() -> None:
    """At exactly 300 s after first sight the id is accepted again."""
    window = DeduplicationWindow()
    assert DEDUPLICATION_WINDOW == 300.0
    assert window.accept("d1", now=10.0)
    assert window.accept("d1", now=310.0)


def test_duplicate_does_not_extend_the_window() -> None:
    """A refused duplicate does not restart the five minutes: they run from the first send."""
    window = DeduplicationWindow()
    assert window.accept("d1", now=0.0)
    assert not window.accept("d1", now=200.0)
    assert window.accept("d1", now=300.0)


def test_distinct_dedup_ids_do_not_interfere() -> None:
    """Different ids are each accepted once."""
    window = DeduplicationWindow()
    assert window.accept("a", now=0.0)
    assert window.accept("b", now=0.0)
    assert not window.accept("a", now=1.0)
    assert not window.accept("b", now=1.0)


def test_expired_ids_are_forgotten() -> None:
    """Ids older than the window are removed, so memory stays bounded."""
    window = DeduplicationWindow(window=10.0)
    for i in range(100):
        window.accept(f"id-{i}", now=float(i) / 10)
    assert len(window) == 100
    window.accept("late", now=100.0)
    assert len(window) == 1


def test_content_dedup_id_is_the_sha256_of_the_body() -> None:
    """Content-based deduplication ids are the body's SHA-256 in hex, as on SQS."""
    assert content_deduplication_id(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert content_deduplication_id(b"abc") != content_deduplication_id(b"abd")


# --- redrive --------------------------------------------------------------------------------


def dead(source: str | None = "jobs", **changes: Any) -> Delivery:
    """Build a delivery from dead-letter queue ``jobs-dlq``, recording ``source`` if given."""
    headers = {CONTENT_TYPE: JSON, "x-trace": "t1"}
    if source is not None:
        headers |= DeadLetterReason(source, 5, "ValueError", "boom", NOW).headers()
    return delivery(1, queue="jobs-dlq", headers=headers, **changes)


def test_redrive_target_prefers_an_explicit_to() -> None:
    """``to`` wins over the recorded source queue and the declared sources."""
    assert target_of(dead("jobs"), to="elsewhere", sources=["jobs", "other"]) == "elsewhere"


def test_redrive_target_is_the_recorded_source_queue() -> None:
    """Without ``to``, the source recorded at dead-lettering wins over declared sources."""
    assert target_of(dead("recorded"), to=None, sources=["declared"]) == "recorded"


def test_redrive_target_falls_back_to_the_single_declared_source() -> None:
    """A dead letter without a recorded source goes to the one queue using this DLQ."""
    assert target_of(dead(None), to=None, sources=["jobs"]) == "jobs"


@pytest.mark.parametrize("sources", [[], ["a", "b"]])
def test_undecidable_redrive_target_raises_naming_message_and_fix(sources: list[str]) -> None:
    """No ``to``, no recorded source and not exactly one source raises with ``--to`` as fix."""
    with pytest.raises(UnknownQueueError, match=r"message m-1 in 'jobs-dlq'.*--to QUEUE"):
        target_of(dead(None), to=None, sources=sources)


def test_redriven_message_drops_dead_letter_headers_and_keeps_the_rest() -> None:
    """Redriving keeps id, body, attributes, sent time and other headers, without DLQ headers."""
    out = redriven(dead("jobs"), fifo=False)
    assert out.message_id == "m-1"
    assert out.body == b'{"a":1}'
    assert out.attributes == {"kind": "x"}
    assert out.sent_at == SENT
    assert out.headers == {CONTENT_TYPE: JSON, "x-trace": "t1"}
    assert not set(out.headers) & set(DLQ_HEADERS)


def test_redriven_standard_message_has_no_fifo_ids() -> None:
    """A message redriven to a standard queue carries no group or deduplication id."""
    out = redriven(dead("jobs", group_id="g", deduplication_id="d"), fifo=False)
    assert out.group_id is None
    assert out.deduplication_id is None


def test_redriven_fifo_message_keeps_its_group_with_a_fresh_dedup_id() -> None:
    """A FIFO redrive keeps the group and gets a new deduplication id every time."""
    source = dead("jobs.fifo", group_id="g1", deduplication_id="orig")
    first, second = redriven(source, fifo=True), redriven(source, fifo=True)
    assert first.group_id == "g1"
    assert first.deduplication_id not in (None, "orig")
    assert first.deduplication_id != second.deduplication_id


def test_dead_lettered_message_carries_the_reason_and_keeps_the_rest() -> None:
    """A dead letter keeps id, body, attributes, sent time and headers, and adds the reason's
    headers over them; to a standard queue it carries no group or deduplication id."""
    reason = DeadLetterReason("jobs", 3, "ValueError", "boom", NOW)
    source = delivery(3, headers={CONTENT_TYPE: JSON, DLQ_SOURCE: "old"}, group_id="g")
    out = dead_lettered(source, reason, fifo=False)
    assert (out.message_id, out.body, out.attributes, out.sent_at) == (
        "m-1",
        b'{"a":1}',
        {"kind": "x"},
        SENT,
    )
    assert out.headers == {CONTENT_TYPE: JSON, **reason.headers()}
    assert (out.group_id, out.deduplication_id) == (None, None)


def test_dead_lettered_fifo_message_keeps_its_group_with_a_fresh_dedup_id() -> None:
    """On a FIFO dead-letter queue the copy keeps its group and gets a new deduplication id."""
    reason = DeadLetterReason("jobs.fifo", 3, "ValueError", "boom", NOW)
    source = delivery(3, queue="jobs.fifo", group_id="g1", deduplication_id="orig")
    first, second = (
        dead_lettered(source, reason, fifo=True),
        dead_lettered(source, reason, fifo=True),
    )
    assert first.group_id == "g1"
    assert first.deduplication_id not in (None, "orig")
    assert first.deduplication_id != second.deduplication_id


# --- fan-out --------------------------------------------------------------------------------


def sub(name: str, policy: dict[str, Any] | None = None, scope: str = "MessageAttributes") -> Any:
    """Build a subscription of topic ``events`` called ``name``."""
    return SubscriptionSpec(
        topic="events", name=name, queue=None, filter_policy=policy, filter_policy_scope=scope
    )


def names(subs: list[SubscriptionSpec]) -> list[str]:
    """Return the subscriptions' names."""
    return [s.name for s in subs]


def test_subscription_without_policy_gets_every_message() -> None:
    """A subscription without a filter policy receives everything, in declaration order."""
    subs = [sub("b"), sub("a")]
    assert names(matching(subs, attributes={}, body=b"x", content_type=TEXT)) == ["b", "a"]


def test_attribute_policy_selects_by_attributes() -> None:
    """An attribute-scoped policy matches the message attributes only."""
    subs = [sub("created", {"type": ["created"]}), sub("deleted", {"type": ["deleted"]})]
    chosen = matching(subs, attributes={"type": "created"}, body=b"{}", content_type=JSON)
    assert names(chosen) == ["created"]


def test_attribute_policy_ignores_the_body() -> None:
    """An attribute-scoped policy does not look into a JSON body with the same key."""
    subs = [sub("created", {"type": ["created"]})]
    chosen = matching(subs, attributes={}, body=b'{"type":"created"}', content_type=JSON)
    assert chosen == []


def test_body_policy_selects_by_json_body() -> None:
    """A body-scoped policy matches fields of the JSON body, nested ones included."""
    subs = [
        sub("big", {"order": {"total": [{"numeric": [">", 100]}]}}, "MessageBody"),
        sub("small", {"order": {"total": [{"numeric": ["<=", 100]}]}}, "MessageBody"),
    ]
    body = b'{"order": {"total": 250}}'
    assert names(matching(subs, attributes={}, body=body, content_type=JSON)) == ["big"]


def test_body_policy_reads_json_sent_as_text() -> None:
    """A JSON object sent as a str (text content type) is still matched by a body policy."""
    subs = [sub("x", {"k": ["v"]}, "MessageBody")]
    assert names(matching(subs, attributes={}, body=b'{"k":"v"}', content_type=TEXT)) == ["x"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"hello", TEXT),
        (b"{broken", JSON),
        (b"{broken", TEXT),
        (b'["k"]', JSON),
        (b'"k"', JSON),
        (b"\xff\xfe", JSON),
        (b"\x00\x01", OCTETS),
    ],
)
def test_non_json_object_body_never_matches_a_body_policy(body: bytes, content_type: str) -> None:
    """A body that is not a JSON object never matches a body policy, even a catch-all one."""
    subs = [sub("x", {"k": [{"exists": False}]}, "MessageBody"), sub("all")]
    assert names(matching(subs, attributes={"k": "v"}, body=body, content_type=content_type)) == [
        "all"
    ]
