"""What a handler gets beside its body: the message envelope and the delivery's context."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, Unpack

from framework.messages import (
    DLQ_ERROR_MESSAGE,
    DLQ_ERROR_TYPE,
    DLQ_RECEIVE_COUNT,
    DLQ_SOURCE,
    DLQ_TIME,
    AttributeValue,
    Delivery,
)

if TYPE_CHECKING:
    from framework.outgoing import PublishOptions, SendOptions
    from framework.smtp.outbound import Mailer
    from framework.websocket import ConnectionManager

__all__ = ["AppHandle", "Context", "DeadLetterInfo", "Message"]


class AppHandle(Protocol):
    """**Protocol**: what a handler reaches through ``ctx.app``: sending, publishing, mail,
    WebSocket connections.

    The ``App`` is one; so is a ``Runtime`` built without an ``App`` (in a test, on Lambda).
    """

    @property
    def mail(self) -> Mailer:
        """The app's mailer (``await ctx.app.mail.send(...)``)."""

    async def send(self, queue: str, body: object, **options: Unpack[SendOptions]) -> str:
        """Send ``body`` to ``queue``; see ``App.send``."""

    async def send_batch(
        self, queue: str, bodies: Iterable[object], **options: Unpack[SendOptions]
    ) -> list[str]:
        """Send every body to ``queue``, in order; see ``App.send_batch``."""

    async def publish(self, topic: str, body: object, **options: Unpack[PublishOptions]) -> str:
        """Publish ``body`` to ``topic``; see ``App.publish``."""

    @property
    def connections(self) -> ConnectionManager:
        """Push to and close WebSocket connections (``await ctx.app.connections.send(...)``)."""


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """Why a message was dead-lettered, as read from its headers."""

    source_queue: str
    receive_count: int
    error_type: str
    error_message: str
    time: datetime | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> DeadLetterInfo | None:
        """Return the info carried in ``headers``, or None for a message never dead-lettered."""
        if DLQ_SOURCE not in headers:
            return None
        # Headers can be edited by hand or by another producer: read what parses, never raise,
        # so a damaged header never keeps a message from its handler.
        try:
            count = int(headers.get(DLQ_RECEIVE_COUNT, "0"))
        except ValueError:
            count = 0
        try:
            when: datetime | None = datetime.fromisoformat(headers[DLQ_TIME])
        except (KeyError, ValueError):
            when = None
        return cls(
            source_queue=headers[DLQ_SOURCE],
            receive_count=count,
            error_type=headers.get(DLQ_ERROR_TYPE, ""),
            error_message=headers.get(DLQ_ERROR_MESSAGE, ""),
            time=when,
        )


@dataclass(frozen=True, slots=True)
class Message:
    """The envelope of a received message."""

    id: str
    body: bytes
    attributes: Mapping[str, AttributeValue]
    receive_count: int
    sent_at: datetime
    first_received_at: datetime
    queue: str
    group_id: str | None = None
    deduplication_id: str | None = None
    content_type: str = "application/octet-stream"
    dead_letter: DeadLetterInfo | None = None

    @classmethod
    def from_delivery(cls, delivery: Delivery) -> Message:
        """Build the envelope a handler sees from a backend delivery."""
        return cls(
            id=delivery.message_id,
            body=delivery.body,
            attributes=delivery.attributes,
            receive_count=delivery.receive_count,
            sent_at=delivery.sent_at,
            first_received_at=delivery.first_received_at,
            queue=delivery.queue,
            group_id=delivery.group_id,
            deduplication_id=delivery.deduplication_id,
            content_type=delivery.content_type,
            dead_letter=DeadLetterInfo.from_headers(delivery.headers),
        )


class Context:
    """A handler's view of its delivery: the message, its deadline, and visibility control."""

    __slots__ = ("_extend", "_remaining", "_wall", "app", "logger", "message")

    def __init__(
        self,
        *,
        app: AppHandle,
        message: Message,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        remaining: Callable[[], float],
        extend: Callable[[float], Awaitable[None]],
        wall: Callable[[], datetime],
    ) -> None:
        self.app = app
        self.message = message
        self.logger = logger
        self._remaining = remaining
        self._extend = extend
        self._wall = wall

    @property
    def remaining(self) -> float:
        """Seconds left before the visibility timeout cancels the handler."""
        return max(0.0, self._remaining())

    @property
    def deadline(self) -> datetime:
        """When (aware UTC) the visibility timeout cancels the handler unless extended."""
        return self._wall() + timedelta(seconds=self.remaining)

    async def extend_visibility(self, seconds: float) -> None:
        """Keep the message invisible for ``seconds`` from now, like ChangeMessageVisibility.

        The handler's deadline moves with it. On Lambda it moves at most to the invocation's
        end, less the time to settle: a cut extension logs ``message.extension_capped``, and
        ``remaining`` says what was granted.

        Args:
            seconds: 0 to 43200.

        Raises:
            ValueError: If ``seconds`` is out of range.
        """
        if not 0 <= seconds <= 43_200:
            raise ValueError(f"extend_visibility({seconds}): seconds must be 0 to 43200")
        await self._extend(seconds)

    def __repr__(self) -> str:
        return f"<Context {self.message.queue} id={self.message.id} n={self.message.receive_count}>"
