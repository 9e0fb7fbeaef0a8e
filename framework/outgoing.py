"""Building a message to send: the send options, and the checks SQS and SNS make before any I/O.

One typed set of keyword options (``SendOptions``, and ``PublishOptions`` without the delay)
serves every producer — ``App.send`` and ``App.publish``, ``Runtime.send``, the admin API, the
CLI — down to ``build``, so the keywords are declared once. ``build_batch`` makes the same
checks for many bodies that share one set of options, checking the options once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, TypedDict, TypeVar, Unpack

from framework.codec import encode, ensure_fits
from framework.exceptions import InvalidMessageError, MessageTooLargeError
from framework.messages import CONTENT_TYPE, AttributeValue, Outgoing

__all__ = [
    "PublishOptions",
    "SendOptions",
    "build",
    "build_batch",
    "build_batch_undeclared",
    "build_undeclared",
    "options_of",
]

MAX_DELAY = 900


class PublishOptions(TypedDict, total=False):
    """What a producer may say about a message beside its body, for a topic.

    Attributes:
        attributes: Message attributes (str, int, float, bool or a list of them), at most 10.
        group_id: The FIFO message group (required on FIFO queues and topics).
        deduplication_id: The FIFO deduplication id (or use content-based deduplication).
    """

    attributes: Mapping[str, AttributeValue] | None
    group_id: str | None
    deduplication_id: str | None


class SendOptions(PublishOptions, total=False):
    """``PublishOptions`` plus ``delay``: seconds (0-900) before a queued message is visible."""

    delay: float


OptionsT = TypeVar("OptionsT", SendOptions, PublishOptions)


def options_of(data: Mapping[str, Any], kind: type[OptionsT]) -> OptionsT:
    """Return the options of ``kind`` set in ``data`` (a request body, the CLI's flags).

    Keys ``kind`` does not name, and values that are None, are left out.
    """
    return kind(**{key: data[key] for key in kind.__annotations__ if data.get(key) is not None})


class _ReadOnlyDict(dict[str, Any]):
    """A dict that refuses changes: one instance is shared by many messages.

    A ``dict`` rather than a ``MappingProxyType`` because backends may hand headers to client
    libraries (and ``json``) that accept only dicts.
    """

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("shared by many messages and read-only: copy it to change it")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = __ior__ = _refuse


# One headers dict per content type, shared: saves a dict (about 180 bytes) per queued message.
_HEADERS: dict[str, Mapping[str, str]] = {}
_NO_ATTRIBUTES: Mapping[str, AttributeValue] = _ReadOnlyDict()


def _headers(content_type: str) -> Mapping[str, str]:
    headers = _HEADERS.get(content_type)
    if headers is None:
        headers = _HEADERS[content_type] = _ReadOnlyDict({CONTENT_TYPE: content_type})
    return headers


def build(
    where: str,
    body: object,
    limit: int,
    *,
    fifo: bool = False,
    content_dedup: bool = False,
    **options: Unpack[SendOptions],
) -> Outgoing:
    """Encode and check a message for ``where`` (a queue or topic), as SQS/SNS would.

    Args:
        where: What the message goes to, for errors (``"queue 'orders'"``).
        body: A pydantic model, a dict or list (JSON), str or bytes.
        limit: The most bytes body and attributes may take together.
        fifo: The queue or topic is FIFO: a group id is required, a delay refused.
        content_dedup: The queue or topic deduplicates by content, so no id is needed.
        **options: Attributes, delay, group and deduplication ids.

    Raises:
        MessageTooLargeError: If body plus attributes exceed ``limit`` bytes.
        InvalidMessageError: For bad attributes, a delay out of range, or FIFO rules broken
            (no group id, no deduplication id, a delay).
    """
    data, content_type = encode(body)
    attributes = options.get("attributes")
    if attributes:
        attrs: Mapping[str, AttributeValue] = dict(attributes)
        _check_attributes(where, attrs)
        ensure_fits(where, data, attrs, limit)
    else:
        attrs = _NO_ATTRIBUTES
        if len(data) > limit:
            ensure_fits(where, data, attrs, limit)
    delay = options.get("delay") or 0
    group_id = options.get("group_id")
    deduplication_id = options.get("deduplication_id")
    if delay and not 0 <= delay <= MAX_DELAY:
        raise InvalidMessageError(f"{where}: delay={delay} must be 0 to {MAX_DELAY} seconds")
    if fifo:
        if not group_id:
            raise InvalidMessageError(f"{where} is FIFO: pass group_id=... to send to it")
        if deduplication_id is None and not content_dedup:
            raise InvalidMessageError(
                f"{where} is FIFO without content_based_deduplication: pass deduplication_id=..."
            )
        if delay:
            raise InvalidMessageError(
                f"{where} is FIFO: per-message delay is not supported (set the queue's delay)"
            )
    return Outgoing(
        body=data,
        attributes=attrs,
        headers=_headers(content_type),
        delay=delay,
        group_id=group_id,
        deduplication_id=deduplication_id,
    )


def build_batch(
    where: str,
    bodies: Iterable[object],
    limit: int,
    *,
    fifo: bool = False,
    content_dedup: bool = False,
    **options: Unpack[SendOptions],
) -> list[Outgoing]:
    """Encode and check many bodies for ``where`` with the same options, as ``build`` does.

    Every body is checked before the caller sends any, so one bad body sends none. The
    options (attributes, delay, group id) are checked once and shared by every message.

    Args:
        where: What the messages go to, for errors (``"queue 'orders'"``).
        bodies: Pydantic models, dicts or lists (JSON), str or bytes, in sending order.
        limit: The most bytes one message's body and attributes may take together.
        fifo: The queue or topic is FIFO: a group id is required, a delay refused.
        content_dedup: The queue or topic deduplicates by content, so no id is needed.
        **options: Attributes, delay, group and deduplication ids, for every message.

    Raises:
        MessageTooLargeError: If one body plus the attributes exceed ``limit`` bytes (the
            error names the body's index).
        InvalidMessageError: As ``build``, and for one ``deduplication_id`` given to more
            than one body (all but the first would be dropped as duplicates).
        TypeError: If a body cannot be encoded (the error names its index).
    """
    items = bodies if isinstance(bodies, list | tuple) else list(bodies)
    if not items:
        return []
    if len(items) > 1 and options.get("deduplication_id") is not None:
        raise InvalidMessageError(
            f"{where}: one deduplication_id for {len(items)} messages would drop all but the "
            "first as duplicates; send them one at a time, or use content-based deduplication"
        )
    try:
        first = build(where, items[0], limit, fifo=fifo, content_dedup=content_dedup, **options)
    except (MessageTooLargeError, TypeError) as exc:
        raise _naming(0, len(items), exc) from exc
    messages = [first]
    attrs, delay, group_id = first.attributes, first.delay, first.group_id
    dedup_id = first.deduplication_id
    append, headers = messages.append, _HEADERS
    for index in range(1, len(items)):
        try:
            data, content_type = encode(items[index])
            if attrs or len(data) > limit:
                ensure_fits(where, data, attrs, limit)
        except (MessageTooLargeError, TypeError) as exc:
            raise _naming(index, len(items), exc) from exc
        # ``_headers``, inlined: the first body's content type is already in ``_HEADERS``.
        shared = headers.get(content_type) or _headers(content_type)
        append(Outgoing(data, attrs, shared, delay, group_id, dedup_id))
    return messages


def _naming(index: int, count: int, error: Exception) -> Exception:
    """``error`` again, saying which body of the batch it is about."""
    return type(error)(f"body {index} of {count}: {error}")


def build_undeclared(
    kind: str, name: str, body: object, limit: int, **options: Unpack[SendOptions]
) -> Outgoing:
    """Build a message for a queue or topic whose options the caller does not know.

    FIFO is read from the ``.fifo`` name, and content-based deduplication is left to the
    backend, which refuses a message it cannot deduplicate.
    """
    fifo = name.endswith(".fifo")
    return build(f"{kind} {name!r}", body, limit, fifo=fifo, content_dedup=fifo, **options)


def build_batch_undeclared(
    kind: str, name: str, bodies: Iterable[object], limit: int, **options: Unpack[SendOptions]
) -> list[Outgoing]:
    """``build_batch`` for a queue whose options the caller does not know (see above)."""
    fifo = name.endswith(".fifo")
    where = f"{kind} {name!r}"
    return build_batch(where, bodies, limit, fifo=fifo, content_dedup=fifo, **options)


def _check_attributes(where: str, attributes: Mapping[str, Any]) -> None:
    if len(attributes) > 10:
        raise InvalidMessageError(
            f"{where}: at most 10 message attributes are allowed, got {len(attributes)}"
        )
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            raise InvalidMessageError(
                f"{where}: attribute names must be non-empty strings, got {key!r}"
            )
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str | int | float | bool) for v in items):
            raise InvalidMessageError(
                f"{where}: attribute {key!r} is a {type(value).__name__}; "
                "use str, int, float, bool or a list of them"
            )
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            # SQS's Number type and JSON have no NaN or Infinity: it could not be read back.
            raise InvalidMessageError(
                f"{where}: attribute {key!r} is {value!r}; attribute numbers must be finite"
            )
