"""Tests for the frozen specs of framework.registry: queue options, retry delays, the registry."""

from __future__ import annotations

import re
from typing import Any

import pytest

from framework.binding import bind
from framework.exceptions import DeclarationError
from framework.registry import (
    MAX_VISIBILITY_TIMEOUT,
    ConsumerSpec,
    EmailRule,
    QueueSpec,
    Registry,
    SubscriptionSpec,
)


def refused(name: str, pattern: str, **options: Any) -> None:
    """Assert that ``QueueSpec.from_options`` refuses ``options`` with a message matching."""
    with pytest.raises(DeclarationError, match=pattern):
        QueueSpec.from_options(name, **options)


async def first(body: str) -> None:
    """A queue handler for registry tests."""


async def second(body: str) -> None:
    """Another queue handler for registry tests."""


# --- defaults -------------------------------------------------------------------------------


def test_standard_queue_defaults_follow_the_spec() -> None:
    """A queue declared without options gets a 30 s visibility timeout and 5 receives."""
    spec = QueueSpec.from_options("orders")
    assert spec.visibility_timeout == 30.0
    assert spec.max_receive_count == 5
    assert spec.delay == 0.0
    assert spec.max_message_size == 262_144
    assert spec.retention == 4 * 24 * 3600.0
    assert not spec.fifo


def test_default_dead_letter_queue_is_name_dash_dlq() -> None:
    """A standard queue's dead-letter queue defaults to ``NAME-dlq``."""
    assert QueueSpec.from_options("orders").dead_letter == "orders-dlq"


def test_fifo_dead_letter_queue_keeps_the_fifo_suffix_last() -> None:
    """A FIFO queue ``q.fifo`` dead-letters to ``q-dlq.fifo``, itself a valid FIFO name."""
    spec = QueueSpec.from_options("q.fifo")
    assert spec.fifo
    assert spec.dead_letter == "q-dlq.fifo"


def test_fifo_is_inferred_from_the_name() -> None:
    """A name ending in ``.fifo`` makes a FIFO queue without ``fifo=True``."""
    assert QueueSpec.from_options("jobs.fifo").fifo
    assert QueueSpec.from_options("jobs.fifo", fifo=True).fifo


def test_dead_letter_spec_matches_the_source_type_and_has_no_dlq() -> None:
    """The implied dead-letter queue is of the source's type, with no dead-letter queue itself."""
    dlq = QueueSpec.from_options("q.fifo").dead_letter_spec()
    assert dlq is not None
    assert dlq.name == "q-dlq.fifo"
    assert dlq.fifo
    assert dlq.dead_letter is None
    assert dlq.is_dead_letter_queue


def test_explicit_dead_letter_name_is_used() -> None:
    """``dead_letter="NAME"`` names the dead-letter queue instead of the default."""
    assert QueueSpec.from_options("orders", dead_letter="failed").dead_letter == "failed"


def test_dead_letter_none_disables_the_dead_letter_queue() -> None:
    """``dead_letter=None`` declares a queue without a dead-letter queue."""
    spec = QueueSpec.from_options("orders", dead_letter=None)
    assert spec.dead_letter is None
    assert spec.dead_letter_spec() is None


# --- validation -----------------------------------------------------------------------------


def test_unknown_option_is_named_with_the_allowed_ones() -> None:
    """An unknown option is refused, naming it and listing the allowed options."""
    with pytest.raises(DeclarationError, match="visiblity_timeout") as info:
        QueueSpec.from_options("orders", visiblity_timeout=10)
    assert "allowed: " in str(info.value)
    assert "visibility_timeout" in str(info.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("visibility_timeout", -1),
        ("visibility_timeout", MAX_VISIBILITY_TIMEOUT + 1),
        ("delay", 901),
        ("delay", -0.5),
        ("max_receive_count", 0),
        ("batch_size", 0),
        ("batch_size", 11),
        ("concurrency", 0),
        ("retention", 59),
        ("retention", 14 * 24 * 3600 + 1),
        ("max_message_size", 1023),
        ("max_message_size", 1_048_577),
        ("retry_delay", -1),
        ("retry_delay", MAX_VISIBILITY_TIMEOUT + 1),
    ],
)
def test_out_of_range_option_is_refused_naming_option_and_value(option: str, value: float) -> None:
    """An option outside its allowed range is refused with its name and value in the message."""
    refused("orders", re.escape(f"{option}={value!r}"), **{option: value})


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("visibility_timeout", MAX_VISIBILITY_TIMEOUT),
        ("visibility_timeout", 0),
        ("delay", 900),
        ("batch_size", 1),
        ("batch_size", 10),
        ("max_message_size", 1_048_576),
        ("retry_delay", 0),
    ],
)
def test_option_at_the_edge_of_its_range_is_accepted(option: str, value: float) -> None:
    """An option exactly at the bound of its range is accepted and kept."""
    spec = QueueSpec.from_options("orders", **{option: value})
    assert getattr(spec, option) == value


