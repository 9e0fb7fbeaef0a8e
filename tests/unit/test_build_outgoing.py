"""Tests for framework.outgoing.build: what send/publish refuse before any I/O."""

from __future__ import annotations

from typing import Any

import pytest

from framework.codec import JSON, TEXT
from framework.exceptions import InvalidMessageError, MessageTooLargeError
from framework.messages import CONTENT_TYPE
from framework.outgoing import build

WHERE = "queue 'jobs.fifo'"


def test_standard_message_carries_body_attributes_and_content_type() -> None:
    """A message is encoded, keeps its attributes and records its content type in a header."""
    out = build("queue 'jobs'", {"a": 1}, 262_144, attributes={"kind": "x"}, delay=5)
    assert out.body == b'{"a":1}'
    assert out.attributes == {"kind": "x"}
    assert out.headers == {CONTENT_TYPE: JSON}
    assert out.delay == 5
    assert out.content_type == JSON


def test_text_body_gets_the_text_content_type() -> None:
    """A str body is marked as UTF-8 text."""
    assert build("queue 'jobs'", "hi", 1024).content_type == TEXT


def test_fifo_message_without_group_id_is_refused() -> None:
    """Sending to a FIFO queue without ``group_id`` says to pass one."""
    with pytest.raises(InvalidMessageError, match=r"is FIFO: pass group_id=\.\.\."):
        build(WHERE, "x", 1024, fifo=True, deduplication_id="d")


def test_fifo_message_with_empty_group_id_is_refused() -> None:
    """An empty ``group_id`` is no group id."""
    with pytest.raises(InvalidMessageError, match="group_id"):
        build(WHERE, "x", 1024, fifo=True, group_id="", deduplication_id="d")


def test_fifo_message_without_dedup_id_is_refused_without_content_dedup() -> None:
    """Without content-based deduplication a FIFO message needs a ``deduplication_id``."""
    with pytest.raises(InvalidMessageError, match=r"pass deduplication_id=\.\.\."):
        build(WHERE, "x", 1024, fifo=True, group_id="g")


def test_fifo_message_without_dedup_id_is_accepted_with_content_dedup() -> None:
    """With content-based deduplication the deduplication id may be left out."""
    out = build(WHERE, "x", 1024, fifo=True, content_dedup=True, group_id="g")
    assert out.group_id == "g"
    assert out.deduplication_id is None


def test_fifo_message_with_per_message_delay_is_refused() -> None:
    """FIFO queues take no per-message delay, as on SQS; the error points to the queue's delay."""
    with pytest.raises(InvalidMessageError, match="per-message delay is not supported"):
        build(WHERE, "x", 1024, fifo=True, group_id="g", deduplication_id="d", delay=1)


@pytest.mark.parametrize("delay", [-1, 900.5])
def test_delay_outside_0_to_900_seconds_is_refused(delay: float) -> None:
    """A delay below 0 or above 900 s is refused."""
    with pytest.raises(InvalidMessageError, match="must be 0 to 900 seconds"):
        build("queue 'jobs'", "x", 1024, delay=delay)


def test_ten_attributes_are_accepted() -> None:
    """Exactly ten attributes are allowed."""
    attributes = {f"a{i}": i for i in range(10)}
    assert len(build("queue 'jobs'", "x", 1024, attributes=attributes).attributes) == 10


def test_eleven_attributes_are_refused() -> None:
    """More than ten attributes are refused, saying how many were given."""
    attributes = {f"a{i}": i for i in range(11)}
    with pytest.raises(InvalidMessageError, match=r"at most 10 message attributes.*got 11"):
        build("queue 'jobs'", "x", 1024, attributes=attributes)


@pytest.mark.parametrize("value", [None, {"nested": 1}, b"bytes", object()])
def test_attribute_of_unsupported_type_is_refused_naming_it(value: Any) -> None:
    """An attribute value that is not str, number, bool or list is refused, naming key and type."""
    with pytest.raises(InvalidMessageError, match=f"attribute 'k' is a {type(value).__name__}"):
        build("queue 'jobs'", "x", 1024, attributes={"k": value})


@pytest.mark.parametrize("key", ["", 5])
def test_attribute_name_must_be_a_non_empty_string(key: Any) -> None:
    """Attribute names must be non-empty strings."""
    with pytest.raises(InvalidMessageError, match="attribute names must be non-empty strings"):
        build("queue 'jobs'", "x", 1024, attributes={key: "v"})


@pytest.mark.parametrize("value", [[{"nested": 1}], [object()], [b"raw"]])
def test_list_attribute_with_unsupported_elements_is_refused(value: list[Any]) -> None:
    """A list attribute holding anything but str, number or bool is refused."""
    with pytest.raises(InvalidMessageError, match="attribute 'k'"):
        build("queue 'jobs'", "x", 1024, attributes={"k": value})


def test_message_at_the_size_limit_is_accepted() -> None:
    """A body plus attributes of exactly the limit is accepted."""
    out = build("queue 'jobs'", "x" * 1020, 1024, attributes={"ab": "cd"})
    assert len(out.body) == 1020


def test_message_over_the_size_limit_is_refused_naming_the_queue() -> None:
    """One byte too many raises MessageTooLargeError naming the queue and the limit."""
    with pytest.raises(MessageTooLargeError, match=r"1025 bytes.*queue 'jobs''s limit of 1024"):
        build("queue 'jobs'", "x" * 1021, 1024, attributes={"ab": "cd"})


def test_attributes_count_toward_the_size_limit() -> None:
    """A small body with a large attribute value is too large."""
    with pytest.raises(MessageTooLargeError):
        build("queue 'jobs'", "x", 1024, attributes={"blob": "é" * 600})


def test_unsupported_body_is_refused_as_type_error() -> None:
    """A body that cannot be encoded raises TypeError before anything else."""
    with pytest.raises(TypeError, match="cannot send a set body"):
        build("queue 'jobs'", {1}, 1024)
