"""The running app: a backend, its declared resources, the workers, and a graceful stop."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, Self

import anyio
from anyio.abc import TaskGroup

from framework.backends.base import CONTENT_TYPE, AttributeValue, Backend, Outgoing, QueueStats
from framework.codec import encode, ensure_fits
from framework.exceptions import (
    ConfigError,
    InvalidMessageError,
    MissingResourcesError,
    UnknownQueueError,
    UnknownTopicError,
)
from framework.logs import event
from framework.registry import QueueSpec
from framework.runtime import operations
from framework.runtime.dispatch import Dispatcher
from framework.runtime.worker import POLL_WAIT, Worker

if TYPE_CHECKING:
    from framework.app import App

__all__ = ["Runtime"]

log = logging.getLogger("framework.runtime")

DEFAULT_GRACE = 30.0


class Runtime:
    """Runs an app on a backend: declares its resources, runs its workers, produces messages.

    Use it as an async context manager; leaving it stops receiving, waits up to ``grace``
    seconds for handlers in flight, then cancels the rest and releases their messages.
    """

    def __init__(
        self,
        app: App,
        backend: Backend,
        *,
        workers: bool = True,
        declare: bool = True,
        grace: float = DEFAULT_GRACE,
        poll_wait: float = POLL_WAIT,
    ) -> None:
        self.app = app
        self.backend = backend
        self.registry = app.registry
        self.run_workers = workers
        self.declare_resources = declare
        self.grace = grace
        self.poll_wait = poll_wait
        self.workers: list[Worker] = []
        self._stack: list[TaskGroup] = []

    async def __aenter__(self) -> Self:
        await self.backend.__aenter__()
        try:
            await self.declare()
            if self.run_workers:
                await self._start_workers()
        except BaseException:
            await self.backend.__aexit__(None, None, None)
            raise
        self.app._attach(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.stop()
        finally:
            self.app._detach(self)
            await self.backend.__aexit__(*exc_info)

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
            await declare_mail_rules(self.app.name, self.registry.email_rules, progress)

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
            missing += await missing_mail_rules(self.app.name, self.registry.email_rules)
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
                Dispatcher(self.app, self.backend, consumer),
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
        """Stop receiving, let handlers finish within ``grace`` seconds, cancel the rest."""
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

    async def send(
        self,
        queue: str,
        body: object,
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
        delay: float = 0,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Encode ``body`` and send it to ``queue``; see ``App.send``."""
        spec = self._queue_spec(queue)
        message = build_outgoing(
            f"queue {queue!r}",
            body,
            attributes,
            spec.max_message_size,
            fifo=spec.fifo,
            content_dedup=spec.content_based_deduplication,
            delay=delay,
            group_id=group_id,
            deduplication_id=deduplication_id,
        )
        return await self.backend.send(queue, message)

    async def publish(
        self,
        topic: str,
        body: object,
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Encode ``body`` and publish it to ``topic``; see ``App.publish``."""
        spec = self.registry.topics.get(topic)
        if spec is None:
            known = ", ".join(sorted(self.registry.topics)) or "none"
            raise UnknownTopicError(
                f"topic {topic!r} is not declared (declared: {known}); "
                "add @app.on_topic(...) or app.topic(...)"
            )
        message = build_outgoing(
            f"topic {topic!r}",
            body,
            attributes,
            spec.max_message_size,
            fifo=spec.fifo,
            content_dedup=spec.content_based_deduplication,
            group_id=group_id,
            deduplication_id=deduplication_id,
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


def build_outgoing(
    where: str,
    body: object,
    attributes: Mapping[str, AttributeValue] | None,
    limit: int,
    *,
    fifo: bool = False,
    content_dedup: bool = False,
    delay: float = 0,
    group_id: str | None = None,
    deduplication_id: str | None = None,
) -> Outgoing:
    """Encode and check a message for ``where`` (a queue or topic), as SQS/SNS would.

    Raises:
        MessageTooLargeError: If body plus attributes exceed ``limit`` bytes.
        InvalidMessageError: For FIFO rules broken (no group id, no deduplication id, a delay).
    """
    data, content_type = encode(body)
    if attributes:
        attrs: Mapping[str, AttributeValue] = dict(attributes)
        _check_attributes(where, attrs)
        ensure_fits(where, data, attrs, limit)
    else:
        attrs = _NO_ATTRIBUTES
        if len(data) > limit:
            ensure_fits(where, data, attrs, limit)
    if delay and not 0 <= delay <= 900:
        raise InvalidMessageError(f"{where}: delay={delay} must be 0 to 900 seconds")
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


def build_undeclared(
    kind: str,
    name: str,
    body: object,
    limit: int,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    delay: float = 0,
    group_id: str | None = None,
    deduplication_id: str | None = None,
) -> Outgoing:
    """Build a message for a queue or topic whose options the caller does not know.

    FIFO is read from the ``.fifo`` name, and content-based deduplication is left to the
    backend, which refuses a message it cannot deduplicate.
    """
    fifo = name.endswith(".fifo")
    return build_outgoing(
        f"{kind} {name!r}",
        body,
        attributes,
        limit,
        fifo=fifo,
        content_dedup=fifo,
        delay=delay,
        group_id=group_id,
        deduplication_id=deduplication_id,
    )


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
