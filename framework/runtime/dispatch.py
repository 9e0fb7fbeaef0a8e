"""One delivery: bind, call under the visibility deadline, then ack, release or dead-letter."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from framework.backends.base import Backend, Delivery
from framework.binding import PoisonBodyError
from framework.clock import Timer
from framework.context import Context, Message
from framework.logs import FieldsAdapter, event
from framework.registry import ConsumerSpec
from framework.semantics.retry import DeadLetter, after_failure, before_handling, poison
from framework.semantics.visibility import VisibilityTimeoutError, expired
from framework.smtp.parsing import envelope_from_headers, parse

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["Dispatcher", "VisibilityTimeoutError"]

log = logging.getLogger("framework.runtime")


class _Lease:
    """The handler's deadline: a cancel scope and the clock timer that fires it."""

    __slots__ = ("backend", "deadline", "delivery", "scope", "timer")

    def __init__(self, backend: Backend, delivery: Delivery, deadline: float) -> None:
        self.backend = backend
        self.delivery = delivery
        self.deadline = deadline
        self.scope = anyio.CancelScope()
        self.timer: Timer = backend.clock.call_at(deadline, self.scope.cancel)

    def remaining(self) -> float:
        return self.deadline - self.backend.clock.now()

    async def extend(self, seconds: float) -> None:
        await self.backend.extend(self.delivery, seconds=seconds)
        self.timer.cancel()
        self.deadline = self.backend.clock.now() + seconds
        self.timer = self.backend.clock.call_at(self.deadline, self.scope.cancel)


class Dispatcher:
    """Runs deliveries of one consumer; returns whether each was handled successfully."""

    def __init__(self, app: App, backend: Backend, consumer: ConsumerSpec) -> None:
        self.app = app
        self.backend = backend
        self.consumer = consumer
        self.queue = consumer.queue
        self.binder = consumer.binder
        self.logger = logging.getLogger(f"framework.handler.{consumer.handler.__qualname__}")
        self.handled = 0
        self.failed = 0

    async def __call__(self, delivery: Delivery, received_at: float) -> bool:
        """Handle ``delivery``; True if it was acknowledged."""
        clock = self.backend.clock
        verdict = before_handling(delivery, self.queue, clock.wall())
        if verdict is not None:
            await self._dead_letter(delivery, verdict)
            return False
        try:
            kwargs = self._arguments(delivery)
        except PoisonBodyError as exc:
            await self._dead_letter(
                delivery, poison(delivery, exc.error_type, str(exc), clock.wall())
            )
            return False
        lease = _Lease(self.backend, delivery, received_at + self.queue.visibility_timeout)
        context = self._context(delivery, lease)
        if self.binder.param("context") is not None:
            kwargs[self.binder.param("context").name] = context  # type: ignore[union-attr]
        error: BaseException | None = None
        started = clock.now()
        try:
            with lease.scope:
                if self.binder.is_async:
                    await self.consumer.handler(**kwargs)
                else:
                    await anyio.to_thread.run_sync(lambda: self.consumer.handler(**kwargs))
        except anyio.get_cancelled_exc_class():
            # Cancelled from outside (shutdown past its grace period): give the message back.
            with anyio.CancelScope(shield=True):
                await self.backend.release(delivery, delay=0)
            raise
        except Exception as exc:
            error = exc
        finally:
            lease.timer.cancel()
        if lease.scope.cancelled_caught:
            error = expired(self.queue.visibility_timeout)
        if error is None:
            await self.backend.ack(delivery)
            self.handled += 1
            event(
                self.logger,
                logging.DEBUG,
                "message.handled",
                queue=delivery.queue,
                message_id=delivery.message_id,
                seconds=round(clock.now() - started, 6),
            )
            return True
        self.failed += 1
        outcome = after_failure(delivery, self.queue, error, clock.wall())
        if isinstance(outcome, DeadLetter):
            await self._dead_letter(delivery, outcome, error)
        else:
            event(
                self.logger,
                logging.WARNING,
                "message.failed",
                queue=delivery.queue,
                message_id=delivery.message_id,
                receive_count=delivery.receive_count,
                retry_in=outcome.delay,
                error=f"{type(error).__name__}: {error}",
            )
            await self.backend.release(delivery, delay=outcome.delay)
        return False

    def _arguments(self, delivery: Delivery) -> dict[str, Any]:
        binder = self.binder
        kwargs: dict[str, Any] = {}
        if binder.body is not None:
            kwargs[binder.body.name] = binder.decode(delivery.body, delivery.content_type)
        mail = binder.param("mail")
        if mail is not None:
            kwargs[mail.name] = parse(delivery.body, envelope_from_headers(delivery.headers))
        return kwargs

    def _context(self, delivery: Delivery, lease: _Lease) -> Context:
        return Context(
            app=self.app,
            message=Message.from_delivery(delivery),
            logger=FieldsAdapter(
                self.logger,
                {"fields": {"queue": delivery.queue, "message_id": delivery.message_id}},
            ),
            remaining=lease.remaining,
            extend=lease.extend,
            wall=self.backend.clock.wall,
        )

    async def _dead_letter(
        self, delivery: Delivery, verdict: DeadLetter, error: BaseException | None = None
    ) -> None:
        reason = verdict.reason
        event(
            self.logger,
            logging.ERROR,
            "message.dead_lettered",
            queue=delivery.queue,
            message_id=delivery.message_id,
            receive_count=delivery.receive_count,
            dead_letter_queue=self.queue.dead_letter,
            error_type=reason.error_type,
            error=reason.error_message,
        )
        if self.queue.dead_letter is None:
            # No dead-letter queue (a DLQ's own handler, or dead_letter=None): keep the message
            # rather than lose it, and let an operator purge it.
            await self.backend.release(
                delivery, delay=self.queue.retry_delay_for(delivery.receive_count)
            )
            return
        await self.backend.dead_letter(delivery, reason=reason)
