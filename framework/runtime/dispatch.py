"""One delivery: bind, call under the visibility deadline, then ack, release or dead-letter."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from framework.backends.base import Backend
from framework.binding import PoisonBodyError
from framework.clock import Clock, EarliestTimer
from framework.codec import JSON
from framework.context import AppHandle, Context, Message
from framework.logs import FieldsAdapter, event
from framework.messages import CONTENT_TYPE, Delivery
from framework.registry import ConsumerSpec
from framework.runtime.events import Events, HandlerEvent, Outcome
from framework.semantics.retry import DeadLetter, after_failure, before_handling, poison
from framework.semantics.visibility import VisibilityTimeoutError, expired

if TYPE_CHECKING:
    from framework.smtp.parsing import Email

__all__ = ["Dispatcher", "HandlerLease", "VisibilityTimeoutError"]

log = logging.getLogger("framework.runtime")


class HandlerLease:
    """One delivery's deadline, and how to cancel its handler when the deadline passes.

    An async handler runs in the worker's own task, which the watchdog cancels natively
    (``Task.cancel``) and the dispatcher turns back into a timeout with ``Task.uncancel``,
    as ``asyncio.timeout`` does: no anyio cancel scope per message. A sync handler runs in a
    thread under an anyio cancel scope, which waits for the thread as before.
    """

    __slots__ = ("deadline", "delivery", "dispatcher", "expired", "latest", "scope", "task")

    def __init__(
        self,
        dispatcher: Dispatcher,
        delivery: Delivery,
        deadline: float,
        latest: float = math.inf,
    ) -> None:
        self.dispatcher = dispatcher
        self.delivery = delivery
        self.deadline = deadline
        # No extension moves the deadline past this (a Lambda invocation's end).
        self.latest = latest
        self.expired = False
        self.task: asyncio.Task[Any] | None = None
        self.scope: anyio.CancelScope | None = None

    def expire(self) -> None:
        """The deadline passed: cancel the handler, if it has started."""
        self.expired = True
        if self.scope is not None:
            self.scope.cancel()
        elif self.task is not None:
            self.task.cancel()

    def remaining(self) -> float:
        return self.deadline - self.dispatcher.clock.now()

    async def extend(self, seconds: float) -> None:
        dispatcher = self.dispatcher
        if self.latest != math.inf:
            granted = max(0.0, min(seconds, self.latest - dispatcher.clock.now()))
            if granted < seconds:
                event(
                    log,
                    logging.WARNING,
                    "message.extension_capped",
                    queue=self.delivery.queue,
                    message_id=self.delivery.message_id,
                    asked=seconds,
                    granted=round(granted, 3),
                )
            seconds = granted
        await dispatcher.backend.extend(self.delivery, seconds=seconds)
        dispatcher.watchdog.disarm(self)
        self.deadline = dispatcher.clock.now() + seconds
        if not self.expired:
            dispatcher.watchdog.arm(self)


class _Watchdog:
    """One clock timer per consumer, at or before the earliest deadline of its leases in flight.

    Arming a lease is a dict insert, and disarming one a dict delete: the timer is moved only
    when a lease ends earlier than it fires, and never cancelled when leases settle. A timer
    that fires with no lease due (they settled meanwhile) moves on to the earliest deadline
    left, if any. Leases of later batches end later, so that is about once per visibility
    timeout instead of a cancelled and a new timer per received batch. A lease is armed when
    its delivery is handed over, before the worker's next receive can arm the backend's
    wake-up for the same instant, so on a virtual clock the handler is cancelled (and its
    verdict recorded) before the expired lease is received again.
    """

    __slots__ = ("_leases", "_timer", "clock")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._leases: dict[HandlerLease, None] = {}
        self._timer = EarliestTimer(clock.call_at, self._fire)

    def arm(self, lease: HandlerLease) -> None:
        self._leases[lease] = None
        self._timer.by(lease.deadline)

    def arm_all(self, leases: list[HandlerLease], deadline: float) -> None:
        """``arm`` each of ``leases``, all of which end at ``deadline``."""
        self._leases.update(dict.fromkeys(leases))
        self._timer.by(deadline)

    def disarm(self, lease: HandlerLease) -> None:
        self._leases.pop(lease, None)  # already fired, or disarmed twice: nothing to do

    def _fire(self) -> None:
        now = self.clock.now()
        due = [lease for lease in self._leases if lease.deadline <= now]
        for lease in due:
            del self._leases[lease]
        if self._leases:  # there are at most ``concurrency`` of them
            self._timer.at(min(lease.deadline for lease in self._leases))
        for lease in due:
            lease.expire()


class Dispatcher:
    """Runs deliveries of one consumer; returns whether each was handled successfully.

    ``lease`` starts a delivery's deadline and ``handle`` runs it; ``__call__`` does both.
    """

    def __init__(
        self, backend: Backend, consumer: ConsumerSpec, events: Events[Any], app: AppHandle
    ) -> None:
        self.app = app
        self.events = events
        self.backend = backend
        self.clock = backend.clock
        self.consumer = consumer
        self.queue = consumer.queue
        self.binder = consumer.binder
        self.logger = logging.getLogger(f"framework.handler.{consumer.handler.__qualname__}")
        # Looked up once: per message, only what the handler's signature asks for is built.
        self._context_param = consumer.binder.param("context")
        self._mail_param = consumer.binder.param("mail")
        body = consumer.binder.body
        # The body parameter's name ("" without one: then _json_body is False too).
        self._body_name = body.name if body is not None else ""
        # A JSON body for a parameter with a validator (a model, a dict...): the common case,
        # validated without ``Binder.decode``'s choice by content type and annotation.
        self._json_body = body is not None and consumer.binder.body_adapter is not None
        self._is_async = consumer.binder.is_async
        # Bound once: each is called per message.
        self._handler = consumer.handler
        self._decode_json = consumer.binder.decode_json
        self._debug = self.logger.isEnabledFor
        self.watchdog = _Watchdog(backend.clock)
        # The hub's list itself, so observers added after start (a gateway built late) count.
        self._observers = events.handler_observers
        self._handler_name = consumer.name
        self.handled = 0
        self.failed = 0

    def lease(self, delivery: Delivery, received_at: float) -> HandlerLease:
        """Start ``delivery``'s deadline: its handler is cancelled at the visibility timeout."""
        lease = HandlerLease(self, delivery, received_at + self.queue.visibility_timeout)
        self.watchdog.arm(lease)
        return lease

    def lease_all(self, deliveries: Sequence[Delivery], received_at: float) -> list[HandlerLease]:
        """``lease`` for a received batch, whose deliveries share one deadline."""
        deadline = received_at + self.queue.visibility_timeout
        leases = [HandlerLease(self, delivery, deadline) for delivery in deliveries]
        self.watchdog.arm_all(leases, deadline)
        return leases

    def abandon(self, lease: HandlerLease) -> None:
        """Stop watching a lease whose delivery will not be handled (it is being released)."""
        self.watchdog.disarm(lease)

    async def __call__(self, delivery: Delivery, received_at: float) -> bool:
        """Handle ``delivery``; True if it was acknowledged."""
        return await self.handle(self.lease(delivery, received_at))

    async def run_until(
        self, delivery: Delivery, deadline: float, *, latest: float = math.inf
    ) -> bool:
        """Handle one delivery whose handler must end by ``deadline`` (the clock's seconds).

        For callers that received the delivery elsewhere and have their own deadline (a
        Lambda invocation: the visibility timeout cut to the time the invocation has left).
        The verdict is carried out on the dispatcher's backend, as for a worker's delivery.

        Args:
            delivery: The delivery.
            deadline: When its handler is cancelled, unless it extends its visibility.
            latest: When it is cancelled at the latest: ``ctx.extend_visibility`` is cut to
                end there (a Lambda invocation's remaining time, less the time to settle).

        Returns:
            True if the delivery was acknowledged.
        """
        lease = HandlerLease(self, delivery, deadline, latest)
        self.watchdog.arm(lease)
        return await self.handle(lease)

    async def handle(self, lease: HandlerLease, task: asyncio.Task[Any] | None = None) -> bool:
        """Handle a leased delivery in ``task`` (the current task); True if it was acknowledged."""
        delivery = lease.delivery
        queue = self.queue
        # Only a message received more often than allowed can be dead-lettered before its
        # handler runs, so the wall clock is read only then.
        if delivery.receive_count > queue.max_receive_count:
            verdict = before_handling(delivery, queue, self.clock.wall())
            if verdict is not None:
                self.watchdog.disarm(lease)
                await self._dead_letter(delivery, verdict)
                reason = verdict.reason
                self._observe(
                    delivery, "dead_letter", None, f"{reason.error_type}: {reason.error_message}"
                )
                return False
        try:
            if self._json_body and delivery.headers.get(CONTENT_TYPE) == JSON:
                kwargs = {self._body_name: self._decode_json(delivery.body)}
            else:
                kwargs = self._arguments(delivery)
            if self._mail_param is not None:
                kwargs[self._mail_param.name] = await _parse_mail(delivery)
        except PoisonBodyError as exc:
            self.watchdog.disarm(lease)
            await self._dead_letter(
                delivery, poison(delivery, exc.error_type, str(exc), self.clock.wall())
            )
            self._observe(delivery, "poison", None, f"{exc.error_type}: {exc}")
            return False
        # Only observers (the dashboard) read the summary: no work for it otherwise.
        mail = (
            _summary(kwargs[self._mail_param.name])
            if self._mail_param is not None and self._observers
            else None
        )
        if self._context_param is not None:
            kwargs[self._context_param.name] = self._context(delivery, lease)
        # The handler's duration is only logged at DEBUG or observed: skip the clock otherwise.
        timed = bool(self._observers) or self._debug(logging.DEBUG)
        started = self.clock.now() if timed else 0.0
        error: BaseException | None = None
        if lease.expired:  # the deadline passed before a handler task took the delivery
            error = expired(queue.visibility_timeout)
        elif self._is_async:
            # Inline rather than in a helper coroutine: this is the per-message hot path.
            # The handler runs in this task; the watchdog cancels the task at the deadline and
            # ``uncancel`` turns that back into a timeout, as ``asyncio.timeout`` does.
            if task is None:
                task = asyncio.current_task()
                assert task is not None
            cancelling = task.cancelling()
            lease.task = task
            caught = False
            try:
                await self._handler(**kwargs)
            except asyncio.CancelledError:
                # Ours only if the watchdog cancelled and nobody else did (shutdown past grace).
                if not lease.expired or task.uncancel() > cancelling:
                    await self._release_cancelled(lease)
                    raise
                caught = True
            except Exception as exc:
                error = exc
            finally:
                self.watchdog.disarm(lease)
            if lease.expired:
                if not caught:  # the handler swallowed the cancellation: the deadline passed
                    task.uncancel()
                error = expired(queue.visibility_timeout)
        else:
            error = await self._run_sync(lease, kwargs)
        seconds = self.clock.now() - started if timed else 0.0
        if error is None:
            await self.backend.ack(delivery)
            self.handled += 1
            if self._observers:
                self._observe(delivery, "ok", seconds, mail=mail)
            if timed:
                event(
                    self.logger,
                    logging.DEBUG,
                    "message.handled",
                    queue=delivery.queue,
                    message_id=delivery.message_id,
                    seconds=round(seconds, 6),
                )
            return True
        self.failed += 1
        outcome = after_failure(delivery, queue, error, self.clock.wall())
        error_text = f"{type(error).__name__}: {error}"
        if isinstance(outcome, DeadLetter):
            await self._dead_letter(delivery, outcome, error)
            self._observe(delivery, "dead_letter", seconds, error_text, mail=mail)
        else:
            timed_out = isinstance(error, VisibilityTimeoutError)
            outcome_name: Outcome = "timeout" if timed_out else "retry"
            self._observe(delivery, outcome_name, seconds, error_text, mail=mail)
            event(
                self.logger,
                logging.WARNING,
                "message.failed",
                queue=delivery.queue,
                message_id=delivery.message_id,
                receive_count=delivery.receive_count,
                retry_in=outcome.delay,
                error=error_text,
            )
            await self.backend.release(delivery, delay=outcome.delay)
        return False

    def _observe(
        self,
        delivery: Delivery,
        outcome: Outcome,
        seconds: float | None,
        error: str | None = None,
        *,
        mail: Mapping[str, str] | None = None,
    ) -> None:
        if not self._observers:
            return
        self.events.settled(
            HandlerEvent(
                queue=delivery.queue,
                handler=self._handler_name,
                seconds=seconds,
                outcome=outcome,
                receive_count=delivery.receive_count,
                error=error,
                mail=mail,
            )
        )

    async def _run_sync(self, lease: HandlerLease, kwargs: dict[str, Any]) -> BaseException | None:
        """Run a sync handler in a thread under a cancel scope that the watchdog cancels."""
        scope = lease.scope = anyio.CancelScope()
        error: BaseException | None = None
        try:
            with scope:
                await anyio.to_thread.run_sync(lambda: self.consumer.handler(**kwargs))
        except anyio.get_cancelled_exc_class():
            await self._release_cancelled(lease)
            raise
        except Exception as exc:
            error = exc
        finally:
            self.watchdog.disarm(lease)
        if scope.cancelled_caught:
            return expired(self.queue.visibility_timeout)
        return error

    async def _release_cancelled(self, lease: HandlerLease) -> None:
        """Cancelled from outside (shutdown past its grace period): give the message back."""
        self.watchdog.disarm(lease)
        with anyio.CancelScope(shield=True):
            await self.backend.release(lease.delivery, delay=0)

    def _arguments(self, delivery: Delivery) -> dict[str, Any]:
        binder = self.binder
        kwargs: dict[str, Any] = {}
        if binder.body is not None:
            kwargs[binder.body.name] = binder.decode(delivery.body, delivery.content_type)
        return kwargs

    def _context(self, delivery: Delivery, lease: HandlerLease) -> Context:
        return Context(
            app=self.app,
            message=Message.from_delivery(delivery),
            logger=FieldsAdapter(
                self.logger,
                {"fields": {"queue": delivery.queue, "message_id": delivery.message_id}},
            ),
            remaining=lease.remaining,
            extend=lease.extend,
            wall=self.clock.wall,
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


async def _parse_mail(delivery: Delivery) -> Email:
    """The delivery's mail, parsed off the event loop; a mail over the parsing limits is poison.

    Parsing it could only be refused again on every retry, so it is dead-lettered at once,
    with the limit it broke as the reason.
    """
    # The mail parser (and the stdlib's email package) loads with the first mail, not with
    # every app's runtime.
    from framework.smtp.parsing import envelope_from_headers, parse_off_loop, too_complex

    raw, envelope = delivery.body, envelope_from_headers(delivery.headers)
    reason = too_complex(raw)
    if reason is not None:
        raise PoisonBodyError(reason, error_type="MailTooComplex")
    return await parse_off_loop(raw, envelope)


def _summary(mail: Email) -> dict[str, str]:
    """Who a mail is from, to whom, and its subject: what observers (the dashboard) show."""
    return {"from": mail.from_, "to": ", ".join(mail.to), "subject": mail.subject}
