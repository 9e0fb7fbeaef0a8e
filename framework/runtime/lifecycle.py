"""The running app: a backend, its declared resources, the workers, and a graceful stop."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Self, Unpack

import anyio
from anyio.abc import TaskGroup

from framework.backends.base import Backend
from framework.context import AppHandle
from framework.exceptions import (
    AppNotRunningError,
    ConfigError,
    MissingResourcesError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.logs import event
from framework.messages import QueueStats
from framework.outgoing import PublishOptions, SendOptions, build, build_batch
from framework.registry import QueueSpec, Registry
from framework.runtime import operations
from framework.runtime.connections import Connections
from framework.runtime.dispatch import Dispatcher
from framework.runtime.events import Events
from framework.runtime.worker import POLL_WAIT, Worker
from framework.smtp.outbound import Mailer, default_sender
from framework.websocket import ConnectionManager

__all__ = ["Runtime"]

log = logging.getLogger("framework.runtime")

DEFAULT_GRACE = 30.0


class Runtime:
    """Runs an app on a backend: declares its resources, runs its workers, produces messages.

    Use it as an async context manager; leaving it stops receiving, waits up to ``grace``
    seconds for handlers in flight, then cancels the rest and releases their messages.

    It is built from the app's description and its collaborators, never from the ``App``
    (``App.run`` builds one); a test or the Lambda handler can build it the same way.

    Args:
        registry: What the app declares.
        backend: Where its queues and topics live (entered and left with the runtime).
        events: The hub told of settled deliveries and of the start and stop (default: a
            new one).
        app: What handlers reach as ``ctx.app`` (default: the runtime itself, which has
            ``send``, ``publish`` and ``mail`` too).
        mail: The mailer of ``ctx.app.mail`` when ``app`` is not given (default: the
            backend's transport, from ``NAME@localhost``).
        workers: Run the queue, topic and mail workers.
        declare: Create what the registry declares; with False, check it exists.
        grace: Seconds handlers in flight get to finish when the runtime stops.
        poll_wait: The longest one receive waits, in seconds.
        connections: What ``app.connections`` is (default: a ``Connections`` of this
            process, reaching other processes' through the backend when it can).
    """

    def __init__(
        self,
        registry: Registry,
        backend: Backend,
        *,
        events: Events[Runtime] | None = None,
        app: AppHandle | None = None,
        mail: Mailer | None = None,
        workers: bool = True,
        declare: bool = True,
        grace: float = DEFAULT_GRACE,
        poll_wait: float = POLL_WAIT,
        connections: ConnectionManager | None = None,
    ) -> None:
        self.registry = registry
        self.backend = backend
        self.events: Events[Runtime] = events if events is not None else Events(registry.name)
        self.mail = mail or Mailer(lambda: backend, sender=default_sender(registry.name))
        # What handlers reach as ``ctx.app``: the App when it built the runtime, else this.
        self.app: AppHandle = app if app is not None else self
        self.run_workers = workers
        self.declare_resources = declare
        self.grace = grace
        self.poll_wait = poll_wait
        self.workers: list[Worker] = []
        self._stack: list[TaskGroup] = []
        self._services: TaskGroup | None = None
        self._wheres: dict[str, str] = {}
        self.connections: ConnectionManager = (
            connections if connections is not None else Connections()
        )

    async def __aenter__(self) -> Self:
        await self.backend.__aenter__()
        try:
            await self.declare()
            if self.registry.websocket_apis and isinstance(self.connections, Connections):
                await self.connections.start(self.backend)
            services = anyio.create_task_group()
            await services.__aenter__()
            self._services = services
            if self.run_workers:
                await self._start_workers()
        except BaseException:
            await self._stop_services()
            await self._stop_relay()
            await self.backend.__aexit__(None, None, None)
            raise
        self.events.started(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            # Handlers finishing within the grace period may still send: the app stays
            # attached until they are done.
            await self.stop()
            self.events.stopped(self)
            await self._stop_services()
        finally:
            try:
                await self._stop_relay()
            finally:
                await self.backend.__aexit__(*exc_info)

    async def _stop_relay(self) -> None:
        if isinstance(self.connections, Connections):
            await self.connections.stop()

    async def close_connections(self, grace: float | None = None) -> None:
        """Close every WebSocket connection held here with 1001, after its handler in flight.

        Each connection's ``$disconnect`` handler runs; waits up to ``grace`` seconds
        (default: the runtime's) for all of them. ``framework run`` calls it before the
        gateway stops accepting; ``stop`` calls it too.
        """
        if not isinstance(self.connections, Connections) or not self.connections.sessions:
            return
        self.connections.close_all(1001, "server stopping")
        await self.connections.wait_closed(self.grace if grace is None else grace)

    def spawn(self, work: Callable[[], Awaitable[object]]) -> None:
        """Run ``work`` in the runtime's task group until it returns or the runtime stops.

        For what lives as long as the app runs beside the workers (the dashboard's sampler):
        it is cancelled when the runtime stops, and its failure is logged, never raised.

        Raises:
            AppNotRunningError: If the runtime is not running.
        """
        if self._services is None:
            raise AppNotRunningError(f"app {self.registry.name!r} is not running")

        async def guarded() -> None:
            try:
                await work()
            except Exception:
                log.exception("service.failed", extra={"fields": {"service": repr(work)}})

        self._services.start_soon(guarded)

    async def _stop_services(self) -> None:
        services, self._services = self._services, None
        if services is not None:
            services.cancel_scope.cancel()
            await services.__aexit__(None, None, None)

    async def declare(self, progress: Callable[[str], None] | None = None) -> None:
        """Create every queue, topic and subscription the app declares (idempotent).

        Then, on a backend that receives mail itself (``CanDeclareMailRules``: AWS), the
        receipt rules of the app's ``@on_email`` rules.

        With ``declare=False`` (``framework run --no-declare``) nothing is created: the
        backend is asked what is missing instead.

        Args:
            progress: Called with ``queue 'NAME'`` (or topic, subscription) after each one
                is declared: ``framework provision`` prints it.

        Raises:
            MissingResourcesError: With ``declare=False``, listing what does not exist.
        """
        if not self.declare_resources:
            await self.check_declared()
            return
        for spec in self.registry.queues.values():
            await self.backend.declare_queue(spec)
            if progress is not None:
                progress(f"queue {spec.name!r}")
        for topic in self.registry.topics.values():
            await self.backend.declare_topic(topic)
            if progress is not None:
                progress(f"topic {topic.name!r}")
        for sub in self.registry.subscriptions:
            await self.backend.subscribe(sub)
            if progress is not None:
                progress(f"subscription {sub.name!r} of topic {sub.topic!r}")
        declare_mail_rules = self._mail_rules_declarer()
        if declare_mail_rules is not None:
            await declare_mail_rules(self.registry.name, self.registry.email_rules, progress)

    def _mail_rules_declarer(self) -> Any:
        """The backend's ``declare_mail_rules`` when it has one and the app has mail rules.

        A backend whose broker receives mail itself (AWS: SES receipt rules feeding the
        queues) declares them; on the others the SMTP receiver applies the rules.
        """
        if not self.registry.email_rules:
            return None
        return getattr(self.backend, "declare_mail_rules", None)

    def declarations(self) -> int:
        """How many resources ``declare`` declares: one ``progress`` call each."""
        registry = self.registry
        count = len(registry.queues) + len(registry.topics) + len(registry.subscriptions)
        if self._mail_rules_declarer() is not None:
            count += len(registry.email_rules)
        return count

    async def check_declared(self) -> None:
        """Raise MissingResourcesError if any resource the app declares is missing.

        Raises:
            MissingResourcesError: Listing each missing queue, topic and subscription (and
                mail rule, on a backend that declares them).
            ConfigError: If the backend cannot tell what exists.
        """
        finder = getattr(self.backend, "missing", None)
        if finder is None:
            raise ConfigError(
                f"{type(self.backend).__name__} cannot check which resources exist; "
                "run without --no-declare"
            )
        missing: list[str] = await finder(
            list(self.registry.queues.values()),
            list(self.registry.topics.values()),
            [sub for sub in self.registry.subscriptions if sub.queue is not None],
        )
        missing_mail_rules = getattr(self.backend, "missing_mail_rules", None)
        if missing_mail_rules is not None and self.registry.email_rules:
            missing += await missing_mail_rules(self.registry.name, self.registry.email_rules)
        if missing:
            raise MissingResourcesError(missing)

    async def _start_workers(self) -> None:
        receivers = anyio.create_task_group()
        handlers = anyio.create_task_group()
        await handlers.__aenter__()
        await receivers.__aenter__()
        self._stack = [handlers, receivers]
        for consumer in self.registry.consumers.values():
            worker = Worker(
                self.backend,
                Dispatcher(self.backend, consumer, self.events, self.app),
                poll_wait=self.poll_wait,
            )
            self.workers.append(worker)
            receivers.start_soon(worker.run, handlers)
        event(log, logging.INFO, "workers.started", consumers=len(self.workers))

    @property
    def active(self) -> int:
        """How many handlers are running now."""
        return sum(w.active for w in self.workers)

    async def stop(self, grace: float | None = None) -> None:
        """Stop receiving, let handlers finish within ``grace`` seconds, cancel the rest.

        WebSocket connections held here are closed first (1001), after their handlers.
        """
        await self.close_connections(grace)
        if not self._stack:
            return
        handlers, receivers = self._stack
        self._stack = []
        for worker in self.workers:
            worker.stop_receiving()
        await receivers.__aexit__(None, None, None)
        grace = self.grace if grace is None else grace
        with anyio.move_on_after(grace):
            for worker in self.workers:
                await worker.idle.wait()
        if self.active:
            event(log, logging.WARNING, "workers.grace_expired", cancelled=self.active)
        handlers.cancel_scope.cancel()
        await handlers.__aexit__(None, None, None)
        event(log, logging.INFO, "workers.stopped")

    # --- producing -----------------------------------------------------------------------

    def _queue_spec(self, name: str) -> QueueSpec:
        spec = self.registry.queues.get(name)
        if spec is None:
            known = ", ".join(sorted(self.registry.queues)) or "none"
            raise UnknownQueueError(
                f"queue {name!r} is not declared (declared: {known}); "
                "add @app.on_queue(...) or app.queue(...)"
            )
        return spec

    def _where(self, queue: str) -> str:
        """``queue 'NAME'``, for the errors of a send: formatted once per queue, not per send."""
        where = self._wheres.get(queue)
        if where is None:
            where = self._wheres[queue] = f"queue {queue!r}"
        return where

    async def send(self, queue: str, body: object, **options: Unpack[SendOptions]) -> str:
        """Encode ``body`` and send it to ``queue``; see ``App.send``."""
        spec = self._queue_spec(queue)
        message = build(
            self._where(queue),
            body,
            spec.max_message_size,
            fifo=spec.fifo,
            content_dedup=spec.content_based_deduplication,
            **options,
        )
        return await self.backend.send(queue, message)

    async def send_batch(
        self, queue: str, bodies: Iterable[object], **options: Unpack[SendOptions]
    ) -> list[str]:
        """Encode every body and send them to ``queue`` in order; see ``App.send_batch``."""
        spec = self._queue_spec(queue)
        messages = build_batch(
            self._where(queue),
            bodies,
            spec.max_message_size,
            fifo=spec.fifo,
            content_dedup=spec.content_based_deduplication,
            **options,
        )
        return await operations.send_batch(self.backend, queue, messages)

    async def publish(self, topic: str, body: object, **options: Unpack[PublishOptions]) -> str:
        """Encode ``body`` and publish it to ``topic``; see ``App.publish``."""
        spec = self.registry.topics.get(topic)
        if spec is None:
            known = ", ".join(sorted(self.registry.topics)) or "none"
            raise UnknownTopicError(
                f"topic {topic!r} is not declared (declared: {known}); "
                "add @app.on_topic(...) or app.topic(...)"
            )
        message = build(
            f"topic {topic!r}",
            body,
            spec.max_message_size,
            fifo=spec.fifo,
            content_dedup=spec.content_based_deduplication,
            **options,
        )
        return await self.backend.publish(topic, message)

    async def redrive(self, dlq: str, *, to: str | None = None, limit: int | None = None) -> int:
        """Move dead letters back; see ``App.redrive``."""
        self._queue_spec(dlq)
        if to is not None:
            self._queue_spec(to)
        return await operations.redrive(
            self.backend, dlq, to=to, limit=limit, sources=self.registry.dead_letter_sources(dlq)
        )

    async def stats(self) -> dict[str, QueueStats]:
        """Return every declared queue's stats, by name."""
        return {
            s.name: s
            for s in await operations.queue_stats(self.backend, list(self.registry.queues))
        }
