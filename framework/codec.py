"""Bodies to bytes and back: pydantic models and dicts as JSON, str as UTF-8 text, bytes as-is."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from framework.exceptions import MessageTooLargeError

__all__ = [
    "JSON",
    "OCTETS",
    "TEXT",
    "allows_inf_nan",
    "decode_any",
    "encode",
    "encoded_size",
    "ensure_fits",
    "find_non_finite",
    "is_finite_value",
]

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
OCTETS = "application/octet-stream"


# A compiled search finds it in 1 KiB of JSON in about half the time ``in`` takes.
_NULL = re.compile(rb"null")


def encode(body: object) -> tuple[bytes, str]:
    """Encode a message body and return ``(bytes, content type)``.

    Args:
        body: A pydantic model, a JSON-serialisable dict/list/number/bool/None, a str or bytes.

    Raises:
        TypeError: If the body is none of those.
    """
    if isinstance(body, BaseModel):
        data = body.__pydantic_serializer__.to_json(body)
        # pydantic writes NaN and Infinity as null by default (ser_json_inf_nan="null"): the
        # consumer would get a different value than was sent, so refuse instead.
        if (
            _NULL.search(data) is not None
            and body.model_config.get("ser_json_inf_nan", "null") == "null"
            and not is_finite_value(body.model_dump())
        ):
            raise TypeError(
                f"cannot send a {type(body).__name__} body holding NaN or Infinity: JSON has "
                "no such numbers and pydantic would send null; send finite numbers, or set "
                "ser_json_inf_nan='strings' on the model"
            )
        return data, JSON
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body), OCTETS
    if isinstance(body, str):
        return body.encode(), TEXT
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode(), JSON
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot send a {type(body).__name__} body: send a pydantic model, a dict or list "
            f"(JSON), str or bytes ({exc})"
        ) from None


# Only bodies holding one of these can hold a non-finite number: NaN/Infinity tokens, an
# exponent of three digits or more, or 309 digits in a row (past float's range). Looked for
# one by one: two substring tests and one short pattern cost half of one alternation.
_BIG_EXPONENT = re.compile(rb"[eE][+-]?[0-9]{3}")
_LONG_DIGITS = re.compile(rb"[0-9]{309}")


def _suspect(raw: bytes) -> bool:
    return (
        b"NaN" in raw
        or b"Infinity" in raw
        or _BIG_EXPONENT.search(raw) is not None
        or (len(raw) >= 309 and _LONG_DIGITS.search(raw) is not None)
    )


def find_non_finite(raw: bytes, parsed: Any) -> list[str | int] | None:
    """Find where a value parsed from JSON text ``raw`` holds a NaN or an infinity.

    Python's and pydantic's JSON parsers accept ``NaN``, ``Infinity`` and ``-Infinity``
    (which JSON does not have) and read ``1e400`` as infinity; once parsed, such a value
    cannot be written back as JSON (it becomes ``null``, or invalid JSON). The parsed value
    (a model, or dicts and lists) is only walked when ``raw`` could hold such a number, so
    the common case costs one regex scan.

    Returns:
        The location (keys and indexes; empty for the top level) of the first non-finite
        number, or None if there is none.
    """
    if not _suspect(raw):
        return None
    if isinstance(parsed, BaseModel):
        parsed = parsed.model_dump()
    return _non_finite_path(parsed)


def _non_finite_path(value: Any) -> list[str | int] | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else []
    if isinstance(value, Decimal):
        return None if value.is_finite() else []
    items: Any
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    elif isinstance(value, set | frozenset):
        items = ((0, v) for v in value)
    else:
        return None
    for key, item in items:
        inner = _non_finite_path(item)
        if inner is not None:
            return [key, *inner]
    return None


def is_finite_value(value: Any) -> bool:
    """True unless ``value`` (dicts, lists, tuples, sets of scalars) holds a NaN or infinity."""
    return _non_finite_path(value) is None


def allows_inf_nan(annotation: Any) -> bool:
    """True when a body type asks for NaN and Infinity: a pydantic model with
    ``allow_inf_nan=True`` in its config or on one of its fields."""
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return False
    if annotation.model_config.get("allow_inf_nan") is True:
        return True
    return any(
        getattr(meta, "allow_inf_nan", None) is True
        for field in annotation.model_fields.values()
        for meta in field.metadata
    )


def decode_any(body: bytes, content_type: str) -> Any:
    """Decode a body with no type to validate against: JSON parsed, text as str, else bytes."""
    if content_type.startswith(JSON):
        return json.loads(body)
    if content_type.startswith("text/"):
        return body.decode()
    return body


def encoded_size(body: bytes, attributes: Mapping[str, Any]) -> int:
    """Return the size SQS counts: body bytes plus UTF-8 bytes of attribute names and values."""
    size = len(body)
    for key, value in attributes.items():
        size += len(key.encode()) + len(str(value).encode())
    return size


def ensure_fits(where: str, body: bytes, attributes: Mapping[str, Any], limit: int) -> None:
    """Raise MessageTooLargeError if the body and attributes exceed ``limit`` bytes."""
    size = encoded_size(body, attributes)
    if size > limit:
        raise MessageTooLargeError(
            f"message of {size} bytes (body and attributes, UTF-8) exceeds {where}'s limit of "
            f"{limit} bytes; store the payload elsewhere and send a reference"
        )