def test_boolean_is_not_accepted_as_a_number() -> None:
    """``max_receive_count=True`` is refused rather than read as 1."""
    refused("orders", "max_receive_count=True", max_receive_count=True)


def test_string_is_not_accepted_as_a_number() -> None:
    """A numeric option given as a string is refused."""
    refused("orders", "visibility_timeout='30'", visibility_timeout="30")


def test_retry_delay_of_wrong_type_is_refused() -> None:
    """``retry_delay`` must be seconds or a callable."""
    refused("orders", "retry_delay must be seconds or a callable", retry_delay="soon")


def test_fifo_option_on_a_standard_name_is_refused() -> None:
    """``fifo=True`` on a name without ``.fifo`` is refused with the fix."""
    refused("jobs", r"FIFO queue names end in '\.fifo'; rename it 'jobs\.fifo'", fifo=True)


def test_fifo_name_declared_standard_is_refused() -> None:
    """A name ending in ``.fifo`` with ``fifo=False`` is refused with the fix."""
    refused("jobs.fifo", r"only FIFO queue names end in '\.fifo'; drop fifo=False", fifo=False)


def test_content_based_deduplication_needs_a_fifo_queue() -> None:
    """Content-based deduplication on a standard queue is refused."""
    refused(
        "jobs", "content_based_deduplication needs a FIFO queue", content_based_deduplication=True
    )


def test_content_based_deduplication_on_fifo_queue_is_accepted() -> None:
    """Content-based deduplication on a FIFO queue is accepted."""
    assert QueueSpec.from_options(
        "jobs.fifo", content_based_deduplication=True
    ).content_based_deduplication


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 81, "ü"])
def test_invalid_queue_name_is_refused(name: str) -> None:
    """Names outside 1-80 letters, digits, '-', '_' and '.' are refused."""
    refused(name, "queue name .* is invalid")


def test_dead_letter_queue_of_other_type_is_refused() -> None:
    """A standard queue's dead-letter queue must not be FIFO, and vice versa."""
    spec = QueueSpec(name="jobs", dead_letter="jobs-dlq.fifo")
    with pytest.raises(DeclarationError, match="must be of the same type"):
        spec.check()
    fifo = QueueSpec(name="jobs.fifo", fifo=True, dead_letter="jobs-dlq")
    with pytest.raises(DeclarationError, match="must be of the same type"):
        fifo.check()


def test_queue_cannot_be_its_own_dead_letter_queue() -> None:
    """A queue naming itself as its dead-letter queue is refused."""
    with pytest.raises(DeclarationError, match="cannot be its own dead-letter queue"):
        QueueSpec(name="jobs", dead_letter="jobs").check()


def test_dead_letter_type_mismatch_is_refused_through_from_options() -> None:
    """``from_options`` refuses a FIFO dead-letter queue for a standard queue."""
    refused("jobs", "must be of the same type", dead_letter="jobs-dlq.fifo")


# --- retry delay ----------------------------------------------------------------------------


def test_retry_delay_defaults_to_the_visibility_timeout() -> None:
    """Without ``retry_delay`` a failed message waits out the visibility timeout, as on SQS."""
    spec = QueueSpec.from_options("jobs", visibility_timeout=12)
    assert spec.retry_delay_for(1) == 12.0
    assert spec.retry_delay_for(4) == 12.0


def test_fixed_retry_delay_is_used_for_every_receive() -> None:
    """A fixed ``retry_delay`` applies to every failure."""
    spec = QueueSpec.from_options("jobs", retry_delay=3)
    assert spec.retry_delay_for(1) == 3.0
    assert spec.retry_delay_for(9) == 3.0


