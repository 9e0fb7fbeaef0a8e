"""The messages the layers pass each other: outgoing and received messages, dead-letter reasons,
queue stats, outgoing mail, and the names of the headers the framework carries beside a body.

Plain frozen values with no behaviour beyond reading themselves: ``semantics/``, ``context.py``,
the runtime and every backend import them from here; ``backends/base.py`` keeps the protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

__all__ = [
    "CONTENT_TYPE",
    "DLQ_ERROR_MESSAGE",
    "DLQ_ERROR_TYPE",
    "DLQ_HEADERS",
    "DLQ_RECEIVE_COUNT",
    "DLQ_SOURCE",
    "DLQ_TIME",
    "AttributeValue",
    "DeadLetterReason",
    "Delivery",
    "Outgoing",
    "OutgoingMail",
    "QueueStats",
]

AttributeValue = str | int | float | bool | list[Any]

# Framework-owned headers carried beside the user's attributes. The dead-letter ones say why a
# message is where it is; they travel with the message so every backend and the CLI can show them.
CONTENT_TYPE = "content-type"
DLQ_SOURCE = "dead-letter-source-queue"
DLQ_RECEIVE_COUNT = "dead-letter-receive-count"
DLQ_ERROR_TYPE = "dead-letter-error-type"
DLQ_ERROR_MESSAGE = "dead-letter-error-message"
DLQ_TIME = "dead-letter-time"
DLQ_HEADERS = (DLQ_SOURCE, DLQ_RECEIVE_COUNT, DLQ_ERROR_TYPE, DLQ_ERROR_MESSAGE, DLQ_TIME)

_T = TypeVar("_T")


class _Factory:
    """The default of a field with a ``default_factory``: ``<factory>``, as in dataclasses."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _slot_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass an ``__init__`` that fills its slots directly.

    The runtime builds an ``Outgoing`` and a ``Delivery`` for every message. The ``__init__``
    that dataclasses writes for a frozen class calls ``object.__setattr__`` once per field,
    which makes it about three times as slow as an unfrozen one (3 µs for ``Delivery``). This
    one calls each slot's own descriptor instead: the same signature, defaults and result, and
    the instance stays frozen (assigning to a field still raises ``FrozenInstanceError``).
    """
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    params: list[str] = []
    lines: list[str] = []
    for f in fields(cls):  # type: ignore[arg-type]  # cls is a dataclass, checked by fields()
        name = f.name
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__
        value = name
        if f.default is not MISSING:
            namespace[f"_default_{name}"] = f.default
            params.append(f"{name}=_default_{name}")
        elif f.default_factory is not MISSING:
            namespace[f"_factory_{name}"] = f.default_factory
            params.append(f"{name}=_FACTORY")
            value = f"_factory_{name}() if {name} is _FACTORY else {name}"
        else:
            params.append(name)
        lines.append(f"    _set_{name}(self, {value})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines)
    exec(source, namespace)  # generated from the class's own fields, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010  # mypy forbids assigning to a method
    return cls


@_slot_init
@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message on its way to a queue or topic: encoded body plus metadata."""

    body: bytes
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    group_id: str | None = None
    deduplication_id: str | None = None
    message_id: str | None = None
    sent_at: datetime | None = None

    @property
    def content_type(self) -> str:
        """The body's media type (``application/json``, ``text/plain`` or bytes)."""
        return self.headers.get(CONTENT_TYPE, "application/octet-stream")


@_slot_init
@dataclass(frozen=True, slots=True)
class Delivery:
    """One receipt of a message: valid until acked, released, dead-lettered or timed out."""

    queue: str
    message_id: str
    body: bytes
    attributes: Mapping[str, AttributeValue]
    headers: Mapping[str, str]
    receive_count: int
    sent_at: datetime
    first_received_at: datetime
    receipt: str
    group_id: str | None = None
    deduplication_id: str | None = None

    @property
    def content_type(self) -> str:
        """The body's media type."""
        return self.headers.get(CONTENT_TYPE, "application/octet-stream")


@dataclass(frozen=True, slots=True)
class DeadLetterReason:
    """Why a message was dead-lettered; carried as headers on the dead letter."""

    source_queue: str
    receive_count: int
    error_type: str
    error_message: str
    time: datetime

    def headers(self) -> dict[str, str]:
        """Return the reason as the framework's dead-letter headers."""
        return {
            DLQ_SOURCE: self.source_queue,
            DLQ_RECEIVE_COUNT: str(self.receive_count),
            DLQ_ERROR_TYPE: self.error_type,
            DLQ_ERROR_MESSAGE: self.error_message[:1024],
            DLQ_TIME: self.time.isoformat(),
        }

    def stamped(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Return ``headers`` with the reason's dead-letter headers set over them."""
        return {**headers, **self.headers()}


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A queue's counts at one moment. ``dead_letters`` is the depth of its dead-letter queue."""

    name: str
    depth: int
    in_flight: int
    delayed: int
    dead_letters: int = 0
    dead_letter_queue: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the stats as a JSON-ready dict."""
        return {
            "name": self.name,
            "depth": self.depth,
            "in_flight": self.in_flight,
            "delayed": self.delayed,
            "dead_letters": self.dead_letters,
            "dead_letter_queue": self.dead_letter_queue,
        }


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A mail to send: addresses already validated, the message already rendered (RFC 5322)."""

    sender: str
    recipients: tuple[str, ...]
    message: bytes
    message_id: str
