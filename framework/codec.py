"""Bodies to bytes and back: pydantic models and dicts as JSON, str as UTF-8 text, bytes as-is."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from framework.exceptions import MessageTooLargeError

__all__ = ["JSON", "OCTETS", "TEXT", "decode_any", "encode", "encoded_size", "ensure_fits"]

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
OCTETS = "application/octet-stream"


def encode(body: object) -> tuple[bytes, str]:
    """Encode a message body and return ``(bytes, content type)``.

    Args:
        body: A pydantic model, a JSON-serialisable dict/list/number/bool/None, a str or bytes.

    Raises:
        TypeError: If the body is none of those.
    """
    if isinstance(body, BaseModel):
        return body.__pydantic_serializer__.to_json(body), JSON
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