def test_callable_retry_delay_gets_the_receive_count() -> None:
    """A callable ``retry_delay`` is called with the receive count (exponential backoff)."""
    spec = QueueSpec.from_options("jobs", retry_delay=lambda n: 2.0**n)
    assert [spec.retry_delay_for(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]


def test_callable_retry_delay_is_clamped_to_the_allowed_range() -> None:
    """A backoff returning a negative or huge delay is clamped to 0 .. 43200 s."""
    low = QueueSpec.from_options("jobs", retry_delay=lambda n: -5)
    high = QueueSpec.from_options("jobs", retry_delay=lambda n: 10.0**9)
    assert low.retry_delay_for(1) == 0.0
    assert high.retry_delay_for(1) == MAX_VISIBILITY_TIMEOUT


# --- registry -------------------------------------------------------------------------------


def consumer(name: str, handler: Any) -> ConsumerSpec:
    """Build a queue consumer spec for ``handler`` on queue ``name``."""
    return ConsumerSpec(QueueSpec.from_options(name), handler, bind(handler, kind="queue"))


def test_second_handler_for_a_queue_names_both_handlers() -> None:
    """Registering two handlers on one queue fails naming both of them."""
    registry = Registry()
    registry.add_consumer(consumer("jobs", first))
    with pytest.raises(DeclarationError) as info:
        registry.add_consumer(consumer("jobs", second))
    message = str(info.value)
    assert f"{__name__}.first" in message
    assert f"{__name__}.second" in message
    assert "'jobs'" in message


def test_adding_a_consumer_declares_its_queue_and_dead_letter_queue() -> None:
    """A consumer's queue and its implied dead-letter queue are both recorded."""
    registry = Registry()
    registry.add_consumer(consumer("jobs", first))
    assert list(registry.queues) == ["jobs", "jobs-dlq"]
    assert registry.queues["jobs-dlq"].is_dead_letter_queue
    assert registry.dead_letter_sources("jobs-dlq") == ["jobs"]


def test_redeclaring_a_queue_with_other_options_is_refused() -> None:
    """The same queue declared twice with different options is refused."""
    registry = Registry()
    registry.add_queue(QueueSpec.from_options("jobs"))
    registry.add_queue(QueueSpec.from_options("jobs"))
    with pytest.raises(DeclarationError, match="declared twice with different options"):
        registry.add_queue(QueueSpec.from_options("jobs", visibility_timeout=5))


@pytest.mark.parametrize("dlq_first", [True, False])
def test_explicit_dead_letter_queue_options_win_in_either_order(dlq_first: bool) -> None:
    """A dead-letter queue declared explicitly keeps its options, before or after its source."""
    registry = Registry()
    explicit = QueueSpec.from_options("jobs-dlq", visibility_timeout=5)
    source = QueueSpec.from_options("jobs", visibility_timeout=60)
    for spec in (explicit, source) if dlq_first else (source, explicit):
        registry.add_queue(spec)
    assert registry.queues["jobs-dlq"].visibility_timeout == 5
    assert registry.queues["jobs"].visibility_timeout == 60


def test_duplicate_subscription_name_on_a_topic_is_refused() -> None:
    """Two subscriptions of one topic with the same name are refused with the fix."""
    registry = Registry()
    sub = SubscriptionSpec(topic="events", name="audit", queue=None)
    registry.add_subscription(sub)
    with pytest.raises(DeclarationError, match=r"already has a subscription named 'audit'.*name="):
        registry.add_subscription(SubscriptionSpec(topic="events", name="audit", queue=None))


def test_same_subscription_name_on_another_topic_is_accepted() -> None:
    """Subscription names are unique per topic, not globally."""
    registry = Registry()
    registry.add_subscription(SubscriptionSpec(topic="a", name="audit", queue=None))
    registry.add_subscription(SubscriptionSpec(topic="b", name="audit", queue=None))
    assert len(registry.subscriptions) == 2


def test_subscription_queue_name_is_topic_dot_name() -> None:
    """A subscription's queue is ``TOPIC.NAME``, keeping ``.fifo`` last for FIFO topics."""
    assert SubscriptionSpec.queue_name("events", "audit") == "events.audit"
    assert SubscriptionSpec.queue_name("events.fifo", "audit") == "events.audit.fifo"


# --- email rules ----------------------------------------------------------------------------


def rule(*recipients: str) -> EmailRule:
    """Build an email rule for ``recipients``."""
    return EmailRule(recipients, QueueSpec.from_options("email-x"))


def test_address_condition_matches_only_that_address() -> None:
    """A full-address condition matches that address and no other in the domain."""
    r = rule("support@example.com")
    assert r.matches("support@example.com")
    assert not r.matches("sales@example.com")


def test_domain_condition_matches_every_address_of_the_domain() -> None:
    """A domain condition matches any local part in exactly that domain."""
    r = rule("example.com")
    assert r.matches("anyone@example.com")
    assert not r.matches("anyone@mail.example.com")


def test_dotted_condition_matches_subdomains_only() -> None:
    """A ``.example.com`` condition matches subdomains but not the domain itself."""
    r = rule(".example.com")
    assert r.matches("a@mail.example.com")
    assert r.matches("a@deep.mail.example.com")
    assert not r.matches("a@example.com")


def test_conditions_match_case_insensitively() -> None:
    """Addresses and conditions are compared without regard to case."""
    assert rule("Support@Example.COM").matches("SUPPORT@example.com")
    assert rule("EXAMPLE.com").matches("a@Example.Com")
    assert rule(".Example.com").matches("a@MAIL.example.COM")


@pytest.mark.parametrize(
    "address",
    ["a@evil-example.com", "a@example.com.evil.org", "a@notexample.com", "example.com@evil.org"],
)
def test_lookalike_domains_do_not_match(address: str) -> None:
    """Domains that merely contain or end in the same letters are not matched."""
    assert not rule("example.com", ".example.com", "a@example.com").matches(address)


def test_any_of_several_conditions_matches() -> None:
    """A rule with several conditions matches when any one of them does."""
    r = rule("a@x.org", "y.org")
    assert r.matches("a@x.org")
    assert r.matches("b@y.org")
    assert not r.matches("b@x.org")
