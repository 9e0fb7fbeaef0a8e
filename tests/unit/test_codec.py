"""Tests for framework.codec: bodies to bytes with a content type, and the size limit."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import BaseModel

from framework.codec import JSON, OCTETS, TEXT, decode_any, encode, encoded_size, ensure_fits
from framework.exceptions import InvalidMessageError, MessageTooLargeError


class Order(BaseModel):
    """A body model for codec tests."""

    id: str
    total: float


def test_model_is_encoded_as_json() -> None:
    """A pydantic model becomes its JSON with the JSON content type."""
    data, content_type = encode(Order(id="o1", total=2.5))
    assert content_type == JSON
    assert json.loads(data) == {"id": "o1", "total": 2.5}


def test_dict_is_encoded_as_compact_utf8_json() -> None:
    """A dict becomes compact JSON with non-ASCII characters kept as UTF-8."""
    data, content_type = encode({"name": "Zoë", "n": 1})
    assert content_type == JSON
    assert data == '{"name":"Zoë","n":1}'.encode()


def test_list_is_encoded_as_json() -> None:
    """A list becomes a JSON array."""
    assert encode([1, "a", None]) == (b'[1,"a",null]', JSON)


def test_str_is_encoded_as_utf8_text() -> None:
    """A str becomes UTF-8 bytes with a text content type, not a JSON string."""
    assert encode("héllo") == ("héllo".encode(), TEXT)


@pytest.mark.parametrize("raw", [b"\x00\xff", bytearray(b"\x00\xff"), memoryview(b"\x00\xff")])
def test_bytes_like_is_passed_through_as_octets(raw: bytes | bytearray | memoryview) -> None:
    """bytes, bytearray and memoryview are sent as they are, as octets."""
    data, content_type = encode(raw)
    assert data == b"\x00\xff"
    assert type(data) is bytes
    assert content_type == OCTETS


@pytest.mark.parametrize("body", [object(), {1, 2}, {"when": datetime(2024, 1, 1)}])
def test_unsupported_body_raises_type_error_naming_the_type(body: object) -> None:
    """A body that is not a model, JSON, str or bytes is refused with what to send instead."""
    with pytest.raises(TypeError, match=f"cannot send a {type(body).__name__} body") as info:
        encode(body)
    assert "pydantic model" in str(info.value)
    assert info.value.__cause__ is None


def test_decode_any_parses_json_and_text_and_keeps_bytes() -> None:
    """decode_any parses JSON, decodes text and keeps other bodies as bytes."""
    assert decode_any(b'{"a":1}', JSON) == {"a": 1}
    assert decode_any("é".encode(), TEXT) == "é"
    assert decode_any(b"\x00", OCTETS) == b"\x00"


def test_encoded_size_counts_utf8_bytes_not_characters() -> None:
    """The size counts UTF-8 bytes: 'é' is two bytes, '€' three."""
    body, _ = encode("é€")
    assert encoded_size(body, {}) == 5


def test_encoded_size_adds_attribute_names_and_values() -> None:
    """Attribute names and values count toward the size, in UTF-8 bytes."""
    assert encoded_size(b"abc", {"ké": "vé", "n": 12}) == 3 + 3 + 3 + 1 + 2


def test_message_exactly_at_the_limit_fits() -> None:
    """A message whose body plus attributes is exactly the limit is accepted."""
    ensure_fits("queue 'q'", b"x" * 1020, {"ab": "cd"}, 1024)


def test_message_one_byte_over_the_limit_is_refused_with_size_and_limit() -> None:
    """One byte over the limit raises MessageTooLargeError naming size, limit and the queue."""
    with pytest.raises(
        MessageTooLargeError, match=r"1025 bytes.*queue 'q''s limit of 1024"
    ) as info:
        ensure_fits("queue 'q'", b"x" * 1021, {"ab": "cd"}, 1024)
    assert isinstance(info.value, InvalidMessageError)


def test_multibyte_characters_can_push_a_message_over_the_limit() -> None:
    """A body of 1024 characters but 2048 UTF-8 bytes does not fit in 1024 bytes."""
    body, _ = encode("é" * 1024)
    with pytest.raises(MessageTooLargeError, match="2048 bytes"):
        ensure_fits("queue 'q'", body, {}, 1024)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_float_is_not_sent_as_invalid_json(value: float) -> None:
    """A dict holding NaN or Infinity is refused rather than encoded as invalid JSON."""
    with pytest.raises(TypeError, match="cannot send a dict body"):
        encode({"x": value})
